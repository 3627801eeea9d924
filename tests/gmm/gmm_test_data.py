"""Synthetic data and initial parameters shared by the gmm tests (numpy only, seeded)."""

from __future__ import annotations

import numpy as np

# Shapes shared across test files so that jitted fits compile once per session.
N_STD = 600
D_STD = 2


def random_spd(rng: np.random.Generator, d: int, low: float = 0.2, high: float = 1.0):
    """A ``[d, d]`` SPD matrix with eigenvalues in ``[low, high]``."""
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * rng.uniform(low, high, size=d)) @ q.T


def mixture_sample(
    seed: int,
    n_components: int,
    n_samples: int = N_STD,
    n_features: int = D_STD,
    separation: float = 10.0,
    scale: tuple[float, float] = (0.2, 1.0),
):
    """``n_samples`` points from ``n_components`` Gaussians with equal shares.

    Centres lie on a circle in the first two coordinates (a segment when D = 1), neighbours
    ``separation`` apart, at a random rotation, plus a small random offset in the other
    coordinates; covariances are random SPD with eigenvalues in ``scale``. Returns ``x``
    ``[N, D]`` and the true labels ``[N]``.
    """
    rng = np.random.default_rng(seed)
    centres = 0.1 * separation * rng.normal(size=(n_components, n_features))
    if n_components > 1 and n_features == 1:
        centres[:, 0] = separation * np.arange(n_components)
    elif n_components > 1:
        angles = 2 * np.pi * np.arange(n_components) / n_components + rng.uniform(0, 2 * np.pi)
        radius = separation / (2 * np.sin(np.pi / n_components))
        centres[:, 0] = radius * np.cos(angles)
        centres[:, 1] = radius * np.sin(angles)
    labels = np.arange(n_samples) % n_components
    rng.shuffle(labels)
    x = np.empty((n_samples, n_features))
    for k in range(n_components):
        chol = np.linalg.cholesky(random_spd(rng, n_features, *scale))
        idx = labels == k
        x[idx] = centres[k] + rng.normal(size=(idx.sum(), n_features)) @ chol.T
    return x, labels


def explicit_init(x: np.ndarray, n_components: int, seed: int):
    """scikit-learn style explicit initial values: uniform weights, data points as means,
    the inverse of the data covariance as every precision."""
    rng = np.random.default_rng(seed)
    idx = rng.choice(x.shape[0], size=n_components, replace=False)
    prec = np.linalg.inv(np.atleast_2d(np.cov(x.T)))
    return {
        "weights_init": np.full(n_components, 1.0 / n_components),
        "means_init": x[idx].copy(),
        "precisions_init": np.stack([prec] * n_components),
    }
