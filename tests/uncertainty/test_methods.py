"""The uncertainty-method protocol and its four registered methods.

Oracles: closed forms evaluated independently (scipy's multivariate normal for the GMM NLL,
Eq. (4) as an explicit loop, the LLPR rigidity by a linear solve, a Kolmogorov–Smirnov test
for the random score); the same score traced in a program as on the host; bit-exact save/load;
and a potential carrying a non-GMM head giving the same per-atom score in ``predict``, the ASE
calculator, on-device MD and the on-the-fly surrogate.
"""

import jax
import numpy as np
import pytest
import scipy.stats

import gmm
from nequip_jax.calculator import NequIPCalculator
from nequip_jax.md import make_system
from nequip_jax.model import Potential, load
from nequip_jax.model.potential import Head
from nequip_jax.otf import Surrogate, load_otf_config
from nequip_jax.uncertainty.protocol import ModelOutputs, device_state
from nequip_jax.uncertainty.registry import METHODS, get_method, methods_for

D = 3


def _mixture(seed: int) -> gmm.GMMParams:
    rng = np.random.default_rng(seed)
    chol = np.triu(rng.normal(scale=0.3, size=(2, D, D)), 1)
    chol += np.eye(D) * rng.uniform(0.5, 2.0, size=(2, 1, D))
    return gmm.GMMParams(np.array([0.35, 0.65]), rng.normal(size=(2, D)), chol)


def _outputs(seed: int, n: int = 40) -> ModelOutputs:
    rng = np.random.default_rng(seed)
    return ModelOutputs(
        features=rng.normal(size=(n, D)) * [1.0, 0.5, 2.0],
        member_forces=rng.normal(size=(5, n, 3)),
    )


def _state(name: str):
    """A fitted state of each method on a fixed training set."""
    if name == "gmm":
        return _mixture(0)
    return get_method(name).fit(_outputs(1, 200), key=jax.random.key(3))


def test_registry_lists_the_methods_and_names_the_remedy():
    assert {"gmm", "ensemble", "llpr", "random"} <= set(METHODS)
    assert methods_for("potential", informative=True) == ("gmm", "llpr")
    assert methods_for("ensemble") == ("ensemble",)
    assert not get_method("random").informative
    with pytest.raises(ValueError, match="registered: .*'gmm'"):
        get_method("gaussian-process")


def test_gmm_score_is_the_mixture_negative_log_likelihood():
    params, x = _mixture(0), _outputs(2).features
    density = sum(
        w * scipy.stats.multivariate_normal(m, np.linalg.inv(p @ p.T)).pdf(x)
        for w, m, p in zip(params.weights, params.means, params.precisions_cholesky)
    )
    ours = get_method("gmm").score(params, ModelOutputs(features=x))
    np.testing.assert_allclose(ours, -np.log(density), rtol=1e-10)


def test_ensemble_score_is_eq_4():
    f = _outputs(3).member_forces
    j, n = f.shape[:2]
    expected = np.empty(n)
    for i in range(n):
        total = 0.0
        for a in range(3):
            mean = sum(f[k, i, a] for k in range(j)) / j
            total += sum((f[k, i, a] - mean) ** 2 for k in range(j))
        expected[i] = np.sqrt(total / (3 * j))
    ours = get_method("ensemble").score(_state("ensemble"), ModelOutputs(member_forces=f))
    np.testing.assert_allclose(ours, expected, rtol=1e-12)


def test_llpr_score_is_the_rigidity_of_the_training_features():
    train, query = _outputs(1, 200).features, _outputs(4).features
    state = _state("llpr")
    gram = train.T @ train + state.reg * np.eye(D)
    expected = np.sqrt(np.einsum("id,id->i", query, np.linalg.solve(gram, query.T).T))
    ours = get_method("llpr").score(state, ModelOutputs(features=query))
    np.testing.assert_allclose(ours, expected, rtol=1e-9)


def test_random_score_is_uniform_and_a_function_of_its_inputs():
    method, state = get_method("random"), _state("random")
    big = ModelOutputs(features=np.random.default_rng(5).normal(size=(5000, D)))
    u = method.score(state, big)
    assert u.shape == (5000,) and np.all((u >= 0) & (u < 1))
    assert scipy.stats.kstest(u, "uniform").pvalue > 1e-3
    np.testing.assert_array_equal(method.score(state, big), u)  # same inputs, same draws
    other = method.score(state, ModelOutputs(features=big.features + 1.0))
    assert np.mean(other == u) < 0.01
    assert abs(scipy.stats.spearmanr(u, np.abs(big.features[:, 0])).statistic) < 0.05


@pytest.mark.parametrize("name", sorted(METHODS))
def test_traced_score_equals_the_host_score(name, x64):
    method, state = get_method(name), _state(name)
    outputs = _outputs(6)
    host = method.score(state, outputs)
    on_device = ModelOutputs(*(jax.numpy.asarray(a) for a in outputs))
    traced = jax.jit(method.score)(device_state(state, np.float64), on_device)
    np.testing.assert_allclose(np.asarray(traced), host, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", sorted(METHODS))
def test_states_round_trip_bit_exactly(name, tmp_path):
    method, state = get_method(name), _state(name)
    method.save(state, tmp_path / f"{name}.npz")
    loaded = method.load(tmp_path / f"{name}.npz")
    assert type(loaded) is type(state)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(loaded), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(
        method.score(loaded, _outputs(7)), method.score(state, _outputs(7))
    )


@pytest.mark.parametrize("name", sorted(METHODS))
def test_structure_aggregation_follows_the_paper(name):
    """Text before Eq. (11): the NLLs (and random scores) add up; σ's add as variances."""
    u = np.abs(np.random.default_rng(8).normal(size=12))
    index = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    got = get_method(name).aggregate(u, index, 5)
    as_variance = get_method(name).unit not in ("nats", "1")
    for s in range(5):
        part = u[index == s]
        expected = np.sqrt(np.sum(part**2)) if as_variance else np.sum(part)
        assert got[s] == pytest.approx(expected, rel=1e-12, abs=0.0)


@pytest.fixture(scope="module")
def llpr_potential(potential64, frames_300K):
    """The float64 test potential with an LLPR head fitted on ten frames' features."""
    plain = potential64.with_head(None)
    features = np.concatenate(plain.predict(frames_300K[:10])["features"])
    state = get_method("llpr").fit(ModelOutputs(features=features), key=jax.random.key(0))
    return plain.with_head("llpr", state), state


def test_a_potential_with_an_llpr_head_scores_everywhere(llpr_potential, frames_300K, tmp_path):
    """predict, a reloaded potential, the ASE calculator, on-device MD and the surrogate give
    the LLPR σ of the features (computed here on the host from the predicted features)."""
    potential, state = llpr_potential
    frames = frames_300K[20:23]
    pred = potential.predict(frames)
    for features, u in zip(pred["features"], pred["uncertainty"], strict=True):
        expected = get_method("llpr").score(state, ModelOutputs(features=features))
        np.testing.assert_allclose(u, expected, rtol=1e-9)

    potential.save(tmp_path / "model")
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == [
        "llpr.npz",
        "params.msgpack",
        "potential.json",
    ]
    again = load(tmp_path / "model")
    assert again.head.method == "llpr"
    np.testing.assert_array_equal(again.predict(frames)["uncertainty"][0], pred["uncertainty"][0])

    atoms = frames[0].copy()
    atoms.calc = NequIPCalculator(potential)
    atoms.get_potential_energy()
    np.testing.assert_allclose(atoms.calc.results["uncertainty"], pred["uncertainty"][0], 1e-9)

    with jax.enable_x64(True):
        system = make_system(potential, frames[0].numbers)
        assert system.uncertainty == "llpr"
        x = jax.numpy.asarray(frames[0].positions)
        _, _, u, _ = jax.jit(system.evaluate)(x, system.neighbours(x, 1024))
    np.testing.assert_allclose(np.asarray(u), pred["uncertainty"][0], rtol=1e-9)

    surrogate = Surrogate(potential)
    assert surrogate.method == "llpr" and surrogate.has_uncertainty
    np.testing.assert_allclose(
        surrogate.structure_scores(frames), [u.max() for u in pred["uncertainty"]], rtol=1e-9
    )


def test_methods_refuse_the_wrong_model(potential64, ensemble64):
    with pytest.raises(ValueError, match="needs an ensemble"):
        Potential(potential64.config, potential64.params, potential64.species,
                  head=Head("ensemble", ()))  # fmt: skip
    with pytest.raises(ValueError, match="method of one potential"):
        NequIPCalculator(ensemble64, uncertainty="llpr")
    with pytest.raises(ValueError, match="scores with its head"):
        NequIPCalculator(potential64, uncertainty="llpr")
    with pytest.raises(ValueError, match="needs a potential model"):
        Surrogate(ensemble64, "llpr")
    assert load_otf_config("tiny", ["trigger=llpr"]).trigger == "llpr"
    with pytest.raises(ValueError, match="trigger='nope' must be one of"):
        load_otf_config("tiny", ["trigger=nope"])


@pytest.mark.filterwarnings("ignore::nequip_jax.data.StandInWarning")
def test_fit_uncertainty_cli_fits_the_head_on_the_runs_training_set(tmp_path, tiny_run_config):
    """``nequip-jax fit-uncertainty MODEL --method llpr`` rebuilds the run's training draw from
    its config and stores the LLPR state of those features (recomputed here by a linear
    solve) as the model's head."""
    import yaml

    from nequip_jax.cli import main
    from nequip_jax.model import NequIPConfig, init_params
    from nequip_jax.training import RunConfig, load_training_data
    from nequip_jax.training.loop import member_keys

    raw = tiny_run_config().to_dict()
    raw["data"] = {**raw["data"], "n_train": 6}
    config = RunConfig.from_dict(raw)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config.to_dict()))
    model_config = NequIPConfig(num_species=4, avg_num_neighbors=15.0, **config.model.given())
    potential = Potential(model_config, init_params(model_config, key=jax.random.key(1)),
                          (1, 6, 7, 8))  # fmt: skip
    potential.save(tmp_path / "model")
    assert main(["fit-uncertainty", str(tmp_path / "model"), "--method", "llpr"]) == 0
    fitted = load(tmp_path / "model")
    assert fitted.head.method == "llpr"
    train_atoms, _ = load_training_data(config, member_keys(config.seed, 0)[0])
    phi = np.concatenate(potential.predict(train_atoms)["features"])
    d = phi.shape[1]
    expected = np.linalg.inv(phi.T @ phi + fitted.head.state.reg * np.eye(d))
    np.testing.assert_allclose(fitted.head.state.inv_cov, expected, rtol=1e-6)
    with pytest.raises(SystemExit, match="scores an ensemble"):
        main(["fit-uncertainty", str(tmp_path / "model"), "--method", "ensemble"])


_NEW_METHOD = """
import ase.io, json, sys
import jax, numpy as np
from typing import NamedTuple
from nequip_jax.uncertainty import registry
from nequip_jax.uncertainty.protocol import (
    UncertaintyMethod, array_module, load_state, save_state)

class NormState(NamedTuple):
    scale: float

def score(state, outputs):
    xp = array_module(outputs.features)
    return state.scale * xp.sqrt(xp.sum(outputs.features ** 2, axis=-1))

registry.METHODS["norm"] = UncertaintyMethod(
    name="norm", model="potential", unit="1", label="feature norm",
    fit=lambda outputs, *, key=None: NormState(2.0), score=score,
    aggregate=lambda u, index, n=None: np.bincount(index, weights=u, minlength=n),
    save=save_state, load=lambda path: load_state(NormState, path),
    describe=lambda state: {"scale": state.scale})

from experiments.common.methods import LABELS, METHODS
from experiments.otf.run import RUNS
from nequip_jax.calculator import NequIPCalculator
from nequip_jax.model import NequIPConfig, Potential, init_params, load
from nequip_jax.otf import TRIGGERS, Surrogate, load_otf_config
from nequip_jax.uncertainty.protocol import ModelOutputs

frames = ase.io.read(sys.argv[1], ":")
config = NequIPConfig(num_species=4, avg_num_neighbors=15.0, **json.loads(sys.argv[2]))
plain = Potential(config, init_params(config, key=jax.random.key(0)), (1, 6, 7, 8))
features = np.concatenate(plain.predict(frames)["features"])
state = registry.get_method("norm").fit(ModelOutputs(features=features))
potential = plain.with_head("norm", state)
potential.save(sys.argv[3])
again = load(sys.argv[3])
pred = again.predict(frames)
atoms = frames[0].copy()
atoms.calc = NequIPCalculator(again)
atoms.get_potential_energy()
print(json.dumps({
    "experiment_methods": "norm" in METHODS and LABELS["norm"] == "feature norm",
    "otf": "norm" in TRIGGERS and "norm" in RUNS
           and load_otf_config("tiny", ["trigger=norm"]).trigger == "norm",
    "predict": np.concatenate(pred["uncertainty"]).tolist(),
    "calculator": atoms.calc.results["uncertainty"].tolist(),
    "surrogate": Surrogate(again).structure_scores(frames).tolist(),
    "features": np.concatenate(pred["features"]).tolist(),
}))
"""


def test_a_new_method_is_one_definition_and_a_registry_entry(frames_300K, tiny_model, tmp_path):
    """A method defined outside the library and added to ``registry.METHODS`` (before the rest
    is imported, as a module of the package would be) is a method of the experiments and an
    on-the-fly trigger, and the head of a potential that saves, loads and scores in
    ``predict``, the calculator and the surrogate (oracle: 2 ‖f‖ of the features)."""
    import json
    import subprocess
    import sys

    import ase.io

    frames = frames_300K[:3]
    ase.io.write(tmp_path / "frames.xyz", frames)
    run = subprocess.run(
        [sys.executable, "-c", _NEW_METHOD, str(tmp_path / "frames.xyz"),
         json.dumps(tiny_model), str(tmp_path / "model")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["experiment_methods"] and got["otf"]
    features = np.asarray(got["features"])
    expected = 2.0 * np.linalg.norm(features, axis=-1)
    np.testing.assert_allclose(got["predict"], expected, rtol=1e-5)
    np.testing.assert_allclose(got["calculator"], expected[:27], rtol=1e-5)
    np.testing.assert_allclose(got["surrogate"], expected.reshape(3, 27).max(axis=1), rtol=1e-5)
    assert (tmp_path / "model" / "norm.npz").is_file()


def test_llpr_recalibration_is_the_maximum_likelihood_alpha2(x64):
    """``recalibrate`` of LLPR: α² is the closed-form maximum of the Gaussian likelihood of the
    held-out residual components, mean(e²/v) over components for the chosen ς² (Bigi et al.
    2024); the other methods have nothing to recalibrate."""
    from nequip_jax.uncertainty import llpr
    from nequip_jax.uncertainty.registry import METHODS

    rng = np.random.default_rng(5)
    train, held = rng.normal(size=(300, 6)), rng.normal(size=(120, 6))
    residuals = rng.normal(scale=0.2, size=(120, 3))
    state = METHODS["llpr"].fit(ModelOutputs(features=train))
    tuned = METHODS["llpr"].recalibrate(state, ModelOutputs(features=held), residuals)
    v = llpr.llpr_variance(tuned._replace(alpha2=1.0), held)
    assert tuned.alpha2 == pytest.approx(np.mean(residuals**2 / v[:, None]), rel=1e-10)
    assert [m.name for m in METHODS.values() if m.recalibrate is not None] == ["llpr"]
