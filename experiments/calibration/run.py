"""Calibration of three uncertainties on the final models of an on-the-fly run.

The GMM NLL (Zhu et al. 2023, Eq. (8)) is in feature-space nats, the ensemble σ (Eq. (4)) in
eV/Å but not an error, and the paper names calibration as future work. Here each uncertainty U
is mapped to an expected per-atom force error ε (Eq. (2)) on a held-out calibration set, and
turned into split-conformal upper bounds with a stated coverage:

* ``gmm`` — NLL of the final GMM-triggered model, ε of that model;
* ``llpr`` — last-layer prediction rigidity (Bigi et al. 2024) on the *same* final features of
  the same model, α² and ς² fitted on calibration half A; ε of that model;
* ``ensemble`` — σ of the final ensemble-triggered ensemble, ε of its mean force;
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
from nequip_jax.uncertainty import llpr
from nequip_jax.uncertainty.metrics import force_error_per_atom, spearman

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


def score_sets(single: Surrogate, ensemble: Surrogate, sets: dict[str, list]) -> dict:
    """Per atom, for every set: ε and U of each method, residuals and features of the single
    model. Returns ``{set: {"eps_single", "eps_ensemble", "nll", "sigma", "features",
    "residual_single"}}`` (arrays over all atoms of the set)."""
    out = {}
    for name, frames in sets.items():
        truth = [a.get_forces() for a in frames]
        p1, p2 = single.predict(frames), ensemble.predict(frames)
        out[name] = {
            "eps_single": np.concatenate(
                [force_error_per_atom(f, t) for f, t in zip(p1["forces"], truth)]
            ),
            "eps_ensemble": np.concatenate(
                [force_error_per_atom(f, t) for f, t in zip(p2["forces"], truth)]
            ),
            "residual_single": np.concatenate([f - t for f, t in zip(p1["forces"], truth)]),
            "nll": np.concatenate(p1["uncertainty"]),
            "sigma": np.concatenate(p2["uncertainty"]),
            "features": np.concatenate(p1["features"]),
        }
    return out


def _methods(scored: dict, train_features: np.ndarray) -> tuple[dict, dict]:
    """U and ε per method and set; LLPR fitted on the training features, α²/ς² on half A."""
    state = llpr.fit_llpr(train_features)
    scale = float(np.trace(state.gram)) / state.gram.shape[0]
    state = llpr.calibrate_llpr(
        state,
        scored["cal_A"]["features"],
        scored["cal_A"]["residual_single"],
        reg_grid=np.geomspace(1e-8, 1e1, 28) * scale,
    )
    methods = {}
    for name, s in scored.items():
        methods[name] = {
            "gmm": (s["nll"], s["eps_single"]),
            "llpr": (np.sqrt(llpr.llpr_variance(state, s["features"])), s["eps_single"]),
            "ensemble": (s["sigma"], s["eps_ensemble"]),
            "constant": (np.ones_like(s["nll"]), s["eps_single"]),
        }
    info = {"alpha2": state.alpha2, "reg": state.reg, "n_rows": state.n_rows}
    return methods, info


def _calibrators(method: str, u_a: np.ndarray, eps_a: np.ndarray) -> dict:
    """ĝ(U) ≈ E[ε | U] fitted on half A, one per calibrator kind."""
    floor = 1e-6
    if method == "constant":
        mean = float(np.mean(eps_a))
        return {"constant": lambda u: np.full(np.shape(u), mean)}
    transform = "identity" if method == "gmm" else "log"
    iso = cal.fit_isotonic(u_a, eps_a)
    power = cal.fit_power_law(u_a, eps_a, u_transform=transform)
    out = {
        "isotonic": lambda u: np.maximum(cal.predict_isotonic(iso, u), floor),
        "power law": lambda u: np.maximum(cal.predict_power_law(power, u), floor),
    }
    if method != "gmm":  # σ in eV/Å: use it directly as the per-component standard deviation
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
                rho = spearman(u, eps) if method != "constant" else float("nan")
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
    scored = score_sets(single, ensemble, sets)
    train_features = np.concatenate(single.predict(train_atoms)["features"])
    methods, llpr_info = _methods(scored, train_features)
    names = list(tests)
    rows = evaluate(methods, names, config.alpha)
    report = {
        "config": dataclasses.asdict(config),
        "alpha": config.alpha,
        "n_structures": {k: len(v) for k, v in sets.items()},
        "n_train_gmm_model": len(train_atoms),
        "llpr": llpr_info,
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
