"""Throughput of the NequIP model on 3BPA: forward+forces and training steps, against nequip 0.19.1.

For each (num_features, lmax) the script measures, in one process and interleaved round by
round with the PyTorch reference (so that a busy machine slows both alike):

- compile time of the jitted forward+forces function and of the training step (JAX), and the
  first-call time of the reference;
- forward+forces time per molecule for a batch of 32 molecules (``test_300K`` frames), for the
  function compiled by ``model_jit`` (with :func:`nequip_jax.model.compiler_options`) and, in
  the same round, by a plain ``jax.jit`` with XLA's defaults, as a user's own jit compiles it
  (the ratio plain/model_jit is printed; 1.00x means the options make no difference);
- training steps per second for batches of 5 (MSE of per-atom energy + forces, Adam).

The reference is the authors' PyTorch code, ``nequip==0.19.1`` (``NequIPGNNModel``, eager,
2 threads), with the same hyperparameters (layers, features, lmax, parity, radial MLP, r_max,
8 Bessels, p = 6) on the same structures. It runs in a separate interpreter given by
``--torch-python`` (a venv with ``torch==2.13.0 nequip==0.19.1``; the project venv has neither)
as a worker that this script drives over a pipe; without it the script prints a note and
reports JAX only. Differences that remain between the two models: nequip 0.19 embeds species
into the self-connection through a learned 16/32-dim type embedding, skips the self-connection
in the first layer and reads the energy out of the last layer's scalars in one linear map,
while this implementation adds the ``feature_dim`` projection (Zhu et al. 2023); these are
node-level operations, a small part of the cost, which is dominated by per-edge work.

Usage::

    python experiments/bench/model_throughput.py [--quick] [--threads 1]
        [--torch-python TORCH_VENV/bin/python] [--json R.json]
    python experiments/bench/model_throughput.py --table R.json   # the README's tables

``--threads 1`` pins this process and the worker to one core (torch and XLA single-threaded):
on a machine shared with other jobs this gives steadier ratios than two contended threads, and
the process CPU time (printed next to the wall time) then excludes the time other jobs hold the
core — the steadiest of the figures.

Ratios > 1 mean this implementation is faster than the reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPECIES = (1, 6, 7, 8)
TYPE_NAMES = ("H", "C", "N", "O")


# ----------------------------------------------------------------------------- JAX side
def _jax_setup(frames, num_features, lmax, args):
    """Build the JAX model, its jitted functions and device batches; time the compilations."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    from nequip_jax.data import GraphDataset, compute_budget, compute_statistics
    from nequip_jax.model import (
        NequIP,
        NequIPConfig,
        compiler_options,
        energy_forces_features,
        init_params,
    )

    graphs = GraphDataset(frames, args.r_max, SPECIES)
    stats = compute_statistics(graphs)
    config = NequIPConfig.from_statistics(
        stats,
        len(SPECIES),
        num_features=num_features,
        lmax=lmax,
        parity=not args.no_parity,
        num_layers=args.num_layers,
        r_max=args.r_max,
        radial_mlp_depth=args.radial_mlp_depth,
        radial_mlp_width=args.radial_mlp_width,
        edge_chunk_size=args.edge_chunk_size,
    )
    model = NequIP(config)
    one_chunk = NequIP(dataclasses.replace(config, edge_chunk_size=1 << 30))
    infer_batch = jax.device_put(
        graphs.batch(np.arange(args.infer_batch), compute_budget(graphs, args.infer_batch))
    )
    train_batch = jax.device_put(
        graphs.batch(np.arange(args.train_batch), compute_budget(graphs, args.train_batch))
    )
    params = init_params(config, key=jax.random.key(0))
    options = compiler_options() if not args.xla_defaults else None

    def predict_with(m, p, g):
        return energy_forces_features(m, p, g)

    def predict_fn(p, g):
        return predict_with(model, p, g)

    t0 = time.perf_counter()
    predict_compiled = (
        jax.jit(predict_fn, compiler_options=options).lower(params, infer_batch).compile()
    )
    compile_predict = time.perf_counter() - t0
    # The same function under a plain jax.jit, as a user's own jit would compile it.
    defaults_compiled = None
    if options is not None:
        defaults_compiled = jax.jit(predict_fn).lower(params, infer_batch).compile()

    optimizer = optax.adam(1e-3)

    def loss_with(m, p, g):
        out = energy_forces_features(m, p, g)
        graph_mask, node_mask = g.globals["mask"], g.nodes["mask"]
        per_atom = (out["energy"] - g.globals["energy"]) / jnp.maximum(g.n_node, 1)
        e_term = jnp.sum(jnp.where(graph_mask, per_atom, 0.0) ** 2) / jnp.sum(graph_mask)
        f_diff = jnp.where(node_mask[:, None], out["forces"] - g.nodes["forces"], 0.0)
        f_term = jnp.sum(f_diff**2) / (3 * jnp.sum(node_mask))
        return e_term + f_term

    def step_with(m, p, opt_state, g):
        loss, grads = jax.value_and_grad(lambda q: loss_with(m, q, g))(p)
        updates, opt_state = optimizer.update(grads, opt_state, p)
        return optax.apply_updates(p, updates), opt_state, loss

    def step(p, opt_state, g):
        return step_with(model, p, opt_state, g)

    def flops(fn, *args) -> float:
        return float(jax.jit(fn).lower(*args).compile().cost_analysis()["flops"])

    opt_state = optimizer.init(params)
    t0 = time.perf_counter()
    step_compiled = (
        jax.jit(step, compiler_options=options).lower(params, opt_state, train_batch).compile()
    )
    compile_train = time.perf_counter() - t0

    state = {"params": params, "opt_state": opt_state}

    def timer(compiled):
        def infer(reps):
            jax.block_until_ready(compiled(params, infer_batch))
            times = []
            for _ in range(reps):
                t, c = time.perf_counter(), time.process_time()
                jax.block_until_ready(compiled(params, infer_batch))
                times.append((time.perf_counter() - t, time.process_time() - c))
            return times

        return infer

    def train(reps):
        p, s, loss = step_compiled(state["params"], state["opt_state"], train_batch)
        jax.block_until_ready(loss)
        times = []
        for _ in range(reps):
            t, c = time.perf_counter(), time.process_time()
            p, s, loss = step_compiled(p, s, train_batch)
            jax.block_until_ready(loss)
            times.append((time.perf_counter() - t, time.process_time() - c))
        state["params"], state["opt_state"] = p, s
        return times

    info = {
        "compile_predict_s": compile_predict,
        "compile_train_s": compile_train,
        "edges_per_molecule": float(graphs.n_edge[: args.infer_batch].mean()),
        "avg_num_neighbors": config.avg_num_neighbors,
        "force_rms": float(stats.force_rms),
        "energy_shift": [float(s) for s in stats.energy_shift],
        "num_params": int(sum(x.size for x in jax.tree.leaves(params))),
        # XLA's own count (padding included) of the programs with the convolution in one chunk:
        # cost_analysis() counts a loop's body once, so a chunked convolution would be
        # undercounted by its number of chunks.
        "flops_per_molecule": flops(functools.partial(predict_with, one_chunk), params, infer_batch)
        / args.infer_batch,
        "flops_train_step": flops(
            functools.partial(step_with, one_chunk), params, opt_state, train_batch
        ),
    }
    infer = {"jax_infer": timer(predict_compiled)}
    if defaults_compiled is not None:
        infer["defaults_infer"] = timer(defaults_compiled)
    return infer, train, info


# ----------------------------------------------------------------------------- torch worker
def _torch_worker() -> None:
    """Serve setup/infer/train requests (one JSON object per line) from the parent process."""
    import ase.io
    import torch
    from nequip.data import AtomicDataDict, compute_neighborlist_, from_ase
    from nequip.data.transforms import ChemicalSpeciesToAtomTypeMapper
    from nequip.model import NequIPGNNModel
    from nequip.utils.global_state import set_global_state

    set_global_state()
    torch.set_num_threads(int(os.environ.get("BENCH_TORCH_THREADS", "2")))
    state: dict = {}

    def reply(obj):
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()

    for line in sys.stdin:
        request = json.loads(line)
        cmd = request["cmd"]
        if cmd == "quit":
            break
        if cmd == "setup":
            frames = ase.io.read(request["xyz"], ":")
            mapper = ChemicalSpeciesToAtomTypeMapper(model_type_names=list(TYPE_NAMES))

            def batch_of(n, r_max=request["r_max"], frames=frames, mapper=mapper):
                items = [mapper(compute_neighborlist_(from_ase(a), r_max)) for a in frames[:n]]
                return AtomicDataDict.batched_from_list(items)

            model = NequIPGNNModel(
                seed=0,
                model_dtype="float32",
                type_names=list(TYPE_NAMES),
                r_max=request["r_max"],
                num_layers=request["num_layers"],
                l_max=request["lmax"],
                parity=request["parity"],
                num_features=request["num_features"],
                radial_mlp_depth=request["radial_mlp_depth"],
                radial_mlp_width=request["radial_mlp_width"],
                avg_num_neighbors=request["avg_num_neighbors"],
                per_type_energy_scales=request["force_rms"],
                per_type_energy_shifts=dict(zip(TYPE_NAMES, request["energy_shift"], strict=True)),
            )
            infer_batch = batch_of(request["infer_batch"])
            train_batch = batch_of(request["train_batch"])
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
            state.update(model=model, infer=infer_batch, train=train_batch, opt=optimizer)
            model.eval()
            t0 = time.perf_counter()
            model(dict(infer_batch))
            first_infer = time.perf_counter() - t0
            model.train()
            t0 = time.perf_counter()
            _torch_step(state)
            first_train = time.perf_counter() - t0
            n_params = sum(p.numel() for p in model.parameters())
            reply(
                {
                    "first_infer_s": first_infer,
                    "first_train_s": first_train,
                    "num_params": n_params,
                    "edges": int(infer_batch[AtomicDataDict.EDGE_INDEX_KEY].shape[1]),
                }
            )
        elif cmd == "infer":
            model = state["model"]
            model.eval()
            model(dict(state["infer"]))
            times = []
            for _ in range(request["reps"]):
                t, c = time.perf_counter(), time.process_time()
                out = model(dict(state["infer"]))
                out["forces"].sum().item()
                times.append((time.perf_counter() - t, time.process_time() - c))
            reply({"times": times})
        elif cmd == "train":
            state["model"].train()
            _torch_step(state)
            times = []
            for _ in range(request["reps"]):
                t, c = time.perf_counter(), time.process_time()
                _torch_step(state)
                times.append((time.perf_counter() - t, time.process_time() - c))
            reply({"times": times})


def _torch_step(state) -> float:
    """One Adam step on MSE(per-atom energy) + MSE(forces), as the JAX training step."""
    model, batch, optimizer = state["model"], state["train"], state["opt"]
    out = model(dict(batch))
    n_atoms = batch["num_atoms"].reshape(-1, 1).to(out["total_energy"].dtype)
    e_term = (((out["total_energy"] - batch["total_energy"]) / n_atoms) ** 2).mean()
    f_term = ((out["forces"] - batch["forces"]) ** 2).mean()
    loss = e_term + f_term
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return float(loss.detach())


class TorchReference:
    """The worker process running nequip 0.19.1 in another interpreter."""

    def __init__(self, python: str):
        self.proc = subprocess.Popen(
            [python, os.path.abspath(__file__), "--torch-worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def call(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(
                "the PyTorch worker exited (see its error output above); check that the "
                "--torch-python interpreter has torch==2.13.0 and nequip==0.19.1."
            )
        return json.loads(line)

    def close(self):
        try:
            self.call(cmd="quit")
        except (RuntimeError, BrokenPipeError, ValueError):
            pass
        self.proc.wait(timeout=60)


# ----------------------------------------------------------------------------- driver
def _peak(threads: int) -> dict:
    """This CPU's float32 rates: nominal (cores × clock × SIMD lanes × 2 flops per FMA × 2 FMA
    units per core, the usual server-core figure; lanes 16 with AVX-512, 8 with AVX2) and
    measured (a 2048² float32 matmul compiled by XLA, best of 5), in GFLOP/s."""
    import jax
    import jax.numpy as jnp

    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    mhz = [float(line.split(":")[1]) for line in info.splitlines() if line.startswith("cpu MHz")]
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "").split()
    lanes = 16 if "avx512f" in flags else 8 if "avx2" in flags else 4
    nominal = threads * (mhz[0] / 1e3) * lanes * 2 * 2 if mhz else float("nan")
    n = 2048
    a = jnp.ones((n, n), jnp.float32)
    matmul = jax.jit(lambda x: x @ x).lower(a).compile()
    jax.block_until_ready(matmul(a))
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        jax.block_until_ready(matmul(a))
        best = min(best, time.perf_counter() - t)
    return {
        "nominal_gflops": nominal,
        "matmul_gflops": 2 * n**3 / best / 1e9,
        "clock_ghz": mhz[0] / 1e3 if mhz else None,
        "simd_lanes": lanes,
    }


def _median_ms(times) -> tuple[float, float]:
    """Median wall and CPU (process) milliseconds of ``[(wall_s, cpu_s), ...]``."""
    return (
        1e3 * statistics.median(t for t, _ in times),
        1e3 * statistics.median(c for _, c in times),
    )


def _per(pair, n):
    return (pair[0] / n, pair[1] / n)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="f=16, lmax=1 only, 2 rounds")
    parser.add_argument("--torch-python", default=None, help="interpreter with nequip 0.19.1")
    parser.add_argument("--configs", default="16:1,32:1,16:2,32:2", help="f:lmax list")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--infer-reps", type=int, default=5, help="forward calls per round")
    parser.add_argument("--train-reps", type=int, default=5, help="train steps per round")
    parser.add_argument("--infer-batch", type=int, default=32)
    parser.add_argument("--train-batch", type=int, default=5)
    parser.add_argument("--r-max", type=float, default=4.0)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--no-parity", action="store_true")
    parser.add_argument("--radial-mlp-depth", type=int, default=2)
    parser.add_argument("--radial-mlp-width", type=int, default=64)
    parser.add_argument("--edge-chunk-size", type=int, default=None, help="default: automatic")
    parser.add_argument("--split", default="test_300K", help="3BPA split for the frames")
    parser.add_argument("--xla-defaults", action="store_true", help="no compiler_options()")
    parser.add_argument(
        "--threads", type=int, default=2, choices=(1, 2), help="1: pin both sides to one core"
    )
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--table", default=None, help="print the README's tables of a stored --json run; exit"
    )
    parser.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.torch_worker:
        _torch_worker()
        return 0
    if args.table:
        print(markdown_tables(json.loads(Path(args.table).read_text())))
        return 0
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the checkout's experiments
    from experiments.common.provenance import begin_run

    start = begin_run()
    if args.threads == 1:  # before jax is imported; the worker inherits the affinity
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "")
            + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        )
    os.environ["BENCH_TORCH_THREADS"] = str(args.threads)

    import ase.io
    import jax

    from nequip_jax.data import load_3bpa

    if args.quick:
        args.configs, args.rounds = "16:1", 2
    configs = [tuple(int(v) for v in item.split(":")) for item in args.configs.split(",")]
    frames = load_3bpa(args.split)[: max(args.infer_batch, args.train_batch)]
    print(
        f"# {len(frames)} frames of 3BPA {args.split}; r_max={args.r_max}, "
        f"{args.num_layers} layers, parity={not args.no_parity}, radial MLP "
        f"{args.radial_mlp_depth}x{args.radial_mlp_width}; jax {jax.__version__} on "
        f"{jax.devices()[0].platform}, {args.threads} thread(s) per side; load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    torch_ref = None
    if args.torch_python and Path(args.torch_python).exists():
        torch_ref = TorchReference(args.torch_python)
    else:
        print(
            "# note: no PyTorch reference (pass --torch-python PATH to an interpreter with "
            "torch==2.13.0 and nequip==0.19.1); reporting JAX only"
        )
    peak = _peak(args.threads)
    print(
        f"# float32 peak of {args.threads} core(s): nominal {peak['nominal_gflops']:.0f} GFLOP/s "
        f"({peak['clock_ghz']} GHz x {peak['simd_lanes']} lanes x 2 flops/FMA x 2 FMA units), "
        f"measured {peak['matmul_gflops']:.0f} GFLOP/s (2048^2 matmul, XLA)"
    )
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        xyz = str(Path(tmp) / "frames.xyz")
        ase.io.write(xyz, frames)
        try:
            for num_features, lmax in configs:
                row = _compare(frames, num_features, lmax, args, torch_ref, xyz, peak)
                results.append(row)
        finally:
            if torch_ref is not None:
                torch_ref.close()
    if args.json:
        from experiments.common.provenance import provenance
        from nequip_jax._io import atomic_write_json
        from nequip_jax.data._registry import SPLITS, search_folders

        found = [
            f / SPLITS[args.split] for f in search_folders() if (f / SPLITS[args.split]).is_file()
        ]
        record = provenance(
            start, preset=None, seeds=[], data_source="dft", data_files={args.split: found[0]}
        )
        atomic_write_json(args.json, {"rows": results, "provenance": record})
    return 0


def markdown_tables(stored: dict) -> str:
    """The README's throughput and roofline tables of a stored run (``--json``): best round for
    times and rates, median over rounds of the per-round ratios torch / JAX."""
    rows = stored["rows"]
    out = [
        "| f | lmax | JAX forward+forces (ms/molecule) | torch (ms/molecule) | ratio torch/JAX "
        "(wall / CPU) | JAX train steps/s (batch 5) | torch steps/s | ratio (wall / CPU) "
        "| JAX compile (forward / step, s) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        best = {k: min(e[k][0] for e in r["rounds"]) for k in r["rounds"][0] if k != "load"}
        torch = "torch_infer" in best
        out.append(
            f"| {r['num_features']} | {r['lmax']} | {best['jax_infer']:.2f} | "
            + (f"{best['torch_infer']:.2f} | " if torch else "– | ")
            + (
                f"{r['ratio_infer_wall']:.2f}× / {r['ratio_infer_CPU']:.2f}× | "
                if torch
                else "– | "
            )
            + f"{1e3 / best['jax_train']:.1f} | "
            + (f"{1e3 / best['torch_train']:.1f} | " if torch else "– | ")
            + (
                f"{r['ratio_train_wall']:.2f}× / {r['ratio_train_CPU']:.2f}× | "
                if torch
                else "– | "
            )
            + f"{r['compile_predict_s']:.1f} / {r['compile_train_s']:.1f} |"
        )
    peak = rows[0]["peak"]
    out += [
        "",
        f"Roofline (XLA `cost_analysis()` FLOPs of the programs with the convolution in one chunk "
        f"(a chunk loop's body is counted once); float32 peak of the "
        f"cores used: nominal {peak['nominal_gflops']:.0f} GFLOP/s = {peak['clock_ghz']:.2f} GHz "
        f"× {peak['simd_lanes']} lanes × 2 flops per FMA × 2 FMA units per core × cores, and "
        f"{peak['matmul_gflops']:.0f} GFLOP/s measured on a 2048² XLA matmul):",
        "",
        "| f | lmax | forward+forces MFLOP/molecule | GFLOP/s | % of nominal / of matmul "
        "| train step GFLOP (batch 5) | GFLOP/s | % of nominal / of matmul |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        g, p = r["gflops"], r["peak"]
        out.append(
            f"| {r['num_features']} | {r['lmax']} | {r['flops_per_molecule'] / 1e6:.1f} | "
            f"{g['infer']:.1f} | {100 * g['infer'] / p['nominal_gflops']:.1f} % / "
            f"{100 * g['infer'] / p['matmul_gflops']:.1f} % | {r['flops_train_step'] / 1e9:.2f} | "
            f"{g['train']:.1f} | {100 * g['train'] / p['nominal_gflops']:.1f} % / "
            f"{100 * g['train'] / p['matmul_gflops']:.1f} % |"
        )
    return "\n".join(out)


def _compare(frames, num_features, lmax, args, torch_ref, xyz, peak) -> dict:
    infer, train, info = _jax_setup(frames, num_features, lmax, args)
    row = {"num_features": num_features, "lmax": lmax, **info}
    print(
        f"\n## f={num_features} lmax={lmax}: {info['edges_per_molecule']:.0f} edges/molecule, "
        f"{info['num_params']} JAX parameters"
    )
    print(
        f"JAX compile: forward+forces {info['compile_predict_s']:.1f} s, "
        f"train step {info['compile_train_s']:.1f} s"
    )
    if torch_ref is not None:
        setup = torch_ref.call(
            cmd="setup",
            xyz=xyz,
            r_max=args.r_max,
            num_layers=args.num_layers,
            lmax=lmax,
            parity=not args.no_parity,
            num_features=num_features,
            radial_mlp_depth=args.radial_mlp_depth,
            radial_mlp_width=args.radial_mlp_width,
            avg_num_neighbors=info["avg_num_neighbors"],
            force_rms=info["force_rms"],
            energy_shift=info["energy_shift"],
            infer_batch=args.infer_batch,
            train_batch=args.train_batch,
        )
        row["torch_setup"] = setup
        print(
            f"torch first call: forward+forces {setup['first_infer_s']:.2f} s, train step "
            f"{setup['first_train_s']:.2f} s; {setup['num_params']} parameters, "
            f"{setup['edges'] / args.infer_batch:.0f} edges/molecule"
        )
    rounds = []
    have_torch = torch_ref is not None
    for r in range(args.rounds):
        entry = {"load": os.getloadavg()[0]}
        for key, run in infer.items():
            entry[key] = _per(_median_ms(run(args.infer_reps)), args.infer_batch)
        if have_torch:
            times = torch_ref.call(cmd="infer", reps=args.infer_reps)["times"]
            entry["torch_infer"] = _per(_median_ms(times), args.infer_batch)
        entry["jax_train"] = _median_ms(train(args.train_reps))
        if have_torch:
            times = torch_ref.call(cmd="train", reps=args.train_reps)["times"]
            entry["torch_train"] = _median_ms(times)
        rounds.append(entry)
        line = f"round {r}: load {entry['load']:.1f} | forward+forces ms/molecule (wall/CPU) JAX "
        line += _fmt(entry["jax_infer"], 2)
        if have_torch:
            line += f", torch {_fmt(entry['torch_infer'], 2)} {_ratio(entry, 'infer')}"
        if "defaults_infer" in entry:
            ratio = entry["defaults_infer"][0] / entry["jax_infer"][0]
            line += f", JAX under plain jax.jit {_fmt(entry['defaults_infer'], 2)} ({ratio:.2f}x)"
        line += f" | train step ms JAX {_fmt(entry['jax_train'], 1)}"
        if have_torch:
            line += f", torch {_fmt(entry['torch_train'], 1)} {_ratio(entry, 'train')}"
        print(line, flush=True)
    row["rounds"] = rounds
    # Best round (least disturbed by other jobs) for the absolute numbers; medians of the
    # per-round ratios (each round runs both sides back to back) for the comparison.
    best = {k: min(e[k][0] for e in rounds) for k in rounds[0] if k != "load"}
    best_cpu = {k: min(e[k][1] for e in rounds) for k in rounds[0] if k != "load"}
    summary = (
        f"summary JAX: {best['jax_infer']:.2f} ms/molecule wall ({best_cpu['jax_infer']:.2f} "
        f"CPU) = {1e3 / best['jax_infer']:.0f} molecules/s; {1e3 / best['jax_train']:.1f} train "
        "steps/s"
    )
    rates = {
        "infer": info["flops_per_molecule"] / (best["jax_infer"] / 1e3) / 1e9,
        "train": info["flops_train_step"] / (best["jax_train"] / 1e3) / 1e9,
    }
    row["peak"] = peak
    row["gflops"] = rates
    summary += (
        f"\nsummary roofline (XLA cost_analysis): forward+forces "
        f"{info['flops_per_molecule'] / 1e6:.1f} MFLOP/molecule at {rates['infer']:.1f} GFLOP/s "
        f"({100 * rates['infer'] / peak['nominal_gflops']:.1f} % of nominal, "
        f"{100 * rates['infer'] / peak['matmul_gflops']:.1f} % of the matmul rate); train step "
        f"{info['flops_train_step'] / 1e9:.2f} GFLOP at {rates['train']:.1f} GFLOP/s "
        f"({100 * rates['train'] / peak['nominal_gflops']:.1f} % / "
        f"{100 * rates['train'] / peak['matmul_gflops']:.1f} %)"
    )
    if "defaults_infer" in best:
        row["ratio_defaults_infer_wall"] = statistics.median(
            e["defaults_infer"][0] / e["jax_infer"][0] for e in rounds
        )
        summary += (
            f"\nsummary plain jax.jit (XLA's default CPU options) / model_jit, forward+forces "
            f"(median over rounds): {row['ratio_defaults_infer_wall']:.2f}x wall"
        )
    if have_torch:
        summary += (
            f"\nsummary torch: {best['torch_infer']:.2f} ms/molecule wall "
            f"({best_cpu['torch_infer']:.2f} CPU) = {1e3 / best['torch_infer']:.0f} molecules/s; "
            f"{1e3 / best['torch_train']:.1f} train steps/s"
        )
        for kind in ("infer", "train"):
            for index, clock in ((0, "wall"), (1, "CPU")):
                ratios = [e[f"torch_{kind}"][index] / e[f"jax_{kind}"][index] for e in rounds]
                row[f"ratio_{kind}_{clock}"] = statistics.median(ratios)
        summary += (
            "\nsummary ratio torch/JAX (median over rounds): forward+forces "
            f"{row['ratio_infer_wall']:.2f}x wall, {row['ratio_infer_CPU']:.2f}x CPU; train step "
            f"{row['ratio_train_wall']:.2f}x wall, {row['ratio_train_CPU']:.2f}x CPU"
        )
    print(summary, flush=True)
    return row


def _fmt(pair, digits) -> str:
    return f"{pair[0]:.{digits}f}/{pair[1]:.{digits}f}"


def _ratio(entry, kind) -> str:
    wall = entry[f"torch_{kind}"][0] / entry[f"jax_{kind}"][0]
    cpu = entry[f"torch_{kind}"][1] / entry[f"jax_{kind}"][1]
    return f"(ratio {wall:.2f}x/{cpu:.2f}x)"


if __name__ == "__main__":
    sys.exit(main())
