"""Progress lines on the terminal: structures done / total, rate, elapsed time and ETA."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class Progress:
    """Prints at most one line every ``every`` seconds (and always for the last chunk).

    The ETA weighs each structure by its cost (a relaxation is worth ``RELAX_COST`` single points),
    so it stays sensible while the slow scans and the fast relabelling share the workers.
    """

    def __init__(
        self,
        total_cost: float,
        total_frames: int,
        log: Callable[[str], None],
        every: float = 2.0,
    ):
        self.total_cost = total_cost
        self.total_frames = total_frames
        self.log = log
        self.every = every
        self.start = time.perf_counter()
        self.last = -float("inf")
        self.frames = 0
        self.cost = 0.0

    def update(self, n_frames: int, cost: float, result: Any = None) -> None:
        self.frames += n_frames
        self.cost += cost
        now = time.perf_counter()
        done = self.frames >= self.total_frames
        if now - self.last < self.every and not done:
            return
        self.last = now
        elapsed = now - self.start
        rate = self.frames / elapsed if elapsed > 0 else float("nan")
        fraction = self.cost / self.total_cost if self.total_cost else 1.0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else float("nan")
        where = f" | last: {result.output} chunk {result.chunk}" if result is not None else ""
        self.log(
            f"{self.frames}/{self.total_frames} structures ({100 * fraction:.1f}% of the work) | "
            f"{rate:.2f} structures/s | elapsed {_clock(elapsed)} | ETA {_clock(eta)}{where}"
        )
