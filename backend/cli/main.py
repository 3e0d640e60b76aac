"""``geovec`` command line (``python -m geovec.backend`` is the same).

Sub-commands: ``model tiny``, ``index``, ``export``, ``info`` (:mod:`.index`), ``search`` (:mod:`.search`),
the workflows (``classify``, ``fewshot``, ``refine``, ``locate``, ``ask``: :mod:`.workflows`); ``serve``
(from ``backend/server/cli.py``) when the server's dependencies are installed; and the
commands other packages register in the ``geovec.commands`` entry-point group
(``train`` and ``eval`` from ``geovec.training``, see ``commands.py``). Every failure exits non-zero with one
line on stderr (reason and hint), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import warnings
from collections.abc import Sequence
from typing import Any, NoReturn

from ..errors import GeoVecError
from .commands import add_registered
from .common import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, UsageError, fail, finite, group, model_options
from .index import cmd_export, cmd_index, cmd_info, cmd_model, cmd_model_fullsize
from .search import cmd_search

log = logging.getLogger(__name__)

WORKFLOWS = ("classify", "fewshot", "refine", "locate", "ask")
BUILTIN = ("model", "index", "search", "export", "info", "serve", "change", *WORKFLOWS)


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become one-line :class:`UsageError` s.

    Negative numbers in exponent form (``--box -1e300 ...``) are values, not options.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._negative_number_matcher = re.compile(r"^-(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?$")

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{_did_you_mean(message)} (see: {self.prog} --help)")


def _did_you_mean(message: str) -> str:
    """argparse's "invalid choice: 'serch' (choose from ...)" with the closest choice named."""
    import difflib

    m = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
    if not m:
        return message
    close = difflib.get_close_matches(m.group(1), re.findall(r"'([^']*)'", m.group(2)), n=1, cutoff=0.6)
    return f"{message}; did you mean {close[0]!r}?" if close else message


def _add_serve(sub: Any) -> None:
    """Add ``serve`` when the server's dependencies are installed."""
    try:
        from ..server.cli import add_serve_parser

        add_serve_parser(sub)
    except ImportError as e:
        log.debug("geovec serve not available: %s", e)


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
    ix.add_argument("folder", nargs="*", metavar="PATH",
                    help="a folder of rasters, or raster files (omit with --from-parquet)")
    ix.add_argument("--from-parquet", metavar="FILE",
                    help="import tiles + vectors from a GeoParquet file instead (pip install 'geovec[parquet]')")
    ix.add_argument("--index", required=True, help="index directory (created if absent)")
    ix.add_argument("--model", help="preset, local dir or hub id (default: the index's model)")
    # tiling: what is given here, else the existing index's, else TILING_DEFAULTS
    ix.add_argument("--tile-size", type=int, help="tile edge in output pixels (default 256)")
    ix.add_argument("--overlap", type=finite, help="fraction of a tile shared by neighbours (default 0)")
    ix.add_argument("--resolution", type=finite, help="target metres/pixel (default native)")
    ix.add_argument("--bands", type=int, nargs=3, metavar=("R", "G", "B"), help="1-based bands fed as RGB")
    ix.add_argument("--min-valid", type=finite, help="skip tiles with fewer valid pixels (default 0.5)")
    ix.add_argument("--nodata", type=finite, metavar="VALUE",
                    help="this value is fill, not imagery, in the scenes indexed now (wins over the files' tag)")
    ix.add_argument("--fill", choices=("auto", "off"), default="auto",
                    help="auto (default): find a constant fill collar in scenes with no nodata tag or mask; off: don't")
    ix.add_argument("--batch-size", type=int, default=16)
    ix.add_argument("--batch-tokens", type=int, default=None,
                    help="size batches by token count instead (e.g. 32768 on a GPU)")
    ix.add_argument("--workers", type=int, default=2, help="reader threads")
    ix.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="local: this process; ray: Ray Data stages on a Ray cluster (pip install 'geovec[ray]')")
    ix.add_argument("--address", help="--engine ray: cluster address (auto, ray://HOST:10001); default: a local Ray")
    ix.add_argument("--actors", type=int, help="--engine ray: model replicas (default: one per GPU, else per free CPU)")
    ix.add_argument("--group", type=group, action="append", metavar="NAME=PATH,PATH...",
                    help="name a stack of one-band files explicitly (repeatable)")
    ix.add_argument("--regions", nargs="?", const="", metavar="SPEC",
                    help="also store candidate region vectors (SPEC default 'grid=1,2,3,4;overlap=0.25'; "
                         "keys grid, overlap, max, min, layer=VECTOR_FILE); tiles already indexed get theirs")
    from .time import add_index_date_args, add_search_time_args

    add_index_date_args(ix)
    ix.add_argument("--repair", action="store_true", help="rebuild the vector file from SQLite first")
    ix.add_argument("--device", default="auto")
    model_options(ix)
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
    q.add_argument("--box", type=finite, nargs=4, metavar=("XMIN", "YMIN", "XMAX", "YMAX"))
    q.add_argument("--point", type=finite, nargs=2, metavar=("X", "Y"))
    q.add_argument("--image", metavar="PATH", help="search with an image file (PNG/JPEG/GeoTIFF)")
    q.add_argument("--vector", metavar="FILE", help="search with an embedding (.npy, JSON list or /v1/embed reply)")
    se.add_argument("--near", type=finite, nargs=2, metavar=("LAT", "LON"), help="centre of a location filter/re-rank")
    se.add_argument("--radius-km", type=finite, help="with --near: keep tiles centred within this distance")
    se.add_argument("--decay-km", type=finite, help="with --near: hits lose 0.1 of score per this many km")
    se.add_argument("--crs", help="CRS of --box/--point: EPSG code, WKT or PROJ string")
    se.add_argument("--raster", help="raster the box/point refers to (default: found in the index)")
    se.add_argument("--latlon", type=finite, nargs=2, metavar=("LAT", "LON"), help="condition on a location")
    se.add_argument("--k", type=int, default=10)
    se.add_argument("--min-score", type=finite, default=None)
    se.add_argument("--include-overlapping", action="store_true", help="keep hits overlapping the query")
    se.add_argument("--out-crs", default="EPSG:4326")
    se.add_argument("--model", help="override the index's recorded model")
    se.add_argument("--device", default="auto")
    model_options(se)
    se.add_argument("--force", action="store_true", help="search with a model other than the index's anyway")
    se.add_argument("--local", action="store_true", help="search in this process even when `geovec serve` runs")
    se.add_argument("--engine", choices=("local", "ray"), default="local",
                    help="ray: each index in a shard actor on a Ray cluster (the model stays here)")
    se.add_argument("--address", help="--engine ray: cluster address (auto, ray://HOST:10001); default: a local Ray")
    se.add_argument("--json", action="store_true")
    se.add_argument("--geojson", metavar="OUT", help="write the hits as GeoJSON (lon/lat unless --out-crs; a .csv "
                    "name writes CSV with a WKT column and a .prj)")
    from .regions import add_region_search_args

    add_region_search_args(se)
    add_search_time_args(se)
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

    if command is not None and command not in BUILTIN and not add_registered(sub, command):
        command = None  # not a command at all (a typo): list every command, so the hint can find the one meant
    elif command is not None and command not in BUILTIN:
        return p  # a registered command (train, eval, ...), added above
    if command in (None, *WORKFLOWS):
        from .workflows import add_workflow_parsers

        add_workflow_parsers(sub, finite)
    if command in (None, "change"):
        from .time import add_change_parser

        add_change_parser(sub, finite)
    if command in (None, "serve"):
        _add_serve(sub)
    if command is None:  # train, eval, ...: added by other packages (see commands.py)
        add_registered(sub)
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
        return int(e.code) if isinstance(e.code, int) else (0 if e.code is None else fail(str(e.code), 1))
    except UsageError as e:
        return fail(str(e), EXIT_USAGE)
    except GeoVecError as e:
        if verbose:
            log.exception("failed")
        return fail(str(e), EXIT_ERROR)
    except KeyboardInterrupt:
        return fail("interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        return EXIT_ERROR
    except Exception as e:  # noqa: BLE001 - never a traceback on the terminal
        if verbose:
            log.exception("unexpected failure")
        return fail(f"unexpected {type(e).__name__}: {e} (rerun with -v for details and report it)", EXIT_ERROR)
