"""Closed-form heads (`mgr_tf.training.convex`) against scikit-learn's LogisticRegression, the convention they follow."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from mgr_tf.training.convex import fit_sigmoid, fit_softmax, sigmoid, softmax


def _data(n=120, d=15, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1.0, (classes, d))
    labels = rng.integers(0, classes, n)
    x = centres[labels] + rng.normal(0, 1.5, (n, d))
    return (x - x.mean(0)) / x.std(0), labels


@pytest.mark.parametrize("c", [0.03, 1.0])
def test_softmax_head_is_sklearns_multinomial_logistic_regression(c):
    x, labels = _data()
    fit = fit_softmax(x, labels, 4, c)
    reference = LogisticRegression(C=c, tol=1e-12, max_iter=20000).fit(x, labels)
    assert fit.converged
    np.testing.assert_allclose(fit.kernel, reference.coef_.T, atol=1e-5)
    np.testing.assert_allclose(softmax(x, fit), reference.predict_proba(x), atol=1e-6)


def test_sigmoid_head_on_hard_labels_is_sklearns_binary_logistic_regression():
    x, labels = _data(classes=2)
    fit = fit_sigmoid(x, labels.astype(float), 0.03)
    reference = LogisticRegression(C=0.03, tol=1e-12, max_iter=20000).fit(x, labels)
    np.testing.assert_allclose(fit.kernel[:, 0], reference.coef_[0], atol=1e-6)
    np.testing.assert_allclose(fit.bias, reference.intercept_, atol=1e-6)
    np.testing.assert_allclose(sigmoid(x, fit), reference.predict_proba(x)[:, 1], atol=1e-6)


def test_soft_targets_reach_the_optimum_of_the_penalised_cross_entropy():
    """Fractions as targets: at the solution the gradient C * X^T (p - y) + w vanishes and the bias matches the
    mean (sum of p - y is 0); a larger C fits the targets more closely."""
    x, _ = _data(n=200, d=10)
    rng = np.random.default_rng(1)
    y = 1 / (1 + np.exp(-(x @ rng.normal(0, 0.5, 10) + 0.3 * rng.normal(size=200))))
    fits = {c: fit_sigmoid(x, y, c) for c in (0.03, 1.0)}
    for c, fit in fits.items():
        p = sigmoid(x, fit)
        np.testing.assert_allclose(c * x.T @ (p - y) + fit.kernel[:, 0], 0.0, atol=1e-6)
        assert abs(np.sum(p - y)) < 1e-6
    errors = {c: np.mean((sigmoid(x, fit) - y) ** 2) for c, fit in fits.items()}
    assert errors[1.0] < errors[0.03]
