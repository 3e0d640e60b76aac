"""``geovec index/info --verify``: check an index end to end.

* SQLite's own ``PRAGMA integrity_check`` on ``meta.sqlite``;
* every vector in ``vectors.hnsw`` (loaded with the same validation as
  :meth:`IndexStore.open`) compared with its SQLite copy (cosine space: both
  L2-normalised), and checked for NaN/infinite values;
* labels the vector file holds as live that SQLite no longer has (a deleted tile
  still searchable), and labels SQLite has that the file lacks (tiles added after
  the last checkpoint: not an error, the next open or ``--repair`` adds them).

Run it while no job writes the index (a writer's uncheckpointed tiles show as
"not yet in the vector file").
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import IndexCorruptError, NotFoundError
from . import db
from .files import DB, SIDECAR, repair_hint

#: Largest absolute difference between a stored vector and its SQLite copy (both normalised).
TOLERANCE = 1e-4
_CHUNK = 4096


@dataclass
class TableCheck:
    """One vector table (tiles or regions) against its vector file."""

    rows: int = 0
    checked: int = 0
    mismatched: list[int] = field(default_factory=list)  # labels whose vectors differ
    non_finite: list[int] = field(default_factory=list)  # labels with NaN/inf in the vector file or SQLite
    extra_live: list[int] = field(default_factory=list)  # live in the vector file, absent from SQLite
    not_in_file: int = 0  # in SQLite, not yet in the vector file

    @property
    def ok(self) -> bool:
        return not (self.mismatched or self.non_finite or self.extra_live)

    def lines(self, what: str) -> list[str]:
        out = [f"{what:<10} {self.checked} of {self.rows} compared with SQLite"]
        for problem, labels in (("differ from SQLite", self.mismatched), ("hold NaN/inf", self.non_finite),
                                ("are deleted in SQLite but live in the vector file", self.extra_live)):
            if labels:
                out.append(f"  {len(labels)} vector(s) {problem} (labels {', '.join(map(str, labels[:10]))})")
        if self.not_in_file:
            out.append(f"  {self.not_in_file} row(s) not yet in the vector file (added since the last checkpoint)")
        return out


@dataclass
class VerifyReport:
    """What :func:`verify_index` found; ``ok`` when nothing is wrong."""

    path: str
    sqlite_messages: list[str] = field(default_factory=list)  # empty: integrity_check said ok
    tile_check: TableCheck = field(default_factory=TableCheck)
    region_check: TableCheck | None = None  # None: the index stores no regions

    @property
    def ok(self) -> bool:
        return not self.sqlite_messages and self.tile_check.ok and (self.region_check is None or self.region_check.ok)

    # the tile table's findings, by their short names
    tiles = property(lambda self: self.tile_check.rows)
    checked = property(lambda self: self.tile_check.checked)
    mismatched = property(lambda self: self.tile_check.mismatched)
    non_finite = property(lambda self: self.tile_check.non_finite)
    extra_live = property(lambda self: self.tile_check.extra_live)
    not_in_file = property(lambda self: self.tile_check.not_in_file)

    def lines(self) -> list[str]:
        """A human-readable report, one finding per line."""
        out = [f"index      {self.path}",
               f"sqlite     {'ok' if not self.sqlite_messages else 'FAILED: ' + '; '.join(self.sqlite_messages[:5])}"]
        out += self.tile_check.lines("vectors")
        if self.region_check is not None:
            out += self.region_check.lines("regions")
        out.append("result     " + ("ok" if self.ok else f"PROBLEMS FOUND ({repair_hint(self.path)})"))
        return out


def _normalised(v: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(v, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return v / np.where(norm > 0, norm, 1.0)


def verify_index(path: str | Path) -> VerifyReport:
    """Check the index at ``path`` (see the module docstring).

    Raises:
        NotFoundError: no index there.
        IndexCorruptError: a file cannot be read at all (sidecar, vector file or database).
    """
    from .load import load_hnsw

    p = Path(path).expanduser().resolve()
    if not (p / SIDECAR).is_file():
        raise NotFoundError(f"no index at {str(p)!r} (missing {SIDECAR})", "give an index directory")
    if not (p / DB).is_file() or (p / DB).stat().st_size == 0:
        raise IndexCorruptError(f"{p / DB} is missing or empty", repair_hint(p))
    meta, index, _, _, rloaded = load_hnsw(p)
    dim = int(meta["dim"])
    report = VerifyReport(path=str(p))
    try:
        con = db.connect(p / DB, readonly=True)
    except sqlite3.Error as e:
        raise IndexCorruptError(f"{p / DB} cannot be opened: {e}", repair_hint(p)) from e
    try:
        rows = [str(r[0]) for r in con.execute("PRAGMA integrity_check")]
        report.sqlite_messages = [] if rows == ["ok"] else rows
        con.execute("BEGIN")
        _check_table(con, "tiles", index, dim, report.tile_check)
        if rloaded is not None:
            report.region_check = TableCheck()
            _check_table(con, "regions", rloaded[0], dim, report.region_check)
        con.execute("COMMIT")
    except sqlite3.DatabaseError as e:
        report.sqlite_messages.append(str(e))
    finally:
        con.close()
    return report


def _check_table(con: sqlite3.Connection, table: str, index: Any, dim: int, out: TableCheck) -> None:
    """Compare every vector of ``table`` with its copy in ``index`` (see the module docstring)."""
    labels = np.fromiter((r[0] for r in con.execute(f"SELECT label FROM {table} ORDER BY label")), dtype=np.int64)
    out.rows = len(labels)
    in_file = np.asarray(index.get_ids_list(), dtype=np.int64)
    present = np.intersect1d(labels, in_file)
    out.not_in_file = int(len(labels) - len(present))
    for start in range(0, len(present), _CHUNK):
        chunk = present[start : start + _CHUNK].tolist()
        q = f"SELECT label, vector FROM {table} WHERE label IN ({','.join('?' * len(chunk))})"
        stored = {int(label): blob for label, blob in con.execute(q, chunk)}
        got, deleted = _file_vectors(index, chunk, dim)
        out.mismatched.extend(deleted)  # live in SQLite, deleted in the file: unsearchable
        want = np.stack([_blob(stored.get(label), dim) for label in chunk])
        bad_file = ~np.isfinite(got).all(axis=1)
        bad_sql = ~np.isfinite(want).all(axis=1)
        diff = np.abs(_normalised(want) - _normalised(got)).max(axis=1)
        for i, label in enumerate(chunk):
            if label in deleted:
                continue
            if bad_file[i] or bad_sql[i]:
                out.non_finite.append(label)
            elif not diff[i] <= TOLERANCE:
                out.mismatched.append(label)
        out.checked += len(chunk)
    for label in np.setdiff1d(in_file, labels).tolist():
        try:
            index.get_items([label])
            out.extra_live.append(int(label))
        except RuntimeError:  # marked deleted: as it should be
            pass


def _file_vectors(index: object, labels: list[int], dim: int) -> tuple[np.ndarray, set[int]]:
    """The vector file's vectors of ``labels`` and the labels it holds only as deleted."""
    try:
        return np.asarray(index.get_items(labels), dtype=np.float32).reshape(len(labels), dim), set()  # type: ignore[attr-defined]
    except RuntimeError:  # some label is marked deleted: one by one
        out = np.zeros((len(labels), dim), np.float32)
        deleted: set[int] = set()
        for i, label in enumerate(labels):
            try:
                out[i] = np.asarray(index.get_items([label]), dtype=np.float32).reshape(dim)  # type: ignore[attr-defined]
            except RuntimeError:
                deleted.add(label)
        return out, deleted


def _blob(blob: bytes | None, dim: int) -> np.ndarray:
    if blob is None:
        return np.full(dim, np.nan, np.float32)
    try:
        return db.blob_vector(blob, dim)
    except ValueError:
        return np.full(dim, np.nan, np.float32)
