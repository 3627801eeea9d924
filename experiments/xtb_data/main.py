"""Command line: ``python -m experiments.xtb_data --out data/3bpa_xtb [options]``.

Parses arguments into a :class:`~experiments.xtb_data.generate.Config` and calls ``run``.
Exit status 0 when the data set is complete, 3 when the run stopped early (``--limit-chunks``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from experiments.xtb_data.generate import ALL_PARTS, Config, run
from experiments.xtb_data.reference import FOLDER as REFERENCE
from experiments.xtb_data.reference import INDEX
from experiments.xtb_data.reference import save as save_reference


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m experiments.xtb_data",
        description="Relabel 3BPA with GFN2-xTB (tblite) and run the beta = 120/150/180 dihedral "
        "scans; resumable, parallel over single-threaded workers.",
    )
    p.add_argument("--out", type=Path, required=True, help="output folder, e.g. data/3bpa_xtb")
    p.add_argument(
        "--source",
        type=Path,
        default=None,
        help="folder with the DFT 3BPA xyz files (default: $NEQUIP_JAX_DATA/3bpa or "
        "$NEQUIP_JAX_DATA)",
    )
    p.add_argument(
        "--splits",
        nargs="+",
        choices=ALL_PARTS,
        default=None,
        help="outputs to make (default: every MD split present, dih, iso)",
    )
    p.add_argument("--workers", type=int, default=2, help="single-threaded worker processes")
    p.add_argument("--grid", type=float, default=15.0, help="alpha/gamma step, degrees")
    p.add_argument("--betas", type=float, nargs="+", default=[120.0, 150.0, 180.0])
    p.add_argument("--max-frames", type=int, default=None, help="first N frames per MD split")
    p.add_argument("--start-frame", type=int, default=None, help="train_300K frame for scans")
    p.add_argument("--chunk-size", type=int, default=100, help="MD frames per chunk")
    p.add_argument("--scan-chunk-size", type=int, default=8, help="scan points per chunk")
    p.add_argument("--limit-chunks", type=int, default=None, help="stop after N chunks")
    p.add_argument("--fmax", type=float, default=0.05, help="relaxation threshold, eV/Å")
    p.add_argument("--max-steps", type=int, default=500, help="relaxation step cap")
    p.add_argument(
        "--free-amine",
        action="store_true",
        help="hold only alpha, beta, gamma in the scans (not the amine dihedral); for comparison",
    )
    p.add_argument("--accuracy", type=float, default=1.0, help="tblite accuracy")
    p.add_argument("--electronic-temperature", type=float, default=300.0, help="K")
    p.add_argument("--max-iterations", type=int, default=250, help="SCF iteration cap")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument(
        "--reference",
        type=Path,
        default=REFERENCE if (REFERENCE / INDEX).is_file() else None,
        help="folder of stored scans restored instead of computed when their recipe matches "
        "(default: the repository's experiments/xtb_data/reference, the scans the committed "
        "results used)",
    )
    p.add_argument(
        "--store-reference",
        action="store_true",
        help="once complete, store the scans of --out as the repository's reference (what "
        "committed results computed on them should be paired with)",
    )
    p.add_argument(
        "--no-reference",
        dest="reference",
        action="store_const",
        const=None,
        help="compute every scan, even one stored in the reference",
    )
    p.add_argument(
        "--dask-scheduler",
        default=None,
        metavar="ADDRESS",
        help="compute the chunks on a Dask cluster (e.g. tcp://head:8786; its workers should "
        "run one thread each) instead of --workers local processes",
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> Config:
    return config_from_args(_parser().parse_args(argv))


def config_from_args(a: argparse.Namespace) -> Config:
    return Config(
        out=a.out,
        source=a.source,
        parts=None if a.splits is None else tuple(a.splits),
        workers=a.workers,
        grid=a.grid,
        betas=tuple(a.betas),
        max_frames=a.max_frames,
        start_frame=a.start_frame,
        chunk_size=a.chunk_size,
        scan_chunk_size=a.scan_chunk_size,
        limit_chunks=a.limit_chunks,
        fmax=a.fmax,
        max_steps=a.max_steps,
        free_amine=a.free_amine,
        accuracy=a.accuracy,
        electronic_temperature=a.electronic_temperature,
        max_iterations=a.max_iterations,
        quiet=a.quiet,
        reference=a.reference,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.dask_scheduler is None:
        summary = run(config_from_args(args))
    else:
        from distributed import Client

        with Client(args.dask_scheduler) as client:
            summary = run(config_from_args(args), executor=client.get_executor())
    if not summary.complete:
        return 3
    if args.store_reference:
        for name in save_reference(args.out):
            print(f"stored {name} in {REFERENCE}", file=sys.stderr)
    print(json.dumps(summary.counts, indent=1, sort_keys=True))
    return 0
