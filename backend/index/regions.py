"""The region half of an index: region vectors in SQLite + ``regions.hnsw``, and the tile R*Tree.

Same guarantees as tiles (see :mod:`.store`): SQLite's ``regions`` table is the source
of truth (one row per candidate box with its vector blob); a tile and its regions are
committed in **one** transaction, and ``region_tiles`` records which tiles have their
regions, so a stored tile of an index with regions implies its regions. ``regions.hnsw``
(labels = ``regions.label``, never reused) is checkpointed with ``vectors.hnsw`` and
vouched for by the sidecar's ``regions`` object; opening validates and heals it the same way.
The region spec (``info.regions_spec``, the sidecar's ``regions.spec``) belongs to the
index's identity. ``tiles_rtree`` (WGS84 bounds per tile label) serves spatial filters.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hnswlib
import numpy as np

from ..errors import IndexCorruptError, InputError
from ..types import Box
from . import db

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS regions(
    label INTEGER PRIMARY KEY, tile_label INTEGER NOT NULL,
    x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL, y2 REAL NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS regions_tile ON regions(tile_label);
CREATE INDEX IF NOT EXISTS regions_box ON regions(label, tile_label, x1, y1, x2, y2);
CREATE TABLE IF NOT EXISTS region_tiles(tile_label INTEGER PRIMARY KEY);
CREATE VIRTUAL TABLE IF NOT EXISTS tiles_rtree USING rtree(label, minx, maxx, miny, maxy);
"""
_IN = 900


def chunks(xs: Sequence[Any], n: int = _IN) -> Iterator[Sequence[Any]]:
    for i in range(0, len(xs), n):
        yield xs[i : i + n]


def check_vectors(vectors: Any, dim: int, n: int | None, what: str) -> np.ndarray:
    """``vectors`` as float32 (n, dim), or InputError: wrong shape, NaN/inf, or an all-zero row."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != dim or (n is not None and arr.shape[0] != n):
        want = f"({n}, {dim})" if n is not None else f"(n, {dim})"
        raise InputError(f"{what} have shape {tuple(np.shape(vectors))}, expected {want}",
                         f"give float32 vectors of the index's dimension {dim}")
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contain NaN or infinite values", "check the model output")
    if arr.shape[0] and not (np.linalg.norm(arr, axis=1) > 0).all():
        raise InputError(f"{what} contain an all-zero vector (no cosine direction)", "check the model output")
    return arr


@dataclass
class RegionHalf:
    """The in-memory region state of an open store."""

    spec: str
    index: hnswlib.Index
    disk: tuple[str, int] | None
    live: int
    next_label: int


@dataclass(frozen=True)
class RegionRow:
    """One stored region candidate."""

    label: int
    tile_label: int
    box: Box


def has_tables(con: sqlite3.Connection) -> bool:
    """Whether the database has the region tables (indexes made before regions existed lack them)."""
    row = con.execute("SELECT COUNT(*) FROM sqlite_master WHERE name IN ('regions', 'region_tiles', "
                      "'tiles_rtree')").fetchone()
    return int(row[0]) == 3


def ensure_schema(con: sqlite3.Connection) -> None:
    """Create the region tables and the tile R*Tree (filled from the footprints) if missing."""
    if has_tables(con):
        return
    con.executescript(SCHEMA)
    with db.transaction(con):
        rows = con.execute("SELECT label, footprint_wgs84 FROM tiles").fetchall()
        con.executemany("INSERT OR REPLACE INTO tiles_rtree VALUES (?, ?, ?, ?, ?)",
                        [(label, *rtree_bounds(fp)) for label, fp in rows])
    if rows:
        log.info("added the spatial index of %d existing tiles", len(rows))


def rtree_bounds(footprint_wkt: str) -> tuple[float, float, float, float]:
    """(minx, maxx, miny, maxy) of a WKT footprint, in the R*Tree's column order."""
    from shapely import wkt

    x0, y0, x1, y1 = wkt.loads(footprint_wkt).bounds
    return (x0, x1, y0, y1)


def fetch_vectors(con: sqlite3.Connection, table: str, labels: Sequence[int], dim: int,
                  p: Path) -> tuple[np.ndarray, list[int]]:
    """The vectors of ``labels`` from ``table`` (tiles or regions), in the order SQLite returns them."""
    out: list[np.ndarray] = []
    got: list[int] = []
    for chunk in chunks(list(labels)):
        q = f"SELECT label, vector FROM {table} WHERE label IN ({','.join('?' * len(chunk))})"
        for label, blob in con.execute(q, list(chunk)):
            try:
                out.append(db.blob_vector(blob, dim))
            except ValueError as e:
                raise IndexCorruptError(f"{p}: {table} label {label}: {e}", "rebuild the index") from e
            got.append(int(label))
    return (np.stack(out) if out else np.zeros((0, dim), np.float32)), got


def heal(index: hnswlib.Index, con: sqlite3.Connection, table: str, dim: int, p: Path) -> tuple[int, int, int]:
    """Make a loaded graph match SQLite's ``table``: re-add missing labels, mark vanished ones deleted.

    Returns (live labels in SQLite, labels re-added, labels newly marked deleted).
    """
    labels = np.fromiter((r[0] for r in con.execute(f"SELECT label FROM {table}")), dtype=np.int64)
    have = np.asarray(index.get_ids_list(), dtype=np.int64)
    missing = np.setdiff1d(labels, have)
    newly_deleted = 0
    for label in np.setdiff1d(have, labels).tolist():
        try:
            index.mark_deleted(label)
            newly_deleted += 1
        except RuntimeError:  # already deleted in the file
            pass
    if len(missing):
        index.resize_index(index.get_current_count() + len(missing))
        for chunk in chunks(missing.tolist(), 10_000):
            vecs, got = fetch_vectors(con, table, chunk, dim, p)
            index.add_items(vecs, got)
    return len(labels), len(missing), newly_deleted


def new_index(dim: int, M: int, ef_construction: int, ef_search: int, capacity: int) -> hnswlib.Index:
    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=max(capacity, 16), M=M, ef_construction=ef_construction, random_seed=100)
    index.set_ef(ef_search)
    return index


def insert_regions(con: sqlite3.Connection, tile_label: int, boxes: Any, vectors: np.ndarray,
                   start: int) -> list[int]:
    """Insert one tile's regions (inside the caller's transaction); returns their labels.

    A tile whose regions are already recorded in ``region_tiles`` gets none (resume-safe).
    """
    if con.execute("INSERT OR IGNORE INTO region_tiles(tile_label) VALUES (?)", (tile_label,)).rowcount != 1:
        return []
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if len(boxes) != len(vectors):
        raise InputError(f"{len(boxes)} region boxes but {len(vectors)} region vectors",
                         "give one vector per box")
    labels = list(range(start, start + len(boxes)))
    con.executemany("INSERT INTO regions(label, tile_label, x1, y1, x2, y2, vector) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(lab, tile_label, *(float(v) for v in b), np.ascontiguousarray(vec, dtype="<f4").tobytes())
                     for lab, b, vec in zip(labels, boxes, vectors, strict=True)])
    return labels


def region_rows(con: sqlite3.Connection, labels: Iterable[int]) -> dict[int, RegionRow]:
    """Stored regions by label (labels deleted since are absent)."""
    out: dict[int, RegionRow] = {}
    for chunk in chunks(sorted(set(int(x) for x in labels))):
        q = (f"SELECT label, tile_label, x1, y1, x2, y2 FROM regions INDEXED BY regions_box WHERE label IN "
             f"({','.join('?' * len(chunk))})")  # the narrow covering index, not the rows with their vectors
        for label, tl, x1, y1, x2, y2 in con.execute(q, list(chunk)):
            out[int(label)] = RegionRow(int(label), int(tl), (x1, y1, x2, y2))
    return out


def regions_of_tiles(con: sqlite3.Connection, tile_labels: Iterable[int],
                     dim: int) -> tuple[list[RegionRow], np.ndarray]:
    """Every stored region of ``tile_labels`` with its vector (for exact scoring)."""
    rows: list[RegionRow] = []
    vecs: list[np.ndarray] = []
    for chunk in chunks(sorted(set(int(x) for x in tile_labels))):
        q = (f"SELECT label, tile_label, x1, y1, x2, y2, vector FROM regions WHERE tile_label IN "
             f"({','.join('?' * len(chunk))}) ORDER BY label")
        for label, tl, x1, y1, x2, y2, blob in con.execute(q, list(chunk)):
            rows.append(RegionRow(int(label), int(tl), (x1, y1, x2, y2)))
            vecs.append(db.blob_vector(blob, dim))
    return rows, (np.stack(vecs) if vecs else np.zeros((0, dim), np.float32))


def window_of(text: str) -> tuple[int, int, int, int]:
    return tuple(int(v) for v in json.loads(text))  # type: ignore[return-value]
