"""``geovec search``: a text / box / point / image / vector query, here or by a running ``geovec serve``."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..jsonsafe import model_json
from .common import UsageError, abs_path, check_writable, validated

log = logging.getLogger(__name__)


def cmd_search(args: argparse.Namespace) -> int:
    from ..schemas import SearchRequest
    from ..service import model_for_index, run_search

    fields: dict[str, Any] = {"index": abs_path(args.index[0]), "indexes": [abs_path(i) for i in args.index[1:]], "k": args.k,
                              "min_score": args.min_score,
                              "exclude_overlapping": not args.include_overlapping, "out_crs": args.out_crs,
                              "force": args.force}
    fields.update(_region_fields(args))
    from .time import print_score_maps, print_time, search_time_fields

    fields.update(search_time_fields(args))
    if args.near is not None:
        fields["near"] = {"lat": args.near[0], "lon": args.near[1], "radius_km": args.radius_km,
                          "decay_km": args.decay_km}
    elif args.radius_km is not None or args.decay_km is not None:
        raise UsageError("--radius-km/--decay-km need --near LAT LON")
    if args.vector is not None:
        return _search_vector(args, fields)
    if args.text is not None:
        fields["text"] = args.text
    if args.box is not None:
        fields.update(box=args.box, crs=args.crs, raster=abs_path(args.raster))
    elif args.point is not None:
        fields.update(point=args.point, crs=args.crs, raster=abs_path(args.raster))
    elif args.image is not None:
        fields["image"] = abs_path(args.image)
    elif args.text is None:
        raise UsageError("give --text, --box, --point or --image (--text may go with one of the others)")
    if (args.box is not None or args.point is not None) and not args.crs:
        raise UsageError("--crs is required with --box/--point (e.g. EPSG:4326 or the raster's EPSG code)")
    if args.latlon is not None:
        fields["latlon"] = args.latlon
    req = validated(SearchRequest, **fields)

    if args.geojson:
        check_writable(args.geojson)  # before the (maybe slow) search, not after it
    resp = None
    engine = getattr(args, "engine", "local")
    if engine != "ray" and getattr(args, "address", None):
        raise UsageError("--address goes with --engine ray")
    if engine == "ray":
        resp = _search_on_ray(req, args)
    elif args.server is not None:  # answered by a running `geovec serve` (its model, its open indexes)
        from ..server.client import search_via_server

        resp = search_via_server(req, args.server or None)
    elif not args.local and not args.model:  # a running `geovec serve` answers without reloading the model
        resp = _search_via_running_server(req)
    if resp is None:
        resp = run_search(req, lambda: model_for_index(args.index[0], model=args.model, device=args.device,
                                                       dtype=args.dtype))
    if args.geojson:
        from ..writers import write_vector
        from .regions import geojson_with_regions

        write_vector(args.geojson, geojson_with_regions(resp), resp.crs)
    if args.json:
        print(model_json(resp, indent=2))
        return 0
    if not resp.features:
        print("no hits")
    for f in resp.features:
        p = f.properties
        where = f"  [{p['index']}]" if p.get("index") else ""
        box = f"  box {tuple(p['bbox_image'])}" if p.get("level") == "region" else ""
        when = f"  {p['acquired']}" if p.get("acquired") else ""
        print(f"{p['rank']:>3}  {p['score']:+.4f}  {p['tile_id']}  lat {p['center_lat']:.5f} lon "
              f"{p['center_lon']:.5f}  window {tuple(p['window'])}{box}{when}  {p['source']}{where}")
        print_time(p)
        if p.get("level") != "region":
            for r in p.get("regions") or []:
                print(f"       region {r['rank']}  {r['score']:+.4f}  box {tuple(r['bbox_image'])}")
    print_score_maps(resp.query)
    if args.geojson:
        print(f"wrote {len(resp.features)} hit(s) to {args.geojson}")
    return 0


def _search_on_ray(req: Any, args: argparse.Namespace) -> Any:
    """``req`` with every index in a shard actor on Ray (started here, stopped afterwards)."""
    from ..cluster import RayShards
    from ..service import model_for_index, run_search

    shards = RayShards(args.address)
    try:
        return run_search(req, lambda: model_for_index(args.index[0], model=args.model, device=args.device,
                                                       dtype=args.dtype), index_set=shards)
    finally:
        shards.close()


def _search_via_running_server(req: Any) -> Any:
    """The answer of a running ``geovec serve`` (None when none answers, or its model is not the index's)."""
    from ..errors import ModelMismatchError, ModelUnavailableError
    from ..server.client import running_server, search_via_server

    url = running_server()
    if url is None:
        return None
    try:
        resp = search_via_server(req, url)
    except (ModelUnavailableError, ModelMismatchError) as e:  # gone, or holding another model: search here
        log.info("running backend at %s did not answer (%s); searching in this process", url, e)
        return None
    log.info("answered by the running backend at %s", url)
    return resp


def _region_fields(args: argparse.Namespace) -> dict[str, Any]:
    from .regions import region_fields

    return region_fields(args)


def _search_vector(args: argparse.Namespace, fields: dict[str, Any]) -> int:
    from ..schemas_workflows import VectorSearchRequest
    from ..workflows.service import run_vector_search
    from .workflows import print_hits, read_vector

    if fields.get("indexes"):
        raise UsageError("--vector searches one index; give one --index")
    keep = {k: fields[k] for k in ("index", "k", "min_score", "out_crs", "near") if k in fields}
    req = validated(VectorSearchRequest, **keep, vector=read_vector(args.vector))
    print_hits(run_vector_search(req), args)
    return 0
