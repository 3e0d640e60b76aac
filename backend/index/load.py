"""Loading ``vectors.hnsw`` safely: validate it against the sidecar, then let hnswlib read it."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import hnswlib

from ..errors import IndexCorruptError
from . import files
from .files import HNSW, REGIONS_HNSW, repair_hint

log = logging.getLogger(__name__)

OPEN_ATTEMPTS = 5  # tries to open while another process checkpoints


#: A loaded vector file: the index, the (sha256, bytes) loaded, whether it was the sidecar's previous file.
Loaded = tuple[hnswlib.Index, tuple[str, int], bool]


def load_hnsw(path: Path) -> tuple[dict[str, Any], hnswlib.Index, tuple[str, int], bool, Loaded | None]:
    """Read the sidecar, validate ``vectors.hnsw`` (and ``regions.hnsw``) against it, and load them.

    The vector files are opened *before* the sidecar is read: a checkpoint replaces
    the sidecar (naming the new files and the current ones) before renaming the new
    files in, so the sidecar read just after opening vouches for the opened files,
    unless two checkpoints passed in between; then all are read again.

    Returns the sidecar, the tile index, the (sha256, bytes) of the file loaded, whether
    that was the sidecar's ``hnsw_previous`` (an interrupted checkpoint), and the region
    file loaded the same way (None when the index has no regions).
    """
    hnsw_path, regions_path = path / HNSW, path / REGIONS_HNSW
    for attempt in range(OPEN_ATTEMPTS):
        try:
            fd = os.open(hnsw_path, os.O_RDONLY)
        except OSError as e:
            files.read_sidecar(path)  # a bad sidecar is the clearer error
            if isinstance(e, FileNotFoundError) and attempt + 1 < OPEN_ATTEMPTS:
                time.sleep(0.05)  # a new index's first checkpoint renames its vector file in just after the sidecar
                continue
            from .locking import WriterLock

            holder = WriterLock.holder(path) if isinstance(e, FileNotFoundError) else None
            if holder is not None and holder != str(os.getpid()):  # our own writer: the file is just gone
                from ..errors import BusyError

                raise BusyError(f"index {path} is being built (by pid {holder}) and cannot be opened yet",
                                "retry in a moment: it opens once its first checkpoint is written") from e
            raise IndexCorruptError(f"vector file {hnsw_path} cannot be opened: {e.strerror}",
                                    repair_hint(path)) from e
        try:
            rfd = os.open(regions_path, os.O_RDONLY)
        except OSError:
            rfd = None
        try:
            meta = files.read_sidecar(path)
            try:
                tiles = _load_validated(fd, meta, hnsw_path)
                regions = None
                if meta.get("regions"):
                    if rfd is None:
                        raise IndexCorruptError(f"index {path} has regions but lacks {REGIONS_HNSW}",
                                                repair_hint(path))
                    regions = _load_validated(rfd, {**meta, **meta["regions"]}, regions_path)
                return (meta, *tiles, regions)
            except IndexCorruptError:
                moved = _moved(fd, hnsw_path, meta) or _region_moved(rfd, regions_path)
                if attempt + 1 < OPEN_ATTEMPTS and moved:
                    log.debug("%s changed while opening (a writer checkpointed): retrying", path)
                    continue
                raise
        finally:
            os.close(fd)
            if rfd is not None:
                os.close(rfd)
    raise AssertionError("unreachable")


def _region_moved(rfd: int | None, regions_path: Path) -> bool:
    """Whether the region file appeared or was replaced since ``rfd`` was opened."""
    try:
        if rfd is None:
            return regions_path.exists()
        return os.stat(regions_path).st_ino != os.fstat(rfd).st_ino
    except OSError:
        return False


def _moved(fd: int, hnsw_path: Path, meta: dict[str, Any]) -> bool:
    """Whether a checkpoint replaced the vector file or the sidecar since ``fd``/``meta`` were read."""
    try:
        if os.stat(hnsw_path).st_ino != os.fstat(fd).st_ino:
            return True
        return files.read_sidecar(hnsw_path.parent) != meta
    except (OSError, IndexCorruptError):
        return False


def _load_validated(fd: int, meta: dict[str, Any], hnsw_path: Path) -> tuple[hnswlib.Index, tuple[str, int], bool]:
    """Check the open vector file's size, SHA-256, header and graph, then let hnswlib load it."""
    hint = repair_hint(hnsw_path.parent)
    size = os.fstat(fd).st_size
    known = [(meta["hnsw_sha256"], meta["hnsw_bytes"])]
    prev = meta.get("hnsw_previous")
    if prev:
        known.append((prev["sha256"], prev["bytes"]))
    if size not in {b for _, b in known}:
        raise IndexCorruptError(f"vector file {hnsw_path} is {size} bytes, the sidecar records "
                                f"{meta['hnsw_bytes']} (truncated or replaced)", hint)
    sha = files.sha256_fd(fd)
    if (sha, size) not in known:
        raise IndexCorruptError(f"vector file {hnsw_path} fails its SHA-256 check (has {sha[:12]}..., "
                                f"the sidecar records {meta['hnsw_sha256'][:12]}...)", hint)
    header = files.check_hnsw_file(fd, size, dim=meta["dim"], M=meta["M"], where=hnsw_path)
    index = hnswlib.Index(space="cosine", dim=meta["dim"])
    # max_elements >= the file's count makes hnswlib size its buffers from it, never from the file.
    fd_path = f"/proc/self/fd/{fd}"  # the very file just checked, even if renamed over since
    src = fd_path if os.path.exists(fd_path) else str(hnsw_path)
    try:
        index.load_index(src, max_elements=max(header.count, 16))
    except (RuntimeError, MemoryError, ValueError) as e:
        raise IndexCorruptError(f"vector file {hnsw_path} cannot be loaded: {e}", hint) from e
    return index, (sha, size), (sha, size) != known[0]


def grown_capacity(capacity: int, need: int) -> int:
    """``capacity`` doubled until it holds ``need`` elements (geometric growth, never per add)."""
    capacity = max(capacity, 1)
    while capacity < need:
        capacity *= 2
    return capacity
