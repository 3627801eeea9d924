"""A minimal terminal progress line (no dependency): redrawn in place on a TTY, one line per
epoch otherwise (CI logs)."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Progress over ``total`` steps with a label; ``update`` is cheap to call every step."""

    def __init__(self, total: int, label: str = "", stream=None, min_interval: float = 0.2):
        self.total, self.label = total, label
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.start = time.perf_counter()
        self.done = 0
        self._last = 0.0
        self.min_interval = min_interval

    def update(self, n: int = 1, suffix: str = "") -> None:
        self.done += n
        now = time.perf_counter()
        if self.tty and (now - self._last > self.min_interval or self.done >= self.total):
            self._last = now
            frac = self.done / max(self.total, 1)
            bar = "#" * int(24 * frac)
            rate = self.done / max(now - self.start, 1e-9)
            self.stream.write(
                f"\r{self.label} [{bar:<24}] {self.done}/{self.total} {rate:.1f}/s {suffix}"
            )
            self.stream.flush()

    def close(self, summary: str = "") -> None:
        elapsed = time.perf_counter() - self.start
        end = "\r" if self.tty else ""
        self.stream.write(
            f"{end}{self.label} {self.done}/{self.total} in {elapsed:.1f}s {summary}\n"
        )
        self.stream.flush()
