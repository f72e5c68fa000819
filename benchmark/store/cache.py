"""A content-addressed store of trained models as safetensors files (never pickles).

Each entry is ``<root>/<kind>/<hash>.safetensors`` holding the state dict, with a JSON ``meta`` string in the
safetensors metadata (e.g. a pruned architecture's structure), and optional JSON side files for metrics.

Writes are atomic (a uniquely named temporary file renamed into place) and :meth:`ModelCache.lock` serialises the
"is it there? else train and save it" step per entry across processes (an advisory ``flock`` on a lock file), so
workers sharing one cache directory never corrupt an entry or train the same model twice: the second one waits
and then loads what the first saved.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import config_hash
from benchmark.core.io import atomic_write_text
from benchmark.models.trainer import place


class ModelCache:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def key(self, spec: Any) -> str:
        return config_hash(spec, 20)

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / f"{key}.safetensors"

    def exists(self, kind: str, key: str) -> bool:
        return self.path(kind, key).is_file()

    def save(self, kind: str, key: str, module: nn.Module, meta: dict[str, Any] | None = None) -> Path:
        from safetensors.torch import save_file

        path = self.path(kind, key)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
        # tied or shared tensors must be stored once each under their own names
        state = {k: v.clone() for k, v in state.items()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            save_file(state, str(tmp), metadata={"meta": json.dumps(meta or {}, sort_keys=True)})
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path

    @contextlib.contextmanager
    def lock(self, kind: str, key: str) -> Iterator[None]:
        """Hold an exclusive lock on entry ``key`` (across processes on this machine or a shared POSIX
        filesystem) for the duration of the block."""
        import fcntl

        path = self.root / kind / f"{key}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def load_meta(self, kind: str, key: str) -> dict[str, Any]:
        from safetensors import safe_open

        path = self.path(kind, key)
        try:
            with safe_open(str(path), framework="pt") as fh:
                return json.loads((fh.metadata() or {}).get("meta", "{}"))
        except Exception as exc:
            raise SplitbenchError(f"{path}: corrupt cache entry ({exc}); delete it to retrain") from exc

    def load_into(self, kind: str, key: str, module: nn.Module) -> None:
        from safetensors.torch import load_file

        path = self.path(kind, key)
        try:
            state = load_file(str(path))
        except Exception as exc:
            raise SplitbenchError(f"{path}: corrupt cache entry ({exc}); delete it to retrain") from exc
        missing, unexpected = module.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise SplitbenchError(f"{path}: cache entry does not match the model (missing {missing[:3]}, "
                                  f"unexpected {unexpected[:3]}); delete it to retrain")

    def read_json(self, kind: str, name: str) -> dict[str, Any] | None:
        p = self.root / kind / name
        if not p.is_file():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return None

    def write_json(self, kind: str, name: str, data: dict[str, Any]) -> None:
        atomic_write_text(self.root / kind / name, json.dumps(data, indent=2, sort_keys=True) + "\n")

    def get_or_fit(self, kind: str, spec: Any, module: nn.Module, fit: Any, device: torch.device) -> nn.Module:
        """Load ``module``'s weights for ``spec`` if cached, else call ``fit(module)`` and cache the result."""
        self._load_or_fit(kind, spec, module, fit, device, need_results=False)
        return module

    def get_or_fit_results(self, kind: str, spec: Any, module: nn.Module, fit: Any,
                           device: torch.device) -> dict[str, Any]:
        """Like :meth:`get_or_fit` for a ``fit(module)`` that returns figures of its training (JSON-able, e.g. the
        final loss): they are stored with the weights and returned on a hit too, so a record reads the same
        whether its model was trained now or loaded. An entry saved without them is fitted again."""
        return self._load_or_fit(kind, spec, module, fit, device, need_results=True)

    def _load_or_fit(self, kind: str, spec: Any, module: nn.Module, fit: Any, device: torch.device,
                     need_results: bool) -> dict[str, Any]:
        """Under the entry's lock: load a usable cached entry into ``module`` (on ``device``), else fit and save it;
        return the figures stored with it (empty for a weights-only entry)."""
        key = self.key(spec)
        with self.lock(kind, key):
            if self.exists(kind, key):
                results = self.load_meta(kind, key).get("results") if need_results else {}
                if isinstance(results, dict):
                    self.load_into(kind, key, module)
                    place(module, device)  # the layout a fit leaves, so a hit computes like a fresh fit
                    return results
            place(module, device)
            fitted = fit(module)
            place(module, device)  # a fit may replace parameters (pruning): they too get the layout a hit gets
            results = dict(fitted or {}) if need_results else {}
            self.save(kind, key, module, {"spec": spec, "results": results} if need_results else {"spec": spec})
        return results
