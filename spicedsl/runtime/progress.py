"""A progress bar on stderr for long work (training, equation fitting)."""

from __future__ import annotations

import sys
import time


class Progress:
    """A one-line progress bar with the step, named values and the time left.

    When ``enabled``, it draws on stderr if stderr is a terminal; otherwise (a log file,
    a batch job) it writes one line when the work starts and none while it runs.
    """

    def __init__(
        self, total: int, label: str, enabled: bool = True, width: int = 24, unit: str = "steps"
    ) -> None:
        self.total = total
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self.width = width
        self.start = time.perf_counter()
        self.last_draw = 0.0
        if enabled and not self.enabled:
            sys.stderr.write(f"{label}: at most {total} {unit}...\n")
            sys.stderr.flush()

    def update(self, done: int, **values: float | None) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self.last_draw < 0.1 and done < self.total:
            return
        self.last_draw = now
        elapsed = now - self.start
        left = elapsed / done * (self.total - done) if done else 0.0
        filled = int(self.width * done / self.total)
        shown = " ".join(f"{k} {v:.4f}" for k, v in values.items() if v is not None)
        sys.stderr.write(
            f"\r{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{done}/{self.total} {shown} {elapsed:.0f}s elapsed, <{left:.0f}s left "
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()
