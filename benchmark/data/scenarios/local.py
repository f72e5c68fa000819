"""``custom``: bring your own data, from a local image folder or parquet file(s), with named label columns.

``--data-root`` points at one of:

- a **parquet file** or a folder of them, with an image column (a ``{"bytes", "path"}`` struct as the hub
  writes it, raw bytes, or a path relative to the file) and label columns;
- an **image folder**: images in class sub-folders (the folder name is the column ``label``) and/or a
  ``metadata.csv`` whose ``file_name`` column gives each image's path relative to the folder and whose other
  columns are labels (the layout of the ``datasets`` imagefolder builder).

Choose the columns with ``--scenario-arg task=COLUMN`` and ``--scenario-arg sensitive=COLUMN`` (omit
``sensitive`` for none).

Images are decoded one by one (parquet files are read a batch of rows at a time) into a single uint8 store,
which is also the decode cache: a ``.npy`` in the data directory's ``_decoded/`` folder, keyed by the source
files' paths, sizes and modification times, that a second load opens memory-mapped instead of decoding again
(see :mod:`benchmark.data.scenarios.store`).
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import field
from benchmark.core.registry import register_scenario
from benchmark.data.scenarios.common import encode_labels
from benchmark.data.scenarios.store import decode_to_store
from benchmark.data.types import DataOptions, Scenario, ScenarioConfig, ScenarioInfo

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


@dataclasses.dataclass
class _Source:
    """What the loader needs from a parquet file set or an image folder, without holding its images."""

    n: int
    check_column: Callable[[str], None]  # raises SplitbenchError when a label column is missing somewhere
    labels: Callable[[str], list]  # one label column's values, in row order
    images: Callable[[], Iterator[Any]]  # the image values (paths, structs, bytes), in row order, read lazily
    row_name: Callable[[int], str]  # names row i (its file, or its file and row) in error messages
    stamp: str  # identifies the source files and their versions, for the decode cache


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
            src = self._parquet_source(root)
        else:
            src = self._folder_source(root)
        if src.n == 0:
            raise SplitbenchError(f"scenario 'custom': no images found under {root}")
        cfg = self.config
        for col in (cfg.task, cfg.sensitive or None):
            if col is not None:
                src.check_column(col)
        images = decode_to_store(src.images(), src.n, cfg.image_size, src.row_name,
                                 cache_key=f"custom|{src.stamp}|{cfg.image_size}|{src.n}", desc=f"decode {root}")
        where = str(root)
        y, y_names = encode_labels(src.labels(cfg.task), None, cfg.task, where)
        s, s_names = None, None
        if cfg.sensitive:
            s, s_names = encode_labels(src.labels(cfg.sensitive), None, cfg.sensitive, where)
        info = ScenarioInfo(cfg.name, cfg.image_size, 3, self.mean, self.std, cfg.task, y_names,
                            cfg.sensitive or None, s_names)
        return images, y, s, info

    def _parquet_source(self, root: Path) -> _Source:
        """Parquet file(s): only schemas and row counts are read here; labels and images when asked for."""
        import pyarrow.parquet as pq

        files = [root] if root.is_file() else sorted(root.glob("*.parquet"))
        col = self.config.image_column
        counts, names = [], []
        for path in files:
            try:
                num_rows = pq.read_metadata(path).num_rows
                schema = pq.read_schema(path)
            except Exception as exc:
                raise SplitbenchError(f"{path}: not a readable parquet file ({exc})") from exc
            if col not in schema.names:
                raise SplitbenchError(f"{path}: no image column {col!r} (columns: {', '.join(schema.names)})")
            counts.append(num_rows)
            names.append([c for c in schema.names if c != col])
        starts = [sum(counts[:k]) for k in range(len(counts))]
        with_rows = [(path, available) for path, n, available in zip(files, counts, names) if n]

        def check_column(column: str) -> None:
            for path, available in with_rows:
                if column not in available:
                    raise SplitbenchError(f"{path}: no column {column!r} "
                                          f"(available: {', '.join(sorted(available))})")

        def labels(column: str) -> list:
            values: list = []
            for path, _ in with_rows:
                values += _read_parquet(path, lambda pf: pf.read(columns=[column]).column(0).to_pylist())
            return values

        def images() -> Iterator[Any]:
            for path, _ in with_rows:
                yield from _parquet_images(path, col)

        def row_name(i: int) -> str:
            k = bisect.bisect_right(starts, i) - 1
            return f"{files[k]} row {i - starts[k]}"

        stamp = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in files]
        return _Source(sum(counts), check_column, labels, images, row_name, f"parquet:{col}:{stamp}")

    def _folder_source(self, root: Path) -> _Source:
        """An image folder: the list of image paths and labels is built here; images are read when decoded."""
        rows = self._folder_rows(root)

        def check_column(column: str) -> None:
            columns = set(rows[0]) - {"__image__"}
            if column not in columns:
                raise SplitbenchError(f"{root}: no column {column!r} (available: {', '.join(sorted(columns))})")

        digest = hashlib.sha256()
        meta = root / "metadata.csv"
        if meta.is_file():
            digest.update(f"metadata.csv:{meta.stat().st_size}:{meta.stat().st_mtime_ns}\n".encode())
        for r in rows:
            st = Path(r["__image__"]).stat()
            digest.update(f"{r['__image__']}:{st.st_size}:{st.st_mtime_ns}\n".encode())
        return _Source(len(rows), check_column, lambda column: [r[column] for r in rows],
                       lambda: (r["__image__"] for r in rows), lambda i: rows[i]["__image__"],
                       f"folder:{root.resolve()}:{digest.hexdigest()}")

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


def _read_parquet(path: Path, read: Callable[[Any], Any]) -> Any:
    """``read(ParquetFile)``, with any failure reported as one line naming the file."""
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as pf:
            return read(pf)
    except SplitbenchError:
        raise
    except Exception as exc:
        raise SplitbenchError(f"{path}: not a readable parquet file ({exc})") from exc


def _parquet_images(path: Path, column: str, batch_rows: int = 256) -> Iterator[Any]:
    """The image values of one parquet file, a batch of rows at a time; paths are made relative to the file."""
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise SplitbenchError(f"{path}: not a readable parquet file ({exc})") from exc
    with pf:
        batches = pf.iter_batches(batch_size=batch_rows, columns=[column])
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except Exception as exc:
                raise SplitbenchError(f"{path}: not a readable parquet file ({exc})") from exc
            for img in batch.column(0).to_pylist():
                if isinstance(img, str):
                    img = str(path.parent / img)
                elif isinstance(img, dict) and img.get("bytes") is None and img.get("path"):
                    img = {"bytes": None, "path": str(path.parent / img["path"])}
                yield img
