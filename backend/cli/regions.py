"""``geovec search`` options for regions and filters, and the GeoJSON file with region features."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..schemas import SearchResponse

#: The choices of ``--within-mode`` / ``--area-mode`` (``within_mode`` in requests).
WITHIN_MODES = ("centre", "intersects", "inside")


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return v


def add_region_search_args(se: argparse.ArgumentParser) -> None:
    """Add --level, --rerank, --regions-per-hit, --nms-iou, --within, --within-crs, --scene."""
    from ..search.candidates import DEFAULT_RERANK

    se.add_argument("--level", choices=("tile", "region"), default="tile",
                    help="rank tiles with their best regions (default) or rank regions")
    se.add_argument("--rerank", type=_positive, nargs="?", const=DEFAULT_RERANK, metavar="N",
                    help=f"embed the region candidates of the top N tiles now (default N {DEFAULT_RERANK}); needed "
                         "for --level region on an index without stored regions")
    se.add_argument("--regions-per-hit", type=int, default=3, help="best regions kept per tile hit (default 3)")
    se.add_argument("--nms-iou", type=float, default=0.5, help="IoU above which overlapping regions are merged")
    se.add_argument("--within", metavar="GEOJSON|WKT|FILE",
                    help="confine hits to an area: a GeoJSON or WKT string, or a vector file")
    se.add_argument("--within-crs", default="EPSG:4326", help="CRS of --within (default EPSG:4326)")
    se.add_argument("--within-mode", choices=WITHIN_MODES, default="centre",
                    help="which hits --within keeps: centre (default: tile/region centre in the area), intersects "
                         "(shares area with it), inside (wholly in it)")
    se.add_argument("--scene", action="append", metavar="NAME", help="confine hits to a scene (repeatable)")


def region_fields(args: argparse.Namespace) -> dict[str, Any]:
    """SearchRequest fields from the region/filter options.

    A ``--within`` vector file is read here (the area travels as WKT in EPSG:4326), so a
    ``--server`` search needs no access to the file.
    """
    fields: dict[str, Any] = {"level": args.level, "rerank": args.rerank, "regions_per_hit": args.regions_per_hit,
                              "nms_iou": args.nms_iou, "scenes": args.scene}
    if args.within is not None:
        within, crs = args.within, args.within_crs
        if not within.lstrip().startswith("{") and Path(within).expanduser().is_file():
            from ..search.filters import parse_within

            within, crs = parse_within(within, crs).wkt, "EPSG:4326"
        fields.update(within=within, within_crs=crs, within_mode=args.within_mode)
    return fields


def geojson_with_regions(resp: SearchResponse) -> dict[str, Any]:
    """The response as a FeatureCollection of its features plus, for tile hits, one feature per region."""
    out = resp.model_dump()
    extra: list[dict[str, Any]] = []
    for f in resp.features:
        p = f.properties
        if p.get("level") == "region":
            continue
        for r in p.get("regions") or []:
            props = {k: p.get(k) for k in ("tile_id", "scene_id", "source", "window", "gsd")}
            props.update(level="region", rank=r["rank"], score=r["score"], bbox_image=r["bbox_image"],
                         tile_rank=p.get("rank"), tile_score=p.get("score"))
            extra.append({"type": "Feature", "geometry": r["geometry"], "properties": props})
    out["features"] = out["features"] + extra
    return out
