"""Tests of nequip_jax.uncertainty.metrics against loops, brute-force counts, scipy and sklearn."""

import math

import numpy as np
import pytest
import scipy.stats
import sklearn.metrics
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from nequip_jax.uncertainty import metrics as m

SETTINGS = settings(max_examples=60, deadline=None)

# Small integers produce many ties (and values equal to cut-offs); floats produce generic data.
_VALUES = st.one_of(
    st.integers(-4, 4).map(float),
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64),
)


@st.composite
def paired(draw, min_size=1, max_size=60):
    """Two equal-length float arrays (uncertainty-like, error-like)."""
    n = draw(st.integers(min_size, max_size))
    u = draw(hnp.arrays(np.float64, n, elements=_VALUES))
    e = draw(hnp.arrays(np.float64, n, elements=_VALUES))
    return u, e


# ------------------------------------------------------------------------------------------------
# Eqs. (1)-(4)


@pytest.mark.parametrize("n_atoms", [1, 7, 27])
def test_force_error_per_atom_matches_loop(n_atoms):
    rng = np.random.default_rng(n_atoms)
    pred, true = rng.normal(size=(2, n_atoms, 3))
    expected = [
        math.sqrt(sum((pred[i, a] - true[i, a]) ** 2 for a in range(3)) / 3) for i in range(n_atoms)
    ]
    np.testing.assert_allclose(m.force_error_per_atom(pred, true), expected, rtol=1e-13)


def test_mean_force_error_is_eq3_rms_not_mean():
    rng = np.random.default_rng(0)
    pred, true = rng.normal(size=(2, 40, 3))
    eps = m.force_error_per_atom(pred, true)
    # Eq. (3) literally: sqrt( 1/(3N) Σ_α Σ_i (F̄ − F)² )
    literal = math.sqrt(
        sum((pred[i, a] - true[i, a]) ** 2 for a in range(3) for i in range(40)) / (3 * 40)
    )
    assert m.mean_force_error(eps) == pytest.approx(literal, rel=1e-13)
    assert m.mean_force_error(eps) > eps.mean()  # RMS > mean for non-constant ε


@pytest.mark.parametrize("ddof", [0, 1])
@pytest.mark.parametrize("n_members", [2, 5, 10])
def test_ensemble_mean_and_sigma_match_loops(n_members, ddof):
    rng = np.random.default_rng(10 * n_members + ddof)
    forces = rng.normal(size=(n_members, 6, 3))
    mean = m.ensemble_mean_forces(forces)
    sigma = m.ensemble_sigma(forces, ddof=ddof)
    for i in range(6):
        for a in range(3):
            assert mean[i, a] == pytest.approx(sum(forces[:, i, a]) / n_members, rel=1e-13)
        ss = sum((forces[j, i, a] - mean[i, a]) ** 2 for j in range(n_members) for a in range(3))
        # Eq. (4): 1/(3J) for ddof=0
        assert sigma[i] == pytest.approx(math.sqrt(ss / (3 * (n_members - ddof))), rel=1e-12)


def test_ensemble_sigma_default_is_population_variance():
    forces = np.array([[[1.0, 0.0, 0.0]], [[-1.0, 0.0, 0.0]]])  # J=2, one atom
    # variance of x over members is 1 (population); mean over x,y,z is 1/3
    assert m.ensemble_sigma(forces)[0] == pytest.approx(math.sqrt(1 / 3))


def test_ensemble_sigma_invariant_to_common_shift():
    rng = np.random.default_rng(3)
    forces = rng.normal(size=(4, 9, 3))
    shift = rng.normal(size=(9, 3))
    np.testing.assert_allclose(
        m.ensemble_sigma(forces + shift), m.ensemble_sigma(forces), rtol=1e-10
    )


# ------------------------------------------------------------------------------------------------
# Eqs. (9)-(10)


def _brute_tpr_ppv(u, e, uc, ec):
    tpr = np.full((len(uc), len(ec)), np.nan)
    ppv = np.full((len(uc), len(ec)), np.nan)
    for k, a in enumerate(uc):
        for ll, b in enumerate(ec):
            tp = sum(1 for x, y in zip(u, e, strict=True) if x > a and y > b)
            fn = sum(1 for x, y in zip(u, e, strict=True) if x <= a and y > b)
            fp = sum(1 for x, y in zip(u, e, strict=True) if x > a and y <= b)
            if tp + fn:
                tpr[k, ll] = tp / (tp + fn)
            if tp + fp:
                ppv[k, ll] = tp / (tp + fp)
    return tpr, ppv


@SETTINGS
@given(
    data=paired(max_size=40),
    uc=hnp.arrays(np.float64, st.integers(1, 6), elements=_VALUES),
    ec=hnp.arrays(np.float64, st.integers(1, 6), elements=_VALUES),
)
def test_tpr_ppv_matches_brute_force_counts(data, uc, ec):
    u, e = data
    res = m.tpr_ppv(u, e, uc, ec)
    tpr, ppv = _brute_tpr_ppv(u, e, uc, ec)
    np.testing.assert_allclose(res.tpr, tpr, rtol=1e-14, equal_nan=True)
    np.testing.assert_allclose(res.ppv, ppv, rtol=1e-14, equal_nan=True)
    np.testing.assert_allclose(res.tpr_x_ppv, tpr * ppv, rtol=1e-14, equal_nan=True)
    assert np.all(res.tp + res.fn == np.sum(e[None, :] > ec[:, None], axis=1)[None, :])


def test_tpr_ppv_zero_division_value():
    u = np.array([0.1, 0.2, 0.3])
    e = np.array([1.0, 2.0, 3.0])
    # U_cutoff above all U: no predicted positive → PPV undefined; ε_cutoff above all ε → TPR undef.
    res = m.tpr_ppv(u, e, [0.0, 10.0], [0.0, 10.0])
    assert np.isnan(res.ppv[1, 0]) and np.isnan(res.tpr[0, 1])
    assert res.tpr[1, 0] == 0.0 and res.ppv[0, 1] == 0.0  # genuine zeros stay zeros
    res0 = m.tpr_ppv(u, e, [0.0, 10.0], [0.0, 10.0], zero_division=0.0)
    assert res0.ppv[1, 0] == 0.0 and res0.tpr[0, 1] == 0.0


@pytest.mark.parametrize("spacing", ["linear", "percentile"])
def test_paper_grid_ranges(spacing):
    rng = np.random.default_rng(1)
    u = rng.lognormal(size=500)
    e = rng.lognormal(size=500)
    uc, ec = m.paper_grid(u, e, 20, n_eps=15, u_spacing=spacing)
    assert uc.shape == (20,) and ec.shape == (15,)
    assert uc[0] == pytest.approx(np.percentile(u, 1)) and uc[-1] == pytest.approx(
        np.percentile(u, 99)
    )
    assert ec[0] == 0.0 and ec[-1] == pytest.approx(np.percentile(e, 99))
    assert np.all(np.diff(uc) > 0) and np.all(np.diff(ec) > 0)
    if spacing == "percentile":
        np.testing.assert_allclose(uc[10], np.percentile(u, 1 + 98 * 10 / 19))
    else:
        np.testing.assert_allclose(np.diff(uc), np.diff(uc)[0])


# ------------------------------------------------------------------------------------------------
# threshold-free scores


@SETTINGS
@given(data=paired())
def test_rankdata_matches_scipy(data):
    u, _ = data
    np.testing.assert_array_equal(m.rankdata_average(u), scipy.stats.rankdata(u, method="average"))


@SETTINGS
@given(data=paired(min_size=3))
def test_spearman_matches_scipy(data):
    u, e = data
    assume(np.ptp(u) > 0 and np.ptp(e) > 0)
    expected = scipy.stats.spearmanr(u, e).statistic
    assert m.spearman(u, e) == pytest.approx(expected, abs=1e-12)


def test_spearman_constant_is_nan():
    assert math.isnan(m.spearman(np.ones(5), np.arange(5.0)))


@SETTINGS
@given(data=paired(min_size=2), cut=_VALUES)
def test_roc_auc_and_average_precision_match_sklearn(data, cut):
    u, e = data
    y = e > cut
    assume(0 < y.sum() < y.size)
    assert m.roc_auc(u, e, cut) == pytest.approx(sklearn.metrics.roc_auc_score(y, u), abs=1e-12)
    assert m.average_precision(u, e, cut) == pytest.approx(
        sklearn.metrics.average_precision_score(y, u), abs=1e-12
    )


def test_roc_auc_ap_single_class_is_nan():
    u = np.arange(4.0)
    e = np.zeros(4)
    assert math.isnan(m.roc_auc(u, e, 1.0))
    assert math.isnan(m.average_precision(u, e, 1.0))
    assert math.isnan(m.roc_auc(u, e, -1.0))  # all positive: still one class


# ------------------------------------------------------------------------------------------------
# structures, Eqs. (11)-(12)


@SETTINGS
@given(
    values=hnp.arrays(np.float64, st.integers(1, 40), elements=st.floats(0, 10)),
    data=st.data(),
)
def test_aggregations_and_score_match_loops(values, data):
    n = values.size
    idx = data.draw(hnp.arrays(np.int64, n, elements=st.integers(0, 5)))
    n_s = int(idx.max()) + 2  # one trailing empty structure
    nll = m.aggregate_nll(values, idx, n_s)
    sig = m.aggregate_sigma(values, idx, n_s)
    score = m.active_learning_score(values, idx, n_s)
    for s in range(n_s):
        members = [values[i] for i in range(n) if idx[i] == s]
        assert nll[s] == pytest.approx(sum(members), rel=1e-12, abs=1e-12)
        assert sig[s] == pytest.approx(math.sqrt(sum(x * x for x in members)), rel=1e-12)
        assert score[s] == (max(members) if members else -math.inf)


def test_aggregate_default_number_of_structures():
    idx = np.array([0, 0, 2])
    np.testing.assert_allclose(m.aggregate_nll(np.array([1.0, 2.0, 5.0]), idx), [3.0, 0.0, 5.0])


@SETTINGS
@given(
    scores=hnp.arrays(np.float64, st.integers(1, 30), elements=st.integers(-3, 3).map(float)),
    data=st.data(),
)
def test_select_top_matches_sorted_with_index_tiebreak(scores, data):
    n = data.draw(st.integers(0, scores.size))
    expected = sorted(range(scores.size), key=lambda i: (-scores[i], i))[:n]
    np.testing.assert_array_equal(m.select_top(scores, n), expected)


def test_select_top_ties_literal():
    np.testing.assert_array_equal(m.select_top(np.array([1.0, 3.0, 3.0, 2.0, 3.0]), 3), [1, 2, 4])


@SETTINGS
@given(
    u=hnp.arrays(np.float64, st.integers(2, 30), elements=st.floats(-100, 100)),
    scale=st.floats(0.01, 100),
    shift=st.floats(-100, 100),
)
def test_normalize_landscape_properties(u, scale, shift):
    assume(np.ptp(u) > 1e-6)
    out = m.normalize_landscape(u)
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose((u - u.min()) / (u.max() - u.min()), out, atol=1e-15)
    # Eq. (11) is invariant to positive affine changes of the uncertainty
    np.testing.assert_allclose(m.normalize_landscape(scale * u + shift), out, atol=1e-9)


def test_normalize_landscape_keeps_missing_entries():
    out = m.normalize_landscape(np.array([[2.0, np.nan], [4.0, 3.0]]))
    np.testing.assert_array_equal(out, [[0.0, np.nan], [1.0, 0.5]])


# ------------------------------------------------------------------------------------------------
# Table I


@pytest.mark.parametrize("threshold", [0.2, 0.5, 10.0])
def test_error_summary_matches_plain_numpy(threshold):
    rng = np.random.default_rng(7)
    eps = np.abs(rng.normal(scale=0.3, size=300))
    eps[5] = 0.2  # exactly at the default threshold: not counted (strict ">")
    s = m.error_summary(eps, threshold)
    above = [x for x in eps if x > threshold]
    assert s.eps_bar == pytest.approx(math.sqrt(sum(x * x for x in eps) / eps.size), rel=1e-13)
    assert s.eps_mean == pytest.approx(sum(eps) / eps.size, rel=1e-13)
    assert s.eps_max == max(eps)
    assert s.n_above == len(above)
    if above:
        assert s.eps_bar_above == pytest.approx(sum(above) / len(above), rel=1e-13)
    else:
        assert math.isnan(s.eps_bar_above)


# ------------------------------------------------------------------------------------------------
# errors at the boundary


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: m.force_error_per_atom(np.zeros((3, 2)), np.zeros((3, 2))), r"\[\.\.\., 3\]"),
        (lambda: m.mean_force_error(np.array([0.1, np.nan])), "non-finite"),
        (lambda: m.ensemble_sigma(np.zeros((1, 4, 3)), ddof=1), "ddof"),
        (lambda: m.tpr_ppv(np.zeros(3), np.zeros(4), [0.0], [0.0]), "same atoms"),
        (lambda: m.aggregate_nll(np.zeros(3), np.array([0.0, 1.0, 1.0])), "integer"),
        (lambda: m.aggregate_nll(np.zeros(3), np.array([0, 1, 5]), 3), "n_structures"),
        (lambda: m.normalize_landscape(np.ones(4)), "U_high"),
        (lambda: m.select_top(np.zeros(3), 4), "n=4"),
        (lambda: m.select_top(np.array([0.0, np.nan]), 1), "NaN"),
    ],
    ids=[
        "forces-not-xyz",
        "nan-eps",
        "ddof-too-large",
        "length-mismatch",
        "float-structure-index",
        "too-few-structures",
        "flat-landscape",
        "select-too-many",
        "nan-score",
    ],
)
def test_bad_inputs_raise_with_cause(call, match):
    with pytest.raises(ValueError, match=match):
        call()
