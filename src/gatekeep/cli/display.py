"""Plain-text output for the command line: tables and a live progress line.

No colours and no terminal library: on a TTY the progress line is rewritten in
place with ``\\r``; anywhere else (a pipe, a CI log) it prints plain lines, a few
per second at most.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, TextIO

__all__ = ["Progress", "format_table", "percentile"]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A table with a header rule; numbers right-aligned, text left-aligned."""
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(isinstance(row[i], int | float) for row in rows) for i in range(len(headers))]

    def line(r: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(r, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return "-" if math.isnan(v) else f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) of already sorted values, nearest rank; NaN when empty."""
    if not sorted_values:
        return math.nan
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


class Progress:
    """A status line: rewritten in place on a TTY, else printed every ``interval`` s."""

    def __init__(
        self, out: TextIO, *, tty: bool | None = None, interval: float | None = None
    ) -> None:
        self.out = out
        if tty is None:
            isatty = getattr(out, "isatty", None)
            tty = bool(isatty and isatty())
        self.tty = tty
        self.interval = interval if interval is not None else (0.1 if tty else 0.5)
        self._last = -math.inf
        self._width = 0
        self.updates = 0

    def update(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        self.updates += 1
        if self.tty:
            pad = max(0, self._width - len(text))
            self.out.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def done(self, text: str) -> None:
        self.update(text, force=True)
        if self.tty:
            self.out.write("\n")
            self.out.flush()
