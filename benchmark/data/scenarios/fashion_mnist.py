"""``fashion_mnist``: Zalando's Fashion-MNIST (70,000 real 28x28 grayscale images), read from its IDX files.

Task = the garment's **group** (4 classes: tops = T-shirt/top, pullover, coat, shirt; trousers and dresses;
footwear = sandal, sneaker, ankle boot; bags); sensitive attribute = the fine **class** (10). The server
legitimately learns the group, so the attribute floor is the best guess of the class from the group,
``sum_g P(g) max_c P(c | g)`` = 0.40 on the balanced test set: an attacker must read more than the group to
show a leak. (``task: class`` with ``sensitive: none`` is the plain 10-class problem.)

Splits keep the dataset's own train / test division: the defender's ``train`` and ``val`` and the attacker's
``aux`` are disjoint parts of one seeded permutation of the 60,000 training images (``start`` skips a prefix of
it, so a pre-study can use images no track split touches); ``eval`` is drawn from the 10,000 test images.

Where the files come from, in this order:

1. ``--data-root DIR``: the four files (gzipped or not) in ``DIR``, ``DIR/FashionMNIST/raw`` (torchvision's
   layout) or ``DIR/fashion-mnist``;
2. the default data folder (``$SPLITBENCH_DATA`` or ``~/.cache/splitbench/data``), laid out the same way;
3. Debian's package ``dataset-fashion-mnist`` (``apt-get install dataset-fashion-mnist``), which puts the
   original gzipped files in ``/usr/share/datasets/fashion-mnist``;
4. ``--download``: torchvision's downloader into the data folder's ``FashionMNIST/raw`` (checksummed).

Files are parsed here (magic number, dimensions, payload length), not by torchvision, so every malformed file
gets one line naming it and what was expected.
"""

from __future__ import annotations

import dataclasses
import gzip
import struct
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import field
from benchmark.core.registry import register_scenario
from benchmark.data.scenarios.common import default_data_root
from benchmark.data.types import DataOptions, Scenario, ScenarioData, ScenarioInfo, Split, resize_uint8

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
GROUPS = ("tops", "trousers and dresses", "footwear", "bags")
#: fine class -> group
GROUP_OF = (0, 1, 0, 1, 0, 2, 0, 2, 3, 2)
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
IMAGE_MAGIC, LABEL_MAGIC = 0x00000803, 0x00000801
SIDE = 28


@dataclasses.dataclass(frozen=True)
class FashionMNISTConfig:
    split_seed: int = field(0, "seed of the permutations that assign training images to train / val / aux and "
                               "draw eval from the test images")
    start: int = field(0, "skip this many images of the permuted training set before train / val / aux begin "
                          "(a pre-study on images disjoint from a track's splits uses a start past them)")
    train_samples: int | None = field(None, "defender's training images (null: every training image left after "
                                            "start, val and aux)")
    val_samples: int = field(5000, "defender's validation images (every choice a defense makes is made on them)")
    aux_samples: int = field(10000, "attacker's aux images (disjoint from train and val)")
    eval_samples: int | None = field(None, "eval images, drawn from the 10,000 test images (null: all of them)")
    image_size: int = field(28, "images are resized from 28x28 to image_size x image_size")
    task: Literal["group", "class"] = field("group", "task label: the garment group (4 classes) or the class (10)")
    sensitive: Literal["class", "none"] = field("class", "sensitive attribute: the class (10), or none")

    def validate(self) -> None:
        if self.image_size < 8:
            raise ValueError(f"image_size must be at least 8, got {self.image_size}")
        if self.start < 0:
            raise ValueError(f"start must be at least 0, got {self.start}")
        for name in ("train_samples", "val_samples", "aux_samples", "eval_samples"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be at least 1, got {v}")
        if self.task == "class" and self.sensitive == "class":
            raise ValueError("task and sensitive are both the class; use sensitive: none with task: class")


def _open(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError; a corrupt stream is zlib.error
        raise SplitbenchError(f"{path}: unreadable ({exc}); expected an IDX file of Fashion-MNIST, gzipped or not"
                              ) from exc


def read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    """An IDX file of unsigned bytes (``magic`` 0x803 images ``[N, 28, 28]``, 0x801 labels ``[N]``) as uint8.

    Raises:
        SplitbenchError: one line naming the file, when it is unreadable, has another magic number or shape, or
            its payload is shorter or longer than its header says (a truncated download).
    """
    raw = _open(path)
    head = 4 + 4 * dims
    if len(raw) < head:
        raise SplitbenchError(f"{path}: {len(raw)} bytes, shorter than an IDX header ({head} bytes); the file is "
                              "truncated")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise SplitbenchError(f"{path}: magic number 0x{found:08x}, expected 0x{magic:08x} (an IDX "
                              f"{'image' if dims == 3 else 'label'} file of unsigned bytes)")
    shape = struct.unpack(f">{dims}I", raw[4:head])
    if dims == 3 and tuple(shape[1:]) != (SIDE, SIDE):
        raise SplitbenchError(f"{path}: images of {shape[1]}x{shape[2]} pixels, expected {SIDE}x{SIDE}")
    expected = int(np.prod(shape))
    if len(raw) - head != expected:
        raise SplitbenchError(f"{path}: header says {shape[0]} {'images' if dims == 3 else 'labels'} "
                              f"({expected} bytes after it), the file holds {len(raw) - head}; it is truncated or "
                              "not a Fashion-MNIST file")
    return np.frombuffer(raw, dtype=np.uint8, offset=head).reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def candidates(options: DataOptions) -> list[Path]:
    """Folders that may hold the four files, in the order they are tried."""
    roots = [Path(options.data_root)] if options.data_root else []
    roots.append(default_data_root())
    out = []
    for root in roots:
        out += [root, root / "FashionMNIST" / "raw", root / "fashion-mnist"]
    out.append(DEBIAN_DIR)
    return out


def locate(options: DataOptions) -> dict[str, Path]:
    """The four files from the first folder that holds all of them (downloading first when allowed)."""
    partial: list[tuple[Path, list[str]]] = []
    for folder in candidates(options):
        found = {k: _find(folder, stem) for k, stem in FILES.items()}
        if all(found.values()):
            return {k: v for k, v in found.items() if v is not None}
        if any(found.values()):
            partial.append((folder, [FILES[k] for k, v in found.items() if v is None]))
    if options.download:
        root = Path(options.data_root) if options.data_root else default_data_root()
        _download(root)
        folder = root / "FashionMNIST" / "raw"
        found = {k: _find(folder, stem) for k, stem in FILES.items()}
        if all(found.values()):
            return {k: v for k, v in found.items() if v is not None}
        raise SplitbenchError(f"fashion_mnist: downloaded into {folder}, but the four IDX files are not all there")
    if partial:
        folder, missing = partial[0]
        raise SplitbenchError(f"fashion_mnist: {folder} holds only part of the data set; missing "
                              f"{', '.join(missing)} (gzipped or not): the train and the test half are both needed")
    where = ", ".join(str(p) for p in candidates(options))
    raise SplitbenchError("fashion_mnist data not found (looked in " + where + "): install Debian's package "
                          "(apt-get install dataset-fashion-mnist), or pass --data-root with a folder that holds the "
                          "four IDX files or torchvision's FashionMNIST/raw, or pass --download")


def _download(root: Path) -> None:
    try:
        import torchvision

        root.mkdir(parents=True, exist_ok=True)
        torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
    except Exception as exc:  # noqa: BLE001 - no network, a full disk, a bad checksum: all one line
        raise SplitbenchError(f"could not download fashion_mnist into {root}: {type(exc).__name__}: {exc}") from exc


def read_half(files: dict[str, Path], half: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[N, 28, 28]`` and class labels ``[N]`` of the ``train`` or ``test`` half, checked against each
    other."""
    images = read_idx(files[f"{half}_images"], IMAGE_MAGIC, 3)
    labels = read_idx(files[f"{half}_labels"], LABEL_MAGIC, 1)
    if len(images) != len(labels):
        raise SplitbenchError(f"{files[f'{half}_images']}: {len(images)} images, but "
                              f"{files[f'{half}_labels'].name} has {len(labels)} labels; they must match")
    if len(labels) and labels.max() >= len(CLASSES):
        raise SplitbenchError(f"{files[f'{half}_labels']}: label {int(labels.max())} outside 0..9")
    return images, labels


@register_scenario("fashion_mnist")
class FashionMNIST(Scenario):
    Config = FashionMNISTConfig
    description = ("Fashion-MNIST (70,000 real images; Debian's dataset-fashion-mnist, --data-root or --download): "
                   "task = garment group (4), sensitive = class (10)")
    mean = (0.2860, 0.2860, 0.2860)
    std = (0.3530, 0.3530, 0.3530)

    def info(self) -> ScenarioInfo:
        cfg = self.config
        task_classes = GROUPS if cfg.task == "group" else CLASSES
        sensitive = None if cfg.sensitive == "none" else "class"
        return ScenarioInfo("fashion_mnist", cfg.image_size, 3, self.mean, self.std, cfg.task, task_classes,
                            sensitive, None if sensitive is None else CLASSES)

    def _labels(self, classes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        fine = torch.from_numpy(classes.astype(np.int64))
        task = torch.as_tensor(GROUP_OF, dtype=torch.int64)[fine] if self.config.task == "group" else fine
        return task, (None if self.config.sensitive == "none" else fine)

    def _split(self, images: np.ndarray, classes: np.ndarray, idx: torch.Tensor, info: ScenarioInfo) -> Split:
        x = torch.from_numpy(np.ascontiguousarray(images[idx.numpy()]))[:, None].expand(-1, 3, -1, -1).contiguous()
        task, sens = self._labels(classes[idx.numpy()])
        return Split(resize_uint8(x, self.config.image_size), task, sens, info)

    def load(self, options: DataOptions = DataOptions()) -> ScenarioData:
        cfg = self.config
        files = locate(options)
        train_x, train_y = read_half(files, "train")
        test_x, test_y = read_half(files, "test")
        fixed = cfg.val_samples + cfg.aux_samples + (cfg.train_samples or 1)
        available = len(train_x) - cfg.start
        if fixed > available:
            raise SplitbenchError(
                f"fashion_mnist: the splits ask for {fixed} training images ({cfg.train_samples or 'at least 1'} "
                f"train, {cfg.val_samples} val, {cfg.aux_samples} aux) after start {cfg.start}, but "
                f"{files['train_images']} holds {len(train_x)}; lower the sizes or start")
        if cfg.eval_samples is not None and cfg.eval_samples > len(test_x):
            raise SplitbenchError(f"fashion_mnist: eval_samples {cfg.eval_samples} exceeds the {len(test_x)} test "
                                  f"images of {files['test_images']}")
        g = torch.Generator().manual_seed(cfg.split_seed)
        order = torch.randperm(len(train_x), generator=g)[cfg.start:]
        n_train = cfg.train_samples or (available - cfg.val_samples - cfg.aux_samples)
        bounds = np.cumsum([0, n_train, cfg.val_samples, cfg.aux_samples])
        test_order = torch.randperm(len(test_x), generator=g)[: cfg.eval_samples]
        info = self.info()
        train, val, aux = (self._split(train_x, train_y, order[a:b], info) for a, b in zip(bounds[:-1], bounds[1:]))
        return ScenarioData(info, train, val, aux, self._split(test_x, test_y, test_order, info), config=cfg)
