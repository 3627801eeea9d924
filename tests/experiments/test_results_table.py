"""experiments/results_table: the README's results table is the one generated from the committed
results files; row cells from small literal inputs; --check writes nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from experiments.results_table import (
    BEGIN,
    END,
    INCLUDE_END,
    NO_PROVENANCE,
    SOURCES,
    generate,
    splice,
    splice_includes,
)
from experiments.results_table.__main__ import main
from experiments.results_table.rows import (
    RunCells,
    claim_rows,
    commit_cell,
    cost_rows,
    data_cell,
    machine_note,
    networks_cell,
    preset_cell,
    run_cells,
    table_i_rows,
    wall_cell,
)
from experiments.results_table.table import render, results_path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "experiments" / "README.md"


def test_committed_readme_table_matches_the_committed_results():
    committed = README.read_text()
    generated = generate(REPO, committed)
    assert generated == committed, (
        "experiments/README.md's results table differs from the results files; run "
        "`python -m experiments.results_table` and commit the README."
    )


def test_committed_cost_was_computed_on_the_committed_converged_networks():
    """The cost's training-to-convergence rows use another experiment's results file: they
    are current only while that file is the one they read (else rerun the cost)."""
    from experiments.common.provenance import file_sha256

    cost = json.loads((REPO / "experiments" / "cost" / "results" / "results.json").read_text())
    convergence = cost["convergence"]
    assert convergence is not None
    assert file_sha256(REPO / convergence["source"]) == convergence["source_sha256"], (
        f"{convergence['source']} changed after the cost was measured; rerun "
        "`python -m experiments.cost --preset cpu --workdir experiments/cost/results`."
    )


def test_cost_convergence_row_names_the_converged_networks():
    def seed(ms):
        return {
            "inference": {"single_gmm_ms": ms, "ensemble_ms": 10 * ms},
            "gmm_fit_s": 1.0,
            "train_single": {"epoch_s": 1.0},
        }

    nets = [{"stop_reason": "min_learning_rate"}] * 7 + [{"stop_reason": "max_epochs"}]
    results = {
        "config": {"n_infer_members": 10, "methods": {"n_traditional": 4, "max_components": 20}},
        "per_seed": {"0": seed(2.0), "1": seed(3.0)},
        "summary": {
            "inference_ensemble_vs_gmm": [10.0, 10.0],
            "inference_gmm_overhead": [1.0, 1.0],
            "train_epoch_ratio": [3.6, 3.8],
        },
        "convergence": {"ratio": [4.1, 4.6], "source": "f/results.json", "networks": nets},
    }
    cells = RunCells("cpu", "DFT", "0/10 converged; max_epochs 10", "abc", "3 min")
    rows = cost_rows("Cost", results, cells)
    assert [r.networks for r in rows] == [
        "0/10 converged; max_epochs 10",
        "0/10 converged; max_epochs 10",
        "7/8 converged (min_learning_rate); max_epochs 1",
    ]
    assert rows[2].seeds == "2/2" and rows[2].commit == "abc"


def test_committed_results_without_provenance_are_marked():
    text = README.read_text()
    block = text[text.index(BEGIN) : text.index(END)]
    for source in SOURCES:
        results = json.loads((REPO / results_path(source)).read_text())
        rows = [line for line in block.splitlines() if line.startswith(f"| {source.label} |")]
        assert rows, source.label
        if "provenance" not in results:
            assert all(f"| {NO_PROVENANCE} |" in row for row in rows)


# ------------------------------------------------------------------------------ cells


def _nets(*reasons):
    return [{"stop_reason": r} for r in reasons]


@pytest.mark.parametrize(
    ("networks", "expected"),
    [
        (None, "not recorded"),
        ([], "none trained"),
        (_nets(*["min_learning_rate"] * 12), "12/12 converged (min_learning_rate)"),
        (_nets(*["max_epochs"] * 9), "0/9 converged; max_epochs 9"),
        (
            _nets("early_stopping", "min_learning_rate", "min_learning_rate", "time_budget"),
            "3/4 converged (min_learning_rate 2, early_stopping 1); time_budget 1",
        ),
        (_nets("non_finite", "max_epochs"), "0/2 converged; max_epochs 1, non_finite 1"),
    ],
)
def test_networks_cell(networks, expected):
    assert networks_cell(networks) == expected


@pytest.mark.parametrize(
    ("provenance", "expected"),
    [
        (None, NO_PROVENANCE),
        ({"commit": {"sha": "unknown", "dirty": None}}, "unknown"),
        ({"commit": {"sha": "0123456789abcdef", "dirty": False}}, "0123456789"),
        (
            {"commit": {"sha": "0123456789abcdef", "dirty": True}},
            "0123456789 + uncommitted changes",
        ),
        # An aggregate of per-seed pieces: each piece's commit, not the aggregating run's.
        (
            {
                "commit": {"sha": "ffffffffffffffff", "dirty": False},
                "pieces": [
                    {"seed": 0, "commit": {"sha": "aaaaaaaaaaaa", "dirty": False}},
                    {"seed": 1, "commit": {"sha": "bbbbbbbbbbbb", "dirty": True}},
                    {"seed": 2, "commit": {"sha": "bbbbbbbbbbbb", "dirty": True}},
                ],
            },
            "aaaaaaaaaa (seed 0), bbbbbbbbbb + uncommitted changes (seeds 1, 2)",
        ),
        (
            {
                "commit": {"sha": "ffffffffffffffff", "dirty": False},
                "pieces": [{"seed": s, "commit": {"sha": "aaaaaaaaaaaa"}} for s in (3, 4)],
            },
            "aaaaaaaaaa",
        ),
    ],
)
def test_commit_cell(provenance, expected):
    assert commit_cell(provenance) == expected


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, "not recorded"),
        (5.64, "5.6 s"),
        (119.9, "119.9 s"),
        (4220.3, "70.3 min"),
        (9000.0, "2.5 h"),
    ],
)
def test_wall_cell(seconds, expected):
    assert wall_cell(seconds) == expected


def test_data_and_preset_cells():
    assert (data_cell("xtb"), data_cell("dft"), data_cell("pbe"), data_cell(None)) == (
        "xTB",
        "DFT",
        "pbe",
        "not recorded",
    )
    presets = {"cpu": {"a": 1}, "tiny": {"a": 2}}
    assert preset_cell({"config": {"a": 2}}, presets) == "tiny"
    assert preset_cell({"config": {"a": 3}}, presets) == "not recorded"
    assert preset_cell({"config": {"a": 2}, "provenance": {"preset": "paper"}}, presets) == "paper"


PROVENANCE = {
    "commit": {"sha": "abcdef0123456789", "dirty": False},
    "preset": "cpu",
    "seeds": [0, 1],
    "data": {"source": "xtb", "files": []},
    "wall_s": 150.0,
    "machine": {
        "platform": "cpu",
        "device_kind": "cpu",
        "cpu_model": "Test CPU",
        "cores": 2,
        "load_average_start": [1.04, 1.0, 1.0],
        "load_average_end": [3.96, 2.0, 1.0],
        "jax_version": "0.0.1",
    },
}


def test_run_cells_prefer_the_provenance():
    old = {"data": "dft", "wall_time_s": 5.0, "config": {}, "hardware": "cpu (2 cores)"}
    assert run_cells(old, {"cpu": {}}) == RunCells(
        "cpu", "DFT", "not recorded", NO_PROVENANCE, "5.0 s"
    )
    assert machine_note(old) == f"cpu (2 cores) ({NO_PROVENANCE})"
    new = {**old, "provenance": PROVENANCE, "networks": _nets("min_learning_rate")}
    assert run_cells(new, {}) == RunCells(
        "cpu", "xTB", "1/1 converged (min_learning_rate)", "abcdef0123", "2.5 min"
    )
    assert machine_note(new) == (
        "cpu (cpu), Test CPU, 2 cores, jax 0.0.1, 1-min load average 1.0 at the start, "
        "4.0 at the end"
    )
    piece = {"seed": 1, "wall_s": 600.0, "machine": PROVENANCE["machine"]}
    pieced = {**new, "provenance": {**PROVENANCE, "pieces": [piece]}}
    assert machine_note(pieced) == (
        "seed 1 (10.0 min): cpu (cpu), Test CPU, 2 cores, jax 0.0.1, 1-min load average 1.0 at "
        "the start, 4.0 at the end"
    )


# ------------------------------------------------------------------------------ rows

CELLS = RunCells("cpu", "xTB", "not recorded", NO_PROVENANCE, "1.0 s")


def _claim(text, measured, k, n, **extra):
    return {"claim": text, "measured": measured, "seeds_supporting": k, "n_seeds": n, **extra}


def test_claim_rows_from_a_mapping_and_a_list():
    one = {"claims": {"300K_n100_f16": [_claim("A holds", "1.0 ± 0.1", 2, 3)]}}
    (row,) = claim_rows("Fig. 2", one, CELLS)
    assert tuple(row) == ("Fig. 2", "A holds", "1.0 ± 0.1", "2/3", *CELLS)
    two = {"claims": {"c1": [_claim("A", "x", 1, 1)], "c2": [_claim("B", "y", 0, 1)]}}
    assert [r.claim for r in claim_rows("Fig. 2", two, CELLS)] == ["c1: A", "c2: B"]
    scans = {"claims": [_claim("similar", "ρ", 3, 3, scan="dih_beta120")]}
    (row,) = claim_rows("Fig. 4", scans, CELLS, prefix_key="scan")
    assert row.claim == "dih_beta120: similar"


def test_table_i_rows_against_hand_computed_statistics():
    # One scan; ε̄ per seed (eV/Å). d = active − random = (−0.02, −0.03, 0, −0.03).
    active, random = [0.10, 0.12, 0.11, 0.13], [0.12, 0.15, 0.11, 0.16]
    d = np.array(active) - np.array(random)
    t = d.mean() / (d.std(ddof=1) / 2)
    p = 2 * stats.t.sf(abs(t), 3)
    entry = {"active": active, "random": random}
    nan_entry = {"active": [np.nan] * 4, "random": random}
    by_method = {
        m: {"eps_bar": entry, "eps_bar_200": nan_entry, "eps_max": entry}
        for m in ("gmm", "traditional", "diverse")
    }
    results = {"table_I": {"dih_beta150": by_method}}
    paper = {"dih_beta150": {"eps_bar": {"gmm": (15.6, 26.0)}}}
    rows = table_i_rows("Fig. 5 / Table I", results, CELLS, paper)
    assert len(rows) == 9
    first = rows[0]
    assert "GMM's selection" in first.claim and "ε̄ on the β scans 150°" in first.claim
    assert first.claim.endswith("paper, single run: random − active = 15.6 meV/Å")
    assert first.number == f"150°: -20.0 ± 14.1 meV/Å, p = {p:.3f}"
    assert first.seeds == "3/4"  # the fourth seed is a tie
    assert "paper" not in rows[3].claim  # traditional: no paper numbers given
    assert rows[1].number == "150°: no seed with both values" and rows[1].seeds == "0/0"


def test_render_and_splice():
    source = SOURCES[0]
    results = {
        "claims": [_claim("A | B", "1", 1, 1)],
        "data": "dft",
        "config": {},
        "wall_time_s": 1.0,
        "hardware": "cpu",
    }
    block = render([(source, results), (SOURCES[1], None)], {})
    lines = block.split("\n")
    assert lines[0] == BEGIN and lines[-1] == END
    assert any(line.startswith("| Fig. 2 | A \\| B | 1 | 1/1 |") for line in lines)
    assert any(
        "no results file `experiments/fig3_tpr_ppv/results/results.json`" in x for x in lines
    )
    readme = f"# Title\n\ntext\n\n{BEGIN}\nold table\n{END}\n\n## Next\n"
    assert splice(readme, block) == f"# Title\n\ntext\n\n{block}\n\n## Next\n"
    for broken in ("no markers\n", f"{END}\n{BEGIN}\n", f"{BEGIN}\n{BEGIN}\n{END}\n"):
        with pytest.raises(ValueError, match="results-table:begin"):
            splice(broken, block, name="README.md")


# ------------------------------------------------------------------------------ command


@pytest.fixture
def repo_copy(tmp_path):
    """A repository root with the committed results files and a README with a stale table."""
    for source in SOURCES:
        target = tmp_path / results_path(source)
        target.parent.mkdir(parents=True)
        shutil.copy(REPO / results_path(source), target)
    readme = tmp_path / "experiments" / "README.md"
    readme.write_text(f"# Experiments\n\n{BEGIN}\nstale\n{END}\n\nrest\n")
    return tmp_path, readme


def test_check_reports_a_stale_table_and_writes_nothing(repo_copy, capsys):
    root, readme = repo_copy
    before = readme.read_text()
    mtime = readme.stat().st_mtime_ns
    assert main(["--check", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "-stale" in out and "+| experiment | claim |" in out
    assert readme.read_text() == before and readme.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in readme.parent.iterdir()) == [
        "README.md",
        *sorted(s.package for s in SOURCES),
    ]


def test_command_regenerates_then_check_passes(repo_copy):
    root, readme = repo_copy
    assert main(["--root", str(root)]) == 0
    text = readme.read_text()
    assert text.startswith("# Experiments\n\n") and text.endswith(f"{END}\n\nrest\n")
    assert "stale" not in text and text == generate(root, text)
    assert main(["--check", "--root", str(root)]) == 0
    assert not list(readme.parent.glob(".README.md.*"))  # no temp file left behind


# ------------------------------------------------------------------------------ includes


def test_includes_are_replaced_by_the_files_text_and_the_rest_is_kept(tmp_path):
    (tmp_path / "a.md").write_text("| x |\n|---|\n| 1 |\n")
    (tmp_path / "b.md").write_text("two\n")
    readme = "\n".join(
        ["intro", "<!-- include: a.md -->", "stale", "lines", INCLUDE_END, "middle"]
        + ["<!-- include: b.md -->", INCLUDE_END, "end"]
    )
    assert splice_includes(readme, tmp_path) == "\n".join(
        ["intro", "<!-- include: a.md -->", "| x |", "|---|", "| 1 |", INCLUDE_END, "middle"]
        + ["<!-- include: b.md -->", "two", INCLUDE_END, "end"]
    )
    assert splice_includes("no includes\n", tmp_path) == "no includes\n"


@pytest.mark.parametrize(
    "text, message",
    [
        ("<!-- include: a.md -->\nno end", "has no"),
        (f"<!-- include: ../outside.md -->\n{INCLUDE_END}", "outside the repository"),
        (f"<!-- include: missing.md -->\n{INCLUDE_END}", "missing.md not found"),
    ],
)
def test_bad_includes_name_the_line_and_the_remedy(tmp_path, text, message):
    (tmp_path / "repo").mkdir()
    (tmp_path / "outside.md").write_text("x")
    (tmp_path / "repo" / "a.md").write_text("x")
    with pytest.raises(ValueError, match=message) as err:
        splice_includes("first\n" + text, tmp_path / "repo", name="R.md")
    assert "R.md, line 2" in str(err.value)
