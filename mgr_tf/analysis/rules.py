"""The ensemble decision rules of report 3, written once in TensorFlow ops.

The same functions score the ensemble in `mgr_tf.ensemble` (called eagerly on NumPy arrays) and decide the
`genre` output inside the exported SavedModel (traced), so the served answer is the evaluated one.

Every rule takes the members' probabilities stacked as (members, batch, classes) and returns the chosen
class per example, (batch,) int32. Ties go to the lowest index (member or class), made explicit rather than
left to `argmax`, whose tie order TensorFlow does not guarantee.
"""

from __future__ import annotations

from mgr_tf.core.lazy import tf  # the rule names are read by the command-line parser

METHODS = ("vote", "mean", "confidence")
DESCRIPTIONS = {
    "vote": "majority vote of the members' top classes; a tie goes to the tied class with the higher summed "
            "probability",
    "mean": "the class with the highest probability averaged over the members",
    "confidence": "the most confident member decides: the one whose highest probability is the largest",
}


def first_argmax(x, axis: int = -1) -> tf.Tensor:
    """Index of the maximum along `axis`, the lowest index among equal maxima (int32)."""
    x = tf.convert_to_tensor(x)
    size = tf.shape(x)[axis]
    shape = [1] * x.shape.rank
    shape[axis] = -1
    index = tf.reshape(tf.range(size), shape)
    is_max = tf.equal(x, tf.reduce_max(x, axis=axis, keepdims=True))
    return tf.reduce_min(tf.where(is_max, index, size), axis=axis)


def vote(probabilities) -> tf.Tensor:
    """Majority vote of the members' top classes; ties broken by the higher summed probability.

    Args:
        probabilities: (members, batch, classes).
    """
    p = tf.convert_to_tensor(probabilities, tf.float32)
    votes = tf.reduce_sum(tf.one_hot(first_argmax(p), tf.shape(p)[-1]), axis=0)  # (batch, classes)
    tied = tf.equal(votes, tf.reduce_max(votes, axis=-1, keepdims=True))
    summed = tf.reduce_sum(p, axis=0)
    return first_argmax(tf.where(tied, summed, -1.0))  # probabilities are >= 0, so -1 never wins


def mean(probabilities) -> tf.Tensor:
    """The class of highest mean probability over the members.

    Args:
        probabilities: (members, batch, classes).
    """
    return first_argmax(tf.reduce_mean(tf.convert_to_tensor(probabilities, tf.float32), axis=0))


def confidence(probabilities) -> tf.Tensor:
    """The top class of the member whose highest probability is the largest (per example).

    Args:
        probabilities: (members, batch, classes).
    """
    p = tf.convert_to_tensor(probabilities, tf.float32)
    member = first_argmax(tf.reduce_max(p, axis=-1), axis=0)  # (batch,)
    chosen = tf.gather(tf.transpose(p, [1, 0, 2]), member, batch_dims=1)  # (batch, classes)
    return first_argmax(chosen)


RULES = {"vote": vote, "mean": mean, "confidence": confidence}


def decide(method: str, probabilities) -> tf.Tensor:
    """The chosen class per example under `method` (vote, mean or confidence).

    Args:
        method: a name in `METHODS`.
        probabilities: (members, batch, classes).

    Raises:
        ValueError: an unknown method.
    """
    if method not in RULES:
        raise ValueError(f"ensemble method must be one of {METHODS}, got {method!r}")
    return RULES[method](probabilities)
