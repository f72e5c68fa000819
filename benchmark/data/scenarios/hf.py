"""Scenarios from the Hugging Face hub via ``datasets``: ``fairface``, ``celeba``, ``tiny_imagenet``.

Where the data comes from, in order:

1. ``--data-root DIR``: a local copy, with no network: either a folder written by ``Dataset.save_to_disk`` /
   ``DatasetDict.save_to_disk``, or a folder holding the hub's parquet files (any depth, e.g. a
   ``huggingface-cli download --repo-type dataset`` snapshot).
2. ``--download``: ``datasets.load_dataset`` from the hub (cached by ``datasets`` as usual).
3. otherwise ``$SPLITBENCH_DATA/<scenario>`` if it exists; else a clear error asking for one of the above.

All hub splits are pooled and re-split into train / aux / eval with the scenario's seed. Images are decoded and
resized one by one into a single uint8 store, which is also the decode cache: a ``.npy`` file in the data
directory's ``_decoded/`` folder that later runs open memory-mapped instead of decoding again (see
:mod:`benchmark.data.scenarios.store`).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import field
from benchmark.core.registry import register_scenario
from benchmark.data.scenarios.common import default_data_root, encode_labels
from benchmark.data.scenarios.store import decode_to_store
from benchmark.data.types import DataOptions, Scenario, ScenarioConfig, ScenarioInfo

RowName = Callable[[int], str]


def load_hf_table(hub_id: str, hub_config: str | None, local_name: str, options: DataOptions,
                  subfolder: str | None = None) -> tuple[Any, str, RowName]:
    """A ``datasets.Dataset`` with every split of a hub dataset concatenated, from a local copy or the hub.

    Returns (dataset, source_key, row_name): source_key identifies the data for the decode cache; row_name(i)
    names row ``i`` for error messages (its parquet file and row within it, when the copy is parquet files).
    """
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - datasets is a dependency
        raise SplitbenchError("the 'datasets' package is needed for hub scenarios: pip install datasets") from exc

    root = Path(options.data_root) if options.data_root else None
    if root is None and not options.download:
        candidate = default_data_root() / local_name
        if candidate.exists():
            root = candidate
        else:
            raise SplitbenchError(
                f"{local_name} data not found locally ({candidate} does not exist): pass --download to fetch "
                f"{hub_id} from the Hugging Face hub, or --data-root pointing at a local copy")
    if root is not None:
        return _load_local(datasets, root, subfolder, local_name)
    try:
        dd = datasets.load_dataset(hub_id, hub_config)
    except Exception as exc:
        raise SplitbenchError(f"could not load {hub_id} from the Hugging Face hub ({type(exc).__name__}: {exc}); "
                              "pass --data-root with a local copy to work offline") from exc
    parts = [dd[k] for k in sorted(dd)]
    return (datasets.concatenate_datasets(parts), f"hub:{hub_id}:{hub_config}:{[len(p) for p in parts]}",
            lambda i: f"{local_name} ({hub_id}) row {i}")


def _load_local(datasets: Any, root: Path, subfolder: str | None, name: str) -> tuple[Any, str, RowName]:
    if not root.exists():
        raise SplitbenchError(f"{name}: --data-root {root} does not exist")
    if (root / "dataset_dict.json").is_file() or (root / "state.json").is_file():
        obj = datasets.load_from_disk(str(root))
        parts = [obj[k] for k in sorted(obj)] if isinstance(obj, datasets.DatasetDict) else [obj]
        files = sorted(p for p in root.rglob("*.arrow"))
    else:
        files = sorted(root.rglob("*.parquet")) if root.is_dir() else [root]
        if subfolder is not None and any(subfolder in p.parts for p in files):
            files = [p for p in files if subfolder in p.parts]
        if not files:
            raise SplitbenchError(f"{name}: no parquet files or saved dataset under --data-root {root} "
                                  "(expected the hub's parquet files or a save_to_disk folder)")
        try:
            parts = [datasets.load_dataset("parquet", data_files=[str(p) for p in files], split="train")]
        except Exception as exc:
            raise SplitbenchError(f"{name}: could not read parquet files under {root}: {exc}") from exc
    ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    stamp = [(str(p.relative_to(root)) if root.is_dir() else p.name, p.stat().st_size, p.stat().st_mtime_ns)
             for p in files]
    return ds, f"local:{root.resolve()}:{stamp}", _row_namer(files, len(ds), lambda i: f"{name} row {i} under {root}")


def _row_namer(files: list[Path], n: int, fallback: RowName) -> RowName:
    """Name a row of parquet files read in this order by its file and row within it (the rows of
    ``load_dataset("parquet", data_files=files)`` follow the files' order); ``fallback`` otherwise."""
    starts = []
    if files and all(p.suffix == ".parquet" for p in files):
        import pyarrow.parquet as pq

        try:
            counts = [pq.read_metadata(p).num_rows for p in files]
        except Exception:  # naming rows is a nicety; the data itself was read without error
            counts = []
        if counts and sum(counts) == n:
            starts = [sum(counts[:k]) for k in range(len(counts))]
    if not starts:
        return fallback

    def name(i: int) -> str:
        k = bisect.bisect_right(starts, i) - 1
        return f"{files[k]} row {i - starts[k]}"

    return name


def class_names_of(ds: Any, column: str) -> tuple[str, ...] | None:
    feat = ds.features.get(column)
    names = getattr(feat, "names", None)
    return tuple(names) if names else None


def decode_column(ds: Any, column: str, size: int, source_key: str, where: str,
                  row_name: RowName | None = None) -> torch.Tensor:
    """Decode and resize an image column to uint8 [N, 3, size, size], memory-mapped from the decode cache.

    The first call decodes every image into the cache file; later calls with the same source, column and size
    open it without decoding (see :func:`benchmark.data.scenarios.store.decode_to_store`).
    """
    import datasets

    if column not in ds.column_names:
        raise SplitbenchError(f"{where}: no image column {column!r} (columns: {', '.join(ds.column_names)})")
    if isinstance(ds.features.get(column), datasets.Image):
        ds = ds.cast_column(column, datasets.Image(decode=False))

    def values() -> Iterator[Any]:
        for batch in ds.select_columns([column]).iter(batch_size=256):
            yield from batch[column]

    return decode_to_store(values(), len(ds), size, row_name or (lambda i: f"{where} row {i}"),
                           cache_key=f"{source_key}|{column}|{size}|{len(ds)}", desc=f"decode {where}")


class HFScenario(Scenario):
    hub_id: ClassVar[str]
    hub_config: ClassVar[str | None] = None
    image_column: ClassVar[str] = "image"
    subfolder: ClassVar[str | None] = None

    def label_columns(self) -> tuple[str, str | None]:
        raise NotImplementedError

    def load_arrays(self, options: DataOptions):
        ds, source, row_name = load_hf_table(self.hub_id, self.hub_config, self.name, options, self.subfolder)
        task_col, sens_col = self.label_columns()
        for col in (task_col, sens_col):
            if col is not None and col not in ds.column_names:
                raise SplitbenchError(f"{self.name}: no column {col!r} in the data "
                                      f"(columns: {', '.join(ds.column_names)})")
        images = decode_column(ds, self.image_column, self.config.image_size, source, self.name, row_name)
        y, y_names = encode_labels(ds[task_col], class_names_of(ds, task_col), task_col, self.name)
        s, s_names = (None, None)
        if sens_col is not None:
            s, s_names = encode_labels(ds[sens_col], class_names_of(ds, sens_col), sens_col, self.name)
        info = ScenarioInfo(self.name, self.config.image_size, 3, self.mean, self.std, task_col, y_names,
                            sens_col, s_names)
        return images, y, s, info


@dataclasses.dataclass(frozen=True)
class FairFaceConfig(ScenarioConfig):
    image_size: int = field(64, "images are resized to image_size x image_size (the hub images are 224)")
    task: Literal["gender", "race", "age"] = field("gender", "task label column")
    sensitive: Literal["race", "gender", "age", "none"] = field("race", "sensitive attribute column, or none")

    def validate(self) -> None:
        super().validate()
        if self.task == self.sensitive:
            raise ValueError(f"task and sensitive must differ, both are {self.task!r}")


@register_scenario("fairface")
class FairFace(HFScenario):
    Config = FairFaceConfig
    description = "FairFace (HuggingFaceM4/FairFace, padding 0.25): task = gender, sensitive = race (or reversed)"
    hub_id = "HuggingFaceM4/FairFace"
    hub_config = "0.25"
    subfolder = "0.25"

    def label_columns(self):
        return self.config.task, None if self.config.sensitive == "none" else self.config.sensitive


@dataclasses.dataclass(frozen=True)
class CelebAConfig(ScenarioConfig):
    image_size: int = field(64, "images are resized to image_size x image_size")
    task: str = field("Smiling", "a binary CelebA attribute column used as the task")
    sensitive: str = field("Male", "a CelebA attribute column used as the sensitive attribute, or 'none'")


@register_scenario("celeba")
class CelebA(HFScenario):
    Config = CelebAConfig
    description = "CelebA (flwrlabs/celeba): task = Smiling, sensitive = Male (any attribute columns)"
    hub_id = "flwrlabs/celeba"
    hub_config = "img_align+identity+attr"

    def label_columns(self):
        return self.config.task, None if self.config.sensitive == "none" else self.config.sensitive


@dataclasses.dataclass(frozen=True)
class TinyImageNetConfig(ScenarioConfig):
    image_size: int = field(64, "images are resized to image_size x image_size (native 64)")


@register_scenario("tiny_imagenet")
class TinyImageNet(HFScenario):
    Config = TinyImageNetConfig
    description = "Tiny-ImageNet (zh-plus/tiny-imagenet): task = class (200), no sensitive attribute"
    hub_id = "zh-plus/tiny-imagenet"

    def label_columns(self):
        return "label", None
