"""``geovec model``, ``geovec index`` (and its GeoParquet import), ``geovec export``, ``geovec info``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from ..jsonsafe import model_json
from ..paths import one_line
from .common import EXIT_ERROR, EXIT_INTERRUPTED, UsageError, abs_path, fail, validated

log = logging.getLogger(__name__)


TILING_DEFAULTS: dict[str, Any] = {"tile_size": 256, "overlap": 0.0, "resolution": None, "min_valid_fraction": 0.5,
                                   "bands": None}


def cmd_model(args: argparse.Namespace) -> int:
    from ..model.tiny import write_tiny_model
    from ..paths import uniform_modes

    path = write_tiny_model(Path(args.dir).expanduser(), seed=args.seed)
    uniform_modes(path)
    print(f"tiny random model written to {path} (for tests and demos: its hits are meaningless)")
    return 0


def cmd_model_fullsize(args: argparse.Namespace) -> int:
    from ..model.fullsize import write_fullsize_model

    path = write_fullsize_model(Path(args.dir).expanduser(), preset=args.preset, seed=args.seed, device=args.device)
    print(f"random Qwen2-VL-2B-sized model written to {path} (to measure speed and memory: its hits are "
          "meaningless)")
    return 0


class _TqdmProgress:
    """Progress callback drawing a tqdm bar with rate and ETA on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: Any = None

    def __call__(self, ev: Any) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=ev.tiles_total, unit="tile", dynamic_ncols=True, file=sys.stderr)
        self.bar.total = ev.tiles_total
        self.bar.n = ev.tiles_done
        if ev.current_file:
            self.bar.set_postfix_str(Path(ev.current_file).name, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _tiling_fields(args: argparse.Namespace) -> dict[str, Any]:
    """Tiling options given on the command line; the rest from the existing index, else the defaults."""
    from ..service import SIDECAR, read_sidecar

    stored: dict[str, Any] = {}
    if (Path(args.index).expanduser() / SIDECAR).exists():
        stored = dict(read_sidecar(args.index).get("tiling") or {})
    given = {"tile_size": args.tile_size, "overlap": args.overlap, "resolution": args.resolution,
             "min_valid_fraction": args.min_valid, "bands": args.bands}
    return {k: v if v is not None else stored.get(k, TILING_DEFAULTS[k]) for k, v in given.items()}


def cmd_index(args: argparse.Namespace) -> int:
    from ..schemas import IndexRequest, TilingOptions
    from ..service import SIDECAR, load_model, model_for_index, read_sidecar, run_index

    if args.regions is not None:
        from ..regions import RegionSpec

        RegionSpec.parse(args.regions)  # a bad spec fails before anything is touched
    if args.from_parquet:
        return _import_parquet(args)
    if not args.folder:
        raise UsageError("give the FOLDER (or raster FILEs) to index (or --from-parquet FILE)")
    first = args.folder[0]
    more = [str(abs_path(f)) for f in args.folder[1:]]
    if more and args.engine == "ray":
        raise UsageError("--engine ray indexes one folder; give a folder, or index the files without --engine ray")
    if args.repair:
        _repair(args.index)
    tiling = validated(TilingOptions, **_tiling_fields(args), nodata=args.nodata, fill=args.fill)
    base = first if Path(first).expanduser().is_dir() else None
    groups = {name: [abs_path(f, base=base) for f in files] for name, files in args.group} if args.group else None
    req = validated(IndexRequest, folder=abs_path(first), index=abs_path(args.index), model=args.model, tiling=tiling,
                     groups=groups, batch_size=args.batch_size, batch_tokens=args.batch_tokens, force=args.force,
                     regions=args.regions, date=args.date, date_from_name=args.date_from_name)
    for path in args.folder:
        if not Path(path).expanduser().exists():
            from ..errors import NotFoundError

            raise NotFoundError(f"{path!r} does not exist", "give a folder of rasters, or raster files")
    exists = (Path(args.index).expanduser() / SIDECAR).exists()
    if exists and args.image_size is not None:
        recorded = (read_sidecar(args.index).get("model") or {}).get("image") or {}
        if recorded.get("size") not in (None, args.image_size):
            raise UsageError(f"index {args.index} embeds images at {recorded.get('size')} px, not --image-size "
                             f"{args.image_size} (vectors at another size do not compare); drop --image-size "
                             "or use a new --index")
    if args.engine == "ray":
        from ..indexing.ray_engine import connect

        connect(args.address)  # a wrong address fails before any model is loaded
        embedder: Any = None
    elif args.model:
        embedder = load_model(args.model, device=args.device, dtype=args.dtype, image_size=args.image_size)
    elif exists:
        embedder = model_for_index(args.index, device=args.device, dtype=args.dtype)
    else:
        raise UsageError("--model is required to create a new index (a preset, a local dir or a hub id)")
    if args.engine == "ray" and not args.model and not exists:
        raise UsageError("--model is required to create a new index (a preset, a local dir or a hub id)")
    if args.compile:
        if embedder is None:
            raise UsageError("--compile works with the local engine; for Ray set GEOVEC_COMPILE=1 in the "
                             "workers' environment")
        from ..model.vision import configure_vision

        configure_vision(embedder.model, compile=True)

    cancel = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\ngeovec: cancelling after the current batch (Ctrl-C again to abort)", file=sys.stderr)

    old = signal.signal(signal.SIGINT, on_sigint) if threading.current_thread() is threading.main_thread() else None
    bar = _TqdmProgress(not args.no_progress and not args.json)
    try:
        if args.engine == "ray":
            from ..indexing.ray_engine import run_index_ray

            summary = run_index_ray(req, progress=bar, cancel=cancel, address=args.address, device=args.device,
                                    actors=args.actors, dtype=args.dtype, image_size=args.image_size)
        else:
            summary = run_index(req, embedder, progress=bar, cancel=cancel, workers=args.workers, files=more)
    finally:
        bar.close()
        if old is not None:
            signal.signal(signal.SIGINT, old)
    if args.json:
        print(model_json(summary, indent=2))
    else:
        state = "CANCELLED (rerun to resume)" if summary.cancelled else "done"
        print(f"{state}: {summary.scenes} scene(s) indexed, {summary.scenes_skipped_unchanged} unchanged, "
              f"{summary.scenes_removed} removed; {summary.tiles} tile(s) embedded, {summary.tiles_skipped} "
              f"skipped (mostly fill/nodata: under --min-valid imagery); {summary.regions} region(s); "
              f"{len(summary.errors)} error(s); "
              f"{summary.seconds:.1f} s")
        for err in summary.errors:
            print(f"  error: {one_line(err.path)}: {one_line(err.error)}")
    if args.verify and not _verify(args.index, args.json):
        return EXIT_ERROR
    if summary.cancelled:
        return EXIT_INTERRUPTED
    if summary.errors:
        first = summary.errors[0]
        return fail(f"{len(summary.errors)} file(s) could not be indexed, e.g. {first.path}: {first.error}"
                     " (the other files were indexed; fix or remove these and rerun)", EXIT_ERROR)
    return 0


def _import_parquet(args: argparse.Namespace) -> int:
    from ..indexing.geoparquet import import_geoparquet

    if args.folder:
        raise UsageError("give FOLDER or --from-parquet FILE, not both")
    summary = import_geoparquet(args.from_parquet, args.index, model=args.model)
    if args.json:
        print(summary.model_dump_json(indent=2))
    else:
        print(f"imported {summary.tiles} tile(s) ({summary.scenes} scene(s)) from {args.from_parquet} into "
              f"{args.index}; {summary.seconds:.1f} s")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..indexing.geoparquet import export_geoparquet

    n = export_geoparquet(args.index, args.out)
    print(f"wrote {n} tile(s) with footprints and vectors to {args.out} ({args.format})")
    return 0


def _repair(index: str) -> None:
    from ..index.repair import repair_index

    repair_index(index)
    print(f"repaired {index}", file=sys.stderr)


def cmd_info(args: argparse.Namespace) -> int:
    from ..service import index_info

    info = index_info(args.index)
    if args.json:
        print(model_json(info, indent=2))
        return 0 if not args.verify or _verify(args.index, True) else EXIT_ERROR
    print(f"index      {one_line(info.path)}\ntiles      {info.count}\nscenes     {info.scenes}\n"
          f"dim        {info.dim} ({info.space})\nmodel      {info.preset} @ {info.checkpoint}\n"
          f"tiling     {json.dumps(info.tiling)}\ncreated    {info.created}\nupdated    {info.updated}")
    reg = info.extra.get("regions")
    print(f"regions    {reg['count']} ({reg['spec']})" if reg else "regions    none (index with --regions to store them)")
    dates = info.extra.get("dates")
    print(f"dates      {dates['first']} .. {dates['last']} ({dates['dated']} dated, {dates['undated']} undated)"
          if dates else "dates      none recorded (geovec index --date / --date-from-name)")
    for s in info.extra.get("scene_list", []):
        when = f" {s['acquired']} ({s['date_source']})" if s.get("acquired") else ""
        print(f"  scene {one_line(str(s['name']))} [{s['status']}]{when} {s['scene_id']}")
        if "crs" in s:
            print(scene_lines(s))
    if args.verify and not _verify(args.index, False):
        return EXIT_ERROR
    return 0


def scene_lines(s: dict[str, Any]) -> str:
    """The ``info`` lines of one scene: CRS, extent, bands used, stretch, nodata and fill."""
    ext = ", ".join(f"{v:.6g}" for v in s["extent"])
    lon0, lat0, lon1, lat1 = s["extent_wgs84"]
    st = s["stretch"]
    stretch = st["method"] if st["method"] == "identity" else \
        f"{st['method']} low {[round(v, 4) for v in st['low']]} high {[round(v, 4) for v in st['high']]}"
    fill = s["fill"]
    fill_txt = "none found" if fill["source"] == "none" else (
        f"{fill['value'] if fill['value'] is not None else 'mask'} ({fill['source']}), "
        f"{100 * (fill['fraction'] or 0):.1f} % of the scene")
    skipped = "" if s.get("tiles_skipped") is None else f", {s['tiles_skipped']} skipped as mostly fill"
    return (f"    crs {one_line(str(s['crs']))}; {s['size'][0]}x{s['size'][1]} px {s['dtype']}; extent {ext} "
            f"(lon {lon0:.5f}..{lon1:.5f}, lat {lat0:.5f}..{lat1:.5f})\n"
            f"    bands used (R,G,B) {s['bands_used']}; stretch {stretch}; nodata tag {s['nodata']}; "
            f"fill {fill_txt}; {s['tiles']} tile(s){skipped}")


def _verify(index: str, as_json: bool) -> bool:
    """Run ``verify_index`` and print its report (JSON on stderr with --json); True when ok."""
    from dataclasses import asdict

    from ..index.verify import verify_index

    report = verify_index(index)
    if as_json:
        print(json.dumps({"verify": {**asdict(report), "ok": report.ok}}), file=sys.stderr)
    else:
        print("\n".join(one_line(line) for line in report.lines()))
    if not report.ok:
        fail(f"index {index} failed verification (see the report above)", EXIT_ERROR)
    return report.ok
