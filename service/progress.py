"""A progress bar for ``streamlearn-service run`` over a file, on a terminal only.

It shows the bytes read of the file's size (percent, ETA) and events per second, on stderr.
Log lines print above it whole (``logging_redirect_tqdm``), so they stay parseable. Off when
stderr is not a terminal or with ``--quiet``: the output is then exactly what it is without
it. A followed file may grow: the total follows its size; a rotated file starts the bar
again.
"""

from __future__ import annotations

import os
import time

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

__all__ = ["FileProgress"]


class FileProgress:
    """Called with each batch of a :class:`~service.sources.FileSource` (empty when idle),
    whose positions are (epoch, byte offset just after the line); ``offset``: where the run
    resumed. As a context, it sends log lines above the bar and removes the bar at exit."""

    def __init__(self, path: str, offset: int, stream, clock=time.monotonic):
        self.path, self.clock = path, clock
        self.bar = tqdm(total=max(offset, os.path.getsize(path)), initial=offset, unit="B",
                        unit_scale=True, unit_divisor=1024, file=stream,
                        desc=os.path.basename(path), dynamic_ncols=True)
        self.events, self.start = 0, clock()

    def __call__(self, batch) -> None:
        if not batch:  # idle: draw what the last batches did (tqdm draws at most 10 times/s)
            if self.bar.n != self.bar.last_print_n:
                self.bar.refresh()
                self.bar.last_print_n = self.bar.n  # drawn: not again until it moves
            return
        self.events += len(batch)
        offset = batch[-1].position[1]
        if offset < self.bar.n:  # a rotated or rewritten file: a new epoch from its start
            self.bar.reset(total=os.path.getsize(self.path))
        elif offset > self.bar.total:  # a followed file grew
            self.bar.total = max(offset, os.path.getsize(self.path))
        elapsed = self.clock() - self.start
        if elapsed > 0:
            self.bar.set_postfix_str(f"{self.events / elapsed:,.0f} events/s", refresh=False)
        self.bar.update(offset - self.bar.n)

    def __enter__(self):
        self._logs = logging_redirect_tqdm()
        self._logs.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._logs.__exit__(*exc)
        self.bar.close()
