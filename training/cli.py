"""``geovec train`` and ``geovec eval`` sub-commands (imported lazily by backend/cli/main.py).

The ``run_*`` functions raise GeoVecError; ``geovec``'s main turns it into one line and exit 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from ..backend.errors import GeoVecError

log = logging.getLogger(__name__)


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="adapt the embedding model to labelled vector polygons over a GeoTIFF",
        description="Contrastive fine-tuning from a YAML config; evaluates the spatial hold-out before and "
        "after, writes the model (HF layout + geovec.json), report.md/json and figures. Re-running resumes "
        "from the last checkpoint.",
    )
    p.add_argument("--config", required=True, help="YAML config (see training/configs/)")
    p.add_argument("--output-dir", help="override output_dir")
    p.add_argument("--steps", type=int, help="override train.steps")
    p.add_argument("--model", help="override the base model (dir, preset or hub id; 'tiny')")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run_train)
    return p


def run_train(args: argparse.Namespace) -> int:
    from .config import Config
    from .eval.report import write_train_report
    from .trainer import Trainer

    cfg = Config.from_yaml(args.config)
    if args.output_dir:
        cfg.output_dir = args.output_dir
    if args.steps is not None:
        cfg.train.steps = args.steps
    if args.model:
        cfg.model = args.model
    report = Trainer(cfg, progress=not args.no_progress).run()
    if report.get("rank", 0) != 0:  # torchrun: rank 0 writes and reports
        return 0
    files = write_train_report(report, cfg.output_dir)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        b, a = report.get("before") or {}, report.get("after") or {}
        ci = a.get("p_at_1_ci95") or b.get("p_at_1_ci95")
        interval = f", 95% CI {ci[0]:.3f}-{ci[1]:.3f} over {a.get('n_polygons', b.get('n_polygons'))} polygons" \
            if ci else ""
        print(f"held-out class P@1 ({report.get('reported_split', 'validation')} split): "
              f"before {b.get('p_at_1', float('nan')):.3f}  after {a.get('p_at_1', float('nan')):.3f}"
              f"{interval} (chance {a.get('chance', b.get('chance', 0)):.3f}, n={a.get('n', b.get('n'))} chips)")
        if report.get("val_after"):
            print(f"validation P@1 (for choices): before {(report.get('val_before') or {}).get('p_at_1', float('nan')):.3f}"
                  f"  after {report['val_after']['p_at_1']:.3f}")
        print(f"model: {report['model_dir']}\nreport: {files['md']}\nwall time: {report['wall_s']:.1f} s")
    return 0


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    from .eval.harness import SPEC_KINDS

    p = subparsers.add_parser(
        "eval",
        help="evaluate a model on RSMEB-style task families",
        description="Task specs are FAMILY=PATH or FAMILY=PATH:IMAGES (the image folder, when the dataset "
        "does not keep its images in its usual place), FAMILY one of: " + ", ".join(SPEC_KINDS)
        + ". PATH is the dataset as distributed (UC Merced / AID class folders, RSICD / RSITMD caption JSON, "
        "RSVQA LR / HR folder, DIOR-RSVG folder); see training/README.md.",
    )
    p.add_argument("--model", required=True, help="model dir, preset name or hub id")
    p.add_argument("--tasks", nargs="+", required=True, metavar="FAMILY=PATH[:IMAGES]")
    p.add_argument("--split", default="test", help="split of datasets that have one (default: test)")
    p.add_argument("--out", help="folder for results.json, results.md and figures/")
    p.add_argument("--train-log", help="train_log.jsonl to plot training curves from")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--device", default="auto")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    p.set_defaults(func=run_eval_cmd)
    return p


def run_eval_cmd(args: argparse.Namespace) -> int:
    from .eval.harness import parse_spec, run_eval

    for spec in args.tasks:  # refuse bad specs before loading a model
        parse_spec(spec)
    from ..backend.model.embedder import load_embedder

    embedder = load_embedder(args.model, device=args.device)
    summary = run_eval(embedder, args.tasks, args.out, batch_size=args.batch_size, train_log=args.train_log,
                       split=args.split)
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        for name, r in summary["tasks"].items():
            figures = {k: round(v, 4) for k, v in r.items() if isinstance(v, float)}
            print(f"{name}: {figures}")
        if args.out:
            print(f"report: {Path(args.out) / 'results.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m geovec.training.cli``) with the same sub-commands."""
    parser = argparse.ArgumentParser(prog="geovec")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_parser(sub)
    add_eval_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args))
    except GeoVecError as e:  # same convention as backend/cli/main.py: one line, exit 1
        print(f"geovec: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
