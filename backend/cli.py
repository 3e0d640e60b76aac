"""``geovec`` command line (``python -m geovec.backend`` is the same).

Sub-commands: ``model tiny``, ``index``, ``search``, ``export``, ``info``, the workflows
(``classify``, ``fewshot``, ``refine``, ``locate``, ``ask``: ``backend/workflows/cli.py``); ``serve``
(from ``backend/server/cli.py``) when the server's dependencies are installed; and the
commands other packages register in the ``geovec.commands`` entry-point group
(``train`` and ``eval`` from ``geovec.training``, see ``commands.py``). Every failure exits non-zero with one
line on stderr (reason and hint), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from .cli_common import UsageError
from .cli_common import validated as _validated
from .commands import add_registered
from .errors import GeoVecError
from .jsonsafe import model_json
from .paths import one_line

log = logging.getLogger(__name__)

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
WORKFLOWS = ("classify", "fewshot", "refine", "locate", "ask")
BUILTIN = ("model", "index", "search", "export", "info", "serve", *WORKFLOWS)


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become one-line :class:`UsageError` s.

    Negative numbers in exponent form (``--box -1e300 ...``) are values, not options.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see: {self.prog} --help)")


def _fail(msg: str, code: int) -> int:
    print(f"geovec: error: {' '.join(str(msg).split())}", file=sys.stderr)
    return code


def _finite(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return v


def _abs(path: str | None, base: str | None = None) -> str | None:
    """``path`` made absolute (requests carry absolute paths; ``base`` for paths relative to a folder)."""
    if path is None or not path:
        return path
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (Path(base).expanduser() if base else Path.cwd()).absolute() / p)


def _group(text: str) -> tuple[str, list[str]]:
    name, sep, paths = text.partition("=")
    files = [p for p in paths.split(",") if p]
    if not sep or not name or not files:
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=PATH,PATH,...")
    return name, files


# ---------------------------------------------------------------- commands


def cmd_model(args: argparse.Namespace) -> int:
    from .model.tiny import write_tiny_model
    from .paths import uniform_modes

    path = write_tiny_model(Path(args.dir).expanduser(), seed=args.seed)
    uniform_modes(path)
    print(f"tiny random model written to {path} (for tests and demos: its hits are meaningless)")
    return 0


def cmd_model_fullsize(args: argparse.Namespace) -> int:
    from .model.fullsize import write_fullsize_model

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
    from .service import SIDECAR, read_sidecar

    stored: dict[str, Any] = {}
    if (Path(args.index).expanduser() / SIDECAR).exists():
        stored = dict(read_sidecar(args.index).get("tiling") or {})
    given = {"tile_size": args.tile_size, "overlap": args.overlap, "resolution": args.resolution,
             "min_valid_fraction": args.min_valid, "bands": args.bands}
    return {k: v if v is not None else stored.get(k, TILING_DEFAULTS[k]) for k, v in given.items()}


def cmd_index(args: argparse.Namespace) -> int:
    from .schemas import IndexRequest, TilingOptions
    from .service import SIDECAR, load_model, model_for_index, read_sidecar, run_index

    if args.regions is not None:
        from .regions import RegionSpec

        RegionSpec.parse(args.regions)  # a bad spec fails before anything is touched
    if args.from_parquet:
        return _import_parquet(args)
    if not args.folder:
        raise UsageError("give the FOLDER to index (or --from-parquet FILE)")
    if args.repair:
        _repair(args.index)
    tiling = _validated(TilingOptions, **_tiling_fields(args))
    groups = {name: [_abs(f, base=args.folder) for f in files] for name, files in args.group} if args.group else None
    req = _validated(IndexRequest, folder=_abs(args.folder), index=_abs(args.index), model=args.model, tiling=tiling,
                     groups=groups, batch_size=args.batch_size, batch_tokens=args.batch_tokens, force=args.force,
                     regions=args.regions)
    if not Path(args.folder).expanduser().is_dir():
        from .errors import NotFoundError

        raise NotFoundError(f"folder {args.folder!r} does not exist or is not a folder",
                            "give a folder containing .tif/.tiff/.vrt rasters")
    exists = (Path(args.index).expanduser() / SIDECAR).exists()
    if exists and args.image_size is not None:
        recorded = (read_sidecar(args.index).get("model") or {}).get("image") or {}
        if recorded.get("size") not in (None, args.image_size):
            raise UsageError(f"index {args.index} embeds images at {recorded.get('size')} px, not --image-size "
                             f"{args.image_size} (vectors at another size do not compare); drop --image-size "
                             "or use a new --index")
    if args.engine == "ray":
        from .indexing.ray_engine import connect

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
        from .model.vision import configure_vision

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
            from .indexing.ray_engine import run_index_ray

            summary = run_index_ray(req, progress=bar, cancel=cancel, address=args.address, device=args.device,
                                    actors=args.actors, dtype=args.dtype, image_size=args.image_size)
        else:
            summary = run_index(req, embedder, progress=bar, cancel=cancel, workers=args.workers)
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
              f"skipped (below --min-valid); {summary.regions} region(s); {len(summary.errors)} error(s); "
              f"{summary.seconds:.1f} s")
        for err in summary.errors:
            print(f"  error: {one_line(err.path)}: {one_line(err.error)}")
    if args.verify and not _verify(args.index, args.json):
        return EXIT_ERROR
    if summary.cancelled:
        return EXIT_INTERRUPTED
    if summary.errors:
        first = summary.errors[0]
        return _fail(f"{len(summary.errors)} file(s) could not be indexed, e.g. {first.path}: {first.error}"
                     " (the other files were indexed; fix or remove these and rerun)", EXIT_ERROR)
    return 0


def _import_parquet(args: argparse.Namespace) -> int:
    from .indexing.geoparquet import import_geoparquet

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
    from .indexing.geoparquet import export_geoparquet

    n = export_geoparquet(args.index, args.out)
    print(f"wrote {n} tile(s) with footprints and vectors to {args.out} ({args.format})")
    return 0


def _repair(index: str) -> None:
    from .index.repair import repair_index

    repair_index(index)
    print(f"repaired {index}", file=sys.stderr)


TILING_DEFAULTS: dict[str, Any] = {"tile_size": 256, "overlap": 0.0, "resolution": None, "min_valid_fraction": 0.5,
                                   "bands": None}


def cmd_search(args: argparse.Namespace) -> int:
    from .schemas import SearchRequest
    from .service import model_for_index, run_search

    fields: dict[str, Any] = {"index": _abs(args.index[0]), "indexes": [_abs(i) for i in args.index[1:]], "k": args.k,
                              "min_score": args.min_score,
                              "exclude_overlapping": not args.include_overlapping, "out_crs": args.out_crs,
                              "force": args.force}
    fields.update(_region_fields(args))
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
        fields.update(box=args.box, crs=args.crs, raster=_abs(args.raster))
    elif args.point is not None:
        fields.update(point=args.point, crs=args.crs, raster=_abs(args.raster))
    elif args.image is not None:
        fields["image"] = _abs(args.image)
    elif args.text is None:
        raise UsageError("give --text, --box, --point or --image (--text may go with one of the others)")
    if (args.box is not None or args.point is not None) and not args.crs:
        raise UsageError("--crs is required with --box/--point (e.g. EPSG:4326 or the raster's EPSG code)")
    if args.latlon is not None:
        fields["latlon"] = args.latlon
    req = _validated(SearchRequest, **fields)

    if args.geojson:
        _check_writable(args.geojson)  # before the (maybe slow) search, not after it
    resp = None
    if args.server is not None:  # answered by a running `geovec serve` (its model, its open indexes)
        from .server.client import search_via_server

        resp = search_via_server(req, args.server or None)
    elif not args.local and not args.model:  # a running `geovec serve` answers without reloading the model
        resp = _search_via_running_server(req)
    if resp is None:
        resp = run_search(req, lambda: model_for_index(args.index[0], model=args.model, device=args.device,
                                                       dtype=args.dtype))
    if args.geojson:
        from .cli_regions import geojson_with_regions

        Path(args.geojson).expanduser().write_text(json.dumps(geojson_with_regions(resp), indent=1), encoding="utf-8")
    if args.json:
        print(model_json(resp, indent=2))
        return 0
    if not resp.features:
        print("no hits")
    for f in resp.features:
        p = f.properties
        where = f"  [{p['index']}]" if p.get("index") else ""
        box = f"  box {tuple(p['bbox_image'])}" if p.get("level") == "region" else ""
        print(f"{p['rank']:>3}  {p['score']:+.4f}  {p['tile_id']}  lat {p['center_lat']:.5f} lon "
              f"{p['center_lon']:.5f}  window {tuple(p['window'])}{box}  {p['source']}{where}")
        if p.get("level") != "region":
            for r in p.get("regions") or []:
                print(f"       region {r['rank']}  {r['score']:+.4f}  box {tuple(r['bbox_image'])}")
    if args.geojson:
        print(f"wrote {len(resp.features)} hit(s) to {args.geojson}")
    return 0


def _search_via_running_server(req: Any) -> Any:
    """The answer of a running ``geovec serve`` (None when none answers, or its model is not the index's)."""
    from .errors import ModelMismatchError, ModelUnavailableError
    from .server.client import running_server, search_via_server

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
    from .cli_regions import region_fields

    return region_fields(args)


def _search_vector(args: argparse.Namespace, fields: dict[str, Any]) -> int:
    from .schemas_workflows import VectorSearchRequest
    from .workflows.cli import _print_hits, read_vector
    from .workflows.service import run_vector_search

    if fields.get("indexes"):
        raise UsageError("--vector searches one index; give one --index")
    keep = {k: fields[k] for k in ("index", "k", "min_score", "out_crs", "near") if k in fields}
    req = _validated(VectorSearchRequest, **keep, vector=read_vector(args.vector))
    _print_hits(run_vector_search(req), args)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from .service import index_info

    info = index_info(args.index)
    if args.json:
        print(model_json(info, indent=2))
        return 0 if not args.verify or _verify(args.index, True) else EXIT_ERROR
    print(f"index      {one_line(info.path)}\ntiles      {info.count}\nscenes     {info.scenes}\n"
          f"dim        {info.dim} ({info.space})\nmodel      {info.preset} @ {info.checkpoint}\n"
          f"tiling     {json.dumps(info.tiling)}\ncreated    {info.created}\nupdated    {info.updated}")
    reg = info.extra.get("regions")
    print(f"regions    {reg['count']} ({reg['spec']})" if reg else "regions    none (index with --regions to store them)")
    for s in info.extra.get("scene_list", []):
        print(f"  scene {one_line(str(s['name']))} [{s['status']}] {s['scene_id']}")
    if args.verify and not _verify(args.index, False):
        return EXIT_ERROR
    return 0


def _verify(index: str, as_json: bool) -> bool:
    """Run ``verify_index`` and print its report (JSON on stderr with --json); True when ok."""
    from dataclasses import asdict

    from .index.verify import verify_index

    report = verify_index(index)
    if as_json:
        print(json.dumps({"verify": {**asdict(report), "ok": report.ok}}), file=sys.stderr)
    else:
        print("\n".join(one_line(line) for line in report.lines()))
    if not report.ok:
        _fail(f"index {index} failed verification (see the report above)", EXIT_ERROR)
    return report.ok


def _check_writable(path: str) -> None:
    """InputError unless ``path`` can be created or written (nothing is left behind when it was absent)."""
    import os

    from .errors import InputError

    p = Path(path).expanduser()
    existed = p.exists()
    try:
        if p.is_dir():
            raise IsADirectoryError(21, "is a folder")
        fd = os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
        os.close(fd)
    except OSError as e:
        raise InputError(f"--geojson {one_line(path)!r} cannot be written: {e.strerror or e}",
                         "give a file path in a folder that exists and that you can write") from e
    if not existed:
        p.unlink(missing_ok=True)


# ---------------------------------------------------------------- parser


def _add_serve(sub: Any) -> None:
    """Add ``serve`` when the server's dependencies are installed."""
    try:
        from .server.cli import add_serve_parser

        add_serve_parser(sub)
    except ImportError as e:
        log.debug("geovec serve not available: %s", e)


def _model_options(p: Any) -> None:
    p.add_argument("--dtype", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                   help="weights dtype (auto: bf16 on GPUs and bf16-capable CPUs, else fp32)")


def build_parser(command: str | None = None) -> Parser:
    """The argparse parser; ``command`` limits the optional sub-commands imported."""
    p = Parser(prog="geovec", description="Index GeoTIFFs into multimodal embeddings and search them.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    m = sub.add_parser("model", help="model utilities")
    msub = m.add_subparsers(dest="model_command", metavar="WHAT", required=True)
    tiny = msub.add_parser("tiny", help="write a tiny random Qwen2-VL checkpoint (tests, demos)")
    tiny.add_argument("dir")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=cmd_model)
    full = msub.add_parser("fullsize", help="write a random Qwen2-VL-2B-sized checkpoint (~4.4 GB; speed/memory checks)")
    full.add_argument("dir")
    full.add_argument("--preset", default="vlm2vec-qwen2vl-2b", choices=("vlm2vec-qwen2vl-2b", "gme-qwen2vl-2b"))
    full.add_argument("--seed", type=int, default=0)
    full.add_argument("--device", default="cpu", help="where to initialise the weights (cuda is faster)")
    full.set_defaults(func=cmd_model_fullsize)

    ix = sub.add_parser("index", help="index (or update) a folder of GeoTIFFs")
    ix.add_argument("folder", nargs="?", help="folder of rasters (omit with --from-parquet)")
    ix.add_argument("--from-parquet", metavar="FILE",
                    help="import tiles + vectors from a GeoParquet file instead (pip install 'geovec[parquet]')")
    ix.add_argument("--index", required=True, help="index directory (created if absent)")
    ix.add_argument("--model", help="preset, local dir or hub id (default: the index's model)")
    # tiling: what is given here, else the existing index's, else TILING_DEFAULTS
    ix.add_argument("--tile-size", type=int, help="tile edge in output pixels (default 256)")
    ix.add_argument("--overlap", type=_finite, help="fraction of a tile shared by neighbours (default 0)")
    ix.add_argument("--resolution", type=_finite, help="target metres/pixel (default native)")
    ix.add_argument("--bands", type=int, nargs=3, metavar=("R", "G", "B"), help="1-based bands fed as RGB")
    ix.add_argument("--min-valid", type=_finite, help="skip tiles with fewer valid pixels (default 0.5)")
    ix.add_argument("--batch-size", type=int, default=16)
    ix.add_argument("--batch-tokens", type=int, default=None,
                    help="size batches by token count instead (e.g. 32768 on a GPU)")
    ix.add_argument("--workers", type=int, default=2, help="reader threads")
    ix.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="local: this process; ray: Ray Data stages on a Ray cluster (pip install 'geovec[ray]')")
    ix.add_argument("--address", help="--engine ray: cluster address (auto, ray://HOST:10001); default: a local Ray")
    ix.add_argument("--actors", type=int, help="--engine ray: model replicas (default: one per GPU, else per free CPU)")
    ix.add_argument("--group", type=_group, action="append", metavar="NAME=PATH,PATH...",
                    help="name a stack of one-band files explicitly (repeatable)")
    ix.add_argument("--regions", nargs="?", const="", metavar="SPEC",
                    help="also store candidate region vectors (SPEC default 'grid=1,2,3,4;overlap=0.25'; "
                         "keys grid, overlap, max, min, layer=VECTOR_FILE); tiles already indexed get theirs")
    ix.add_argument("--repair", action="store_true", help="rebuild the vector file from SQLite first")
    ix.add_argument("--device", default="auto")
    _model_options(ix)
    ix.add_argument("--compile", action="store_true", help="torch.compile the vision tower (GPUs: faster after a "
                    "warm-up of a minute or so; same as GEOVEC_COMPILE=1)")
    ix.add_argument("--image-size", type=int, help="image edge the model sees (default: the preset's; smaller is "
                    "faster; recorded in the index)")
    ix.add_argument("--force", action="store_true", help="add to an index built with another model anyway")
    ix.add_argument("--no-progress", action="store_true")
    ix.add_argument("--json", action="store_true", help="print the summary as JSON")
    ix.add_argument("--verify", action="store_true",
                    help="then check the index: SQLite integrity and every vector against its SQLite copy")
    ix.set_defaults(func=cmd_index)

    se = sub.add_parser("search", help="search an index by text, box or point")
    se.add_argument("--index", required=True, action="append",
                    help="index directory; repeat to search several built with the same model")
    se.add_argument("--text", help="a description or referring expression; with --box/--point/--image: composed")
    q = se.add_mutually_exclusive_group()
    q.add_argument("--box", type=_finite, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"))
    q.add_argument("--point", type=_finite, nargs=2, metavar=("X", "Y"))
    q.add_argument("--image", metavar="PATH", help="search with an image file (PNG/JPEG/GeoTIFF)")
    q.add_argument("--vector", metavar="FILE", help="search with an embedding (.npy, JSON list or /v1/embed reply)")
    se.add_argument("--near", type=_finite, nargs=2, metavar=("LAT", "LON"), help="centre of a location filter/re-rank")
    se.add_argument("--radius-km", type=_finite, help="with --near: keep tiles centred within this distance")
    se.add_argument("--decay-km", type=_finite, help="with --near: hits lose 0.1 of score per this many km")
    se.add_argument("--crs", help="CRS of --box/--point: EPSG code, WKT or PROJ string")
    se.add_argument("--raster", help="raster the box/point refers to (default: found in the index)")
    se.add_argument("--latlon", type=_finite, nargs=2, metavar=("LAT", "LON"), help="condition on a location")
    se.add_argument("--k", type=int, default=10)
    se.add_argument("--min-score", type=_finite, default=None)
    se.add_argument("--include-overlapping", action="store_true", help="keep hits overlapping the query")
    se.add_argument("--out-crs", default="EPSG:4326")
    se.add_argument("--model", help="override the index's recorded model")
    se.add_argument("--device", default="auto")
    _model_options(se)
    se.add_argument("--force", action="store_true", help="search with a model other than the index's anyway")
    se.add_argument("--local", action="store_true", help="search in this process even when `geovec serve` runs")
    se.add_argument("--json", action="store_true")
    se.add_argument("--geojson", metavar="OUT", help="write the hits as GeoJSON")
    from .cli_regions import add_region_search_args

    add_region_search_args(se)
    se.add_argument("--server", nargs="?", const="", metavar="URL",
                    help="ask a running `geovec serve` (default URL from its token file) instead of loading the model")
    se.set_defaults(func=cmd_search)

    ex = sub.add_parser("export", help="write an index's tiles, footprints and vectors to a file")
    ex.add_argument("--index", required=True)
    ex.add_argument("--format", choices=("geoparquet",), default="geoparquet")
    ex.add_argument("out", help="output file, e.g. tiles.parquet")
    ex.set_defaults(func=cmd_export)

    inf = sub.add_parser("info", help="describe an index")
    inf.add_argument("--index", required=True)
    inf.add_argument("--json", action="store_true")
    inf.add_argument("--verify", action="store_true",
                     help="check SQLite integrity and every vector against its SQLite copy (exit 1 on problems)")
    inf.set_defaults(func=cmd_info)

    if command in (None, *WORKFLOWS):
        from .workflows.cli import add_workflow_parsers

        add_workflow_parsers(sub, _finite)
    if command in (None, "serve"):
        _add_serve(sub)
    if command not in BUILTIN:  # train, eval, ...: added by other packages (see commands.py)
        add_registered(sub, command)
    return p


def _command_of(argv: Sequence[str]) -> str | None:
    for a in argv:
        if not a.startswith("-"):
            return a
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``geovec``; returns the exit status (0 ok, 1 error, 2 usage, 130 interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in argv or "--verbose" in argv
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        warnings.filterwarnings("ignore")
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # no retry chatter: errors say it all
        try:
            import transformers  # noqa: F401  (quiet its warnings too, if it is importable)

            transformers.logging.set_verbosity_error()
        except Exception:  # noqa: BLE001
            pass
    try:
        cmd = _command_of(argv)
        args = build_parser(cmd if cmd not in ("-h", "--help") else None).parse_args(argv)
        return int(args.func(args) or 0)
    except SystemExit as e:  # --help, or a sub-command that exits on its own
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else _fail(str(e.code), 1))
    except UsageError as e:
        return _fail(str(e), EXIT_USAGE)
    except GeoVecError as e:
        if verbose:
            log.exception("failed")
        return _fail(str(e), EXIT_ERROR)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - never a traceback on the terminal
        if verbose:
            log.exception("unexpected failure")
        return _fail(f"unexpected {type(e).__name__}: {e} (rerun with -v for details and report it)", EXIT_ERROR)


if __name__ == "__main__":
    raise SystemExit(main())
