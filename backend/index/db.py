"""The SQLite half of an index (``meta.sqlite``): schema, connections, row <-> dataclass.

SQLite is the index's source of truth: every tile row carries its vector as a
float32 blob, so the hnswlib file can always be rebuilt from it. The ``info``
table repeats the sidecar's model fields (dim, preset, checkpoint, M, ...) and
holds ``next_label``, the label counter; labels are never reused.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from ..types import BandRef, Scene, Stretch, TileRecord

BUSY_TIMEOUT_MS = 30_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS info(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scenes(
    scene_id TEXT PRIMARY KEY, name TEXT NOT NULL, sources TEXT NOT NULL, fingerprint TEXT NOT NULL,
    crs_wkt TEXT NOT NULL, transform TEXT NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
    rgb TEXT NOT NULL, stretch TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('partial', 'complete')),
    bands TEXT NOT NULL, dtype TEXT NOT NULL, nodata TEXT NOT NULL, updated TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scene_paths(
    path TEXT NOT NULL, scene_id TEXT NOT NULL, PRIMARY KEY (path, scene_id));
CREATE TABLE IF NOT EXISTS tiles(
    label INTEGER PRIMARY KEY, tile_id TEXT NOT NULL UNIQUE, scene_id TEXT NOT NULL,
    "window" TEXT NOT NULL, bounds TEXT NOT NULL, crs_wkt TEXT NOT NULL, footprint_wgs84 TEXT NOT NULL,
    center_lat REAL NOT NULL, center_lon REAL NOT NULL, gsd REAL NOT NULL, valid_fraction REAL NOT NULL,
    sources TEXT NOT NULL, vector BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS tiles_scene ON tiles(scene_id);
"""

TILE_COLS = ('tile_id, scene_id, "window", bounds, crs_wkt, footprint_wgs84, center_lat, center_lon, gsd, '
             'valid_fraction, sources')
SCENE_COLS = ("scene_id, name, sources, fingerprint, crs_wkt, transform, width, height, rgb, stretch, status, "
              "bands, dtype, nodata, updated")


def connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    """A connection usable from any thread (callers serialise writes), WAL, with a busy timeout.

    Read-only connections open the file with ``mode=ro``: they never write rows
    (SQLite itself may create its ``-wal``/``-shm`` companions).
    """
    if readonly:
        con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False,
                              timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    else:
        con = sqlite3.connect(path, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000,
                              isolation_level=None)
    con.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    if not readonly:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
    return con


def init_schema(con: sqlite3.Connection, info: dict[str, Any]) -> None:
    """Create the tables and store ``info`` (key -> JSON value)."""
    con.executescript(SCHEMA)
    with transaction(con):
        con.executemany("INSERT OR REPLACE INTO info(key, value) VALUES (?, ?)",
                        [(k, json.dumps(v)) for k, v in info.items()])


class transaction:  # noqa: N801 - used like a function: ``with transaction(con):``
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error) on an autocommit connection."""

    def __init__(self, con: sqlite3.Connection) -> None:
        self.con = con

    def __enter__(self) -> sqlite3.Connection:
        self.con.execute("BEGIN IMMEDIATE")
        return self.con

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.con.execute("ROLLBACK" if exc_type is not None else "COMMIT")


class RowError(ValueError):
    """A row whose JSON or vector fields cannot be decoded (the database was damaged or edited)."""


def _decoded(table: str, fn: Any) -> Any:
    """Decorator: decoding errors of a ``table`` row become :class:`RowError`."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RowError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as e:
            raise RowError(f"a {table} row cannot be decoded ({type(e).__name__}: {str(e)[:200]})") from e

    wrapper.__doc__ = fn.__doc__
    return wrapper


def read_info(con: sqlite3.Connection) -> dict[str, Any]:
    """The ``info`` table as a dict (empty if the table is missing)."""
    try:
        rows = con.execute("SELECT key, value FROM info").fetchall()
    except sqlite3.OperationalError:
        return {}
    return _decoded("info", lambda: {k: json.loads(v) for k, v in rows})()


def scene_params(scene: Scene, stretch: Stretch, status: str, now: str) -> tuple[Any, ...]:
    """The ``scenes`` row of ``scene`` (in :data:`SCENE_COLS` order)."""
    return (scene.scene_id, scene.name, json.dumps(list(scene.sources)), scene.fingerprint, scene.crs_wkt,
            json.dumps(list(scene.transform)), int(scene.width), int(scene.height), json.dumps(list(scene.rgb)),
            json.dumps(stretch.to_dict()), status, json.dumps([[b.path, b.band] for b in scene.bands]),
            scene.dtype, json.dumps(scene.nodata), now)


def scene_from_row(row: tuple[Any, ...]) -> tuple[Scene, Stretch]:
    """Rebuild ``(Scene, Stretch)`` from a row selected with :data:`SCENE_COLS`."""
    (scene_id, name, sources, fingerprint, crs_wkt, transform, width, height, rgb, stretch, _status,
     bands, dtype, nodata, _updated) = row
    nd = json.loads(nodata)
    scene = Scene(
        scene_id=scene_id, name=name, sources=tuple(json.loads(sources)),
        bands=tuple(BandRef(str(p), int(b)) for p, b in json.loads(bands)),
        rgb=tuple(int(x) for x in json.loads(rgb)),  # type: ignore[arg-type]
        crs_wkt=crs_wkt, transform=tuple(float(x) for x in json.loads(transform)),  # type: ignore[arg-type]
        width=int(width), height=int(height), dtype=dtype, nodata=None if nd is None else float(nd),
        fingerprint=fingerprint)
    return scene, Stretch.from_dict(json.loads(stretch))


def scene_dict(row: tuple[Any, ...], tiles: int) -> dict[str, Any]:
    """A ``scenes()`` entry: the row's fields with JSON decoded, plus the tile count."""
    d = dict(zip([c.strip() for c in SCENE_COLS.split(",")], row, strict=True))
    for key in ("sources", "transform", "rgb", "stretch", "bands", "nodata"):
        d[key] = json.loads(d[key])
    d["tiles"] = tiles
    return d


def tile_params(rec: TileRecord, label: int, vector: np.ndarray) -> tuple[Any, ...]:
    """The ``tiles`` row of ``rec`` (label first, then :data:`TILE_COLS`, then the vector blob)."""
    return (label, rec.tile_id, rec.scene_id, json.dumps([int(x) for x in rec.window]),
            json.dumps([float(x) for x in rec.bounds]), rec.crs_wkt, rec.footprint_wgs84,
            float(rec.center_lat), float(rec.center_lon), float(rec.gsd), float(rec.valid_fraction),
            json.dumps(list(rec.sources)), np.ascontiguousarray(vector, dtype="<f4").tobytes())


INSERT_TILE = (f"INSERT OR IGNORE INTO tiles(label, {TILE_COLS}, vector) "
               "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def tile_from_row(row: tuple[Any, ...]) -> TileRecord:
    """Rebuild a TileRecord from a row selected with :data:`TILE_COLS`."""
    (tile_id, scene_id, window, bounds, crs_wkt, footprint, lat, lon, gsd, vf, sources) = row
    return TileRecord(
        tile_id=tile_id, scene_id=scene_id, sources=tuple(json.loads(sources)),
        window=tuple(int(x) for x in json.loads(window)),  # type: ignore[arg-type]
        crs_wkt=crs_wkt, bounds=tuple(float(x) for x in json.loads(bounds)),  # type: ignore[arg-type]
        footprint_wgs84=footprint, center_lat=float(lat), center_lon=float(lon), gsd=float(gsd),
        valid_fraction=float(vf))


def blob_vector(blob: bytes, dim: int) -> np.ndarray:
    """A stored vector blob as a float32 array of length ``dim`` (ValueError if the size is wrong)."""
    vec = np.frombuffer(blob, dtype="<f4")
    if vec.shape[0] != dim:
        raise ValueError(f"vector blob holds {vec.shape[0]} floats, expected {dim}")
    return vec.astype(np.float32)


scene_from_row = _decoded("scenes", scene_from_row)
scene_dict = _decoded("scenes", scene_dict)
tile_from_row = _decoded("tiles", tile_from_row)
blob_vector = _decoded("tiles", blob_vector)
