"""Scenario loaders, each tested offline on a fixture written in the exact on-disk format."""

from __future__ import annotations

import csv
import pickle

import numpy as np
import pytest
import torch

from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import build_config
from benchmark.core.registry import SCENARIOS
from benchmark.data.types import SPLITS, DataOptions
from tests.support import fixtures


def load(name, root=None, **cfg):
    cls = SCENARIOS.get(name)
    return cls(build_config(cls.Config, cfg)).load(DataOptions(root))


def assert_disjoint_splits(data):
    keys = {}
    for s in SPLITS:
        sp = data.split(s)
        assert len(sp) > 0 and sp.images.dtype == torch.uint8 and sp.images.ndim == 4
        keys[s] = {sp.images[i].numpy().tobytes() + bytes([int(sp.task[i])]) for i in range(len(sp))}
    # fixtures use random images, so equal bytes would mean a sample sits in two splits
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1:]:
            assert not keys[a] & keys[b], f"a sample sits in both {a} and {b}"


def test_digits_is_embedded_and_labelled():
    data = load("digits")
    # 60 / 20 / 20 of 1,797, and 15% of the train part held out as the defender's validation split
    assert (len(data.train), len(data.val), len(data.aux), len(data.eval)) == (917, 161, 359, 359)
    assert data.train.images.shape[1:] == (3, 32, 32)
    assert data.info.task_classes == ("even", "odd") and data.info.num_sensitive_classes == 10
    for sp in (data.train, data.val, data.aux, data.eval):
        assert torch.equal(sp.task, sp.sensitive % 2)


def test_digits_are_read_from_the_bundled_file_as_load_digits_gives_them(monkeypatch):
    """The scenario reads scikit-learn's data file without importing scikit-learn (seconds of every run process's
    start); the arrays are load_digits' exactly, and so are they when the file is missing and load_digits itself
    is called."""
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from benchmark.data.scenarios import digits

    bunch = load_digits()
    assert digits.bundled_file() is not None
    from_file = digits.digits_arrays()
    monkeypatch.setattr(digits, "bundled_file", lambda: None)
    for pixels, labels in (from_file, digits.digits_arrays()):
        assert pixels.dtype == np.float64 and np.array_equal(pixels, bunch.images)
        assert labels.dtype == np.int64 and np.array_equal(labels, bunch.target)
    code = ("import sys; from benchmark.core.registry import SCENARIOS; from benchmark.data.types import DataOptions;"
            "import benchmark.data.scenarios; cls = SCENARIOS.get('digits');"
            "data = cls(cls.Config()).load(DataOptions(None));"
            "print(len(data.split('train')), 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert int(out[0]) > 0 and out[1] == "False"


def test_digits_splits_are_seeded_and_disjoint():
    a, b, c = load("digits"), load("digits"), load("digits", split_seed=1)
    assert torch.equal(a.eval.images, b.eval.images)
    assert not torch.equal(a.eval.images, c.eval.images)
    # digits holds duplicate images, so check disjointness by position in the original order
    from sklearn.datasets import load_digits
    n = len(load_digits().target)
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    sizes = [len(a.train), len(a.val), len(a.aux), len(a.eval)]
    parts = torch.split(order[: sum(sizes)], sizes)
    assert sum(len(set(p.tolist())) for p in parts) == len(set(order[: sum(sizes)].tolist()))


def test_normalize_roundtrip():
    data = load("digits", max_samples=20)
    x = data.info.normalize(data.train.images)
    torch.testing.assert_close(data.info.denormalize(x), data.train.images.float() / 255)


def test_cifar10_from_torchvision_layout(tmp_path):
    fixtures.write_cifar10(tmp_path)
    data = load("cifar10", tmp_path)
    assert len(data.train) + len(data.val) + len(data.aux) + len(data.eval) == 120
    assert data.info.task_classes[0] == "airplane" and data.info.sensitive_classes == ("vehicle", "animal")
    assert_disjoint_splits(data)


def test_cifar100_coarse_task_fine_sensitive(tmp_path):
    fixtures.write_cifar100(tmp_path)
    data = load("cifar100", tmp_path)
    assert data.info.num_task_classes == 20 and data.info.num_sensitive_classes == 100
    for sp in (data.train, data.aux, data.eval):
        assert torch.equal(sp.task, sp.sensitive // 5)  # the fixture's coarse = fine // 5
    assert_disjoint_splits(data)


def test_cifar_missing_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(SplitbenchError, match=r"cifar10 data not found: .*cifar-10-batches-py does not exist "
                                              r"\(pass --download"):
        load("cifar10", tmp_path)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_cifar_refuses_a_malicious_pickle(tmp_path, capsys):
    fixtures.write_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"labels": []}, fh, protocol=2)
    with pytest.raises(SplitbenchError, match=r"global (__builtin__|builtins)\.print is not allowed"):
        load("cifar10", tmp_path)
    assert "code ran" not in capsys.readouterr().out


def test_cifar_corrupt_file_names_the_file(tmp_path):
    fixtures.write_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(SplitbenchError, match="test_batch: not a valid CIFAR batch file"):
        load("cifar10", tmp_path)


def test_fairface_from_hub_parquet_layout(tmp_path):
    fixtures.write_fairface(tmp_path, n=60)
    data = load("fairface", tmp_path, image_size=32)
    assert data.info.task_classes == ("Male", "Female")
    assert data.info.sensitive_classes == tuple(fixtures.FAIRFACE_RACES)
    assert len(data.train) + len(data.val) + len(data.aux) + len(data.eval) == 80
    assert data.train.images.shape[1:] == (3, 32, 32)
    rev = load("fairface", tmp_path, image_size=32, task="race", sensitive="gender")
    assert rev.info.num_task_classes == 7 and rev.info.num_sensitive_classes == 2


def test_fairface_decode_cache_gives_identical_data(tmp_path):
    fixtures.write_fairface(tmp_path, n=30)
    a = load("fairface", tmp_path, image_size=24)
    b = load("fairface", tmp_path, image_size=24)  # second load maps the decode cache (.npy)
    assert torch.equal(a.train.images, b.train.images)


def test_celeba_attribute_columns(tmp_path):
    import datasets

    cols = {"Smiling": datasets.Value("bool"), "Male": datasets.Value("bool"),
            "celeb_id": datasets.ClassLabel(names=[str(i) for i in range(5)])}
    fixtures.write_hub_parquet(tmp_path / "img_align+identity+attr" / "train-00000-of-00001.parquet", cols, n=30)
    data = load("celeba", tmp_path, image_size=32)
    assert data.info.task == "Smiling" and data.info.task_classes == ("False", "True")
    assert data.info.sensitive == "Male"
    with pytest.raises(SplitbenchError, match="no column 'Blond_Hair'"):
        load("celeba", tmp_path, image_size=32, task="Blond_Hair")


def test_tiny_imagenet_has_no_sensitive_attribute(tmp_path):
    import datasets

    fixtures.write_hub_parquet(tmp_path / "data" / "train-00000-of-00001.parquet",
                               {"label": datasets.ClassLabel(names=[f"n{i:03d}" for i in range(200)])}, n=30)
    data = load("tiny_imagenet", tmp_path, image_size=32)
    assert data.info.num_task_classes == 200 and not data.info.has_sensitive and data.train.sensitive is None


def test_hub_scenario_offline_without_data_root_is_a_clear_error():
    with pytest.raises(SplitbenchError, match=r"fairface data not found locally .*pass --download"):
        load("fairface")


def test_save_to_disk_copy_is_read(tmp_path):
    import datasets

    fixtures.write_fairface(tmp_path / "pq", n=30)
    ds = datasets.load_dataset("parquet", data_files=str(tmp_path / "pq" / "0.25" / "*.parquet"), split="train")
    ds.save_to_disk(str(tmp_path / "saved"))
    data = load("fairface", tmp_path / "saved", image_size=32)
    assert data.info.task_classes == ("Male", "Female")


def _write_folder(root, n_per_class=8, with_meta=False):
    from PIL import Image

    rng = np.random.default_rng(0)
    rows = []
    for cls in ("cat", "dog"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):
            Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(root / cls / f"{i}.png")
            rows.append({"file_name": f"{cls}/{i}.png", "age": "young" if i % 2 else "old"})
    if with_meta:
        with open(root / "metadata.csv", "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["file_name", "age"])
            w.writeheader()
            w.writerows(rows)


def test_custom_image_folder(tmp_path):
    _write_folder(tmp_path)
    data = load("custom", tmp_path, image_size=16)
    assert data.info.task_classes == ("cat", "dog") and not data.info.has_sensitive
    assert data.train.images.shape[1:] == (3, 16, 16)


def test_custom_image_folder_with_metadata_columns(tmp_path):
    _write_folder(tmp_path, with_meta=True)
    data = load("custom", tmp_path, image_size=16, task="label", sensitive="age")
    assert data.info.sensitive_classes == ("old", "young")
    with pytest.raises(SplitbenchError, match=r"no column 'gender' \(available: age, file_name, label\)"):
        load("custom", tmp_path, image_size=16, sensitive="gender")


def test_custom_parquet(tmp_path):
    import datasets

    path = fixtures.write_hub_parquet(tmp_path / "faces.parquet", {"smile": datasets.Value("bool"),
                                                                  "group": datasets.ClassLabel(names=["a", "b", "c"])},
                                      n=24)
    data = load("custom", path, image_size=16, task="smile", sensitive="group")
    assert data.info.num_task_classes == 2 and data.info.num_sensitive_classes <= 3
    with pytest.raises(SplitbenchError, match="needs --data-root"):
        load("custom")
