"""Two clocks over one span of work: the wall clock and the CPU time of this process.

A record keeps both. Wall-clock time is what a user waits; it grows when the worker shares its core with other work
or is paused. The process's CPU time (``time.process_time``: every thread of the process, user and system) counts
only the time the worker actually computed, so it is the figure to sum when a run's cost is read back from a run
that shared its machine. With one torch thread per worker on idle cores the two agree; with T threads the CPU time
is up to T times the wall time. On a GPU the CPU time leaves out the device's own time: read the wall clock there.
"""

from __future__ import annotations

import dataclasses
import time


@dataclasses.dataclass(frozen=True)
class Span:
    """Seconds one span of work took, on each clock."""

    wall: float
    cpu: float


class Stopwatch:
    """Started when made; :meth:`read` gives the span so far on both clocks."""

    def __init__(self) -> None:
        self._wall = time.perf_counter()
        self._cpu = time.process_time()

    def read(self) -> Span:
        return Span(time.perf_counter() - self._wall, time.process_time() - self._cpu)
