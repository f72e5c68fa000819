"""One preallocated uint8 store per decoded dataset, kept on disk as a memory-mapped ``.npy`` decode cache.

Decoding an image dataset by collecting one array per image and stacking them holds the images twice (three
times with the channel transpose); at FairFace's size and 128 px that is about 10 GB. Here the images are
decoded and resized one at a time straight into their row of a single ``uint8 [N, 3, S, S]`` array.

When the loader gives a cache key, that array *is* the decode cache: a ``.npy`` file under
``<data dir>/_decoded/``, created at its full size before decoding starts, filled through a shared memory
mapping, and renamed into place only once complete, so a killed run never leaves a partial cache behind (and
a rebuilt cache is a new file: processes that still map the old one keep reading it unchanged).
Pages already written are handed back to the page cache as decoding goes on, so the process does not keep the
whole store resident. Later loads open the file memory-mapped (read-only on disk, copy-on-write in memory, so
a caller that writes into the images can never alter the cache) and cost almost no RAM until images are read.
The file is read with ``allow_pickle=False`` and its header, shape and length are checked before use; a cache
that fails the checks is reported in the log and decoded again, never used.

Without a cache key, or when the cache folder cannot be written, the store is an ordinary array in RAM (still
filled in place, so the peak is one copy of the images).
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from benchmark.core.errors import SplitbenchError
from benchmark.core.progress import default_progress
from benchmark.data.scenarios.common import decode_image, default_data_root

log = logging.getLogger("splitbench")

STORE_FORMAT = "npy-uint8-nchw-1"  # part of every cache key: a change of layout never reuses an old file
RELEASE_BYTES = 64 << 20  # written pages are returned to the page cache every this many bytes


def store_path(cache_key: str) -> Path:
    """Where the decode cache for ``cache_key`` (a description of the source and the decoding) lives."""
    digest = hashlib.sha256(f"{STORE_FORMAT}|{cache_key}".encode()).hexdigest()[:20]
    return default_data_root() / "_decoded" / f"{digest}.npy"


def open_store(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """Open a finished store memory-mapped, checking that it is a plain uint8 ``.npy`` of ``shape``.

    Raises:
        SplitbenchError: the file is not a readable ``.npy``, holds another dtype or shape, or is truncated
            or padded (its length differs from header plus data).
    """
    expected = f"expected a uint8 .npy of shape {list(shape)}"
    try:
        arr = np.load(path, mmap_mode="c", allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise SplitbenchError(f"{path}: not a readable decode cache ({exc}); {expected}") from exc
    if not isinstance(arr, np.memmap):
        if hasattr(arr, "close"):
            arr.close()
        raise SplitbenchError(f"{path}: not a single-array .npy file; {expected}")
    if arr.dtype != np.uint8 or arr.shape != tuple(shape) or not arr.flags.c_contiguous:
        raise SplitbenchError(f"{path}: decode cache holds {arr.dtype} {list(arr.shape)}"
                              f"{'' if arr.flags.c_contiguous else ' (Fortran order)'}; {expected}")
    size = path.stat().st_size
    if size != arr.offset + arr.nbytes:
        raise SplitbenchError(f"{path}: decode cache is {size} bytes, expected {arr.offset + arr.nbytes} "
                              f"(header and uint8 {list(shape)})")
    return arr


def decode_to_store(values: Iterable[Any], n: int, size: int, where: Callable[[int], str],
                    cache_key: str | None = None, desc: str = "decode") -> Tensor:
    """Decode ``n`` images into one uint8 ``[n, 3, size, size]`` tensor, each resized as it is decoded.

    Args:
        values: the images, in order, as anything :func:`~benchmark.data.scenarios.common.decode_image` reads. It is
            only iterated when the images are actually decoded, so a lazy iterable costs nothing on a cache hit.
        n: how many images ``values`` yields.
        size: the side the images are resized to.
        where: names image ``i`` (its file, or its file and row) for error messages.
        cache_key: identifies the source data and how it is decoded; with it the store is the memory-mapped
            decode cache described in the module docstring. None decodes into RAM.
        desc: the progress bar's label.

    Returns:
        The images; memory-mapped from the decode cache when one is used.

    Raises:
        SplitbenchError: an image cannot be decoded, or ``values`` yields other than ``n`` images.
    """
    shape = (n, 3, size, size)
    path = store_path(cache_key) if cache_key is not None else None
    if n == 0:
        path = None  # nothing to cache (and numpy cannot map an empty file); the caller reports the empty data
    if path is not None and path.is_file():
        try:
            return torch.from_numpy(open_store(path, shape))
        except SplitbenchError as exc:
            log.warning("%s; decoding the images again", exc)
    if path is not None:
        try:
            return _decode_to_file(values, shape, where, path, desc)
        except _NoCacheFile as exc:
            log.info("decode cache %s not written (%s); decoding into memory", path, exc)
    store = np.empty(shape, dtype=np.uint8)
    _fill(store, values, where, desc, release=None)
    return torch.from_numpy(store)


class _NoCacheFile(Exception):
    """The cache file could not be created or reserved; decoding goes to RAM instead."""


def _decode_to_file(values: Iterable[Any], shape: tuple[int, ...], where: Callable[[int], str], path: Path,
                    desc: str) -> Tensor:
    host = socket.gethostname().replace(".", "-") or "host"
    tmp = path.with_name(f".{path.stem}.{host}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp.npy")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(path, host)
        header = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
        offset, nbytes = header.offset, header.nbytes
        del header  # open_memmap wrote the .npy header and sized the file; the filling uses its own mapping
        fh = open(tmp, "r+b")
    except (OSError, ValueError) as exc:
        _discard(tmp)
        raise _NoCacheFile(exc) from exc
    try:
        with fh:
            try:
                _reserve(fh, offset, nbytes)
            except OSError as exc:
                raise _NoCacheFile(exc) from exc
            mm = mmap.mmap(fh.fileno(), offset + nbytes)
            store = np.frombuffer(mm, dtype=np.uint8, count=nbytes, offset=offset).reshape(shape)
            try:
                _fill(store, values, where, desc, release=lambda stop: _release(mm, offset + stop))
                mm.flush()
            finally:
                del store
                try:
                    mm.close()
                except BufferError:  # a traceback still holds a view of it; the mapping goes with the traceback
                    pass
        os.replace(tmp, path)
    except BaseException:
        _discard(tmp)
        raise
    try:
        return torch.from_numpy(open_store(path, shape))
    except SplitbenchError as exc:  # pragma: no cover - a file we just wrote and checked the size of
        raise SplitbenchError(f"{exc} (just written)") from exc


def _discard(path: Path) -> None:
    """Remove a temporary file if it is there; a folder that cannot even be listed is not an error here."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _remove_abandoned(path: Path, host: str) -> None:
    """Delete unfinished copies of this store left by processes of this host that no longer run (a killed
    decode leaves its temporary file behind, as large as the whole store)."""
    for old in path.parent.glob(f".{path.stem}.{host}.*.tmp.npy"):
        try:
            pid = int(old.name.split(".")[3])
            os.kill(pid, 0)
        except ProcessLookupError:
            _discard(old)
        except (ValueError, IndexError, OSError):
            continue  # not ours to judge: a malformed name, or a live process we may not signal


def _reserve(fh: Any, offset: int, nbytes: int) -> None:
    """Give the file real disk blocks before it is mapped: a full disk then fails here with ENOSPC instead of
    killing the process with SIGBUS when a page of the mapping is first written."""
    if hasattr(os, "posix_fallocate"):
        os.posix_fallocate(fh.fileno(), offset, nbytes)
        return
    zeros = memoryview(bytes(min(nbytes, 8 << 20)))
    fh.seek(offset)
    left = nbytes
    while left:
        left -= fh.write(zeros[:left])
    fh.flush()


def _release(mm: mmap.mmap, stop: int) -> None:
    """Drop the mapping's resident pages below byte ``stop``. On a shared file mapping this loses nothing (the
    data stays in the page cache and is written back as usual); it only stops them counting as this
    process's resident memory."""
    advice = getattr(mmap, "MADV_DONTNEED", None)
    length = stop - stop % mmap.PAGESIZE
    if advice is not None and length > 0:
        mm.madvise(advice, 0, length)


def _fill(store: np.ndarray, values: Iterable[Any], where: Callable[[int], str], desc: str,
          release: Callable[[int], None] | None) -> None:
    """Decode ``values`` into the rows of ``store`` in order, calling ``release(bytes_done)`` now and then."""
    n, _, size, _ = store.shape
    row_bytes = store[0].nbytes if n else 0
    every = max(1, RELEASE_BYTES // row_bytes) if row_bytes else 1
    disable = not default_progress()
    i = 0
    for value in tqdm(values, total=n, desc=desc, disable=disable, leave=False):
        if i == n:
            raise SplitbenchError(f"{desc}: more than the {n} images the data declares")
        store[i] = decode_image(value, size, where(i)).transpose(2, 0, 1)
        i += 1
        if release is not None and i % every == 0:
            release(i * row_bytes)
    if i != n:
        raise SplitbenchError(f"{desc}: {i} images read, expected {n}")
