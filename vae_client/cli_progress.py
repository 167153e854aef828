"""The command line's progress line: one line on stderr, rewritten in place, only when stderr is a terminal (so
pipes, files and logs never get it), and never with --quiet. No dependency: the client needs httpx and numpy
only."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import Self, TextIO


class Progress:
    """`with Progress("loglik", total) as bar: ... bar.advance(n)`: `done/total images, percent, elapsed, eta`."""

    def __init__(self, label: str, total: int, *, enabled: bool = True, stream: TextIO | None = None):
        self.stream = sys.stderr if stream is None else stream
        self.label, self.total, self.done = label, total, 0
        self.enabled = enabled and self.stream.isatty()
        self.start = time.monotonic()
        self.width = 0  # of the last line written, to blank what a shorter line leaves

    def __enter__(self) -> Self:
        self.draw()
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def advance(self, count: int) -> None:
        self.done += count
        self.draw()

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        fraction = self.done / self.total if self.total else 1.0
        eta = elapsed * (1 - fraction) / fraction if fraction > 0 else None
        filled = int(fraction * 20)
        bar = "#" * filled + "-" * (20 - filled)
        rest = f", eta {clock(eta)}" if eta is not None and self.done < self.total else ""
        return (f"{self.label} [{bar}] {self.done}/{self.total} images {100 * fraction:5.1f}% "
                f"({clock(elapsed)}{rest})")

    def draw(self) -> None:
        if not self.enabled:
            return
        text = self.line()
        self.stream.write("\r" + text + " " * max(0, self.width - len(text)))
        self.stream.flush()
        self.width = len(text)

    def close(self) -> None:
        """Ends the line (the last state stays on screen)."""
        if self.enabled and self.width:
            self.stream.write("\n")
            self.stream.flush()
            self.width = 0


def clock(seconds: float) -> str:
    """Seconds as m:ss (h:mm:ss past an hour)."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
