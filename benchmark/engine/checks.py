"""Checks of the run's command-line settings that fail before anything runs, with one clear error each: the
device (``--device``) and an output folder (``--out``, and the like)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from benchmark.core.errors import SplitbenchError


def check_device(name: str) -> torch.device:
    """``--device``: a device string torch understands and this machine has, else one clear error."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise SplitbenchError(f"--device {name!r} is not a device (expected cpu, cuda or cuda:N)") from exc
    if device.type == "cuda":
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise SplitbenchError(f"--device {name} was asked for but no CUDA GPU is available (use --device cpu)")
        if device.index is not None and device.index >= n:
            raise SplitbenchError(f"--device {name}: this machine has {n} CUDA GPU(s), cuda:0 to cuda:{n - 1}")
    elif device.type != "cpu":
        raise SplitbenchError(f"--device {name}: only cpu and cuda devices are supported")
    return device


def check_writable(path: Path, flag: str) -> None:
    """An output folder that exists as a folder or can be created, and can be written to."""
    if path.exists() and not path.is_dir():
        raise SplitbenchError(f"{flag} {path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise SplitbenchError(f"{flag} {path}: cannot be written ({exc.strerror or exc})") from exc
