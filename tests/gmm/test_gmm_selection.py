"""Recovery of well-separated mixtures (adjusted Rand index) and the choice of K by BIC."""

import jax
import numpy as np
import pytest
from gmm_test_data import D_STD, N_STD, mixture_sample
from sklearn.metrics import adjusted_rand_score

import gmm

CANDIDATES = range(1, 5)  # K = 1 … 4 at the shared shape: compiled once for the whole file


@pytest.mark.parametrize(("n_components", "seed"), [(2, 0), (3, 1)])
def test_well_separated_components_are_recovered_and_bic_selects_k(x64, n_components, seed):
    x, labels = mixture_sample(seed, n_components, N_STD, D_STD, separation=12.0)
    best, table = gmm.select_n_components(x, CANDIDATES, key=jax.random.key(seed))
    assert [row.n_components for row in table] == list(CANDIDATES)
    criteria = [row.criterion for row in table]
    assert best.params.n_components == n_components == table[int(np.argmin(criteria))][0]
    assert adjusted_rand_score(labels, np.asarray(gmm.predict(best.params, x))) > 0.95
    np.testing.assert_allclose(min(criteria), float(gmm.bic(best.params, x)), rtol=1e-12)
    row = table[n_components - 1]
    assert row.converged and row.lower_bound == float(best.lower_bound)


def test_aic_table_holds_each_fits_aic(x64):
    x, _ = mixture_sample(3, 3, N_STD, D_STD, separation=12.0)
    best, table = gmm.select_n_components(x, [2, 3], key=jax.random.key(0), criterion="aic")
    for row in table:
        fit = gmm.fit(x, row.n_components, key=jax.random.fold_in(jax.random.key(0), row[0]))
        np.testing.assert_allclose(row.criterion, float(gmm.aic(fit.params, x)), rtol=1e-12)
    assert best.params.n_components == 3


def test_default_candidates_are_one_to_n_minus_one(x64):
    """The authors' range(1, min(50, N)) with N counted over unmasked samples."""
    x, _ = mixture_sample(4, 2, N_STD, D_STD)
    mask = np.zeros(N_STD, bool)
    mask[:4] = True
    _, table = gmm.select_n_components(x, key=jax.random.key(0), mask=mask, reg_covar=1e-2)
    assert [row.n_components for row in table] == [1, 2, 3]
