"""The exported program: same numbers as Potential.predict for any molecule size, runnable in a
process that never imports this package, NaN for unknown elements, clear errors."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import gmm
from nequip_jax.cli import main
from nequip_jax.export import METADATA_FILE, PROGRAM_FILE, export_potential, molecule_function
from nequip_jax.model import NequIPConfig, Potential, init_params

SPECIES = (1, 6, 7, 8)


@pytest.fixture(scope="module")
def potential(frames_300K):
    """A tiny untrained float32 potential with a 2-component mixture on its features."""
    from tests.tiny_models import TINY_MODEL

    config = NequIPConfig(num_species=4, avg_num_neighbors=15.0, **TINY_MODEL)
    bare = Potential(config, init_params(config, key=jax.random.key(3)), SPECIES)
    features = np.concatenate(bare.predict(frames_300K[:4])["features"]).astype(np.float64)
    mixture = gmm.fit(features, 2, key=jax.random.key(0)).params
    return bare.with_head("gmm", mixture)


def _molecules(frames):
    """A 27-atom 3BPA frame and a 19-atom fragment of another: two sizes, one program."""
    return [frames[0], frames[1][:19]]


def _check(potential, molecules, outputs):
    reference = potential.predict(molecules)
    for i, (energy, forces, uncertainty) in enumerate(outputs):
        np.testing.assert_allclose(energy, reference["energy"][i], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(forces, reference["forces"][i], rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(uncertainty, reference["uncertainty"][i], rtol=1e-4, atol=1e-4)


def test_molecule_function_equals_predict_and_flags_unknown_elements(potential, frames_300K):
    molecules = _molecules(frames_300K)
    fn = jax.jit(molecule_function(potential))
    outputs = [
        jax.device_get(fn(a.positions.astype(np.float32), a.numbers.astype(np.int32)))
        for a in molecules
    ]
    _check(potential, molecules, outputs)
    numbers = molecules[0].numbers.copy()
    numbers[3] = 9  # fluorine: not a species of the model
    energy, forces, uncertainty = fn(molecules[0].positions.astype(np.float32), numbers)
    assert np.isnan(energy) and np.isnan(forces).all() and np.isnan(uncertainty).all()


_RUNNER = """
import json, sys
import numpy as np
from jax import export
folder, inputs, outputs = sys.argv[1:4]
meta = json.load(open(folder + "/metadata.json"))
program = export.deserialize(bytearray(open(folder + "/" + meta["program"], "rb").read()))
shape = str(program.in_avals[0].shape)
data = np.load(inputs)
result = {}
for i in range(int(data["count"])):
    e, f, u = program.call(data[f"positions{i}"], data[f"numbers{i}"])
    result[f"energy{i}"], result[f"forces{i}"], result[f"uncertainty{i}"] = e, f, u
np.savez(outputs, **result)
ours = sorted(m for m in sys.modules if m.split(".")[0] in ("nequip_jax", "gmm", "experiments"))
print(json.dumps({"shape": shape, "imported": ours}))
"""


def test_exported_program_runs_without_this_package(potential, frames_300K, tmp_path):
    molecules = _molecules(frames_300K)
    folder = export_potential(potential, tmp_path / "exported", platforms=("cpu",))
    meta = json.loads((folder / METADATA_FILE).read_text())
    assert meta["species"] == list(SPECIES) and meta["r_max"] == potential.r_max
    assert meta["uncertainty"]["n_components"] == 2 and meta["platforms"] == ["cpu"]
    inputs = {"count": len(molecules)}
    for i, a in enumerate(molecules):
        inputs[f"positions{i}"] = a.positions.astype(np.float32)
        inputs[f"numbers{i}"] = a.numbers.astype(np.int32)
    np.savez(tmp_path / "in.npz", **inputs)
    # An isolated interpreter (-I: no PYTHONPATH, no current folder on the path) that reports
    # every module of this project it ended up importing.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-c",
            _RUNNER,
            str(folder),
            str(tmp_path / "in.npz"),
            str(tmp_path / "out.npz"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["imported"] == []
    assert "n" in report["shape"]  # one symbolic number of atoms, not a fixed size
    out = np.load(tmp_path / "out.npz")
    outputs = [
        (out[f"energy{i}"], out[f"forces{i}"], out[f"uncertainty{i}"])
        for i in range(len(molecules))
    ]
    _check(potential, molecules, outputs)


def test_export_needs_a_mixture_and_the_cli_writes_the_folder(potential, tmp_path, capsys):
    with pytest.raises(ValueError, match="fit-gmm"):
        molecule_function(Potential(potential.config, potential.params, SPECIES))
    Potential(potential.config, potential.params, SPECIES).save(tmp_path / "bare")
    with pytest.raises(SystemExit, match="fit-gmm"):
        main(["export", str(tmp_path / "bare"), str(tmp_path / "never")])
    assert not (tmp_path / "never").exists()
    potential.save(tmp_path / "model")
    assert main(["export", str(tmp_path / "model"), str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / PROGRAM_FILE).is_file()
    meta = json.loads((tmp_path / "out" / METADATA_FILE).read_text())
    assert meta["platforms"] == ["cpu", "cuda"] and meta["units"]["forces"] == "eV/Å"
    assert PROGRAM_FILE in capsys.readouterr().out
