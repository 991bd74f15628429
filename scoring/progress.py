"""A one-line progress report on stderr: files done, files/s, errors and the time left."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class Progress:
    """Redrawn in place on a terminal (at most 4 times a second); elsewhere a line every 10 s."""

    def __init__(self, total: int, *, quiet: bool = False, stream: TextIO = sys.stderr):
        self.total, self.quiet, self.stream = total, quiet, stream
        self.done = self.errors = 0
        self.start = self.shown = time.monotonic()
        self.tty = stream.isatty()

    def add(self, files: int, errors: int) -> None:
        self.done += files
        self.errors += errors
        now = time.monotonic()
        if not self.quiet and now - self.shown >= (0.25 if self.tty else 10):
            self.shown = now
            self._show(end="\r" if self.tty else "\n")

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = clock((self.total - self.done) / rate) if rate > 0 else "?"
        pct = 100 * self.done / self.total if self.total else 100.0
        return (f"{self.done}/{self.total} files ({pct:.0f}%), {rate:.1f} files/s, "
                f"{self.errors} errors, {clock(elapsed)} elapsed, {eta} left")

    def _show(self, end: str) -> None:
        line = self.line().ljust(100) if self.tty else self.line()   # wide enough to cover the last one
        print(line, end=end, file=self.stream, flush=True)

    def finish(self) -> None:
        if not self.quiet and self.tty:
            self._show(end="\n")
