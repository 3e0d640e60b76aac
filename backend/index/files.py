"""The index directory's files: names, the JSON sidecar, atomic writes and hnsw file checks.

Everything here runs **before** hnswlib ever reads ``vectors.hnsw``: a corrupt or
crafted hnswlib file can overflow the heap in ``load_index`` (nmslib/hnswlib#673:
``max_elements_ < cur_element_count``), so the file must match the SHA-256 and
byte size the sidecar records, and its header and graph must be consistent with
the sidecar's dim and M, before it is loaded.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexCorruptError

SIDECAR = "index.json"
HNSW = "vectors.hnsw"
REGIONS_HNSW = "regions.hnsw"  # region vectors (labels = SQLite regions.label), when the index has regions
DB = "meta.sqlite"
LOCK = "writer.lock"
FORMAT_VERSION = 1

#: Files an index directory consists of (SQLite's -wal/-shm appear while it is open).
INDEX_FILES = (SIDECAR, HNSW, REGIONS_HNSW, DB, DB + "-wal", DB + "-shm", LOCK)


def repair_hint(path: str | Path) -> str:
    return f"rebuild the vector file from SQLite with: geovec index FOLDER --repair --index {path}"


def rebuild_hint(path: str | Path) -> str:
    """What to do when the SQLite source of truth itself is damaged (``--repair`` rebuilds *from* it)."""
    return (f"restore {path} from a backup, or index the rasters again into a new directory "
            "(geovec index FOLDER --index NEW_DIR --model MODEL)")


def check_db_file(path: Path) -> None:
    """IndexCorruptError if ``path/meta.sqlite`` is missing or empty (0 bytes: its tiles are gone)."""
    from ..errors import IndexCorruptError

    db = path / DB
    try:
        size = db.stat().st_size
    except OSError as e:
        raise IndexCorruptError(f"index {path} lacks its metadata database {DB} ({e.strerror})",
                                rebuild_hint(path)) from e
    if size == 0:
        raise IndexCorruptError(f"{db} is empty (0 bytes): the index's tiles and scenes are lost", rebuild_hint(path))


_INT_KEYS = ("format_version", "dim", "M", "ef_construction", "ef_search", "count", "max_label", "hnsw_bytes")
_STR_KEYS = ("space", "preset", "checkpoint", "hnsw_sha256", "created", "updated")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def validate_sidecar(meta: Any, where: Path) -> dict[str, Any]:
    """Check the sidecar's keys, types and values; IndexCorruptError naming the first bad one."""
    hint = repair_hint(where.parent)
    if not isinstance(meta, dict):
        raise IndexCorruptError(f"index sidecar {where} is not a JSON object", hint)
    for key in _INT_KEYS + _STR_KEYS + ("tiling",):
        if key not in meta:
            raise IndexCorruptError(f"index sidecar {where} lacks the key {key!r}", hint)
    for key in _INT_KEYS:
        if not _is_int(meta[key]):
            raise IndexCorruptError(f"index sidecar {where}: {key}={meta[key]!r} is not an integer", hint)
    for key in _STR_KEYS:
        if not isinstance(meta[key], str):
            raise IndexCorruptError(f"index sidecar {where}: {key}={meta[key]!r} is not a string", hint)
    if not isinstance(meta["tiling"], dict):
        raise IndexCorruptError(f"index sidecar {where}: tiling={meta['tiling']!r} is not an object", hint)
    if "model" in meta and not isinstance(meta["model"], dict):
        raise IndexCorruptError(f"index sidecar {where}: model={meta['model']!r} is not an object", hint)
    if meta["format_version"] != FORMAT_VERSION:
        raise IndexCorruptError(
            f"index sidecar {where}: format_version {meta['format_version']} is not supported (only {FORMAT_VERSION})",
            "rebuild the index with this version of geovec")
    checks = [
        ("dim", meta["dim"] > 0, "> 0"), ("M", 2 <= meta["M"] <= 2048, "in 2..2048"),
        ("ef_construction", meta["ef_construction"] > 0, "> 0"), ("ef_search", meta["ef_search"] > 0, "> 0"),
        ("count", meta["count"] >= 0, ">= 0"), ("max_label", meta["max_label"] >= -1, ">= -1"),
        ("hnsw_bytes", meta["hnsw_bytes"] > 0, "> 0"),
        ("space", meta["space"] == "cosine", "'cosine'"), ("hnsw_sha256", bool(_HEX64.match(meta["hnsw_sha256"])),
                                                          "64 lowercase hex digits"),
    ]
    for key, ok, allowed in checks:
        if not ok:
            raise IndexCorruptError(f"index sidecar {where}: {key}={meta[key]!r} is not {allowed}", hint)
    _check_previous(meta.get("hnsw_previous"), "hnsw_previous", where, hint)
    if meta.get("regions") is not None:
        _validate_regions(meta["regions"], where, hint)
    return meta


def _validate_regions(reg: Any, where: Path, hint: str) -> None:
    """The sidecar's ``regions`` object: spec, count, max_label and the region file's checksum."""
    if not isinstance(reg, dict):
        raise IndexCorruptError(f"index sidecar {where}: regions={reg!r} is not an object", hint)
    checks = [("spec", isinstance(reg.get("spec"), str), "a string"),
              ("count", _is_int(reg.get("count")) and reg["count"] >= 0, "an integer >= 0"),
              ("max_label", _is_int(reg.get("max_label")) and reg["max_label"] >= -1, "an integer >= -1"),
              ("hnsw_bytes", _is_int(reg.get("hnsw_bytes")) and reg["hnsw_bytes"] > 0, "an integer > 0"),
              ("hnsw_sha256", isinstance(reg.get("hnsw_sha256"), str) and bool(_HEX64.match(reg["hnsw_sha256"])),
               "64 lowercase hex digits")]
    for key, ok, allowed in checks:
        if not ok:
            raise IndexCorruptError(f"index sidecar {where}: regions.{key}={reg.get(key)!r} is not {allowed}", hint)
    _check_previous(reg.get("hnsw_previous"), "regions.hnsw_previous", where, hint)


def _check_previous(prev: Any, key: str, where: Path, hint: str) -> None:
    """A ``hnsw_previous`` entry (the checksum of the graph file before the last checkpoint) is absent or well-formed."""
    if prev is not None and not (isinstance(prev, dict) and isinstance(prev.get("sha256"), str)
                                 and _is_int(prev.get("bytes"))):
        raise IndexCorruptError(f"index sidecar {where}: {key}={prev!r} is malformed", hint)


def read_index_sidecar(path: str | Path) -> dict[str, Any]:
    """The validated sidecar of the index at ``path``; NotFoundError when ``path`` is no index."""
    from ..errors import NotFoundError

    p = Path(path).expanduser()
    if not p.is_dir() or not (p / SIDECAR).exists():
        raise NotFoundError(f"no index at {str(path)!r} (missing {SIDECAR})",
                            "build one with: geovec index FOLDER --index DIR --model MODEL")
    return read_sidecar(p)


def read_sidecar(path: Path) -> dict[str, Any]:
    """Read and validate ``path/index.json`` (IndexCorruptError if unreadable or invalid)."""
    side = path / SIDECAR
    try:
        text = side.read_text(encoding="utf-8")
        meta = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        what = "nested too deeply" if isinstance(e, RecursionError) else str(e)
        raise IndexCorruptError(f"index sidecar {side} is unreadable: {what}", repair_hint(path)) from e
    return validate_sidecar(meta, side)


def fsync_dir(path: Path) -> None:
    """Make a rename inside ``path`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(target: Path, obj: Any) -> None:
    """Write ``obj`` as JSON to a temp file, fsync, rename over ``target``, fsync the folder."""
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    data = json.dumps(obj, indent=2, sort_keys=True).encode("utf-8")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    fsync_dir(target.parent)


def sha256_fd(fd: int) -> str:
    """SHA-256 of the whole file behind ``fd`` (read from offset 0, in 8 MiB chunks)."""
    h = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    while True:
        chunk = os.read(fd, 8 << 20)
        if not chunk:
            break
        h.update(chunk)
    return h.hexdigest()


_HEADER = struct.Struct("<6QiI3QdQ")  # hnswlib 0.8 HierarchicalNSW::saveIndex header (96 bytes)


@dataclass(frozen=True)
class HnswHeader:
    """The fields of an hnswlib file header GeoVec relies on."""

    max_elements: int
    count: int  # elements in the file, live or marked deleted


def check_hnsw_file(fd: int, size: int, *, dim: int, M: int, where: Path) -> HnswHeader:
    """Check an hnswlib file's header and graph against ``dim``/``M`` without hnswlib.

    Verifies the sizes hnswlib derives from dim and M, ``max_elements >= count``
    (the #673 overflow), that the per-element upper-level link lists exactly
    fill the file, and that every neighbour id points inside the index.
    """
    hint = repair_hint(where.parent)

    def bad(what: str) -> IndexCorruptError:
        return IndexCorruptError(f"vector file {where} is corrupt: {what}", hint)

    if size < _HEADER.size:
        raise bad(f"{size} bytes is shorter than the {_HEADER.size}-byte header")
    mm = mmap.mmap(fd, size, access=mmap.ACCESS_READ)
    try:
        return _check_mapped(mm, size, dim=dim, M=M, bad=bad)
    finally:
        try:
            mm.close()
        except BufferError:  # a numpy view still alive in a traceback: unmapped when it dies
            pass


def _check_mapped(mm: mmap.mmap, size: int, *, dim: int, M: int, bad: Any) -> HnswHeader:
    """The body of :func:`check_hnsw_file` over a mapped file."""
    (off0, max_el, count, per_el, label_off, data_off, maxlevel, enter, max_m, max_m0, m_,
     _mult, _efc) = _HEADER.unpack_from(mm, 0)
    links0 = 2 * M * 4 + 4
    want = {"offsetLevel0": (off0, 0), "M": (m_, M), "maxM": (max_m, M), "maxM0": (max_m0, 2 * M),
            "offsetData": (data_off, links0), "label_offset": (label_off, links0 + dim * 4),
            "size_data_per_element": (per_el, links0 + dim * 4 + 8)}
    for name, (got, expected) in want.items():
        if got != expected:
            raise bad(f"header {name}={got}, expected {expected} for dim {dim}, M {M}")
    if count > max_el:
        raise bad(f"header counts {count} elements but has room for {max_el}")
    if not (0 <= maxlevel < 64 or (count == 0 and maxlevel == -1)):
        raise bad(f"header maxlevel={maxlevel} is out of range")
    if count and enter >= count:
        raise bad(f"entry point {enter} is outside the {count} elements")
    level0_end = _HEADER.size + count * per_el
    if level0_end + 4 * count > size:
        raise bad(f"{size} bytes cannot hold {count} elements of {per_el} bytes")
    for start in range(0, count, 1 << 16):  # level 0, in chunks to bound memory
        n_rows = min(1 << 16, count - start)
        rows = np.ndarray((n_rows, per_el), dtype=np.uint8, buffer=mm, offset=_HEADER.size + start * per_el)
        heads = rows[:, :links0].copy().view("<u4")  # [size, ids...] per element
        del rows
        n_links = heads[:, 0] & 0xFFFF
        if int(n_links.max()) > 2 * M:
            raise bad("a level-0 link list is longer than 2*M")
        used = np.arange(2 * M)[None, :] < n_links[:, None]
        if used.any() and int(heads[:, 1:][used].max()) >= count:
            raise bad("a level-0 link points outside the index")
    per_level = M * 4 + 4
    pos = level0_end
    for _ in range(count):
        if pos + 4 > size:
            raise bad("the upper-level link lists run past the end of the file")
        (n,) = struct.unpack_from("<I", mm, pos)
        pos += 4
        if n == 0:
            continue
        if n % per_level or n // per_level > maxlevel or pos + n > size:
            raise bad(f"an upper-level link list of {n} bytes is inconsistent")
        lists = np.frombuffer(mm, dtype="<u4", count=n // 4, offset=pos).reshape(-1, M + 1)
        cnt = lists[:, 0] & 0xFFFF
        if int(cnt.max()) > M:
            raise bad("an upper-level link list is longer than M")
        used = np.arange(M)[None, :] < cnt[:, None]
        if used.any() and int(lists[:, 1:][used].max()) >= count:
            raise bad("an upper-level link points outside the index")
        del lists
        pos += n
    if pos != size:
        raise bad(f"{size - pos} unexpected trailing bytes")
    return HnswHeader(max_elements=max_el, count=count)
