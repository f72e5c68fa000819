"""Whether long work shows progress bars, decided in one place for every loop that draws one."""

from __future__ import annotations

import os
import sys

ENV = "SPLITBENCH_PROGRESS"


def default_progress() -> bool:
    """Progress bars unless ``$SPLITBENCH_PROGRESS`` is ``0`` (``splitbench run --quiet`` sets it); when it is not
    set, only on a terminal (so logs and CI output stay free of bar redraws)."""
    env = os.environ.get(ENV)
    if env is not None:
        return env != "0"
    return sys.stderr.isatty()
