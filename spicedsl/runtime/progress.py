"""A progress bar on stderr for long work (training, equation fitting, many fits)."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress bar with the step, named values and the time left.

    When ``enabled``, it draws on stderr if stderr is a terminal; otherwise (a log file,
    a batch job) it writes one line when the work starts and, with ``every_update``, one
    line per update, else none while it runs.
    """

    def __init__(
        self,
        total: int,
        label: str,
        enabled: bool = True,
        width: int = 24,
        unit: str = "steps",
        every_update: bool = False,
    ) -> None:
        self.total = total
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self.lines = enabled and every_update and not self.enabled
        self.width = width
        self.start = time.perf_counter()
        self.last_draw = 0.0
        if enabled and not self.enabled:
            sys.stderr.write(f"{label}: at most {total} {unit}...\n")
            sys.stderr.flush()

    def update(self, done: int, **values: float | None) -> None:
        """Show ``done`` of the total steps and ``values`` (integers as they are, other
        numbers with four decimals; None ones are left out)."""
        if not (self.enabled or self.lines):
            return
        now = time.perf_counter()
        if self.enabled and now - self.last_draw < 0.1 and done < self.total:
            return
        self.last_draw = now
        elapsed = now - self.start
        left = elapsed / done * (self.total - done) if done else 0.0
        shown = " ".join(
            f"{k} {v}" if isinstance(v, int) else f"{k} {v:.4f}"
            for k, v in values.items()
            if v is not None
        )
        status = f"{done}/{self.total} {shown} {elapsed:.0f}s elapsed, <{left:.0f}s left"
        if self.lines:
            sys.stderr.write(f"{self.label}: {status}\n")
        else:
            filled = int(self.width * done / self.total)
            bar = "#" * filled + "." * (self.width - filled)
            sys.stderr.write(f"\r{self.label} [{bar}] {status} ")
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
