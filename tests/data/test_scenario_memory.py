"""The decoded-image store: images decoded in place into one uint8 array that doubles as a memory-mapped cache.

Checks that the store holds exactly what decoding each image and stacking the results gives, that a second
load reads the cache file instead of decoding, that a damaged cache is rebuilt (and said so) rather than used,
and that bad input is reported as one line naming the file.
"""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F

import benchmark.data.scenarios.store as store
from benchmark.core.errors import SplitbenchError
from benchmark.core.fields import build_config
from benchmark.core.registry import SCENARIOS
from benchmark.data.types import DataOptions, resize_uint8
from tests.support import fixtures


def load_arrays(name, root, **cfg):
    cls = SCENARIOS.get(name)
    return cls(build_config(cls.Config, cfg)).load_arrays(DataOptions(root))


def stacked_reference(values, size):
    """What the loaders returned before the store: each image decoded with PIL (RGB, bilinear resize to
    ``size``), the list stacked, then channels moved first."""
    from PIL import Image

    arrays = []
    for v in values:
        img = Image.open(io.BytesIO(v["bytes"]) if isinstance(v, dict) else v).convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        arrays.append(np.asarray(img, dtype=np.uint8))
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def cache_files(data_dir: Path) -> list[Path]:
    return sorted((data_dir / "_decoded").glob("*.npy"))


def file_backed_by(t: torch.Tensor, path: Path) -> bool:
    """Whether the tensor's memory is a mapping of ``path`` (read from the process's memory map)."""
    address = t.data_ptr()
    for line in Path("/proc/self/maps").read_text().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(v, 16) for v in fields[0].split("-"))
        if start <= address < end:
            return len(fields) == 6 and fields[5] == str(path.resolve())
    return False


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    d = tmp_path / "splitbench-data"
    monkeypatch.setenv("SPLITBENCH_DATA", str(d))
    return d


@pytest.fixture
def faces(tmp_path):
    import datasets

    return fixtures.write_hub_parquet(tmp_path / "faces" / "faces.parquet",
                                      {"smile": datasets.Value("bool"),
                                       "group": datasets.ClassLabel(names=["a", "b", "c"])}, image_size=40, n=24)


def no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("an image was decoded although the cache should have been read")

    monkeypatch.setattr(store, "decode_image", refuse)


def test_parquet_store_equals_stacking_and_second_load_maps_the_cache(faces, data_dir, monkeypatch):
    x, y, s, _ = load_arrays("custom", faces, image_size=16, task="smile", sensitive="group")
    table = pq.read_table(faces)
    assert torch.equal(x, stacked_reference(table.column("image").to_pylist(), 16))
    assert y.tolist() == [int(v) for v in table.column("smile").to_pylist()]
    assert s.tolist() == table.column("group").to_pylist()  # ids 0..2 seen in order a, b, c
    [cache] = cache_files(data_dir)
    header = np.lib.format.open_memmap(cache, mode="r")
    assert header.shape == (24, 3, 16, 16) and cache.stat().st_size == header.offset + 24 * 3 * 16 * 16
    del header
    stamp = cache.stat().st_mtime_ns

    no_decoding(monkeypatch)
    x2, y2, s2, _ = load_arrays("custom", faces, image_size=16, task="smile", sensitive="group")
    assert torch.equal(x2, x) and torch.equal(y2, y) and torch.equal(s2, s)
    assert cache_files(data_dir) == [cache] and cache.stat().st_mtime_ns == stamp
    if Path("/proc/self/maps").is_file():
        assert file_backed_by(x2, cache)
    x2[0] = 0  # the mapping is copy-on-write: writing into the images never reaches the cache file
    assert torch.equal(torch.from_numpy(np.load(cache, allow_pickle=False)), x)


def test_hub_loader_store_is_the_cache(tmp_path, data_dir, monkeypatch):
    fixtures.write_fairface(tmp_path / "ff", n=30)
    x = load_arrays("fairface", tmp_path / "ff", image_size=24)[0]
    files = sorted((tmp_path / "ff" / "0.25").glob("*.parquet"))  # the rows: train, then validation
    values = [v for f in files for v in pq.read_table(f).column("image").to_pylist()]
    assert torch.equal(x, stacked_reference(values, 24))
    [cache] = cache_files(data_dir)
    no_decoding(monkeypatch)
    again = load_arrays("fairface", tmp_path / "ff", image_size=24)[0]
    assert torch.equal(again, x)
    other_size_needs_decoding = pytest.raises(AssertionError, match="an image was decoded")
    with other_size_needs_decoding:
        load_arrays("fairface", tmp_path / "ff", image_size=20)


def test_a_changed_source_file_is_decoded_again(faces, data_dir):
    import datasets

    first = load_arrays("custom", faces, image_size=16, task="smile")[0]
    fixtures.write_hub_parquet(faces, {"smile": datasets.Value("bool")}, image_size=40, n=24, seed=7)
    second = load_arrays("custom", faces, image_size=16, task="smile")[0]
    assert not torch.equal(first, second)
    assert torch.equal(second, stacked_reference(pq.read_table(faces).column("image").to_pylist(), 16))
    assert len(cache_files(data_dir)) == 2


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


def _pad(path):
    path.write_bytes(path.read_bytes() + b"\0" * 10)


def _garbage(path):
    path.write_bytes(b"definitely not a numpy file")


def _wrong_shape(path):
    np.save(path, np.zeros((24, 3, 8, 8), dtype=np.uint8))


def _wrong_dtype(path):
    np.save(path, np.zeros((24, 3, 16, 16), dtype=np.int16))


def _pickled_objects(path):
    np.save(path, np.array([_Evil()] * 4, dtype=object), allow_pickle=True)


@pytest.mark.parametrize("damage, problem", [
    (_truncate, "not a readable decode cache"),
    (_pad, "decode cache is .* bytes, expected"),
    (_garbage, "not a readable decode cache"),
    (_wrong_shape, r"decode cache holds uint8 \[24, 3, 8, 8\]"),
    (_wrong_dtype, r"decode cache holds int16"),
    (_pickled_objects, "not a readable decode cache"),
])
def test_a_damaged_cache_is_reported_and_rebuilt(faces, data_dir, caplog, capsys, damage, problem):
    # a copy: the loaded tensor maps the very file that is damaged in place below
    x = load_arrays("custom", faces, image_size=16, task="smile")[0].clone()
    [cache] = cache_files(data_dir)
    damage(cache)
    with caplog.at_level(logging.WARNING, logger="splitbench"):
        again = load_arrays("custom", faces, image_size=16, task="smile")[0]
    assert torch.equal(again, x)
    [record] = [r for r in caplog.records if r.name == "splitbench" and r.levelno == logging.WARNING]
    message = record.getMessage()
    assert "\n" not in message and message.startswith(f"{cache}: ")
    assert "expected" in message and "decoding the images again" in message
    assert re.search(problem, message), message
    assert "code ran" not in capsys.readouterr().out
    assert store.open_store(cache, (24, 3, 16, 16)).shape == (24, 3, 16, 16)  # the rebuilt file is sound


def test_open_store_rejects_a_damaged_file_with_one_line(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((2, 3, 4, 4), dtype=np.uint8))
    assert store.open_store(path, (2, 3, 4, 4)).sum() == 0
    _truncate(path)
    with pytest.raises(SplitbenchError, match=rf"^{path}: .*expected a uint8 \.npy of shape \[2, 3, 4, 4\]$"):
        store.open_store(path, (2, 3, 4, 4))


def _with_bad_image(path: Path, row: int) -> Path:
    table = pq.read_table(path)
    images = table.column("image").to_pylist()
    images[row] = {"bytes": b"this is not an image", "path": None}
    field = table.schema.field("image")
    table = table.set_column(table.schema.get_field_index("image"), field, pa.array(images, type=field.type))
    pq.write_table(table, path)
    return path


def test_an_undecodable_parquet_image_names_the_file_and_row(faces, data_dir):
    _with_bad_image(faces, 5)
    with pytest.raises(SplitbenchError) as err:
        load_arrays("custom", faces, image_size=16, task="smile")
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{faces} row 5: unreadable image")
    assert "expected an image file PIL can decode" in message
    assert not list((data_dir / "_decoded").iterdir())  # neither a cache nor a half-written temporary file


def test_an_undecodable_hub_image_names_the_parquet_file_and_row(tmp_path, data_dir):
    fixtures.write_fairface(tmp_path / "ff", n=30)
    bad = _with_bad_image(tmp_path / "ff" / "0.25" / "validation-00000-of-00001.parquet", 2)
    with pytest.raises(SplitbenchError, match=rf"^{bad} row 2: unreadable image .*expected an image file"):
        load_arrays("fairface", tmp_path / "ff", image_size=24)
    assert not list((data_dir / "_decoded").iterdir())


def test_an_undecodable_folder_image_names_the_image(tmp_path, data_dir):
    from PIL import Image

    for i in range(3):
        (tmp_path / "imgs" / "cat").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((8, 8, 3), i, dtype=np.uint8)).save(tmp_path / "imgs" / "cat" / f"{i}.png")
    (tmp_path / "imgs" / "cat" / "1.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(SplitbenchError, match=rf"^{tmp_path / 'imgs' / 'cat' / '1.png'}: unreadable image"):
        load_arrays("custom", tmp_path / "imgs", image_size=8)


def test_an_unwritable_cache_folder_decodes_into_memory(faces, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the data directory should be")
    monkeypatch.setenv("SPLITBENCH_DATA", str(blocker))
    x = load_arrays("custom", faces, image_size=16, task="smile")[0]
    assert torch.equal(x, stacked_reference(pq.read_table(faces).column("image").to_pylist(), 16))


def test_a_killed_decode_leaves_nothing_that_outlives_the_next_one(data_dir):
    exited = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                            text=True, check=True)
    dead_pid = int(exited.stdout)
    final = store.store_path("key")
    final.parent.mkdir(parents=True)
    host = store.socket.gethostname().replace(".", "-")
    abandoned = final.with_name(f".{final.stem}.{host}.{dead_pid}.0000.tmp.npy")
    running = final.with_name(f".{final.stem}.{host}.1.0000.tmp.npy")  # pid 1 is alive
    for p in (abandoned, running):
        p.write_bytes(b"partial")
    images = [np.full((6, 6, 3), i, dtype=np.uint8) for i in range(3)]
    from PIL import Image

    out = store.decode_to_store([Image.fromarray(a) for a in images], 3, 6, str, cache_key="key")
    assert torch.equal(out, torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2))
    assert not abandoned.exists() and running.exists() and final.is_file()


def test_a_count_mismatch_is_an_error(data_dir):
    from PIL import Image

    img = Image.new("RGB", (4, 4))
    with pytest.raises(SplitbenchError, match="2 images read, expected 3"):
        store.decode_to_store([img, img], 3, 4, str, cache_key="short")
    with pytest.raises(SplitbenchError, match="more than the 1 images"):
        store.decode_to_store([img, img], 1, 4, str, cache_key="long")
    assert not list((data_dir / "_decoded").iterdir())


def test_resize_uint8_fills_a_preallocated_output_exactly_like_resizing_each_image():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=g)
    want = torch.stack([F.interpolate(im[None].float(), size=(20, 20), mode="bilinear", antialias=True,
                                      align_corners=False)[0].round().clamp(0, 255).to(torch.uint8) for im in x])
    assert torch.equal(resize_uint8(x, 20), want)
    store_ = torch.full((7, 3, 20, 20), 9, dtype=torch.uint8)
    got = resize_uint8(x, 20, out=store_[1:6])
    assert got.data_ptr() == store_[1:6].data_ptr() and torch.equal(store_[1:6], want)
    assert (store_[0] == 9).all() and (store_[6] == 9).all()
    assert resize_uint8(x, 32) is x
    same = torch.zeros_like(x)
    assert torch.equal(resize_uint8(x, 32, out=same), x) and torch.equal(same, x)
    with pytest.raises(ValueError, match=r"out must be uint8 \[5, 3, 20, 20\]"):
        resize_uint8(x, 20, out=torch.empty((5, 3, 21, 20), dtype=torch.uint8))
