"""Exchange embeddings as GeoParquet: ``geovec export --format geoparquet`` and ``geovec index --from-parquet``.

One row per tile: ``tile_id``, ``scene_id``, ``sources``, ``window`` (native pixels),
``bounds`` and ``crs`` (native), ``center_lat``/``center_lon``, ``gsd``,
``valid_fraction``, ``geometry`` (the footprint, WKB, lon/lat WGS84 = OGC:CRS84),
``bbox`` (its covering, GeoParquet 1.1), ``embedding`` (float32 x dim) and the scene's
``acquired`` date with its ``acquired_source`` (null when undated). The file's
``geo`` metadata follows GeoParquet 1.1; its ``geovec`` metadata records the model
(dim, preset, checkpoint), the tiling and the scenes, so an import gives back an
index that searches (and updates) like the original.

Files written by other tools import too: the geometry column named by their ``geo``
metadata (any CRS, reprojected to WGS84 for the footprint), the vectors from
``embedding`` (or ``embeddings``/``vector``/``emb``), ids from ``tile_id``/``id`` (else
derived from the file and row). They need ``--model``: the model that made the
vectors, which queries will use. pyarrow is an optional extra (``geovec[parquet]``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelMismatchError, NotFoundError
from ..schemas import IndexSummary
from ..types import BandRef, Scene, Stretch, TileRecord

log = logging.getLogger(__name__)

FORMAT = 1
VECTOR_COLUMNS = ("embedding", "embeddings", "vector", "emb")
ID_COLUMNS = ("tile_id", "id")
#: Keys of the ``geovec`` metadata an import needs, and the columns a GeoVec-written file has.
OURS_KEYS = ("dim", "preset", "checkpoint")
OURS_COLUMNS = ("tile_id", "scene_id", "sources", "window", "bounds", "crs", "center_lat", "center_lon", "gsd",
                "valid_fraction")
#: Repeated tile ids named in the error (the count says how many there are in all).
SHOW_DUPLICATES = 5
CHUNK = 4096
PARQUET_HINT = "install the extra: pip install 'geovec[parquet]'"


def _pa() -> tuple[Any, Any]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise InputError(f"GeoParquet needs pyarrow, which cannot be imported ({e})", PARQUET_HINT) from e
    return pa, pq


def _schema(pa: Any, dim: int) -> Any:
    bbox = pa.struct([(k, pa.float64()) for k in ("xmin", "ymin", "xmax", "ymax")])
    return pa.schema([
        ("tile_id", pa.string()), ("scene_id", pa.string()), ("sources", pa.list_(pa.string())),
        ("window", pa.list_(pa.int64(), 4)), ("bounds", pa.list_(pa.float64(), 4)),
        ("crs", pa.dictionary(pa.int32(), pa.string())), ("center_lat", pa.float64()), ("center_lon", pa.float64()),
        ("gsd", pa.float64()), ("valid_fraction", pa.float64()), ("geometry", pa.binary()), ("bbox", bbox),
        ("embedding", pa.list_(pa.float32(), dim)),
        ("acquired", pa.string()), ("acquired_source", pa.string()),
    ])


def _geo_metadata() -> dict[str, Any]:
    covering = {k: ["bbox", k] for k in ("xmin", "ymin", "xmax", "ymax")}
    return {"version": "1.1.0", "primary_column": "geometry",
            "columns": {"geometry": {"encoding": "WKB", "geometry_types": ["Polygon"],
                                     "covering": {"bbox": covering}}}}


def export_geoparquet(index: str | Path, out: str | Path, *, chunk: int = CHUNK) -> int:
    """Write every tile of the index at ``index`` to the GeoParquet file ``out``; returns the rows written.

    Reads one SQLite snapshot in label order, ``chunk`` rows at a time (memory stays
    flat); the file appears atomically (temp file + rename).
    """
    import shapely

    from ..index import db
    from ..index.files import DB, read_index_sidecar

    pa, pq = _pa()
    meta = read_index_sidecar(index)
    dim = int(meta["dim"])
    path = Path(index).expanduser().resolve()
    target = Path(out).expanduser()
    if target.is_dir():
        raise InputError(f"output {str(out)!r} is a folder", "give a file name such as tiles.parquet")
    target.parent.mkdir(parents=True, exist_ok=True)
    con = db.connect(path / DB, readonly=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    rows = 0
    try:
        con.execute("BEGIN")  # one snapshot: a writer meanwhile changes nothing we read
        try:  # acquisition dates (indexes made before them have no scene_dates table)
            dates = {sid: (a, src) for sid, a, src in con.execute("SELECT scene_id, acquired, source FROM scene_dates")}
        except sqlite3.OperationalError:
            dates = {}
        scenes = [db.scene_dict(r, 0) for r in con.execute(f"SELECT {db.SCENE_COLS} FROM scenes ORDER BY scene_id")]
        for d in scenes:  # dates travel with the scenes, so an import keeps them
            if d["scene_id"] in dates:
                d["acquired"], d["acquired_source"] = dates[d["scene_id"]]
        info = {"format": FORMAT, "dim": dim, "space": meta.get("space", "cosine"), "preset": meta.get("preset"),
                "checkpoint": meta.get("checkpoint"), "model": meta.get("model"), "tiling": meta.get("tiling"),
                "scenes": scenes}
        schema = _schema(pa, dim).with_metadata({b"geo": json.dumps(_geo_metadata()).encode(),
                                                 b"geovec": json.dumps(info).encode()})
        cur = con.execute(f"SELECT {db.TILE_COLS}, vector FROM tiles ORDER BY label")
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            while True:
                batch = cur.fetchmany(chunk)
                if not batch:
                    break
                recs = [db.tile_from_row(r[:-1]) for r in batch]
                vecs = np.stack([db.blob_vector(r[-1], dim) for r in batch])
                geoms = shapely.from_wkt([r.footprint_wgs84 for r in recs])
                b = shapely.bounds(geoms)
                cols = {
                    "tile_id": [r.tile_id for r in recs], "scene_id": [r.scene_id for r in recs],
                    "sources": [list(r.sources) for r in recs], "window": [list(r.window) for r in recs],
                    "bounds": [list(r.bounds) for r in recs], "crs": [r.crs_wkt for r in recs],
                    "center_lat": [r.center_lat for r in recs], "center_lon": [r.center_lon for r in recs],
                    "gsd": [r.gsd for r in recs], "valid_fraction": [r.valid_fraction for r in recs],
                    "geometry": shapely.to_wkb(geoms).tolist(),
                    "bbox": [dict(zip(("xmin", "ymin", "xmax", "ymax"), v, strict=True)) for v in b.tolist()],
                    "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel(), pa.float32()), dim),
                    "acquired": [dates.get(r.scene_id, (None, None))[0] for r in recs],
                    "acquired_source": [dates.get(r.scene_id, (None, None))[1] for r in recs],
                }
                writer.write_table(pa.table(cols, schema=schema))
                rows += len(recs)
        os.replace(tmp, target)
    finally:
        con.close()
        tmp.unlink(missing_ok=True)
    log.info("exported %d tiles of %s to %s", rows, path, target)
    return rows


# ----------------------------------------------------------------------------- import

def read_metadata(file: str | Path) -> tuple[Any, dict[str, Any], dict[str, Any] | None]:
    """(ParquetFile, its ``geo`` metadata, its ``geovec`` metadata or None)."""
    _, pq = _pa()
    p = Path(file).expanduser()
    if not p.is_file():
        raise NotFoundError(f"parquet file {str(file)!r} does not exist", "give the path of a .parquet file")
    try:
        pf = pq.ParquetFile(p)
    except Exception as e:  # noqa: BLE001 - any arrow failure: not a parquet file
        raise InputError(f"{p.name} is not a readable Parquet file ({e})", "give a (Geo)Parquet file") from e
    kv = pf.schema_arrow.metadata or {}
    try:
        geo = json.loads(kv.get(b"geo", b"{}"))
        ours = json.loads(kv[b"geovec"]) if b"geovec" in kv else None
    except (ValueError, RecursionError) as e:
        raise InputError(f"{p.name} has unreadable metadata ({e})", "give a valid GeoParquet file") from e
    bad = "" if isinstance(geo, dict) else "is not a JSON object"
    if not bad and not isinstance(geo.get("columns", {}), dict):
        bad = "has 'columns' that is not an object"
    if not bad and not isinstance(geo.get("primary_column", ""), str):
        bad = f"has primary_column {str(geo.get('primary_column'))[:40]!r}, not a column name"
    if bad:
        raise InputError(f"{p.name}: its geo metadata {bad}", "fix the file's geo metadata (GeoParquet 1.x)")
    if ours is not None:
        missing = [k for k in OURS_KEYS if not isinstance(ours, dict) or k not in ours]
        if not missing and (not isinstance(ours["dim"], int) or not isinstance(ours.get("tiling") or {}, dict)):
            missing = ["an integer dim and a tiling object"]
        if missing:
            raise InputError(f"{p.name}: its geovec metadata lacks {', '.join(missing)}",
                             "export the index again, or drop the geovec metadata and import with --model")
    return pf, geo, ours


def _column(names: list[str], wanted: tuple[str, ...], what: str, file: Path) -> str:
    for n in wanted:
        if n in names:
            return n
    raise InputError(f"{file.name} has no {what} column (looked for {', '.join(wanted)}; it has {', '.join(names)})",
                     f"rename its {what} column to {wanted[0]}")


def _vectors(arr: Any, name: str, file: Path) -> np.ndarray:
    """An arrow list column as a float32 (n, dim) array (InputError when ragged or null)."""
    import pyarrow as pa

    if arr.null_count:
        raise InputError(f"{file.name}: column {name} has {arr.null_count} empty vector(s)", "drop those rows")
    try:
        if pa.types.is_fixed_size_list(arr.type):
            flat = arr.flatten().to_numpy(zero_copy_only=False)
            return np.asarray(flat, dtype=np.float32).reshape(-1, arr.type.list_size)
        out = np.asarray(arr.to_pylist(), dtype=np.float32)
    except (ValueError, TypeError, pa.ArrowException) as e:
        raise InputError(f"{file.name}: column {name} is not a list of equal-length number vectors ({e})",
                         "store one float vector per row") from e
    if out.ndim != 2:
        raise InputError(f"{file.name}: column {name} is not a list of equal-length number vectors",
                         "store one float vector per row")
    return out


def _scene_from_dict(d: dict[str, Any]) -> tuple[Scene, Stretch]:
    scene = Scene(scene_id=d["scene_id"], name=d["name"], sources=tuple(d["sources"]),
                  bands=tuple(BandRef(str(p), int(b)) for p, b in d["bands"]),
                  rgb=tuple(int(x) for x in d["rgb"]),  # type: ignore[arg-type]
                  crs_wkt=d["crs_wkt"], transform=tuple(float(x) for x in d["transform"]),  # type: ignore[arg-type]
                  width=int(d["width"]), height=int(d["height"]), dtype=d["dtype"],
                  nodata=None if d["nodata"] is None else float(d["nodata"]), fingerprint=d["fingerprint"])
    return scene, Stretch.from_dict(d["stretch"])


@dataclass
class _Layout:
    """Where a file keeps what an import needs, checked before anything is written."""

    geom_col: str
    vec_col: str
    id_col: str | None
    src_crs: Any
    to_wgs84: Any


def _layout(pf: Any, geo: dict[str, Any], ours: dict[str, Any] | None, file: Path) -> _Layout:
    """The columns and CRS of ``file`` (InputError naming what is wrong: a column, the CRS, an id repeated)."""
    from pyproj import CRS, Transformer
    from pyproj.exceptions import CRSError, ProjError

    names = pf.schema_arrow.names
    geom_col = geo.get("primary_column") or _column(names, ("geometry", "geom"), "geometry", file)
    if geom_col not in names:
        raise InputError(f"{file.name}: geo metadata names geometry column {geom_col!r}, which is absent",
                         "fix the file's geo metadata")
    vec_col = _column(names, VECTOR_COLUMNS, "embedding", file)
    if ours is not None:
        missing = [n for n in OURS_COLUMNS if n not in names]
        if missing:
            raise InputError(f"{file.name}: its geovec metadata says GeoVec wrote it, but it lacks the column(s) "
                             f"{', '.join(missing)}", "export the index again, or drop the geovec metadata")
    id_col = "tile_id" if ours is not None else next((n for n in ID_COLUMNS if n in names), None)
    column = (geo.get("columns") or {}).get(geom_col) or {}
    crs_meta = column.get("crs", "OGC:CRS84") if isinstance(column, dict) else "OGC:CRS84"
    try:
        src_crs = CRS.from_user_input(crs_meta if crs_meta is not None else "OGC:CRS84")
    except (CRSError, TypeError, ValueError) as e:
        raise InputError(f"{file.name}: the CRS in its geo metadata ({json.dumps(crs_meta)[:80]}) is not a CRS PROJ "
                         f"reads: {str(e).split(': (')[-1].rstrip(')')[:160]}",
                         "write a complete PROJJSON CRS (or leave crs out for OGC:CRS84)") from e
    try:
        to_wgs84 = None if src_crs.equals(CRS.from_user_input("OGC:CRS84")) else \
            Transformer.from_crs(src_crs, "EPSG:4326", always_xy=True)
    except ProjError as e:
        raise InputError(f"{file.name}: its CRS {src_crs.name!r} cannot be transformed to WGS84 (not a CRS of the "
                         f"Earth?): {str(e).split('proj_create_operations: ')[-1].split(' You may')[0][:160]}",
                         "give footprints in a CRS of the Earth") from e
    if id_col is not None:
        _no_repeated_ids(pf, id_col, file)
    return _Layout(geom_col, vec_col, id_col, src_crs, to_wgs84)


def _no_repeated_ids(pf: Any, id_col: str, file: Path) -> None:
    """InputError naming how many tile ids repeat, and the first few with their row counts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    ids = pf.read(columns=[id_col]).column(0)
    counts = pc.value_counts(ids.cast(pa.string()) if not pa.types.is_string(ids.type) else ids)
    many = [(c["values"], c["counts"]) for c in counts.to_pylist() if c["counts"] > 1]
    if many:
        shown = ", ".join(f"{v!r} ({n} rows)" for v, n in many[:SHOW_DUPLICATES])
        raise InputError(f"{file.name}: {len(many)} tile ids appear on more than one row "
                         f"({sum(n for _, n in many)} rows): {shown}" + (", ..." if len(many) > SHOW_DUPLICATES else ""),
                         "give every row its own id (or drop the repeated rows); nothing was imported")


def _geometries(values: list[Any], name: str, file: Path, row0: int) -> Any:
    """WKB values as shapely geometries (InputError naming the first row that is empty or not WKB)."""
    import shapely

    try:
        geoms = shapely.from_wkb(values, on_invalid="ignore")
    except (TypeError, ValueError, shapely.errors.GEOSException) as e:
        kinds = sorted({type(v).__name__ for v in values if v is not None})
        raise InputError(f"{file.name}: column {name} is not valid WKB (it holds {', '.join(kinds)} values: {e})",
                         "store each footprint as WKB (GeoParquet encoding WKB)") from e
    for i, (v, g) in enumerate(zip(values, geoms, strict=True)):
        if g is None or g.is_empty:
            what = "has no geometry" if v is None or g is not None else "is not valid WKB"
            raise InputError(f"{file.name}: row {row0 + i} of column {name} {what}",
                             "store a footprint (WKB) on every row")
    return geoms


def _on_the_globe(wgs: Any, file: Path, row0: int, crs: Any) -> None:
    """InputError naming the first footprint whose WGS84 bounds are not finite lon/lat."""
    import shapely

    b = shapely.bounds(wgs)
    ok = np.isfinite(b).all(axis=1) & (b[:, 0] >= -180) & (b[:, 2] <= 180) & (b[:, 1] >= -90) & (b[:, 3] <= 90)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise InputError(f"{file.name}: row {row0 + i}'s footprint lies outside the globe in WGS84 "
                         f"(bounds {[round(float(v), 4) for v in b[i]]}, file CRS {crs.name!r})",
                         "give footprints in the CRS the geo metadata states")


def _records(pf: Any, lay: _Layout, ours: dict[str, Any] | None, file: Path, chunk: int,
             dim: int) -> Iterator[tuple[list[TileRecord], np.ndarray]]:
    import shapely

    geom_col, vec_col, id_col, to_wgs84 = lay.geom_col, lay.vec_col, lay.id_col, lay.to_wgs84
    src_wkt = lay.src_crs.to_wkt()
    file_id = hashlib.sha1(str(file.resolve()).encode()).hexdigest()[:16]
    row0 = 0
    for batch in pf.iter_batches(batch_size=chunk):
        cols = {n: batch.column(n) for n in batch.schema.names}
        vecs = _vectors(cols[vec_col], vec_col, file)
        if vecs.shape[1] != dim:
            raise ModelMismatchError(f"{file.name}: column {vec_col} holds vectors of shape {vecs.shape[1:]}, "
                                     f"the index's model gives {dim}-d vectors",
                                     "import with the model that computed these vectors (--model)")
        geoms = _geometries(cols[geom_col].to_pylist(), geom_col, file, row0)
        wgs = geoms if to_wgs84 is None else shapely.transform(geoms, lambda xy: np.column_stack(
            to_wgs84.transform(xy[:, 0], xy[:, 1])))
        _on_the_globe(wgs, file, row0, lay.src_crs)
        recs: list[TileRecord] = []
        if ours is not None:
            data = {n: cols[n].to_pylist() for n in OURS_COLUMNS}
            try:
                for i in range(len(vecs)):
                    recs.append(TileRecord(
                        tile_id=data["tile_id"][i], scene_id=data["scene_id"][i], sources=tuple(data["sources"][i]),
                        window=tuple(data["window"][i]), crs_wkt=data["crs"][i],  # type: ignore[arg-type]
                        bounds=tuple(data["bounds"][i]), footprint_wgs84=wgs[i].wkt,  # type: ignore[arg-type]
                        center_lat=data["center_lat"][i], center_lon=data["center_lon"][i], gsd=data["gsd"][i],
                        valid_fraction=data["valid_fraction"][i]))
            except (TypeError, ValueError) as e:
                raise InputError(f"{file.name}: row {row0 + len(recs)} does not hold GeoVec's tile columns ({e})",
                                 "export the index again, or drop the geovec metadata") from e
        else:
            ids = cols[id_col].to_pylist() if id_col else None
            for i, (g, w) in enumerate(zip(geoms, wgs, strict=True)):
                c = w.centroid
                recs.append(TileRecord(
                    tile_id=str(ids[i]) if ids else f"{file_id}:{row0 + i}", scene_id=f"parquet:{file_id}",
                    sources=(str(file.resolve()),), window=(0, 0, 0, 0), crs_wkt=src_wkt,
                    bounds=tuple(float(v) for v in g.bounds),  # type: ignore[arg-type]
                    footprint_wgs84=w.wkt, center_lat=float(c.y), center_lon=float(c.x), gsd=0.0,
                    valid_fraction=1.0))
        row0 += len(vecs)
        yield recs, vecs


def import_geoparquet(file: str | Path, index: str | Path, *, model: str | None = None,
                      chunk: int = CHUNK) -> IndexSummary:
    """Add the tiles of a GeoParquet file to the index at ``index`` (created if absent).

    Args:
        file: a file written by :func:`export_geoparquet` or another tool (see the module docstring).
        index: index directory; an existing one must have the file's model and tiling.
        model: the model of a foreign file's vectors (a preset, dir or hub id; loaded once to
            learn its identity). Files written by GeoVec name their model themselves.
        chunk: rows per SQLite transaction.

    Re-importing is idempotent (tile ids already stored are skipped), so an interrupted
    import resumes by running it again.
    """
    import time

    from ..index.store import IndexStore
    from .stages import TileWriter

    t0 = time.monotonic()
    p = Path(file).expanduser()
    pf, geo, ours = read_metadata(p)
    identity: dict[str, Any] | None = None
    if ours is not None and model is None:
        dim, preset, checkpoint, tiling = int(ours["dim"]), str(ours["preset"]), str(ours["checkpoint"]), \
            dict(ours.get("tiling") or {})
        identity = ours.get("model") if isinstance(ours.get("model"), dict) else None
    else:
        if model is None:
            raise InputError(f"{p.name} was not written by GeoVec, so it does not name its model",
                             "pass --model with the model that computed its vectors")
        from ..model.embedder import load_embedder

        emb = load_embedder(model, device="cpu")
        dim, preset, checkpoint, identity = int(emb.dim), emb.preset.name, emb.checkpoint_id, dict(emb.identity)
        tiling = dict((ours or {}).get("tiling") or {})
        if ours is not None and int(ours["dim"]) != dim:
            raise ModelMismatchError(f"{p.name} holds {ours['dim']}-d vectors from {ours['checkpoint']}, model "
                                     f"{model} gives {dim}-d", "omit --model to use the file's own model")
    lay = _layout(pf, geo, ours, p)  # columns, CRS and ids checked before the index is touched
    try:
        scenes = [_scene_from_dict(d) for d in (ours or {}).get("scenes", [])]
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise InputError(f"{p.name}: its geovec metadata has a scene that cannot be read ({type(e).__name__}: {e})",
                         "export the index again, or drop the geovec metadata and import with --model") from e
    store = IndexStore.open_or_create(index, dim=dim, preset=preset, checkpoint=checkpoint, tiling=tiling,
                                      model=identity)
    summary = IndexSummary()
    try:
        stored = (store.meta or {}).get("tiling") or {}
        if ours is not None and stored and tiling and stored != tiling:
            raise InputError(f"index {index} was built with tiling {stored}, {p.name} with {tiling}",
                             "import into a new --index")
        for scene, stretch in scenes:
            status = store.scene_status(scene.scene_id)
            if status is None or status[0] != scene.fingerprint:
                store.upsert_scene(scene, stretch)
        writer = TileWriter(store)
        for recs, vecs in _records(pf, lay, ours, p, chunk, dim):
            summary.tiles += writer.write(recs, vecs)  # tile ids already stored are skipped
        for scene, _ in scenes:
            store.complete_scene(scene.scene_id)
        from ..index.dates import record
        from ..raster.dates import SceneDate

        record(store, [(d["scene_id"], SceneDate(str(d["acquired"]), str(d.get("acquired_source") or "imported")))
                       for d in (ours or {}).get("scenes", []) if d.get("acquired")])
        summary.scenes = len(scenes)
        writer.checkpoint()
    finally:
        store.close()
    summary.seconds = round(time.monotonic() - t0, 3)
    return summary
