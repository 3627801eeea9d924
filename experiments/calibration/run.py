"""Calibration of the uncertainty methods on the final models of an on-the-fly run.

The GMM NLL (Zhu et al. 2023, Eq. (8)) is in feature-space nats, the ensemble σ (Eq. (4)) in
eV/Å but not an error, and the paper names calibration as future work. Here each uncertainty U
is mapped to an expected per-atom force error ε (Eq. (2)) on a held-out calibration set, and
turned into split-conformal upper bounds with a stated coverage. Every informative registered
method (:mod:`nequip_jax.uncertainty.registry`) is calibrated (:func:`score_sets`):

* single-model methods (the GMM NLL, LLPR of Bigi et al. 2024, ...) on the final features of
  the final GMM-triggered model — the model's own head, the others fitted on its training
  features and, when the method has a ``recalibrate`` (LLPR's α² and ς²), recalibrated on
  calibration half A; ε of that model;
* ensemble methods (σ) on the final ensemble-triggered ensemble, ε of its mean force;
* ``constant`` — no uncertainty (one error scale for every atom): the baseline that shows what
  an uncertainty adds to an interval (adaptivity, i.e. narrower bounds where errors are small).

Calibration set: ``n_calibration`` test_300K structures disjoint from the run's test draw,
labelled with the run's oracle (GFN2-xTB), split by structure into halves: A fits the calibrator
ĝ(U) ≈ E[ε | U] (isotonic or power law; "direct" uses σ as the per-component standard
deviation), B gives the conformal quantile q̂ of ε / ĝ(U) at level 1 − α. On every test set the
report gives the coverage of ε ≤ q̂ ĝ(U) (guaranteed ≥ 1 − α only where test atoms are
exchangeable with calibration atoms, i.e. test_300K), the mean bound, the miscalibration area of
the Gaussian error model σ = ĝ(U) / E[χ₃/√3] (Kuleshov et al. 2018) and Spearman(U, ε).
``calibration.json`` ends with the run's ``provenance`` (preset and seed of the on-the-fly run;
the labelled structure files of its cache). Nothing is trained here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np

from experiments.calibration.plots import calibration_figure, coverage_figure
from experiments.common.provenance import begin_run, provenance
from nequip_jax._io import atomic_write_json, atomic_write_text
from nequip_jax.oracle import XTBOracle
from nequip_jax.otf import OTFConfig, Surrogate, load_state, run_keys
from nequip_jax.otf.data import (
    draw,
    label_tag,
    labelled,
    load_split,
    read_xyz,
    test_sets,
    write_xyz,
)
from nequip_jax.uncertainty import calibration as cal
from nequip_jax.uncertainty.metrics import force_error_per_atom, spearman
from nequip_jax.uncertainty.protocol import ModelOutputs
from nequip_jax.uncertainty.registry import get_method, methods_for

__all__ = ["CalibrationConfig", "run", "score_sets"]


@dataclasses.dataclass(frozen=True)
class CalibrationConfig:
    """Settings: the OTF folder (with ``gmm/`` and ``ensemble/`` runs), the calibration-set
    size (test_300K structures) and the miscoverage α."""

    otf_workdir: str
    n_calibration: int = 200
    alpha: float = 0.1


def _final(run_dir: Path) -> tuple[Surrogate, list]:
    state = load_state(run_dir / "state.json")
    if not state.done:
        raise RuntimeError(f"{run_dir}: the on-the-fly run has not finished; run it to the end.")
    return Surrogate.load(run_dir / state.model_dir), read_xyz(run_dir / state.train_file)


def _calibration_frames(otf: OTFConfig, n: int, cache: Path, oracle) -> list:
    """test_300K structures after the run's own test draw in the same seeded permutation."""
    keys = run_keys(otf.seed)
    index = list(otf.test_splits).index("test_300K") if "test_300K" in otf.test_splits else 0
    frames, _ = load_split("test_300K", otf.data_root)
    order = draw(len(frames), None, jax.random.fold_in(keys["test"], index))
    skip = otf.n_test or 0
    picked = order[skip : skip + n]
    if len(picked) < 2:
        raise ValueError(f"only {len(picked)} test_300K structures left after the test draw.")
    path = cache / f"calibration_test_300K_{skip}_{len(picked)}_seed{otf.seed}.xyz"
    if path.is_file():
        return read_xyz(path)
    out = labelled([frames[i] for i in picked], oracle, use_file_labels=otf.labels == "files")
    write_xyz(path, out)
    return read_xyz(path)


#: The baseline without an uncertainty: one error scale for every atom.
CONSTANT = "constant"


def score_sets(
    single: Surrogate,
    ensemble: Surrogate,
    sets: dict[str, list],
    train_atoms: list,
    *,
    key: jax.Array,
    recalibrate_on: str = "cal_A",
) -> tuple[dict, dict]:
    """U and ε per atom of every set for every informative registered method, and the
    constant baseline.

    Single-model methods score the final features of ``single``: its own head's method with the
    head's state, the others fitted on its training features (``train_atoms``; ``key`` for
    methods that draw) and, where the method defines ``recalibrate``, recalibrated on the force
    residuals of the set ``recalibrate_on``; their ε is that of ``single``. Ensemble methods score
    the members of ``ensemble``, ε of its mean force.

    Returns:
        ``({set: {method: (U [n], ε [n])}}, {method: its state's ``describe``})``.
    """
    truth = {name: [a.get_forces() for a in frames] for name, frames in sets.items()}

    def eps(pred, name):
        pairs = zip(pred["forces"], truth[name])
        return np.concatenate([force_error_per_atom(f, t) for f, t in pairs])

    p_single = {name: single.predict(frames) for name, frames in sets.items()}
    features = {name: np.concatenate(p["features"]) for name, p in p_single.items()}
    eps_single = {name: eps(p, name) for name, p in p_single.items()}
    methods: dict[str, dict] = {name: {} for name in sets}
    described = {}
    head = single.model.head
    train_features = None
    for name in methods_for("potential", informative=True):
        method = get_method(name)
        if head is not None and head.method == name:
            state = head.state
        else:
            if train_features is None:
                train_features = np.concatenate(single.predict(train_atoms)["features"])
            state = method.fit(ModelOutputs(features=train_features), key=key)
        if method.recalibrate is not None:
            residuals = np.concatenate(
                [f - t for f, t in zip(p_single[recalibrate_on]["forces"], truth[recalibrate_on])]
            )
            state = method.recalibrate(
                state, ModelOutputs(features=features[recalibrate_on]), residuals
            )
        described[name] = method.describe(state)
        for s in sets:
            u = np.asarray(method.score(state, ModelOutputs(features=features[s])))
            methods[s][name] = (u, eps_single[s])
    for name in methods_for("ensemble", informative=True):
        for s, frames in sets.items():
            pred = ensemble.model.predict(frames, method=name)
            methods[s][name] = (np.concatenate(pred["uncertainty"]), eps(pred, s))
        described[name] = get_method(name).describe(get_method(name).fit())
    for s in sets:
        methods[s][CONSTANT] = (np.ones_like(eps_single[s]), eps_single[s])
    return methods, described


def _calibrators(method: str, u_a: np.ndarray, eps_a: np.ndarray) -> dict:
    """ĝ(U) ≈ E[ε | U] fitted on half A, one per calibrator kind: isotonic and power law for
    every method (the power law on log U, or on U itself for a log-likelihood score in nats,
    which may be negative), and "direct" for a score that is a force-component standard
    deviation (eV/Å, or made one by the method's ``recalibrate``)."""
    floor = 1e-6
    if method == CONSTANT:
        mean = float(np.mean(eps_a))
        return {"constant": lambda u: np.full(np.shape(u), mean)}
    spec = get_method(method)
    transform = "identity" if spec.unit == "nats" else "log"
    iso = cal.fit_isotonic(u_a, eps_a)
    power = cal.fit_power_law(u_a, eps_a, u_transform=transform)
    out = {
        "isotonic": lambda u: np.maximum(cal.predict_isotonic(iso, u), floor),
        "power law": lambda u: np.maximum(cal.predict_power_law(power, u), floor),
    }
    if spec.unit == "eV/Å" or spec.recalibrate is not None:
        out["direct"] = lambda u: np.maximum(cal.MEAN_EPS_PER_SIGMA * np.asarray(u), floor)
    return out


def evaluate(methods: dict, test_names: list[str], alpha: float) -> list[dict]:
    """Rows: one per (method, calibrator) with coverage, mean bound, miscalibration area and
    Spearman per test set, plus the curves for the figure."""
    rows = []
    for method in methods["cal_A"]:
        u_a, eps_a = methods["cal_A"][method]
        u_b, eps_b = methods["cal_B"][method]
        for kind, g in _calibrators(method, u_a, eps_a).items():
            conformal = cal.fit_conformal(eps_b, g(u_b), alpha=alpha)
            row = {
                "method": method,
                "calibrator": kind,
                "quantile": conformal.quantile,
                "n_cal_B": conformal.n_cal,
                "splits": {},
            }
            for split in test_names:
                u, eps = methods[split][method]
                scale = g(u)
                upper = cal.conformal_upper(conformal, scale)
                curve = cal.calibration_curve(cal.chi3_pit(eps, cal.sigma_from_mean_eps(scale)))
                rho = spearman(u, eps) if method != CONSTANT else float("nan")
                row["splits"][split] = {
                    "coverage": cal.coverage(eps, upper),
                    "mean_upper": float(np.mean(upper)),
                    "mean_eps": float(np.mean(eps)),
                    "miscalibration_area": cal.miscalibration_area(curve),
                    "spearman": None if not np.isfinite(rho) else float(rho),
                    "curve": {
                        "expected": curve.expected.tolist(),
                        "observed": curve.observed.tolist(),
                    },
                    "n_atoms": int(eps.size),
                }
            rows.append(row)
    return rows


def run(
    config: CalibrationConfig,
    workdir: str | Path,
    *,
    seeds: Sequence[int] | None = None,
    preset: str | None = None,
) -> dict:
    """Fit the calibrators, evaluate coverage and calibration, write JSON, PNG and markdown
    into ``workdir``.

    The calibration has no seed of its own: it evaluates the finished on-the-fly run of
    ``config.otf_workdir`` with that run's seed. ``seeds``, if given, must be that one seed;
    ``preset`` (default: the on-the-fly run's preset) is recorded in the provenance.

    Raises:
        ValueError: ``seeds`` other than the on-the-fly run's seed.
    """
    begun = begin_run()
    out = Path(workdir)
    otf_dir = Path(config.otf_workdir)
    results = json.loads((otf_dir / "results.json").read_text())
    otf = OTFConfig.from_dict(results["config"])
    if seeds is not None and list(seeds) != [otf.seed]:
        raise ValueError(
            f"seeds={list(seeds)}: the calibration evaluates the on-the-fly run of "
            f"{otf_dir.name}, whose seed is {otf.seed}; pass seeds=None or [{otf.seed}]."
        )
    oracle = XTBOracle(**otf.oracle)
    single, train_atoms = _final(otf_dir / "gmm")
    ensemble, _ = _final(otf_dir / "ensemble")
    # The run's labelled test sets (cached by the on-the-fly runs) and a calibration set.
    tests, notes = test_sets(
        otf.test_splits,
        n=otf.n_test,
        key=run_keys(otf.seed)["test"],
        root=otf.data_root,
        oracle=oracle,
        use_file_labels=otf.labels == "files",
        cache_dir=otf_dir / "cache",
        tag=f"_{label_tag(otf.seed, otf.data_root, otf.labels, otf.oracle)}",
    )
    frames = _calibration_frames(otf, config.n_calibration, otf_dir / "cache", oracle)
    half = len(frames) // 2
    sets = {"cal_A": frames[:half], "cal_B": frames[half:], **tests}
    methods, states = score_sets(
        single, ensemble, sets, train_atoms, key=jax.random.fold_in(run_keys(otf.seed)["head"], 0)
    )
    names = list(tests)
    rows = evaluate(methods, names, config.alpha)
    report = {
        "config": dataclasses.asdict(config),
        "alpha": config.alpha,
        "n_structures": {k: len(v) for k, v in sets.items()},
        "n_train_gmm_model": len(train_atoms),
        "states": states,
        "stand_ins": notes,
        "rows": rows,
        "provenance": provenance(
            begun,
            preset=preset or results.get("preset"),
            seeds=[otf.seed],
            data_source="xtb" if otf.labels == "oracle" else "files",
            data_files={p.stem: p for p in sorted((otf_dir / "cache").glob("*.xyz"))},
        ),
    }
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "calibration.json", report)
    calibration_figure(rows, names, out / "calibration_curves.png")
    coverage_figure(rows, names, config.alpha, out / "coverage.png")
    atomic_write_text(out / "calibration.md", section(report, names))
    print(section(report, names))
    return report


def section(report: dict, names: list[str]) -> str:
    """Markdown section for ``experiments/README.md``."""
    level = 100 * (1 - report["alpha"])
    n = report["n_structures"]
    lines = [
        f"## Calibrated uncertainty: coverage of {level:.0f} % conformal force-error bounds",
        "",
        f"Calibration set: {n['cal_A']} + {n['cal_B']} test_300K structures (halves A: "
        "calibrator, B: conformal quantile), disjoint from the test draws; models: the final "
        f"GMM-triggered model ({report['n_train_gmm_model']} training structures; its NLL and "
        "LLPR on its final features) and the final ensemble of the on-the-fly runs. "
        "Coverage = fraction of atoms with ε ≤ bound (target "
        f"{level:.0f} %); bound = mean upper bound (meV/Å); area = miscalibration area of the "
        "Gaussian error model (0 is perfect, 0.5 worst).",
        "",
    ]
    head = ["method", "calibrator"]
    for s in names:
        head += [f"coverage {s}", f"bound {s}", f"area {s}"]
    head += [f"Spearman {s}" for s in names]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in report["rows"]:
        cells = [row["method"], row["calibrator"]]
        for s in names:
            r = row["splits"][s]
            cells += [
                f"{100 * r['coverage']:.1f} %",
                f"{1000 * r['mean_upper']:.0f}",
                f"{r['miscalibration_area']:.3f}",
            ]
        for s in names:
            rho = row["splits"][s]["spearman"]
            cells.append("–" if rho is None else f"{rho:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    for split, note in report["stand_ins"].items():
        lines += ["", f"Note on {split}: {note}"]
    return "\n".join(lines) + "\n"
