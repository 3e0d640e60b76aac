"""Writing a :class:`~.change.ChangeResult`: a change-map GeoTIFF per scene pair and ranked polygons.

``OUT/change_<before>__<after>.tif`` (+ ``.qml`` legend) holds each after tile's score on the
after scene's grid; ``OUT/change.geojson`` (and ``change.gpkg`` on request) holds one polygon per
tile pair, best first, with both tiles, their dates and scores. Files are written under temporary
names and renamed, so a failure leaves no half-written output.
"""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..paths import make_folder, output_file
from .change import ChangeResult, TilePair
from .maps import Legend, safe_name, write_map

log = logging.getLogger(__name__)


def pair_properties(rank: int, p: TilePair, res: ChangeResult) -> dict[str, Any]:
    bd, ad = res.before.dates.get(p.before.scene_id), res.after.dates.get(p.after.scene_id)
    props: dict[str, Any] = {
        "rank": rank, "change": round(p.change, 6), "overlap": round(p.overlap, 4),
        "before_tile_id": p.before.tile_id, "after_tile_id": p.after.tile_id,
        "before_scene_id": p.before.scene_id, "after_scene_id": p.after.scene_id,
        "before_date": bd.acquired if bd else None, "after_date": ad.acquired if ad else None,
        "before_source": p.before.sources[0] if p.before.sources else None,
        "after_source": p.after.sources[0] if p.after.sources else None,
        "after_window": list(p.after.window), "center_lat": p.after.center_lat, "center_lon": p.after.center_lon,
    }
    if p.region is not None:
        props["level"] = "region"
        props["region_box"] = p.region["box"]
    if p.toward is not None:
        props["toward"] = round(p.toward, 6)
        props["to"] = res.to
    return props


def features(res: ChangeResult, top: int | None = None) -> list[dict[str, Any]]:
    """The ranked pairs as GeoJSON features (WGS84 after-tile footprints)."""
    from shapely import wkt
    from shapely.geometry import mapping

    out = []
    for rank, p in enumerate(res.pairs[: top or None], start=1):
        geom = mapping(wkt.loads(p.region["wkt"] if p.region is not None else p.after.footprint_wgs84))
        out.append({"type": "Feature", "geometry": geom, "properties": pair_properties(rank, p, res)})
    return out


def _legend(res: ChangeResult) -> Legend:
    if res.to is not None:
        m = max([abs(p.toward or 0.0) for p in res.pairs] + [1e-6])
        m = float(f"{m:.2g}") if m > 0 else 1e-6
        return Legend(f"moved toward {res.to!r} (cosine after - before)", -m, m, "diverging",
                      "moved away", "moved toward")
    hi = max([p.change for p in res.pairs] + [1e-6])
    hi = float(f"{math.ceil(hi * 1000) / 1000:.3g}")
    return Legend("change (1 - cosine of before and after tile vectors)", 0.0, hi, "change", "unchanged", "changed")


def write_change(res: ChangeResult, out: str | Path, *, gpkg: bool = False) -> dict[str, Any]:
    """Write maps, ``change.geojson`` (and ``change.gpkg``) under ``out``; a summary of what was written."""
    root = Path(out).expanduser()
    if root.exists() and not root.is_dir():
        raise InputError(f"--out {str(out)!r} is a file", "give a folder for the change maps")
    groups: dict[tuple[str, str], list[TilePair]] = defaultdict(list)
    for p in res.pairs:
        groups[(p.before.scene_id, p.after.scene_id)].append(p)
    legend = _legend(res)
    root = make_folder(root, "change maps folder")
    maps = []
    for (bsid, asid), pairs in sorted(groups.items()):
        got = res.after.store.scene(asid)
        before = res.before.store.scene(bsid)
        if got is None or before is None:
            continue
        scene = got[0]
        name = f"change_{safe_name(before[0].name, 40)}__{safe_name(scene.name, 40)}_{bsid[:6]}{asid[:6]}.tif"
        values = [p.key for p in pairs]
        path = write_map(root / name, scene, [p.region["window"] if p.region else p.after.window for p in pairs], values, legend,
                         description=f"change {res.before.spec} -> {res.after.spec}")
        bd, ad = res.before.dates.get(bsid), res.after.dates.get(asid)
        maps.append({"path": str(path), "style": str(path.with_suffix(".qml")), "before_scene": before[0].name,
                     "after_scene": scene.name, "before_date": bd.acquired if bd else None,
                     "after_date": ad.acquired if ad else None, "tiles": len(pairs),
                     "max": round(max(values), 6), "mean": round(sum(values) / len(values), 6)})
    feats = features(res)
    fc = {"type": "FeatureCollection", "name": "change",
          "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:OGC:1.3:CRS84"}},
          "properties": {"before": res.before.spec, "after": res.after.spec, "to": res.to,
                         "legend": legend.text()}, "features": feats}
    gj = root / "change.geojson"
    with output_file(gj, "change polygons") as tmp:
        tmp.write_text(json.dumps(fc), encoding="utf-8")
    written = {"geojson": str(gj), "maps": maps}
    if gpkg:
        written["gpkg"] = str(write_gpkg(root / "change.gpkg", feats))
    log.info("wrote %d change map(s) and %d polygons under %s", len(maps), len(feats), root)
    return written


def write_gpkg(path: Path, feats: list[dict[str, Any]]) -> Path:
    """The ranked polygons as a GeoPackage layer ``change`` (fiona)."""
    import fiona

    schema = {"geometry": "Polygon", "properties": {
        "rank": "int", "change": "float", "toward": "float", "overlap": "float", "before_tile_id": "str",
        "after_tile_id": "str", "before_date": "str", "after_date": "str", "before_source": "str",
        "after_source": "str"}}
    with output_file(path, "change GeoPackage") as tmp:
        tmp.unlink()  # GDAL's GeoPackage driver creates the file itself
        with fiona.open(tmp, "w", driver="GPKG", layer="change", crs="EPSG:4326", schema=schema) as dst:
            for f in feats:
                props = {k: f["properties"].get(k) for k in schema["properties"]}  # type: ignore[attr-defined]
                dst.write({"geometry": f["geometry"], "properties": props})
    return path
