"""Heads fitted in closed form on fixed features: L2-regularised logistic regression, solved to its optimum.

When what feeds the heads does not train (a frozen pretrained encoder's pooled embeddings, the summary
baseline's statistics), the heads are a linear model on standardised features: a softmax layer for genres, one
sigmoid unit per regression target. Their training problem is then convex, and instead of Adam with early
stopping on a validation split it is solved exactly (L-BFGS, scipy) with a fixed penalty:

    genre:      minimise  C * sum_i  cross-entropy(softmax(W x_i + b), y_i)        + 1/2 ||W||^2
    regression: minimise  C * sum_i  bce(sigmoid(w_t x_i + b_t), y_it)   per target + 1/2 ||w_t||^2

with soft targets y in [0, 1] for regression (binary cross-entropy of a fraction: logistic regression on
proportions, as the GEMS ratings are shares of listeners). This is scikit-learn's LogisticRegression convention
(its `C`); the default C = 0.03, constant in the number of clips, was chosen on frozen MSD_musicnn embeddings of
Emotify over the full set and 80- and 40-clip subsets (docs/results.md): it beat C = 1 in 33 of 35 folds on
log-loss, tied an inner cross-validation of C at a fiftieth of its cost, and the same C is as good as ridge
regression with its penalty chosen by generalised cross-validation on the 9 GEMS targets. A target's fixed loss
weight multiplies its C (a heavier target is fitted more closely); the targets share no parameters, so one model
per target and one multitask model are the same fit.

The solution is written into the model's own head layers, so the model is evaluated, saved and exported as if it
had been trained by gradient descent.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize

DEFAULT_C = 0.03
MAX_ITERATIONS = 5000


@dataclass
class LinearFit:
    """One fitted linear head: kernel (features, units), bias (units,), and how the solver ended."""

    kernel: np.ndarray
    bias: np.ndarray
    iterations: int
    converged: bool


def _solve(objective, size: int) -> tuple[np.ndarray, int, bool]:
    result = optimize.minimize(objective, np.zeros(size), jac=True, method="L-BFGS-B",
                               options={"maxiter": MAX_ITERATIONS, "gtol": 1e-9, "ftol": 1e-15})
    return result.x, int(result.nit), bool(result.success)


def fit_softmax(x: np.ndarray, labels: np.ndarray, num_classes: int, c: float = DEFAULT_C) -> LinearFit:
    """Multinomial logistic regression: C * sum of cross-entropies + 1/2 ||W||^2 (the bias unpenalised).

    Args:
        x: (n, d) standardised features.
        labels: (n,) integer classes in [0, num_classes).
        num_classes: the softmax width (classes absent from `labels` get a low bias, not an error).
        c: the inverse penalty strength.
    """
    x = np.asarray(x, np.float64)
    n, d = x.shape
    onehot = np.eye(num_classes)[np.asarray(labels, int)]

    def objective(w):
        kernel, bias = w[:d * num_classes].reshape(d, num_classes), w[d * num_classes:]
        z = x @ kernel + bias
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        g = c * (np.exp(log_p) - onehot)
        value = -c * np.sum(onehot * log_p) + 0.5 * np.sum(kernel ** 2)
        return value, np.concatenate([(x.T @ g + kernel).ravel(), g.sum(axis=0)])

    w, iterations, converged = _solve(objective, d * num_classes + num_classes)
    return LinearFit(w[:d * num_classes].reshape(d, num_classes), w[d * num_classes:], iterations, converged)


def fit_sigmoid(x: np.ndarray, y: np.ndarray, c: float = DEFAULT_C) -> LinearFit:
    """Logistic regression of one target in [0, 1]: C * sum of binary cross-entropies + 1/2 ||w||^2.

    Args:
        x: (n, d) standardised features.
        y: (n,) targets in [0, 1] (fractions allowed).
        c: the inverse penalty strength.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64).reshape(-1)
    n, d = x.shape

    def objective(w):
        z = x @ w[:d] + w[d]
        g = c * (0.5 * (1.0 + np.tanh(0.5 * z)) - y)  # c * (sigmoid(z) - y), without overflow
        value = c * np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(w[:d] ** 2)
        return value, np.concatenate([x.T @ g + w[:d], [g.sum()]])

    w, iterations, converged = _solve(objective, d + 1)
    return LinearFit(w[:d, None], w[d:], iterations, converged)


def softmax(x: np.ndarray, fit: LinearFit) -> np.ndarray:
    """The fitted head's class probabilities (n, classes)."""
    z = np.asarray(x, np.float64) @ fit.kernel + fit.bias
    z -= z.max(axis=1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(axis=1, keepdims=True)


def sigmoid(x: np.ndarray, fit: LinearFit) -> np.ndarray:
    """The fitted head's predictions (n,)."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(x, np.float64) @ fit.kernel[:, 0] + fit.bias[0])))
