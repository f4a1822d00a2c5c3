"""Progress of long work (the benchmark's jobs, training's batches) on stderr: tqdm's bar where stderr is a terminal;
where it is not (a CI log, `2>file`), where every redrawn frame of the bar piled up as one long line of carriage
returns, a log line at most once every LOG_EVERY_S seconds, and one at the end, so a log still shows the run going."""

from __future__ import annotations

import logging
import time
from types import TracebackType

log = logging.getLogger(__name__)

LOG_EVERY_S = 30.0


class Progress:
    """`total` units of work named `name` (`units`: their plural, as log lines count them), each `advance`d once when
    done; a context manager that closes the bar."""

    def __init__(self, total: int, name: str, unit: str, units: str, mininterval: float = 0.1) -> None:
        from tqdm.auto import tqdm

        # disable=None: tqdm's own test, off where its file (stderr) is not a terminal
        self.bar = tqdm(total=total, desc=name, unit=unit, mininterval=mininterval, disable=None)
        self.total, self.name, self.units = total, name, units
        self.done = 0
        self.figures: dict[str, str] = {}
        self.logged_at = time.monotonic()

    def describe(self, text: str) -> None:
        """What is being done now, in the bar's description (a log line counts units only)."""
        self.bar.set_description(text)

    def advance(self, **figures: str) -> None:
        """One more unit done; `figures` (loss="0.532"), the latest given, shown beside the bar or in the log line."""
        self.done += 1
        if figures:
            self.figures = figures
            self.bar.set_postfix(figures, refresh=False)
        self.bar.update()
        now = time.monotonic()
        if self.bar.disable and (self.done == self.total or now - self.logged_at >= LOG_EVERY_S):
            shown = "".join(f", {name} {value}" for name, value in self.figures.items())
            log.info("%s: %d of %d %s done%s", self.name, self.done, self.total, self.units, shown)
            self.logged_at = now

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.bar.close()
