"""``custom``: bring your own data, from a local image folder or parquet file(s), with named label columns.

``--data-root`` points at one of:

- a **parquet file** or a folder of them, with an image column (a ``{"bytes", "path"}`` struct as the hub
  writes it, raw bytes, or a path relative to the file) and label columns;
- an **image folder**: images in class sub-folders (the folder name is the column ``label``) and/or a
  ``metadata.csv`` whose ``file_name`` column gives each image's path relative to the folder and whose other
  columns are labels (the layout of the ``datasets`` imagefolder builder).

Choose the columns with ``--scenario-arg task=COLUMN`` and ``--scenario-arg sensitive=COLUMN`` (omit
``sensitive`` for none).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

from ..config import field
from ..data import DataOptions, Scenario, ScenarioConfig, ScenarioInfo
from ..errors import SplitbenchError
from ..registry import register_scenario
from .common import decode_image, encode_labels, stack_images

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclasses.dataclass(frozen=True)
class CustomConfig(ScenarioConfig):
    task: str = field("label", "name of the task label column ('label' = the class sub-folder of an image folder)")
    sensitive: str = field("", "name of the sensitive attribute column; empty for none")
    image_column: str = field("image", "parquet only: the column holding the images")
    name: str = field("custom", "a name for the data, shown in results")

    def validate(self) -> None:
        super().validate()
        if not self.task:
            raise ValueError("task column must be named")
        if self.task == self.sensitive:
            raise ValueError(f"task and sensitive must differ, both are {self.task!r}")


@register_scenario("custom")
class Custom(Scenario):
    Config = CustomConfig
    description = "your own image folder or parquet file (--data-root) with named task / sensitive columns"

    def load_arrays(self, options: DataOptions):
        if options.data_root is None:
            raise SplitbenchError("scenario 'custom' needs --data-root: an image folder or parquet file(s)")
        root = Path(options.data_root)
        if not root.exists():
            raise SplitbenchError(f"scenario 'custom': --data-root {root} does not exist")
        if root.is_file() or any(root.glob("*.parquet")):
            rows, where = self._parquet_rows(root), str(root)
        else:
            rows, where = self._folder_rows(root), str(root)
        if not rows:
            raise SplitbenchError(f"scenario 'custom': no images found under {root}")
        cfg = self.config
        columns = set(rows[0]) - {"__image__"}
        for col in (cfg.task, cfg.sensitive or None):
            if col is not None and col not in columns:
                raise SplitbenchError(f"{where}: no column {col!r} (available: {', '.join(sorted(columns))})")
        images = stack_images([decode_image(r["__image__"], cfg.image_size, f"{where} row {i}")
                               for i, r in enumerate(rows)])
        y, y_names = encode_labels([r[cfg.task] for r in rows], None, cfg.task, where)
        s, s_names = None, None
        if cfg.sensitive:
            s, s_names = encode_labels([r[cfg.sensitive] for r in rows], None, cfg.sensitive, where)
        info = ScenarioInfo(cfg.name, cfg.image_size, 3, self.mean, self.std, cfg.task, y_names,
                            cfg.sensitive or None, s_names)
        return images, y, s, info

    def _parquet_rows(self, root: Path) -> list[dict]:
        import pyarrow.parquet as pq

        files = [root] if root.is_file() else sorted(root.glob("*.parquet"))
        rows: list[dict] = []
        for path in files:
            try:
                table = pq.read_table(path)
            except Exception as exc:
                raise SplitbenchError(f"{path}: not a readable parquet file ({exc})") from exc
            col = self.config.image_column
            if col not in table.column_names:
                raise SplitbenchError(f"{path}: no image column {col!r} (columns: {', '.join(table.column_names)})")
            for rec in table.to_pylist():
                img = rec.pop(col)
                if isinstance(img, str):
                    img = str(path.parent / img)
                elif isinstance(img, dict) and img.get("bytes") is None and img.get("path"):
                    img = {"bytes": None, "path": str(path.parent / img["path"])}
                rec["__image__"] = img
                rows.append(rec)
        return rows

    def _folder_rows(self, root: Path) -> list[dict]:
        meta = root / "metadata.csv"
        if meta.is_file():
            with open(meta, newline="") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames is None or "file_name" not in reader.fieldnames:
                    raise SplitbenchError(f"{meta}: expected a 'file_name' column (got {reader.fieldnames})")
                rows = []
                for i, rec in enumerate(reader):
                    path = root / rec["file_name"]
                    if not path.is_file():
                        raise SplitbenchError(f"{meta} row {i + 2}: image {rec['file_name']!r} does not exist")
                    rec = dict(rec)
                    rec["__image__"] = str(path)
                    rel = Path(rec["file_name"])
                    if "label" not in rec and len(rel.parts) > 1:
                        rec["label"] = rel.parts[0]
                    rows.append(rec)
                return rows
        rows = []
        for path in sorted(root.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                rel = path.relative_to(root)
                if len(rel.parts) < 2:
                    raise SplitbenchError(f"{root}: image {rel} is not in a class sub-folder and there is no "
                                          "metadata.csv naming its labels")
                rows.append({"__image__": str(path), "label": rel.parts[0]})
        return rows
