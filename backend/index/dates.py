"""Scene acquisition dates in an index: the ``scene_dates`` table of ``meta.sqlite``.

A table of its own (``scene_id``, ``acquired``, ``source``) rather than new columns of
``scenes``: indexes written before dates existed stay readable unchanged (a missing table
reads as "no dates"), and a writable open adds the table the first time a date is recorded.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from ..raster.dates import SceneDate, date_range, parse_when
from ..types import Scene, TileRecord

if TYPE_CHECKING:
    from .store import IndexStore

log = logging.getLogger(__name__)

SCHEMA = ("CREATE TABLE IF NOT EXISTS scene_dates(scene_id TEXT PRIMARY KEY, acquired TEXT NOT NULL, "
          "source TEXT NOT NULL)")


def record(store: IndexStore, dates: Iterable[tuple[str, SceneDate]]) -> int:
    """Store ``(scene_id, date)`` pairs (replacing earlier ones); the number written."""
    rows = [(sid, d.acquired, d.source) for sid, d in dates]
    if not rows:
        return 0
    store._need_writable("record scene dates")
    from .db import transaction

    with store._sql("recording scene dates") as con:
        con.execute(SCHEMA)
        with transaction(con):
            con.executemany("INSERT OR REPLACE INTO scene_dates(scene_id, acquired, source) VALUES (?, ?, ?)", rows)
    return len(rows)


def read(store: IndexStore) -> dict[str, SceneDate]:
    """scene_id -> date for every dated scene still in the index ({} for an index without dates)."""
    with store._sql("reading scene dates") as con:
        try:
            rows = con.execute("SELECT d.scene_id, d.acquired, d.source FROM scene_dates d "
                               "JOIN scenes s ON s.scene_id = d.scene_id").fetchall()
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                return {}
            raise
    return {sid: SceneDate(str(a), str(s)) for sid, a, s in rows}


def scenes_between(store: IndexStore, date_from: str | None, date_to: str | None) -> tuple[list[str], int]:
    """Scene ids whose date lies in ``[start of date_from, end of date_to)``, and how many scenes have no date.

    ``date_to`` is inclusive of its whole period (``--date-to 2016-01`` keeps all of January).
    """
    lo: datetime | None = date_range(date_from)[0] if date_from else None
    hi: datetime | None = date_range(date_to)[1] if date_to else None
    dated = read(store)
    keep = [sid for sid, d in dated.items()
            if (lo is None or parse_when(d.acquired) >= lo) and (hi is None or parse_when(d.acquired) < hi)]
    undated = len({s["scene_id"] for s in store.scenes()} - set(dated))
    return keep, undated


def span(dates: Iterable[SceneDate]) -> tuple[str, str] | None:
    """(earliest, latest) acquisition, or None."""
    ds = sorted(dates, key=lambda d: parse_when(d.acquired))
    return (ds[0].acquired, ds[-1].acquired) if ds else None


def scene_tiles(store: IndexStore, scene_ids: Iterable[str] | None = None) -> tuple[list[TileRecord], np.ndarray]:
    """Every stored tile of ``scene_ids`` (all scenes when None) with its vector, in a stable order."""
    from . import db

    ids = None if scene_ids is None else list(scene_ids)
    recs: list[TileRecord] = []
    vecs: list[np.ndarray] = []
    with store._sql("reading tiles") as con:
        if ids is None:
            rows = con.execute(f"SELECT {db.TILE_COLS}, vector FROM tiles ORDER BY label").fetchall()
        else:
            rows = []
            for i in range(0, len(ids), 900):
                chunk = ids[i:i + 900]
                rows += con.execute(f"SELECT {db.TILE_COLS}, vector FROM tiles WHERE scene_id IN "
                                    f"({','.join('?' * len(chunk))}) ORDER BY label", chunk).fetchall()
        for row in rows:
            recs.append(db.tile_from_row(row[:-1]))
            vecs.append(db.blob_vector(row[-1], store.dim))
    arr = np.stack(vecs) if vecs else np.zeros((0, store.dim), np.float32)
    return recs, arr


def check_date_options(date: str | None, pattern: str | None) -> None:
    """InputError for a ``--date`` that is not a date or a malformed ``--date-from-name`` (before any work)."""
    from ..raster.dates import normalise, pattern_regex

    if date is not None and pattern is not None:
        from ..errors import InputError

        raise InputError("--date and --date-from-name both given", "give one: a date for every scene, or a pattern")
    if date is not None:
        normalise(date, "user")
    if pattern is not None:
        pattern_regex(pattern)


def date_scenes(store: IndexStore, scenes: Iterable[Scene], *, date: str | None = None,
                pattern: str | None = None) -> int:
    """Record the acquisition date of each scene: all of them when ``date``/``pattern`` is given, else those
    without one yet (found in metadata or names). Scenes where nothing is found stay undated (logged)."""
    from ..raster.dates import scene_date

    have = read(store)
    out: list[tuple[str, SceneDate]] = []
    for sc in scenes:
        if date is None and pattern is None and sc.scene_id in have:
            continue
        found = scene_date(sc.sources, sc.name, date=date, pattern=pattern)
        if found is None:
            log.info("scene %s: no acquisition date found (give --date or --date-from-name)", sc.name)
            continue
        if pattern is not None and found.source != "name-pattern":
            log.warning("scene %s: --date-from-name %r does not match; using the %s date %s", sc.name, pattern,
                        found.source, found.acquired)
        out.append((sc.scene_id, found))
    return record(store, out)
