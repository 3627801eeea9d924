"""A jit-compiled full-covariance Gaussian mixture (EM, k-means++ init, BIC selection).

Standalone (pure JAX + numpy): the uncertainty model of Zhu, Batzner, Musaelian, Kozinsky,
"Fast uncertainty estimates in deep learning interatomic potentials", J. Chem. Phys. 158,
164111 (2023). A mixture is fitted on per-atom features of the training set; the negative
log-likelihood of a new feature vector (Eq. (8), :func:`nll`) is its uncertainty. Conventions
follow ``sklearn.mixture.GaussianMixture(covariance_type="full")``.
"""

from gmm._em import CovarianceError, fit, fit_jit
from gmm._io import load, save
from gmm._kmeans import KMeansResult, kmeans, kmeans_plusplus, lloyd
from gmm._scoring import nll, predict, predict_proba, score_samples
from gmm._selection import SelectionRow, aic, bic, n_parameters, select_n_components
from gmm._types import FitResult, GMMParams

__all__ = [
    "CovarianceError",
    "FitResult",
    "GMMParams",
    "KMeansResult",
    "SelectionRow",
    "aic",
    "bic",
    "fit",
    "fit_jit",
    "kmeans",
    "kmeans_plusplus",
    "lloyd",
    "load",
    "n_parameters",
    "nll",
    "predict",
    "predict_proba",
    "save",
    "score_samples",
    "select_n_components",
]
