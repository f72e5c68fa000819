"""``cifar10`` and ``cifar100``, in torchvision's on-disk layout.

Downloading goes through torchvision (``--download``; the archive's MD5 is checked). Reading does not call
torchvision's dataset classes, because they ``pickle.load`` the batch files: splitbench reads them with a
restricted unpickler that only rebuilds plain containers and numpy arrays, so a tampered file cannot run code.

Data root layout (``--data-root DIR`` or the default data directory)::

    DIR/cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    DIR/cifar-100-python/{train, test, meta}
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import field
from benchmark.core.registry import register_scenario
from benchmark.data.scenarios.common import default_data_root
from benchmark.data.types import DataOptions, Scenario, ScenarioConfig, ScenarioInfo, resize_uint8

_SAFE_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a dataset file")


def safe_unpickle(path: Path) -> dict:
    """Load a CIFAR batch file, refusing anything but containers, strings, numbers and numpy arrays."""
    try:
        with open(path, "rb") as fh:
            obj = _RestrictedUnpickler(io.BytesIO(fh.read()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise SplitbenchError(f"{path}: not a valid CIFAR batch file ({exc})") from exc
    if not isinstance(obj, dict):
        raise SplitbenchError(f"{path}: expected a dict in a CIFAR batch file, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _decode(names: list) -> tuple[str, ...]:
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


@dataclasses.dataclass(frozen=True)
class Cifar10Config(ScenarioConfig):
    sensitive: Literal["none", "animal"] = field(
        "animal", "sensitive attribute: 'animal' (vehicle vs animal, derived from the class) or 'none'")


@dataclasses.dataclass(frozen=True)
class Cifar100Config(ScenarioConfig):
    task: Literal["fine", "coarse"] = field(
        "coarse", "task label: the 20 coarse superclasses or the 100 fine classes")
    sensitive: Literal["none", "fine", "coarse"] = field(
        "fine", "sensitive attribute: the fine class, the coarse superclass, or none")

    def validate(self) -> None:
        super().validate()
        if self.task == self.sensitive:
            raise ValueError(f"task and sensitive must differ, both are {self.task!r}")


_CIFAR10_ANIMALS = {2, 3, 4, 5, 6, 7}  # bird, cat, deer, dog, frog, horse


class _TorchvisionCifar(Scenario):
    folder: str
    tv_class: str
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)

    def _root(self, options: DataOptions) -> Path:
        root = Path(options.data_root) if options.data_root else default_data_root()
        base = root / self.folder
        if not base.is_dir():
            if not options.download:
                raise SplitbenchError(
                    f"{self.name} data not found: {base} does not exist (pass --download to fetch it with "
                    f"torchvision, or --data-root pointing at a folder that holds {self.folder}/)")
            self._download(root)
        return base

    def _download(self, root: Path) -> None:
        import torchvision

        cls = getattr(torchvision.datasets, self.tv_class)
        from torchvision.datasets.utils import download_and_extract_archive

        root.mkdir(parents=True, exist_ok=True)
        try:
            download_and_extract_archive(cls.url, str(root), filename=cls.filename, md5=cls.tgz_md5)
        except Exception as exc:
            raise SplitbenchError(f"could not download {self.name} to {root}: {exc}") from exc

    def _read(self, base: Path, files: list[str], label_keys: tuple[str, ...]):
        """Images of all batch files as one uint8 [N, 3, S, S] tensor at the configured size, and the labels.

        The batches are held at their native 32 px while the files are read (a file's row count is only known
        once it is unpickled); then one output tensor is allocated and each batch is resized into its slice
        and dropped, so the images at the target size exist once.
        """
        batches, labels = [], {k: [] for k in label_keys}
        for fname in files:
            path = base / fname
            if not path.is_file():
                raise SplitbenchError(f"{self.name}: missing file {path} (the folder looks incomplete; "
                                      "delete it and pass --download, or fix --data-root)")
            batch = safe_unpickle(path)
            for key in ("data", *label_keys):
                if key not in batch:
                    raise SplitbenchError(f"{path}: missing key {key!r} (expected {['data', *label_keys]})")
            data = np.asarray(batch["data"], dtype=np.uint8)
            if data.ndim != 2 or data.shape[1] != 3072:
                raise SplitbenchError(f"{path}: 'data' must be N x 3072 uint8, got shape {data.shape}")
            batches.append(torch.from_numpy(data.reshape(-1, 3, 32, 32)))
            for k in label_keys:
                labels[k].append(np.asarray(batch[k], dtype=np.int64))
            del batch, data
        size = self.config.image_size
        x = torch.empty((sum(len(b) for b in batches), 3, size, size), dtype=torch.uint8)
        start = 0
        while batches:
            b = batches.pop(0)
            resize_uint8(b, size, out=x[start:start + len(b)])
            start += len(b)
        return x, {k: torch.from_numpy(np.concatenate(v)) for k, v in labels.items()}


@register_scenario("cifar10")
class Cifar10(_TorchvisionCifar):
    Config = Cifar10Config
    description = "CIFAR-10 (torchvision): task = class (10), sensitive = animal vs vehicle"
    folder = "cifar-10-batches-py"
    tv_class = "CIFAR10"

    def load_arrays(self, options: DataOptions):
        base = self._root(options)
        files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        x, labels = self._read(base, files, ("labels",))
        meta = safe_unpickle(base / "batches.meta") if (base / "batches.meta").is_file() else {}
        names = _decode(meta.get("label_names", [str(i) for i in range(10)]))
        y = labels["labels"]
        sens = None
        if self.config.sensitive == "animal":
            sens = torch.tensor([int(int(v) in _CIFAR10_ANIMALS) for v in y], dtype=torch.int64)
        info = ScenarioInfo("cifar10", self.config.image_size, 3, self.mean, self.std, "class", names,
                            None if sens is None else "animal",
                            None if sens is None else ("vehicle", "animal"))
        return x, y, sens, info


@register_scenario("cifar100")
class Cifar100(_TorchvisionCifar):
    Config = Cifar100Config
    description = "CIFAR-100 (torchvision): task = coarse superclass (20), sensitive = fine class (100)"
    folder = "cifar-100-python"
    tv_class = "CIFAR100"
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)

    def load_arrays(self, options: DataOptions):
        base = self._root(options)
        x, labels = self._read(base, ["train", "test"], ("fine_labels", "coarse_labels"))
        meta = safe_unpickle(base / "meta") if (base / "meta").is_file() else {}
        names = {
            "fine": _decode(meta.get("fine_label_names", [str(i) for i in range(100)])),
            "coarse": _decode(meta.get("coarse_label_names", [str(i) for i in range(20)])),
        }
        cfg = self.config
        y = labels[f"{cfg.task}_labels"]
        sens = None if cfg.sensitive == "none" else labels[f"{cfg.sensitive}_labels"]
        info = ScenarioInfo("cifar100", cfg.image_size, 3, self.mean, self.std, cfg.task, names[cfg.task],
                            None if sens is None else cfg.sensitive,
                            None if sens is None else names[cfg.sensitive])
        return x, y, sens, info
