"""Writers of small datasets in the exact on-disk formats the real loaders read (for offline tests)."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np


def _images(n: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)


def write_cifar10(root: Path, n_per_batch: int = 20, seed: int = 0) -> Path:
    """torchvision's ``cifar-10-batches-py`` layout: pickled dicts with bytes keys, data N x 3072 uint8."""
    base = Path(root) / "cifar-10-batches-py"
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i, name in enumerate([f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]):
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=n_per_batch)]
        with open(base / name, "wb") as fh:
            pickle.dump({b"batch_label": f"batch {i}".encode(), b"labels": labels, b"data": data,
                         b"filenames": [f"img{j}.png".encode() for j in range(n_per_batch)]}, fh, protocol=2)
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    with open(base / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": names, b"num_cases_per_batch": n_per_batch, b"num_vis": 3072}, fh, protocol=2)
    return Path(root)


def write_cifar100(root: Path, n_train: int = 100, n_test: int = 20, seed: int = 0) -> Path:
    """torchvision's ``cifar-100-python`` layout: train / test / meta pickles."""
    base = Path(root) / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, size=n)
        with open(base / name, "wb") as fh:
            pickle.dump({b"filenames": [b"x.png"] * n, b"batch_label": name.encode(),
                         b"fine_labels": [int(v) for v in fine], b"coarse_labels": [int(v) // 5 for v in fine],
                         b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)}, fh, protocol=2)
    with open(base / "meta", "wb") as fh:
        pickle.dump({b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
                     b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)]}, fh, protocol=2)
    return Path(root)


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def write_hub_parquet(path: Path, columns: dict, image_size: int = 40, n: int = 40, seed: int = 0) -> Path:
    """A parquet shard as the Hugging Face hub stores it: an ``image`` struct column plus label columns, with
    the ``datasets`` features (ClassLabel names) in the file's metadata.

    ``columns`` maps a column name to a ``datasets`` feature (e.g. ``ClassLabel(names=[...])`` or
    ``Value("bool")``); labels are drawn at random.
    """
    import datasets

    rng = np.random.default_rng(seed)
    data: dict = {"image": [{"bytes": _png(a), "path": None} for a in _images(n, image_size, seed)]}
    features = {"image": datasets.Image()}
    for col, feat in columns.items():
        features[col] = feat
        if isinstance(feat, datasets.ClassLabel):
            data[col] = [int(v) for v in rng.integers(0, feat.num_classes, size=n)]
        else:
            data[col] = [bool(v) for v in rng.integers(0, 2, size=n)]
    ds = datasets.Dataset.from_dict(data, features=datasets.Features(features))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(path))
    return path


FAIRFACE_RACES = ["East Asian", "Indian", "Black", "White", "Middle Eastern", "Latino_Hispanic", "Southeast Asian"]


def write_fairface(root: Path, n: int = 60, seed: int = 0) -> Path:
    """HuggingFaceM4/FairFace's layout: ``0.25/train-*.parquet`` and ``0.25/validation-*.parquet``."""
    import datasets

    cols = {
        "age": datasets.ClassLabel(names=["0-2", "3-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69",
                                          "more than 70"]),
        "gender": datasets.ClassLabel(names=["Male", "Female"]),
        "race": datasets.ClassLabel(names=FAIRFACE_RACES),
        "service_test": datasets.Value("bool"),
    }
    write_hub_parquet(Path(root) / "0.25" / "train-00000-of-00001.parquet", cols, n=n, seed=seed)
    write_hub_parquet(Path(root) / "0.25" / "validation-00000-of-00001.parquet", cols, n=n // 3, seed=seed + 1)
    return Path(root)
