"""The counts of a run, apart from the runner so that the executors that send them back need not import it."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any


@dataclasses.dataclass
class RunSummary:
    """What one run (or one executor task: one trained model and its cells) did."""

    out: Path
    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: int = 0
    not_applicable: int = 0
    models_trained: int = 0
    models_loaded: int = 0
    seconds: float = 0.0
    failures: list[str] = dataclasses.field(default_factory=list)
    manifest: str = ""

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def add(self, part: RunSummary) -> None:
        """Fold in what one executor task (one trained model and its cells) did."""
        for f in ("ok", "failed", "not_applicable", "models_trained", "models_loaded"):
            setattr(self, f, getattr(self, f) + getattr(part, f))
        self.failures += part.failures

    def line(self) -> str:
        return (f"{self.total} cells: {self.ok} ok, {self.not_applicable} not applicable, {self.failed} failed, "
                f"{self.skipped} already done; {self.models_trained} models trained, {self.models_loaded} loaded "
                f"from cache; {self.seconds:.1f} s")

    def payload(self) -> dict[str, Any]:
        """The counts as plain data, for a worker process to send back (``out`` is the caller's)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "out"}
