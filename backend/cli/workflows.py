"""``geovec classify | fewshot | refine | locate | ask`` (added to the main parser by :mod:`.main`)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np


def _kv(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not CLASS=PROMPT")
    return name.strip(), value


def read_vector(path: str) -> list[float]:
    """An embedding from a .npy file, a JSON list, or an /v1/embed response (its first vector)."""
    from ..errors import InputError, NotFoundError

    p = Path(path).expanduser()
    if not p.exists():
        raise NotFoundError(f"vector file {path!r} does not exist", "save one with --json from /v1/embed, or np.save")
    try:
        if p.suffix == ".npy":
            arr = np.load(p, allow_pickle=False)
        else:
            body: Any = json.loads(p.read_text())
            if isinstance(body, dict):
                body = body.get("vectors", [body.get("vector") or body.get("query_vector")])[0]
            arr = np.asarray(body, dtype=np.float32)
    except (OSError, ValueError, TypeError, IndexError, KeyError) as e:
        raise InputError(f"{path} holds no readable vector: {e}", "give a .npy array or a JSON list of numbers") from e
    arr = np.asarray(arr, dtype=np.float32).reshape(-1) if np.asarray(arr).ndim <= 2 and np.asarray(arr).size else arr
    if arr.ndim != 1 or not arr.size or not np.isfinite(arr).all():
        raise InputError(f"{path} does not hold one finite vector (shape {np.asarray(arr).shape})",
                         "give a single embedding")
    return [float(v) for v in arr]


def _area(args: argparse.Namespace) -> dict[str, Any] | None:
    dates = {"date_from": getattr(args, "date_from", None), "date_to": getattr(args, "date_to", None)}
    if args.area_box is None and args.area_wkt is None and not any(dates.values()):
        return None
    return {"box": args.area_box, "wkt": args.area_wkt, "crs": args.area_crs, "within_mode": args.within_mode, **dates}


def _print_classified(resp: Any, args: argparse.Namespace) -> None:
    if args.json:
        print(resp.model_dump_json(indent=2))
        return
    if resp.cv is not None:
        cv = resp.cv
        accs = ", ".join(f"{m} {a:.3f}" for m, a in cv.accuracy.items()) or "not measured"
        where = (f"{cv.folds} folds of whole {cv.block_km:g} km blocks, {cv.blocks} blocks, {cv.features} features, "
                 f"{cv.examples} {resp.level}s")
        if cv.nested_accuracy is not None:
            print(f"held-out accuracy of choosing the classifier ({where}; nested CV: inner folds choose, outer folds "
                  f"score): {cv.nested_accuracy:.3f}")
            print(f"  per configuration on the same folds (their best is optimistic): {accs}; using {cv.method}")
        else:
            print(f"held-out accuracy ({where}): {accs}; using {cv.method}")
        if cv.per_class:
            print("  per class: " + ", ".join(f"{c} {a:.2f}" for c, a in cv.per_class.items()))
        if cv.note:
            print(f"  note: {cv.note}")
    what = f"{resp.regions} region(s) of {resp.tiles} tile(s)" if resp.level == "region" else f"{resp.tiles} tile(s)"
    print(f"{what} classified: " + ", ".join(f"{c} {n}" for c, n in resp.counts.items()))
    for m in resp.class_maps:
        print(f"class map {m.path}")
    if resp.geojson_path:
        print(f"{resp.level}s {resp.geojson_path}")


def cmd_classify(args: argparse.Namespace) -> int:
    from ..schemas_workflows import ClassifyRequest
    from ..service import model_for_index
    from ..workflows.service import run_classify
    from .common import validated as _validated

    fields: dict[str, Any] = {"index": args.index, "classes": args.classes, "out_dir": args.out,
                              "out_crs": args.out_crs, "return_features": False, "area": _area(args),
                              "level": args.level}
    if args.prompt:
        fields["prompts"] = dict(args.prompt)
    if args.template:
        fields["template"] = args.template
    if args.instruction is not None:
        fields["instruction"] = args.instruction
    req = _validated(ClassifyRequest, **fields)
    resp = run_classify(req, lambda: model_for_index(args.index, model=args.model, device=args.device))
    _print_classified(resp, args)
    return 0


def cmd_fewshot(args: argparse.Namespace) -> int:
    from ..schemas_workflows import FewShotRequest
    from ..workflows.service import run_fewshot
    from .common import validated as _validated

    req = _validated(FewShotRequest, index=args.index, labels=args.labels, label_field=args.label_field,
                     layer=args.layer, method=args.method, block_km=args.block_km, folds=args.folds, seed=args.seed,
                     out_dir=args.out, out_crs=args.out_crs, return_features=False, area=_area(args),
                     level=args.level)
    resp = run_fewshot(req, max_features_per_class=args.max_features_per_class)
    _print_classified(resp, args)
    return 0


def _search_fields(args: argparse.Namespace) -> dict[str, Any]:
    from .common import UsageError

    fields: dict[str, Any] = {"index": args.index}
    if getattr(args, "text", None) is not None:
        fields["text"] = args.text
    elif args.box is not None:
        fields.update(box=args.box, crs=args.crs, raster=args.raster)
    elif args.point is not None:
        fields.update(point=args.point, crs=args.crs, raster=args.raster)
    if (args.box is not None or args.point is not None) and not args.crs:
        raise UsageError("--crs is required with --box/--point (e.g. EPSG:4326 or the raster's EPSG code)")
    return fields


def _write_layer(path: str, resp: Any) -> None:
    """``resp`` (a FeatureCollection response) as GeoJSON, or CSV for a .csv path, in its own CRS."""
    from ..writers import write_vector

    write_vector(path, json.loads(resp.model_dump_json()), str(getattr(resp, "crs", "EPSG:4326")))


def print_hits(resp: Any, args: argparse.Namespace) -> None:
    if args.geojson:
        _write_layer(args.geojson, resp)
    if args.json:
        print(resp.model_dump_json(indent=2))
        return
    for f in resp.features:
        p = f.properties
        box = f"  box {tuple(p['bbox_image'])}" if p.get("level") == "region" else ""
        print(f"{p['rank']:>3}  {p['score']:+.4f}  {p['tile_id']}  lat {p['center_lat']:.5f} lon "
              f"{p['center_lon']:.5f}{box}")
    if not resp.features:
        print("no hits")


def _region_marks(items: list[list[str]] | None) -> list[dict[str, Any]]:
    """``--good-region TILE_ID X0 Y0 X1 Y1`` values as region marks (the box as a region hit's bbox_image)."""
    from .common import UsageError

    out = []
    for item in items or []:
        try:
            out.append({"tile_id": item[0], "bbox_image": [float(v) for v in item[1:]]})
        except ValueError:
            raise UsageError(f"region mark {' '.join(item)!r} is not TILE_ID X0 Y0 X1 Y1 (numbers)") from None
    return out


def cmd_refine(args: argparse.Namespace) -> int:
    from ..schemas import SearchRequest
    from ..schemas_workflows import RefineRequest
    from ..service import model_for_index
    from ..workflows.service import run_refine
    from .common import UsageError
    from .common import validated as _validated

    if (args.vector is None) == (args.text is None and args.box is None and args.point is None):
        raise UsageError("give the original query: --text/--box/--point, or --vector FILE")
    fields: dict[str, Any] = {"index": args.index, "good": args.good or [], "bad": args.bad or [], "k": args.k,
                              "exclude_marked": args.exclude_marked, "out_crs": args.out_crs,
                              "save_marks": args.save_marks, "label": args.label, "bad_label": args.bad_label,
                              "level": args.level, "good_regions": _region_marks(args.good_region),
                              "bad_regions": _region_marks(args.bad_region)}
    if args.vector is not None:
        fields["vector"] = read_vector(args.vector)
    else:
        fields["query"] = _validated(SearchRequest, **_search_fields(args))
    req = _validated(RefineRequest, **fields)
    resp = run_refine(req, lambda: model_for_index(args.index, model=args.model, device=args.device))
    if args.save_vector:
        Path(args.save_vector).expanduser().write_text(json.dumps({"query_vector": resp.query_vector}))
    print_hits(resp, args)
    if resp.marks_path and not args.json:
        print(f"marks written to {resp.marks_path} (geovec train reads it: labels: {resp.marks_path})")
    return 0


def cmd_locate(args: argparse.Namespace) -> int:
    from ..schemas import SearchRequest
    from ..schemas_workflows import LocateRequest
    from ..service import model_for_index
    from ..workflows.service import run_locate
    from .common import validated as _validated

    fields: dict[str, Any] = {"index": args.index, "k": args.k, "radius_km": args.radius_km,
                              "max_locations": args.max_locations, "out_crs": args.out_crs}
    image = None
    if args.vector is not None:
        fields["vector"] = read_vector(args.vector)
    elif args.image is not None:
        from PIL import Image

        from ..errors import InputError

        try:
            with Image.open(Path(args.image).expanduser()) as im:
                image = np.asarray(im.convert("RGB"), dtype=np.uint8)
        except OSError as e:
            raise InputError(f"cannot read image {args.image!r}: {e}", "give a PNG or JPEG file") from e
        fields["image_b64"] = ""
    elif args.box is not None or args.point is not None:
        fields["query"] = _validated(SearchRequest, **_search_fields(args))
    else:
        from .common import UsageError

        raise UsageError("give what to locate: --box/--point (with --crs), --image FILE or --vector FILE")
    req = _validated(LocateRequest, **fields)
    resp = run_locate(req, lambda: model_for_index(args.index, model=args.model, device=args.device), image=image)
    if args.geojson:
        _write_layer(args.geojson, resp)
    if args.json:
        print(resp.model_dump_json(indent=2))
        return 0
    for f in resp.features:
        p = f.properties
        print(f"{p['rank']:>3}  score {p['score']:.3f}  best {p['best_score']:+.4f}  {p['hits']:>3} hit(s)  "
              f"lat {p['lat']:.5f} lon {p['lon']:.5f}")
    if not resp.features:
        print("no locations")
    return 0


def cmd_ask(args: argparse.Namespace) -> int:
    from ..schemas_workflows import AskRequest
    from ..service import model_for_index
    from ..workflows.service import run_ask
    from .common import validated as _validated

    req = _validated(AskRequest, index=args.index, box=args.box, crs=args.crs, raster=args.raster,
                     question=args.question, answers=args.answers or [])
    resp = run_ask(req, lambda: model_for_index(args.index, model=args.model, device=args.device))
    if args.json:
        print(resp.model_dump_json(indent=2))
        return 0
    for a in resp.answers:
        print(f"{a.rank:>3}  {a.score:+.4f}  {a.answer}")
    return 0


def _common(p: argparse.ArgumentParser, *, model: bool = True) -> None:
    p.add_argument("--index", required=True)
    p.add_argument("--out-crs", default="EPSG:4326")
    p.add_argument("--json", action="store_true")
    if model:
        p.add_argument("--model", help="override the index's recorded model")
        p.add_argument("--device", default="auto")


def _area_args(p: argparse.ArgumentParser, finite: Any) -> None:
    p.add_argument("--area-box", type=finite, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                   help="only tiles centred in this box")
    p.add_argument("--area-wkt", help="only tiles centred in this polygon (WKT)")
    p.add_argument("--area-crs", default="EPSG:4326", help="CRS of --area-box/--area-wkt")
    p.add_argument("--date-from", metavar="DATE", help="only scenes acquired on or after DATE (2016, 2016-01, ...)")
    p.add_argument("--date-to", metavar="DATE", help="only scenes acquired up to DATE (2016-01 = all of January)")
    p.add_argument("--within-mode", choices=("centre", "intersects", "inside"), default="centre",
                   help="which tiles (regions) the area keeps: centre (default), intersects, inside")


def _level_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--level", choices=("tile", "region"), default="tile",
                   help="classify tiles, or the regions an index built with --regions stores (regions.geojson)")


def _query_args(p: argparse.ArgumentParser, finite: Any, *, text: bool = True) -> None:
    if text:
        p.add_argument("--text")
    p.add_argument("--box", type=finite, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"))
    p.add_argument("--point", type=finite, nargs=2, metavar=("X", "Y"))
    p.add_argument("--crs", help="CRS of --box/--point")
    p.add_argument("--raster", help="raster the box/point refers to (default: found in the index)")


def add_workflow_parsers(sub: Any, finite: Any) -> None:
    """Add the workflow sub-commands to ``sub`` (``finite`` parses a finite float)."""
    c = sub.add_parser("classify", help="zero-shot: classify every tile into your class names")
    _common(c)
    c.add_argument("--classes", nargs="*", required=True, metavar="NAME", help="at least two distinct class names")
    c.add_argument("--prompt", type=_kv, action="append", metavar="CLASS=TEXT", help="a class's own prompt")
    c.add_argument("--template", help="prompt of the other classes; {label} = class name")
    c.add_argument("--instruction", help="instruction before the prompts (default: the model's classification one)")
    c.add_argument("--out", help="folder for the class-map GeoTIFFs and tiles.geojson")
    _level_arg(c)
    _area_args(c, finite)
    c.set_defaults(func=cmd_classify)

    f = sub.add_parser("fewshot", help="learn classes from a labelled point/polygon layer, classify every tile")
    _common(f, model=False)
    f.add_argument("--labels", required=True, help="GeoJSON / GeoPackage / shapefile, any CRS")
    f.add_argument("--label-field", default="label")
    f.add_argument("--layer")
    f.add_argument("--method", choices=("auto", "prototype", "logistic", "logistic_std", "knn"), default="auto",
                   help="auto: the best of every classifier by spatial-block CV (its accuracy by nested CV)")
    f.add_argument("--block-km", type=finite, help="spatial block edge for held-out accuracy (default 6 tiles)")
    f.add_argument("--folds", type=int, default=5)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--max-features-per-class", type=int, help="train each fold on at most N features per class")
    f.add_argument("--out", help="folder for the class-map GeoTIFFs and tiles.geojson")
    _level_arg(f)
    _area_args(f, finite)
    f.set_defaults(func=cmd_fewshot)

    r = sub.add_parser("refine", help="relevance feedback: good/bad tile ids -> refined hits")
    _common(r)
    _query_args(r, finite)
    r.add_argument("--vector", help="the original query vector (.npy or JSON) instead of --text/--box/--point")
    r.add_argument("--good", nargs="*", metavar="TILE_ID")
    r.add_argument("--bad", nargs="*", metavar="TILE_ID")
    r.add_argument("--level", choices=("tile", "region"), default="tile",
                   help="refine tile hits (default) or region hits (an index with --regions; marks: --good-region)")
    r.add_argument("--good-region", action="append", nargs=5, metavar=("TILE_ID", "X0", "Y0", "X1", "Y1"),
                   help="a region hit marked good: its tile id and bbox_image (repeatable)")
    r.add_argument("--bad-region", action="append", nargs=5, metavar=("TILE_ID", "X0", "Y0", "X1", "Y1"),
                   help="a region hit marked bad (repeatable)")
    r.add_argument("--k", type=int, default=10)
    r.add_argument("--exclude-marked", action="store_true")
    r.add_argument("--save-marks", metavar="OUT.geojson", help="write the marks as a layer geovec train reads")
    r.add_argument("--label", help="label of the good marks (default: the --text)")
    r.add_argument("--bad-label", help="label of the bad marks (default: bad marks not written)")
    r.add_argument("--save-vector", metavar="OUT.json", help="save the query vector for the next round")
    r.add_argument("--geojson", metavar="OUT")
    r.set_defaults(func=cmd_refine)

    lo = sub.add_parser("locate", help="where is this? a box/point/image/vector -> ranked candidate locations")
    _common(lo)
    _query_args(lo, finite, text=False)
    lo.add_argument("--image", help="a PNG/JPEG image to locate")
    lo.add_argument("--vector", help="an embedding (.npy or JSON)")
    lo.add_argument("--k", type=int, default=50, help="hits clustered into locations")
    lo.add_argument("--radius-km", type=finite, help="cluster radius (default 3 tile diagonals)")
    lo.add_argument("--max-locations", type=int, default=10)
    lo.add_argument("--geojson", metavar="OUT")
    lo.set_defaults(func=cmd_locate)

    a = sub.add_parser("ask", help="rank candidate answers to a question about a box")
    _common(a)
    a.add_argument("--box", type=finite, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"), required=True)
    a.add_argument("--crs", required=True)
    a.add_argument("--raster")
    a.add_argument("--question", required=True)
    a.add_argument("--answers", nargs="*", metavar="ANSWER", help="candidate answers (or a class list)")
    a.set_defaults(func=cmd_ask)
