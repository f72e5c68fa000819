"""The ``fashion_mnist`` scenario on small fixture copies written in the exact IDX on-disk format: where the files
are found, how the splits are drawn from the two halves, the labels, one-line errors for every malformed input,
one run through the command line, and (where Debian's ``dataset-fashion-mnist`` is installed) the real files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.core.errors import SplitbenchError
from benchmark.data.scenarios import fashion_mnist as fm
from benchmark.data.scenarios.fashion_mnist import GROUP_OF, FashionMNIST, FashionMNISTConfig
from benchmark.data.types import DataOptions
from benchmark.store.records import iter_records

TRAIN, TEST = 1, 2  # planted in pixel (0, 0) of every fixture image: the half it comes from
N_TRAIN, N_TEST = 300, 100
REAL_DEBIAN_DIR = fm.DEBIAN_DIR


def class_of(half: int, index: np.ndarray | torch.Tensor):
    """The class label the fixture gives image ``index`` of a half (balanced, and not the index's order)."""
    return (index * 3 + half) % 10


def idx_bytes(magic: int, array: np.ndarray, dims: tuple[int, ...] | None = None) -> bytes:
    """An IDX file: the magic number, the big-endian dimensions (``dims`` when given, else the array's), the bytes."""
    dims = array.shape if dims is None else dims
    return struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + array.astype(np.uint8).tobytes()


def planted(n: int, half: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` 28x28 images whose first row holds (half, index // 256, index % 256), and their class labels."""
    index = np.arange(n)
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, 0, 0] = half
    images[:, 0, 1] = index // 256
    images[:, 0, 2] = index % 256
    images[:, 8:20, 8:20] = (50 + index % 200)[:, None, None]
    return images, class_of(half, index).astype(np.uint8)


def write_fashion_mnist(folder: Path, n_train: int = N_TRAIN, n_test: int = N_TEST, gz: bool = False,
                        halves: tuple[str, ...] = ("train", "t10k")) -> Path:
    """The four files of Fashion-MNIST (or those of ``halves``), named as the originals, gzipped or not."""
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, half in (("train", n_train, TRAIN), ("t10k", n_test, TEST)):
        if prefix not in halves:
            continue
        images, labels = planted(n, half)
        write(folder / f"{prefix}-images-idx3-ubyte", idx_bytes(fm.IMAGE_MAGIC, images), gz)
        write(folder / f"{prefix}-labels-idx1-ubyte", idx_bytes(fm.LABEL_MAGIC, labels), gz)
    return folder


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def decode(split) -> tuple[torch.Tensor, torch.Tensor]:
    """The planted (half, index) of every image of a split (read from its first channel)."""
    px = split.images[:, 0, 0, :3].long()
    return px[:, 0], px[:, 1] * 256 + px[:, 2]


SMALL = {"train_samples": 100, "val_samples": 50, "aux_samples": 60, "eval_samples": 40}


def load(root: Path | None = None, **config):
    return FashionMNIST(FashionMNISTConfig(**{**SMALL, **config})).load(DataOptions(root))


@pytest.fixture(autouse=True)
def default_data_folder(tmp_path, monkeypatch):
    """A fresh, empty default data folder for every test: the user's is never read."""
    folder = tmp_path / "default-data"
    monkeypatch.setenv("SPLITBENCH_DATA", str(folder))
    return folder


@pytest.fixture
def no_debian(tmp_path, monkeypatch):
    """No Debian copy, whether the package is installed on this machine or not."""
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")


@pytest.fixture
def data_root(tmp_path):
    return write_fashion_mnist(tmp_path / "data")


# -- where the files are found -------------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("layout", [".", "FashionMNIST/raw", "fashion-mnist"])
def test_loads_from_each_layout(layout, gz, tmp_path, no_debian):
    root = tmp_path / "data"
    folder = write_fashion_mnist(root / layout, gz=gz)
    assert len(list(folder.glob("*.gz"))) == (4 if gz else 0)
    files = fm.locate(DataOptions(root))
    assert {p.parent for p in files.values()} == {folder}
    data = load(root)
    assert [len(s) for s in (data.train, data.val, data.aux, data.eval)] == [100, 50, 60, 40]
    assert set(decode(data.train)[0].tolist()) == {TRAIN} and set(decode(data.eval)[0].tolist()) == {TEST}


def test_loads_from_the_default_data_folder(default_data_folder, no_debian):
    write_fashion_mnist(default_data_folder / "FashionMNIST" / "raw", gz=True)
    data = load()
    assert len(data.train) == 100 and set(decode(data.eval)[0].tolist()) == {TEST}


def test_a_data_root_comes_before_the_default_data_folder(default_data_folder, tmp_path, no_debian):
    write_fashion_mnist(default_data_folder, n_train=280)
    root = write_fashion_mnist(tmp_path / "data", n_train=N_TRAIN)
    assert fm.locate(DataOptions(root))["train_images"].parent == root
    data = load(root, train_samples=None, val_samples=10, aux_samples=10)
    assert len(data.train) == N_TRAIN - 20  # every training image of the data root's copy, not the default's


def test_download_goes_through_torchvision_into_the_data_folder(default_data_folder, monkeypatch, no_debian):
    import torchvision

    calls = []

    class FakeFashionMNIST:  # torchvision's downloader, writing what it would: the gzipped files in FashionMNIST/raw
        def __init__(self, root, train, download):
            calls.append((root, train, download))
            write_fashion_mnist(Path(root) / "FashionMNIST" / "raw", gz=True)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", FakeFashionMNIST)
    with pytest.raises(SplitbenchError, match="fashion_mnist data not found"):
        load()  # without --download nothing is fetched
    assert calls == []
    data = FashionMNIST(FashionMNISTConfig(**SMALL)).load(DataOptions(None, download=True))
    assert calls == [(str(default_data_folder), True, True)] and len(data.eval) == 40

    def offline(root, train, download):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", offline)
    monkeypatch.setenv("SPLITBENCH_DATA", str(default_data_folder.parent / "another"))  # not downloaded yet
    with pytest.raises(SplitbenchError) as exc:
        FashionMNIST(FashionMNISTConfig(**SMALL)).load(DataOptions(default_data_folder / "elsewhere", True))
    assert str(exc.value).startswith("could not download fashion_mnist into ") and "\n" not in str(exc.value)
    assert "RuntimeError: Error downloading train-images-idx3-ubyte.gz" in str(exc.value)


# -- splits and labels ---------------------------------------------------------------------------------------------
def test_train_val_aux_are_disjoint_parts_of_the_training_half_and_eval_comes_from_the_test_half(data_root):
    data = load(data_root)
    seen = []
    for split in (data.train, data.val, data.aux):
        half, index = decode(split)
        assert set(half.tolist()) == {TRAIN}
        seen += index.tolist()
    assert len(seen) == len(set(seen)) == 210 and max(seen) < N_TRAIN
    half, index = decode(data.eval)
    assert set(half.tolist()) == {TEST} and len(set(index.tolist())) == 40 and int(index.max()) < N_TEST


def test_null_sizes_take_every_image_left(data_root):
    data = load(data_root, train_samples=None, eval_samples=None, start=20)
    assert [len(s) for s in (data.train, data.val, data.aux, data.eval)] == [N_TRAIN - 20 - 50 - 60, 50, 60, N_TEST]
    assert sorted(decode(data.eval)[1].tolist()) == list(range(N_TEST))


def test_start_skips_a_prefix_of_the_permutation(data_root):
    def order(data):
        return torch.cat([decode(s)[1] for s in (data.train, data.val, data.aux)]).tolist()

    whole = order(load(data_root, train_samples=N_TRAIN - 110))  # the full permutation of the training half
    assert sorted(whole) == list(range(N_TRAIN))
    later = order(load(data_root, train_samples=N_TRAIN - 110 - 30, start=30))
    assert later == whole[30:]
    assert not set(whole[:30]) & set(later)  # a pre-study on the first 30 never touches a track's splits


def test_task_is_the_group_and_the_sensitive_attribute_is_the_class(data_root):
    data = load(data_root)
    assert data.info.task_classes == fm.GROUPS and data.info.sensitive_classes == fm.CLASSES
    for split, half in ((data.train, TRAIN), (data.val, TRAIN), (data.aux, TRAIN), (data.eval, TEST)):
        classes = class_of(half, decode(split)[1])
        assert torch.equal(split.sensitive, classes)
        assert torch.equal(split.task, torch.as_tensor(GROUP_OF)[classes])
    assert set(data.train.task.tolist()) == {0, 1, 2, 3}


def test_task_class_with_sensitive_none_is_the_plain_ten_class_problem(data_root):
    data = load(data_root, task="class", sensitive="none")
    assert data.info.task_classes == fm.CLASSES and data.info.sensitive is None
    assert data.train.sensitive is None and data.eval.sensitive is None
    assert torch.equal(data.train.task, class_of(TRAIN, decode(data.train)[1]))


@pytest.mark.parametrize("size", [28, 32, 16])
def test_images_are_uint8_rgb_at_the_configured_size(data_root, size):
    data = load(data_root, image_size=size)
    assert data.info.image_size == size
    for split in (data.train, data.val, data.aux, data.eval):
        assert split.images.dtype == torch.uint8 and tuple(split.images.shape[1:]) == (3, size, size)
        assert torch.equal(split.images[:, 0], split.images[:, 1]) and torch.equal(split.images[:, 0],
                                                                                   split.images[:, 2])
    if size == 28:  # unresized: the planted pixels come through unchanged
        assert int(data.train.images[:, 0, 10, 10].min()) >= 50


def test_the_same_split_seed_gives_the_same_splits(data_root):
    a, b, c = load(data_root), load(data_root), load(data_root, split_seed=1)
    for name in ("train", "val", "aux", "eval"):
        assert torch.equal(getattr(a, name).images, getattr(b, name).images)
        assert torch.equal(getattr(a, name).task, getattr(b, name).task)
    assert not torch.equal(decode(a.train)[1], decode(c.train)[1])
    assert not torch.equal(decode(a.eval)[1], decode(c.eval)[1])


# -- bad input: one line naming the problem ------------------------------------------------------------------------
def one_line(exc_info) -> str:
    assert isinstance(exc_info.value, SplitbenchError)
    message = str(exc_info.value)
    assert message and "\n" not in message
    return message


def _images(n=N_TRAIN):
    return planted(n, TRAIN)[0]


def _labels(n=N_TRAIN):
    return planted(n, TRAIN)[1]


BAD_FILES = {
    "truncated image file": ("train-images-idx3-ubyte", lambda: idx_bytes(fm.IMAGE_MAGIC, _images())[:-1000],
                             ["train-images-idx3-ubyte", "header says 300 images", "the file holds 234200",
                              "truncated"]),
    "truncated gzip": ("train-images-idx3-ubyte.gz",
                       lambda: gzip.compress(idx_bytes(fm.IMAGE_MAGIC, _images()))[:-2000],
                       ["train-images-idx3-ubyte.gz: unreadable", "expected an IDX file of Fashion-MNIST"]),
    "corrupt gzip": ("train-images-idx3-ubyte.gz",
                     lambda: (lambda b: b[:10] + b"\xff" + b[11:])(gzip.compress(idx_bytes(fm.IMAGE_MAGIC, _images()))),
                     ["train-images-idx3-ubyte.gz: unreadable", "expected an IDX file of Fashion-MNIST"]),
    "header only": ("t10k-labels-idx1-ubyte", lambda: b"\x00\x00\x08",
                    ["t10k-labels-idx1-ubyte: 3 bytes, shorter than an IDX header (8 bytes)"]),
    "wrong magic": ("train-labels-idx1-ubyte", lambda: idx_bytes(fm.IMAGE_MAGIC, _labels()),
                    ["train-labels-idx1-ubyte: magic number 0x00000803, expected 0x00000801",
                     "label file"]),
    "images of another size": ("t10k-images-idx3-ubyte",
                               lambda: idx_bytes(fm.IMAGE_MAGIC, np.zeros((N_TEST, 32, 32), np.uint8)),
                               ["t10k-images-idx3-ubyte: images of 32x32 pixels, expected 28x28"]),
    "header count above the payload": ("train-labels-idx1-ubyte",
                                       lambda: idx_bytes(fm.LABEL_MAGIC, _labels(), dims=(310,)),
                                       ["header says 310 labels (310 bytes after it), the file holds 300"]),
    "header count below the payload": ("train-images-idx3-ubyte",
                                       lambda: idx_bytes(fm.IMAGE_MAGIC, _images(), dims=(299, 28, 28)),
                                       ["header says 299 images", "the file holds 235200"]),
    "fewer labels than images": ("train-labels-idx1-ubyte", lambda: idx_bytes(fm.LABEL_MAGIC, _labels(290)),
                                 ["train-images-idx3-ubyte: 300 images, but train-labels-idx1-ubyte has 290 labels"]),
    "label outside 0..9": ("t10k-labels-idx1-ubyte",
                           lambda: idx_bytes(fm.LABEL_MAGIC, np.r_[planted(N_TEST - 1, TEST)[1], 12]),
                           ["t10k-labels-idx1-ubyte: label 12 outside 0..9"]),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_malformed_file_is_one_line_naming_it(case, data_root):
    name, content, expected = BAD_FILES[case]
    stem = name.removesuffix(".gz")
    (data_root / stem).unlink()
    write(data_root / name, content())
    with pytest.raises(SplitbenchError) as exc:
        load(data_root)
    message = one_line(exc)
    assert str(data_root) in message
    for part in expected:
        assert part in message, (part, message)


def test_a_data_root_with_only_the_test_half_names_the_missing_train_files(tmp_path, no_debian):
    root = write_fashion_mnist(tmp_path / "data", gz=True, halves=("t10k",))
    with pytest.raises(SplitbenchError) as exc:
        load(root)
    message = one_line(exc)
    assert f"{root} holds only part of the data set" in message
    assert "missing train-images-idx3-ubyte, train-labels-idx1-ubyte" in message and "t10k" not in message


def test_no_data_anywhere_names_every_way_to_get_it(tmp_path, default_data_folder, no_debian):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SplitbenchError) as exc:
        load(tmp_path / "empty")
    message = one_line(exc)
    assert message.startswith("fashion_mnist data not found")
    for where in (tmp_path / "empty", default_data_folder / "FashionMNIST" / "raw", tmp_path / "no-debian"):
        assert str(where) in message
    for way in ("apt-get install dataset-fashion-mnist", "--data-root", "--download"):
        assert way in message


@pytest.mark.parametrize("config, expected", [
    ({"train_samples": 200, "val_samples": 50, "aux_samples": 60},
     "the splits ask for 310 training images (200 train, 50 val, 60 aux) after start 0, but"),
    ({"start": 100, "train_samples": 100}, "ask for 210 training images (100 train, 50 val, 60 aux) after start 100"),
    ({"train_samples": None, "val_samples": 200, "aux_samples": 100},
     "ask for 301 training images (at least 1 train, 200 val, 100 aux)"),
    ({"eval_samples": 101}, "eval_samples 101 exceeds the 100 test images of"),
])
def test_split_sizes_beyond_the_files_are_one_line(config, expected, data_root):
    with pytest.raises(SplitbenchError) as exc:
        load(data_root, **config)
    message = one_line(exc)
    assert expected in message and str(data_root) in message


def cli_error(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("splitbench: error: ")
    return err[0]


@pytest.mark.parametrize("args, expected", [
    (["--scenario-arg", "task=class", "--scenario-arg", "sensitive=class"],
     "task and sensitive are both the class; use sensitive: none with task: class"),
    (["--scenario-arg", "task=garment"], "task: expected one of ['group', 'class'], got 'garment'"),
    (["--scenario-arg", "image_size=4"], "image_size must be at least 8, got 4"),
    (["--scenario-arg", "val_samples=0"], "val_samples must be at least 1, got 0"),
    (["--scenario-arg", "train_samplez=10"], "did you mean 'train_samples'"),
])
def test_an_invalid_config_on_the_command_line_is_one_line(args, expected, tmp_path, capsys, data_root):
    code = main(["run", "--suite", "quick", "--scenario", "fashion_mnist", "--data-root", str(data_root),
                 "--defense", "no_pruning", "--attack", "attribute_inference", "--executor", "local", "--quiet",
                 "--out", str(tmp_path / "out"), *args])
    assert code == 2
    line = cli_error(capsys)
    assert "fashion_mnist" in line and expected in line
    assert not (tmp_path / "out" / "records").exists() or not list((tmp_path / "out" / "records").iterdir())


def test_missing_data_on_the_command_line_is_one_line(tmp_path, capsys, no_debian):
    (tmp_path / "empty").mkdir()
    code = main(["run", "--suite", "quick", "--scenario", "fashion_mnist", "--data-root", str(tmp_path / "empty"),
                 "--defense", "no_pruning", "--attack", "attribute_inference", "--executor", "local", "--quiet",
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "fashion_mnist data not found" in cli_error(capsys)


# -- end to end ----------------------------------------------------------------------------------------------------
def test_a_run_through_the_command_line_writes_records(data_root, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["train_samples=120", "val_samples=40", "aux_samples=100", "eval_samples=60", "image_size=32"]
    code = main(["run", "--suite", "quick", "--scenario", "fashion_mnist", "--data-root", str(data_root),
                 *[a for kv in args for a in ("--scenario-arg", kv)],
                 "--defense", "no_pruning", "--attack", "attribute_inference", "--set", "train.epochs=1",
                 "--set", "attack.attribute_inference.epochs=1", "--executor", "local", "--quiet", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    records = [rec for _, rec in iter_records(out)]
    assert len(records) == 1
    (rec,) = records
    assert rec["status"] == "ok" and rec["config"]["scenario"]["name"] == "fashion_mnist"
    assert rec["config"]["scenario"]["config"]["train_samples"] == 120
    assert 0.0 <= rec["metrics"]["utility"] <= 1.0 and 0.0 <= rec["metrics"]["attribute_accuracy"] <= 1.0
    assert "## fashion_mnist · test_resnet @ layer1" in capsys.readouterr().out


# -- the real files ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not REAL_DEBIAN_DIR.is_dir(),
                    reason=f"Debian's dataset-fashion-mnist is not installed ({REAL_DEBIAN_DIR} is absent; "
                           "apt-get install dataset-fashion-mnist)")
def test_the_debian_files_load():
    options = DataOptions()
    files = fm.locate(options)
    assert {p.parent for p in files.values()} == {REAL_DEBIAN_DIR}  # the default data folder here is empty
    data = FashionMNIST(FashionMNISTConfig()).load(options)
    assert len(data.train) + len(data.val) + len(data.aux) == 60000 and len(data.eval) == 10000
    assert [len(data.val), len(data.aux)] == [5000, 10000]
    assert torch.bincount(data.eval.sensitive, minlength=10).tolist() == [1000] * 10
    train_half = torch.cat([data.train.sensitive, data.val.sensitive, data.aux.sensitive])
    assert torch.bincount(train_half, minlength=10).tolist() == [6000] * 10
    assert torch.equal(data.eval.task, torch.as_tensor(GROUP_OF)[data.eval.sensitive])
    assert data.eval.images.shape == (10000, 3, 28, 28) and data.eval.images.dtype == torch.uint8
