"""``geovec change`` and the time options of ``geovec index`` / ``geovec search`` (dates, other dates, score maps)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

EPILOG = """examples:
  geovec change --before idx_2016 --after idx_2017 --out change/
  geovec change --index idx --before 2016-01 --after 2017-02 --out change/ --to "new buildings"
  geovec change --index idx --before 2016 --after 2018-03-01/2018-06-30 --out change/ --level region --gpkg
"""


def _abs(value: str | None) -> str | None:
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else Path.cwd().absolute() / p)


def _side(value: str) -> str:
    """An index path made absolute; a date kept as it is."""
    p = Path(value).expanduser()
    return str(p.absolute()) if p.is_dir() else value


def _span(d: list[str]) -> str:
    return f" ({d[0]}{' .. ' + d[1] if d[1] != d[0] else ''})" if d else ""


def cmd_change(args: argparse.Namespace) -> int:
    from ..schemas_change import ChangeRequest
    from ..service import run_change

    req = ChangeRequest(before=_side(args.before), after=_side(args.after), index=_abs(args.index),
                        out=_abs(args.out) or "", to=args.to, level=args.level, min_overlap=args.min_overlap,
                        gpkg=args.gpkg, top=args.top)
    embedder = None
    if args.to is not None:
        def embedder() -> Any:
            from ..service import model_for_index

            return model_for_index(req.index or req.after, model=args.model, device=args.device, dtype=args.dtype)
    resp = run_change(req, embedder)
    if args.json:
        print(resp.model_dump_json(indent=2))
        return 0
    print(f"before {req.before}{_span(resp.before_dates)} -> after {req.after}{_span(resp.after_dates)}: "
          f"{resp.pairs} {resp.level} pair(s) compared, {resp.unmatched_after} after tile(s) with no before tile")
    for m in resp.maps:
        print(f"  map {m.path}  ({m.before_scene} -> {m.after_scene}, {m.tiles} tiles, max {m.max:.4f}, "
              f"mean {m.mean:.4f}; legend {Path(m.style).name})")
    key = "toward" if resp.to else "change"
    for f in resp.top[: min(10, len(resp.top))]:
        p = f["properties"]
        print(f"  #{p['rank']:<3d} {key} {p[key]:+.4f}  {p['after_tile_id']}  "
              f"({p['center_lat']:.5f}, {p['center_lon']:.5f})  {p.get('before_date') or '?'} -> "
              f"{p.get('after_date') or '?'}")
    print(f"polygons: {resp.geojson}" + (f", {resp.gpkg}" if resp.gpkg else ""))
    return 0


def add_change_parser(sub: Any, finite: Any) -> None:
    """Add ``geovec change`` to the ``geovec`` sub-parsers."""
    ch = sub.add_parser("change", help="what changed between two dates (change maps + ranked polygons)",
                        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ch.add_argument("--before", required=True, metavar="INDEX_OR_DATE",
                    help="earlier side: an index directory, or a date/range (2016, 2016-01, A/B) in --index")
    ch.add_argument("--after", required=True, metavar="INDEX_OR_DATE", help="later side, like --before")
    ch.add_argument("--index", help="the index holding both dates (when --before/--after are dates)")
    ch.add_argument("--out", required=True, metavar="DIR", help="folder for change maps and change.geojson")
    ch.add_argument("--to", metavar="TEXT", help="rank by how much closer each place moved to TEXT "
                    "(e.g. 'new buildings')")
    ch.add_argument("--level", choices=("tile", "region"), default="tile",
                    help="region: compare the stored regions of indexes built with --regions")
    ch.add_argument("--min-overlap", type=finite, default=0.5,
                    help="least IoU for tiles of different grids to count as one place (default 0.5)")
    ch.add_argument("--gpkg", action="store_true", help="also write change.gpkg")
    ch.add_argument("--top", type=int, default=20, help="ranked pairs printed/returned (default 20)")
    ch.add_argument("--model", help="with --to: override the index's model")
    ch.add_argument("--device", default="auto")
    ch.add_argument("--dtype", choices=("auto", "bf16", "fp16", "fp32"), default="auto")
    ch.add_argument("--json", action="store_true", help="print the summary as JSON")
    ch.set_defaults(func=cmd_change)


def add_index_date_args(ix: argparse.ArgumentParser) -> None:
    """``geovec index --date / --date-from-name``."""
    d = ix.add_mutually_exclusive_group()
    d.add_argument("--date", metavar="YYYY-MM-DD[THH:MM:SS]",
                   help="acquisition date of every scene indexed now (default: from metadata or file names)")
    d.add_argument("--date-from-name", metavar="PATTERN",
                   help="find each scene's date in its file name, e.g. '%%Y%%m%%d' or 'L7_%%Y-%%j' "
                        "(codes %%Y %%y %%m %%d %%j %%H %%M %%S)")


def add_search_time_args(se: argparse.ArgumentParser) -> None:
    """``geovec search --date-from/--date-to/--other-dates/--score-map``."""
    se.add_argument("--date-from", metavar="DATE", help="only scenes acquired on or after DATE (2016, 2016-01, ...)")
    se.add_argument("--date-to", metavar="DATE", help="only scenes acquired up to DATE (2016-01 = all of January)")
    se.add_argument("--other-dates", action="store_true",
                    help="list with each hit the tiles of other dates at the same place, with scores")
    se.add_argument("--score-map", metavar="DIR",
                    help="also write the query's similarity to every tile as a styled GeoTIFF per scene into DIR")


def search_time_fields(args: argparse.Namespace) -> dict[str, Any]:
    return {"date_from": args.date_from, "date_to": args.date_to, "other_dates": bool(args.other_dates),
            "score_map": _abs(args.score_map)}


def print_time(props: dict[str, Any]) -> None:
    """The date lines under a printed hit."""
    for o in props.get("other_dates") or []:
        print(f"       other date {o['acquired'] or 'undated'}  {o['score']:+.4f}  {o['tile_id']}  {o['source']}")


def print_score_maps(query: dict[str, Any]) -> None:
    for m in query.get("score_maps") or []:
        print(f"score map {m['path']}  ({m['scene']}: {m['tiles']} tiles, {m['min']:+.4f} .. {m['max']:+.4f}; "
              f"legend {Path(m['style']).name})")
