"""Soft ranks (golden values, limits, gradients, ties, XLA), Spearman losses and learned multitask weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import scipy.stats
import tensorflow as tf

from mgr_tf.core.config import RegressionConfig
from mgr_tf.core.published import EMOTIONS, PUBLISHED_WEIGHTS
from mgr_tf.losses import (
    LogTaskWeights,
    MSESpearmanLoss,
    SpearmanLoss,
    build_learned_weighting_model,
    rank_with_ties,
    soft_rank,
    spearman_correlation,
)
from mgr_tf.tasks import task_losses

METHODS = ["pairwise", "permutahedron"]


def numpy_permutahedron_rank(x: np.ndarray, eps: float) -> np.ndarray:
    """Reference: sort, then pool-adjacent-violators with an explicit stack (Blondel et al. 2020)."""
    theta = x / eps
    order = np.argsort(-theta, kind="stable")
    s = theta[order]
    y = s - np.arange(len(x), 0, -1)
    blocks = []  # [sum, count]
    for value in y:
        blocks.append([value, 1])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] < blocks[-1][0] / blocks[-1][1]:
            total, count = blocks.pop()
            blocks[-1][0] += total
            blocks[-1][1] += count
    v = np.concatenate([np.full(c, t / c) for t, c in blocks])
    out = np.empty_like(theta)
    out[order] = s - v
    return out


def test_permutahedron_golden_values():
    np.testing.assert_allclose(soft_rank([5.0, 1.0, 2.0], "permutahedron", 1.0), [3.0, 1.0, 2.0], atol=1e-6)
    np.testing.assert_allclose(soft_rank([5.0, 1.0, 2.0], "permutahedron", 2.0), [3.0, 1.25, 1.75], atol=1e-6)
    # The default method is the losses' (pairwise would give about [2.91, 1.28, 1.81] here).
    np.testing.assert_allclose(soft_rank([5.0, 1.0, 2.0], strength=2.0), [3.0, 1.25, 1.75], atol=1e-6)


def test_permutahedron_matches_reference_pav():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((6, 40))
    for eps in (0.05, 0.5, 3.0):
        got = soft_rank(tf.constant(x), "permutahedron", eps).numpy()
        want = np.stack([numpy_permutahedron_rank(row, eps) for row in x])
        np.testing.assert_allclose(got, want, atol=1e-9)


def test_pairwise_formula():
    x = np.array([0.3, -1.0, 2.0, 0.3])
    want = 0.5 + (1.0 / (1.0 + np.exp(-(x[:, None] - x[None, :]) / 0.7))).sum(axis=1)
    np.testing.assert_allclose(soft_rank(tf.constant(x), "pairwise", 0.7).numpy(), want, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_converges_to_hard_ranks(method):
    x = tf.constant(np.random.default_rng(1).permutation(50).astype(np.float32).reshape(2, 25) / 10.0)
    hard = scipy.stats.rankdata(x.numpy(), axis=-1)
    errors = [np.abs(soft_rank(x, method, s).numpy() - hard).max() for s in (1.0, 0.1, 0.001)]
    assert errors[0] > errors[1] > errors[2] - 1e-9 and errors[2] < 1e-3, errors
    # ... and shrink towards the mean rank as the strength grows.
    flat = soft_rank(x, method, 1e4).numpy()
    np.testing.assert_allclose(flat, 13.0, atol=0.05)


@pytest.mark.parametrize("method", METHODS)
def test_gradient_matches_numerical(method):
    x = tf.constant(np.random.default_rng(2).standard_normal((2, 7)))
    weights = tf.constant(np.random.default_rng(3).standard_normal((2, 7)))
    theoretical, numerical = tf.test.compute_gradient(
        lambda v: tf.reduce_sum(soft_rank(v, method, 0.3) * weights), [x], delta=1e-6)
    np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_ties_give_finite_values_and_gradients(method):
    x = tf.constant([[1.0, 1.0, 1.0, 2.0], [0.0, 0.0, 0.0, 0.0]])
    with tf.GradientTape() as tape:
        tape.watch(x)
        ranks = soft_rank(x, method, 0.1)
        loss = SpearmanLoss(method)(tf.constant([0.1, 0.5, 0.2, 0.3]), x[1])
        total = tf.reduce_sum(ranks * [[1.0, 2.0, 3.0, 4.0]]) + loss
    grad = tape.gradient(total, x)
    assert np.all(np.isfinite(ranks.numpy())) and np.all(np.isfinite(grad.numpy())) and np.isfinite(loss.numpy())
    np.testing.assert_allclose(ranks.numpy()[1], 2.5, atol=1e-6)  # all tied: the mean rank


@pytest.mark.parametrize("method", METHODS)
def test_works_under_jit_compile(method):
    x = tf.constant(np.random.default_rng(4).standard_normal((3, 16)).astype(np.float32))

    # Unknown sizes at trace time, as in model.fit's train function.
    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec([None, None], tf.float32)])
    def ranks_and_grad(v):
        with tf.GradientTape() as tape:
            tape.watch(v)
            r = soft_rank(v, method, 0.5)
            objective = tf.reduce_sum(r * r)
        return r, tape.gradient(objective, v)

    r, g = ranks_and_grad(x)
    np.testing.assert_allclose(r.numpy(), soft_rank(x, method, 0.5).numpy(), atol=1e-5)
    assert np.all(np.isfinite(g.numpy()))
    loss = MSESpearmanLoss(method=method)
    y = tf.constant(np.linspace(0, 1, 16, dtype=np.float32)[:, None])
    jit_loss = tf.function(lambda a, b: loss(a, b), jit_compile=True,
                           input_signature=[tf.TensorSpec([None, 1], tf.float32)] * 2)
    assert float(jit_loss(y, x[0][:, None])) == pytest.approx(float(loss(y, x[0][:, None])), abs=1e-5)


def test_rank_with_ties_matches_scipy():
    x = np.random.default_rng(5).integers(0, 6, (3, 30)).astype(np.float32)
    np.testing.assert_allclose(rank_with_ties(x).numpy(), scipy.stats.rankdata(x, axis=-1))


@pytest.mark.parametrize("method", METHODS)
def test_spearman_loss_bounds_and_shapes(method):
    y = np.linspace(0.1, 0.9, 16).astype(np.float32)
    loss = SpearmanLoss(method, strength=0.001)
    assert float(loss(y[:, None], y[:, None])) == pytest.approx(0.0, abs=1e-4)
    assert float(loss(y, y[::-1].copy())) == pytest.approx(2.0, abs=1e-4)
    noisy = y + np.random.default_rng(6).normal(0, 0.2, 16).astype(np.float32)
    value = float(loss(y[:, None], noisy))
    hard = 1.0 - scipy.stats.spearmanr(y, noisy).statistic
    assert value == pytest.approx(hard, abs=1e-3)
    assert float(spearman_correlation(y, noisy, method, 0.001)) == pytest.approx(1.0 - hard, abs=1e-3)


def test_mse_spearman_combination_and_config():
    rng = np.random.default_rng(7)
    y, p = rng.random((12, 1)).astype(np.float32), rng.random((12, 1)).astype(np.float32)
    combined = MSESpearmanLoss(spearman_weight=0.5, method="pairwise", strength=0.05)
    want = np.mean((y - p) ** 2) + 0.5 * float(SpearmanLoss("pairwise", 0.05)(y, p))
    assert float(combined(y, p)) == pytest.approx(want, rel=1e-5)
    clone = keras.losses.deserialize(keras.losses.serialize(combined))
    assert isinstance(clone, MSESpearmanLoss) and clone.get_config() == combined.get_config()
    assert float(MSESpearmanLoss(0.0)(y, p)) == pytest.approx(np.mean((y - p) ** 2), rel=1e-5)
    with pytest.raises(ValueError, match="soft rank method"):
        SpearmanLoss("sinkhorn")


def test_published_weights_weigh_the_multitask_loss():
    """`--loss-weights published` gives report 2's weights, and the compiled total is their weighted sum."""
    from mgr_tf.tasks import task_for
    from mgr_tf.training.fit import compile_for
    from mgr_tf.training.flags import _parse_loss_weights

    weights = _parse_loss_weights(["published"])
    assert weights == PUBLISHED_WEIGHTS
    # By name, or one number per target in the task's order; a target not named weighs 1.
    assert _parse_loss_weights(["energy=2", "valence=0.5"]) == {"energy": 2.0, "valence": 0.5}
    assert _parse_loss_weights(["1.5", "0.8", "0.8"]) == PUBLISHED_WEIGHTS
    assert _parse_loss_weights(["calmness=2,power=1"], ("calmness", "power")) == {"calmness": 2.0, "power": 1.0}
    assert task_for("multitask").loss_weights(RegressionConfig(loss_weights={"energy": 2.0})) == {
        "valence": 1.0, "energy": 2.0, "danceability": 1.0}
    assert set(task_losses("multitask")) == set(EMOTIONS)
    rng = np.random.default_rng(9)
    x = {"spectrogram": rng.random((16, 4)).astype(np.float32)}
    y = {name: rng.random((16, 1)).astype(np.float32) for name in EMOTIONS}
    model = _tiny_multitask_model()
    compile_for(task_for("multitask"), model, RegressionConfig(loss_weights=weights, spearman_weight=0.0), 1e-3)
    predictions = model(x)
    total = float(model.compute_loss(x=x, y=y, y_pred=predictions, training=False))
    want = sum(PUBLISHED_WEIGHTS[n] * np.mean((np.asarray(predictions[n]) - y[n]) ** 2) for n in EMOTIONS)
    assert total == pytest.approx(want, rel=1e-5)


def _tiny_multitask_model():
    inputs = keras.Input((4,), name="spectrogram")
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = {name: keras.layers.Dense(1, activation="sigmoid", name=name)(hidden) for name in EMOTIONS}
    return keras.Model({"spectrogram": inputs}, outputs)


def test_learned_weighting_total_and_config():
    """total = sum_t exp(-s_t) L_t + s_t, on fixed predictions and log-variances (no training)."""
    rng = np.random.default_rng(10)
    y = {name: rng.random((8, 1)).astype(np.float32) for name in EMOTIONS}
    y_pred = {name: rng.random((8, 1)).astype(np.float32) for name in EMOTIONS}
    losses = task_losses("multitask", RegressionConfig(spearman_strength=0.05))
    wrapped = build_learned_weighting_model(_tiny_multitask_model(), losses)
    s = np.array([0.5, -0.25, 0.0], np.float32)
    wrapped.log_vars.assign(s)
    total = float(wrapped.compute_loss(y=y, y_pred=y_pred))
    task_loss = [float(losses[name](y[name], y_pred[name])) for name in wrapped.task_names]
    assert total == pytest.approx(sum(np.exp(-si) * li + si for si, li in zip(s, task_loss)), rel=1e-5)
    assert wrapped.task_weights() == pytest.approx(dict(zip(wrapped.task_names, np.exp(-s))), rel=1e-6)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(wrapped))
    assert clone.task_names == wrapped.task_names
    assert {n: f.get_config() for n, f in clone.task_losses.items()} == {n: f.get_config() for n, f in losses.items()}


@pytest.mark.slow
def test_learned_weights_train_and_total_is_bounded(tmp_path):
    rng = np.random.default_rng(8)
    x = rng.random((64, 4)).astype(np.float32)
    y = {name: rng.random((64, 1)).astype(np.float32) for name in EMOTIONS}
    ds = tf.data.Dataset.from_tensor_slices(({"spectrogram": x}, y)).batch(16)
    wrapped = build_learned_weighting_model(_tiny_multitask_model(),
                                            task_losses("multitask", RegressionConfig(spearman_strength=0.05)))
    wrapped.compile(optimizer=keras.optimizers.Adam(0.05))
    logger = LogTaskWeights()
    history = wrapped.fit(ds, epochs=4, verbose=0, callbacks=[logger], shuffle=False)
    s = wrapped.log_vars.numpy()
    # Every s_t moved away from 0 (its start) during training; it heads for log L_t, which may lie near 0 again.
    moved = [max(abs(np.log(w)) for w in history.history[f"weight_{name}"]) for name in EMOTIONS]
    assert min(moved) > 1e-2, moved
    assert len(logger.history) == 4
    for i, name in enumerate(EMOTIONS):  # the logged weight is exp(-s_t) of the final s_t
        assert history.history[f"weight_{name}"][-1] == pytest.approx(np.exp(-s[i]), rel=1e-6)
        assert logger.history[-1][name] == pytest.approx(np.exp(-s[i]), rel=1e-6)
    # total = sum exp(-s) L + s >= sum (1 + log L): bounded below for losses bounded away from 0.
    task_loss = {n: history.history[f"{n}_loss"][-1] for n in EMOTIONS}
    assert history.history["loss"][-1] >= sum(1 + np.log(v) for v in task_loss.values()) - 0.05
    assert np.all(np.isfinite(history.history["loss"]))
    wrapped.save(tmp_path / "weighted.keras")
    reloaded = keras.models.load_model(tmp_path / "weighted.keras")
    np.testing.assert_allclose(reloaded.log_vars.numpy(), s)
    np.testing.assert_allclose(reloaded.predict_on_batch({"spectrogram": x})["energy"],
                               wrapped.predict_on_batch({"spectrogram": x})["energy"], atol=1e-6)
