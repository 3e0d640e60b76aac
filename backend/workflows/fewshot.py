"""Few-shot classification from a labelled point/polygon layer.

Features (any CRS) -> the indexed tiles under them (tile centre inside a polygon;
for a point, or a polygon smaller than a tile, the tile containing it) -> a light
classifier over their stored vectors (prototypes, logistic regression on raw or
standardised features over a small C grid, k-NN: the best by cross-validation
with whole spatial blocks held out; its accuracy measured by nested
cross-validation, :mod:`.selection`) -> every tile classified. Every tile of one feature lands in the block of the feature's
centroid, so a polygon never sits on both sides of a split. With ``level="region"``
the items are the index's stored regions: a region trains when its box centre lies
in a labelled polygon, and a point (or a polygon holding no region centre) trains the
smallest region containing it (:mod:`.region_level`).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputError, NotFoundError
from ..paths import check_read
from ..schemas_workflows import ClassifyResponse, CrossValidation, FewShotRequest
from . import classifiers, region_level, selection
from .labelling import respond
from .tiles import TileTable, area_mask, date_mask, load_tiles, parse_area

if TYPE_CHECKING:
    from shapely.geometry.base import BaseGeometry

    from ..index.store import IndexStore

log = logging.getLogger(__name__)


@dataclass
class LabelFeature:
    fid: int
    label: str
    geometry: BaseGeometry  # WGS84 lon/lat


def _from_geojson(body: dict[str, Any], crs: str, label_field: str, where: str) -> list[LabelFeature]:
    from shapely.geometry import shape

    from ..raster import geometry

    if not isinstance(body, dict) or body.get("type") != "FeatureCollection":
        raise InputError(f"{where} is not a GeoJSON FeatureCollection", "export the layer as GeoJSON")
    crs_member = body.get("crs")
    named = crs_member.get("properties", {}).get("name") if isinstance(crs_member, dict) and isinstance(
        crs_member.get("properties"), dict) else None
    src = geometry.parse_crs(named or crs)
    feats = body.get("features") or []
    if not isinstance(feats, list) or not all(isinstance(f, dict) for f in feats):
        raise InputError(f"{where}: 'features' is not a list of GeoJSON features", "export the layer as GeoJSON")
    out = []
    for i, f in enumerate(feats):
        props = f.get("properties") or {}
        if not isinstance(props, dict):
            raise InputError(f"{where}: feature {i} has no properties object", "export the layer as GeoJSON")
        if label_field not in props:
            raise InputError(f"{where}: feature {i} has no field {label_field!r} (fields: {sorted(props)})",
                             "pass --label-field with the field holding the class")
        if f.get("geometry") is None or props[label_field] in (None, ""):
            continue
        try:
            geom = shape(f["geometry"])
        except Exception as e:  # noqa: BLE001 - shapely raises several types
            raise InputError(f"{where}: feature {i} has an invalid geometry: {e}", "fix the layer") from e
        out.append(LabelFeature(int(f.get("id", i)) if str(f.get("id", i)).isdigit() else i, str(props[label_field]),
                                geometry.reproject_geometry(geom, src, "EPSG:4326")))
    return out


def _from_file(path: str, label_field: str, layer: str | None) -> list[LabelFeature]:
    p = check_read(path, "label layer")  # under the allowed folders (a server request) before anything else
    if not p.exists():
        raise NotFoundError(f"label layer {path!r} does not exist", "give a GeoJSON, GeoPackage or shapefile")
    if p.suffix.lower() in (".geojson", ".json"):
        try:
            body = json.loads(p.read_text())
        except (OSError, ValueError) as e:
            raise InputError(f"label layer {path} is not readable GeoJSON: {e}", "export it again") from e
        return _from_geojson(body, "EPSG:4326", label_field, str(path))
    try:
        import fiona
    except ImportError as e:
        raise InputError(f"reading {p.suffix} layers needs fiona", "pip install fiona, or give a .geojson") from e
    from shapely.geometry import shape

    from ..raster import geometry

    try:
        with fiona.open(p, layer=layer) as src:
            fields = list(src.schema["properties"])
            if label_field not in fields:
                raise InputError(f"label layer {path} has no field {label_field!r} (fields: {fields})",
                                 "pass --label-field with the field holding the class")
            crs = src.crs_wkt or "EPSG:4326"
            out = []
            for i, f in enumerate(src):
                value = f["properties"][label_field]
                if f["geometry"] is None or value in (None, ""):
                    continue
                geom = shape(f["geometry"])
                out.append(LabelFeature(int(f.id) if str(f.id).isdigit() else i, str(value),
                                        geometry.reproject_geometry(geom, crs, "EPSG:4326")))
            return out
    except fiona.errors.FionaError as e:
        raise InputError(f"cannot read label layer {path}: {e}", "give a GeoJSON, GeoPackage or shapefile") from e


def read_labels(req: FewShotRequest) -> list[LabelFeature]:
    """The labelled features of ``req`` in WGS84 (InputError for an empty layer)."""
    if req.geojson is not None:
        feats = _from_geojson(req.geojson, req.geojson_crs, req.label_field, "the inline GeoJSON")
    else:
        assert req.labels is not None
        feats = _from_file(req.labels, req.label_field, req.layer)
    if not feats:
        raise InputError("the label layer has no labelled feature", f"fill the {req.label_field!r} field")
    return feats


def tiles_under(table: TileTable, feats: list[LabelFeature]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tile rows, feature index, labels) of every tile under a feature."""
    import shapely
    from shapely import wkt

    rows, owner = [], []
    for j, f in enumerate(feats):
        inside = np.flatnonzero(shapely.contains_xy(f.geometry, table.lon, table.lat)) \
            if f.geometry.area > 0 else np.zeros(0, dtype=int)
        if not len(inside):  # a point, or a polygon smaller than a tile: the tile holding its centre
            c = f.geometry.representative_point()
            d = (table.lat - c.y) ** 2 + ((table.lon - c.x) * np.cos(np.radians(c.y))) ** 2
            near = np.argsort(d)[:4]
            inside = np.array([i for i in near.tolist()
                               if wkt.loads(table.records[i].footprint_wgs84).covers(c)][:1], dtype=int)
        rows.extend(inside.tolist())
        owner.extend([j] * len(inside))
    return np.array(rows, dtype=np.int64), np.array(owner, dtype=np.int64), np.array(
        [feats[j].label for j in owner], dtype=object)


def default_block_km(table: TileTable) -> float:
    """Six tile edges (the median tile), at least 100 m."""
    from ..search.location import haversine_km

    if not len(table):
        return 1.0
    edges = []
    for rec in table.records[:: max(1, len(table) // 200)]:
        xs = rec.window[2] * rec.gsd / 1000.0
        edges.append(xs)
    return max(0.1, 6.0 * float(np.median(edges))) if edges else float(haversine_km(0, 0, 0, 0.01))


def fewshot(store: IndexStore, req: FewShotRequest, *, max_features_per_class: int | None = None) -> ClassifyResponse:
    """Learn from ``req``'s labelled layer, report held-out accuracy, classify every tile (or stored region)."""
    t0 = time.perf_counter()
    from ..raster import geometry

    geometry.parse_crs(req.out_crs)
    if req.level == "region":
        region_level.require_regions(store)
    area = parse_area(req.area.box, req.area.wkt, req.area.crs) if req.area is not None else None
    feats = read_labels(req)
    table = load_tiles(store)
    items: TileTable = table
    if req.level == "region":
        items = region_level.load_regions(store, table)
        rows, owner, labels = region_level.regions_under(items, feats)  # type: ignore[arg-type]
    else:
        rows, owner, labels = tiles_under(table, feats)
    if not len(rows):
        raise InputError(f"none of the {len(feats)} labelled feature(s) lies over an indexed {req.level}",
                         "check the layer's CRS and that it covers the indexed scenes")
    classes = sorted(set(labels.tolist()))
    if len(classes) < 2:
        raise InputError(f"only one label ({classes[0]!r}) lies over the index: nothing to tell apart",
                         "label examples of at least two classes")
    y = np.array([classes.index(v) for v in labels.tolist()], dtype=np.int64)
    x = items.vectors[rows]
    block_km = req.block_km or default_block_km(table)
    cent = [feats[j].geometry.centroid for j in owner.tolist()]
    blocks = classifiers.block_ids(np.array([c.y for c in cent]), np.array([c.x for c in cent]), block_km)
    fold = classifiers.assign_folds(blocks, req.folds, req.seed)
    limit = None
    if max_features_per_class is not None:
        def limit(allowed: np.ndarray) -> np.ndarray:
            return _limit_features(owner, y, max_features_per_class, req.seed, allowed)
    methods = classifiers.candidates(req.method)
    cv = CrossValidation(method=methods[0], folds=int(len(np.unique(fold))), blocks=int(len(np.unique(blocks))),
                         block_km=round(block_km, 3), examples=int(len(rows)), features=int(len(np.unique(owner))))
    thin = thin_classes(classes, y, owner, blocks)
    if cv.folds < 2:
        cv.note = "all examples fall in one spatial block: accuracy not measured (label more places)"
        log.warning(cv.note)
    elif thin and len(classes) - len(thin) < 2:
        # fewer than two classes can be held out and still trained on: any accuracy would be made up
        cv.method = methods[0] if req.method != "auto" else "prototype"
        cv.note = (f"accuracy not measured: class(es) {', '.join(thin)} lie in fewer than 2 spatial blocks of "
                   f"{block_km:g} km, too few for cross-validation; the map uses {cv.method} fit on all "
                   f"{len(rows)} example(s) - label those classes in more places (or give a smaller --block-km) "
                   "to measure accuracy")
        log.warning(cv.note)
    else:
        sel = selection.select(x, y, fold, blocks, len(classes), methods, folds=req.folds, seed=req.seed, limit=limit)
        cv.method = sel.method
        cv.accuracy = {m: round(a, 4) for m, a in sel.accuracy.items()}
        cv.nested_accuracy = round(sel.nested, 4) if sel.nested is not None else None
        cv.per_class = {classes[c]: round(v, 4) for c, v in sel.per_class.items()}
        cv.outer_choices = sel.outer_choices
        if thin:  # measured over the others; a thin class is named, not hidden in the mean
            cv.note = (f"class(es) {', '.join(thin)} lie in fewer than 2 spatial blocks of {block_km:g} km: when "
                       "that block is held out they have no training example, so the accuracy counts their "
                       "examples as misses - label them in more places (or give a smaller --block-km)")
            log.warning(cv.note)
    clf = classifiers.make(cv.method).fit(x, y, len(classes))
    target = items.take(area_mask(items, area, req.area.within_mode if req.area is not None else "centre")
                        & date_mask(store, items, req.area))
    if not len(target):
        raise InputError(f"no indexed {req.level} is centred inside the area", "draw the area over indexed imagery")
    scores = clf.scores(target.vectors)
    lab = region_level.labelling(target, classes, scores, store)
    return respond(store, lab, out_dir=req.out_dir, out_crs=req.out_crs, return_features=req.return_features,
                   cv=cv, took_ms=(time.perf_counter() - t0) * 1000)


def thin_classes(classes: list[str], y: np.ndarray, owner: np.ndarray, blocks: np.ndarray) -> list[str]:
    """``"name (n feature(s), m block(s))"`` for each class whose examples lie in fewer than two spatial blocks."""
    out = []
    for c, name in enumerate(classes):
        sel = y == c
        nb = len(np.unique(blocks[sel]))
        if nb < 2:
            out.append(f"{name!r} ({len(np.unique(owner[sel]))} feature(s), {nb} block(s))")
    return out


def _limit_features(owner: np.ndarray, y: np.ndarray, per_class: int, seed: int, allowed: np.ndarray) -> np.ndarray:
    """Mask keeping (within ``allowed``) the tiles of at most ``per_class`` features per class, chosen at random."""
    rng = np.random.default_rng(seed)
    keep_feats: set[int] = set()
    for c in np.unique(y[allowed]).tolist():
        fs = np.unique(owner[allowed & (y == c)])
        keep_feats.update(rng.permutation(fs)[:per_class].tolist())
    return allowed & np.isin(owner, list(keep_feats))
