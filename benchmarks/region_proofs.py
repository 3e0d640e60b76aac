"""Region search after adaptation with region pairs, on real data (tiny random model adapted on CPU).

Two proofs, each: write the tiny random Qwen2-VL, adapt it with ``geovec train``'s Trainer on
the training blocks of a spatial split, embed every tile of the scene and its candidate
boxes (tile image + box tokens + region instruction, one image forward per tile), then
query with typed text on the evaluation blocks only. The untrained model is measured the
same way in the same run.

- ``nc``: NC Landsat 7 with its 34 land-cover polygons. Each class name is a referring
  expression (``referring_query`` instruction) searching region vectors, and the same
  text searches tile vectors (``text_query``). Precision = share of the highlighted area
  (the union of the top-k regions after NMS, or of the top-k tiles) whose label in
  ``landsat96_labelled_pixels.tif`` is the class, counted on labelled pixels of the
  held-out polygons (elsewhere the truth is unknown); candidates are the tiles inside
  evaluation blocks (and their boxes) that hold such pixels.
- ``neon``: NEON OSBS_029 with its 61 tree-crown boxes. "a tree crown" ranks the candidate
  boxes lying inside the evaluation blocks; the top N after NMS (N = held-out crowns) hit a
  crown at IoU >= 0.3. Against: N boxes of the same sizes placed at random inside the
  evaluation blocks (mean over 2000 draws), and the best the candidate set allows.

    python benchmarks/region_proofs.py nc   [--steps N] [--out runs/proof-nc]
    python benchmarks/region_proofs.py neon [--steps N] [--out runs/proof-neon]

The training settings are those of training/configs/{nc_landsat7,neon_osbs}_regions.yaml.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import machine  # noqa: E402

SHARED = Path(os.environ.get("GEOVEC_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
NC = SHARED / "nc_landsat7"


CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"


def load_config(name: str, out: Path, steps: int | None) -> dict[str, Any]:
    """A training config of training/configs as plain values, with the run folder (and steps) set."""
    from geovec.training.config import Config

    cfg = Config.from_yaml(name if Path(name).is_file() else CONFIGS / name)
    cfg.output_dir = str(out)
    if steps is not None:
        cfg.train.steps = steps
    return cfg.to_dict()


# ------------------------------------------------------------------ shared pieces
def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.5, keep: int = 10) -> list[int]:
    """Greedy non-maximum suppression over the whole scene; indices of the kept boxes, best first."""
    from geovec.training.data.region_pairs import box_iou

    out: list[int] = []
    for i in np.argsort(-scores):
        if all(box_iou(tuple(boxes[i]), tuple(boxes[j])) < iou for j in out):
            out.append(int(i))
            if len(out) == keep:
                break
    return out


def build_index(folder: Path, idx: Path, model: str, cfg: dict[str, Any], tile_overlap: float) -> None:
    """`geovec index FOLDER --regions SPEC` with the model (its saved image size, or the config's)."""
    import contextlib
    import io

    from geovec.backend.cli import main as geovec

    d, r = cfg["data"], cfg["data"]["regions"]
    spec = f"grid={','.join(map(str, r['grid']))};overlap={r['overlap']:g}"
    argv = ["index", str(folder), "--index", str(idx), "--model", model, "--device", "cpu", "--dtype", "fp32",
            "--tile-size", str(r["tile_size"]), "--overlap", f"{tile_overlap:g}", "--regions", spec,
            "--image-size", str(d["image_size"]), "--no-progress"]
    if d.get("bands"):
        argv += ["--bands", *map(str, d["bands"])]
    with contextlib.redirect_stdout(io.StringIO()) as out:
        if geovec(argv) != 0:
            raise SystemExit(f"geovec index failed: {out.getvalue()}")


class Searcher:
    """Text queries through the product's search (``run_search``), hits as native pixel boxes."""

    def __init__(self, idx: Path, emb: Any, scene: Any, area_px: Any, cell: float) -> None:
        from affine import Affine

        self.idx, self.emb, self.area, self.cell = idx, emb, area_px, cell
        fwd = Affine(*scene.transform)
        self.to_crs = [fwd.a, fwd.b, fwd.d, fwd.e, fwd.c, fwd.f]
        self.crs = scene.crs_wkt

    def boxes(self, text: str, level: str) -> tuple[np.ndarray, np.ndarray]:
        """(n, 4) native pixel boxes and their scores, best first: tiles, or every candidate region.

        One query per cell of the area (a cell whose answer reaches the search's k cap is
        split in four), so every candidate of the area comes back, each once.
        """
        import shapely

        found: dict[tuple[str, tuple[float, ...]], float] = {}
        x0, y0, x1, y1 = self.area.bounds
        todo = [(x, y, self.cell) for x in np.arange(x0, x1, self.cell) for y in np.arange(y0, y1, self.cell)]
        while todo:
            x, y, size = todo.pop()
            part = self.area.intersection(shapely.box(x, y, x + size, y + size))
            if part.area <= 0:
                continue
            feats = self._search(text, level, shapely.affinity.affine_transform(part, self.to_crs).wkt)
            if len(feats) >= 1000:
                half = size / 2
                todo += [(x + dx, y + dy, half) for dx in (0, half) for dy in (0, half)]
                continue
            for f in feats:
                p = f.properties
                c, r, w, h = p["window"]
                bx0, by0, bx1, by1 = p["bbox_image"] if level == "region" else (0, 0, w, h)
                # tiles at native resolution: image px = native px
                found[(p["tile_id"], (c + bx0, r + by0, c + bx1, r + by1))] = p["score"]
        order = sorted(found, key=lambda key: -found[key])
        boxes = np.array([key[1] for key in order], dtype=float).reshape(-1, 4)
        return boxes, np.array([found[key] for key in order], dtype=float)

    def _search(self, text: str, level: str, within: str) -> list[Any]:
        from geovec.backend.errors import InputError
        from geovec.backend.schemas import SearchRequest
        from geovec.backend.service import run_search

        # nms_iou 1: every candidate comes back (the proofs apply one NMS over the whole scene)
        req = SearchRequest(index=str(self.idx), text=text, level=level, k=1000, within=within,
                            within_crs=self.crs, regions_per_hit=0, nms_iou=1.0, force=True)
        try:
            return list(run_search(req, self.emb).features)
        except InputError:  # a sliver of the area that touches no tile
            return []


def split_of(report: dict[str, Any], features: list[Any], block: int) -> tuple[list[Any], Any]:
    """Held-out features (the run's validation and test ids) and the evaluation area: their blocks."""
    from geovec.training.data.region_pairs import held_out_area

    ids = set(report["split"].get("val_feature_ids", [])) | set(report["split"].get("test_feature_ids", []))
    held = [f for f in features if f.fid in ids]
    return held, held_out_area(held, block, 0.0)


def inside_mask(area: Any, boxes: np.ndarray) -> np.ndarray:
    import shapely

    grown = area.buffer(1e-6)
    shapely.prepare(grown)
    return np.array([grown.contains(shapely.box(*b)) for b in boxes], dtype=bool)


# ------------------------------------------------------------------ NC Landsat 7
def nc_eval(search: Searcher, data: dict[str, Any], k: int) -> dict[str, Any]:
    """Per-class region and tile precision on the held-out labelled pixels."""
    truth, held_mask, area, classes = data["truth"], data["held_mask"], data["area"], data["classes"]
    held_truth = np.where(held_mask, truth, 0)

    def eligible(boxes: np.ndarray) -> np.ndarray:
        b = np.round(boxes).astype(int)
        return inside_mask(area, boxes) & np.array([held_truth[y0:y1, x0:x1].any() for x0, y0, x1, y1 in b], bool)

    out: dict[str, Any] = {"classes": {}}
    for code, label in classes.items():
        if not (held_truth == code).any():
            continue
        res = {}
        for level in ("tile", "region"):
            boxes, scores = search.boxes(label, level)
            ok = eligible(boxes)
            boxes, scores = boxes[ok], scores[ok]
            out[f"{level}s"] = len(boxes)
            top = nms(boxes, scores, keep=k) if level == "region" else list(range(min(k, len(boxes))))
            lit = np.zeros_like(held_mask)
            for x0, y0, x1, y1 in np.round(boxes[top]).astype(int):
                lit[y0:y1, x0:x1] = True
            labelled = lit & (held_truth > 0)
            res[level] = float((held_truth[labelled] == code).sum() / max(labelled.sum(), 1))
        out["classes"][label] = res
    for level in ("tile", "region"):
        out[level] = float(np.mean([r[level] for r in out["classes"].values()]))
    return out


def run_nc(args: argparse.Namespace) -> None:
    import fiona
    import rasterio
    from rasterio import features as rfeatures

    from geovec.backend.raster.scan import open_scene
    from geovec.training.data.vector_labels import load_features

    cfg = load_config(args.config or "nc_landsat7_regions.yaml", args.out, args.steps)
    report, models = train(cfg, args.out)
    d, r = cfg["data"], cfg["data"]["regions"]
    scene = open_scene(d["raster"], bands=d["bands"])
    feats = load_features(d["labels"], scene, label_field="label")
    held, area = split_of(report, feats, d["block_size"])
    with rasterio.open(NC / "landsat96_labelled_pixels.tif") as src:
        raw = src.read(1)
    truth = np.where(raw > 0, raw, 0).astype(int)
    held_mask = rfeatures.rasterize([(f.geometry, 1) for f in held], out_shape=truth.shape,
                                    transform=rasterio.Affine.identity(), dtype="uint8").astype(bool)
    with fiona.open(d["labels"]) as src:
        classes = {int(f["properties"]["id"]): str(f["properties"]["label"]) for f in src}
    folder = args.out / "scene"  # the six band files, stacked by the scanner as at indexing time
    folder.mkdir(parents=True, exist_ok=True)
    for path in d["raster"]:
        if not (folder / Path(path).name).exists():
            (folder / Path(path).name).symlink_to(path)
    print(f"data: NC Landsat 7 (bands 4,3,2 of 6, 28.5 m, {scene.width}x{scene.height}); truth "
          f"landsat96_labelled_pixels.tif; index: --tile-size {r['tile_size']} ({r['tile_size'] * 28.5 / 1000:.2f} km)"
          f" --regions grid={','.join(map(str, r['grid']))};overlap={r['overlap']:g}")
    print(f"split: spatial blocks of {d['block_size']} px; {report['split']['train_features']} training polygons, "
          f"{len(held)} held-out polygons ({int(held_mask.sum())} held-out labelled pixels); training images never "
          "show a held-out block; queries confined to the held-out blocks (--within)")
    data = {"truth": truth, "held_mask": held_mask, "area": area, "classes": classes}
    for name, (model, emb) in models.items():
        t0 = time.perf_counter()
        idx = args.out / f"index-{name}"
        build_index(folder, idx, model, cfg, 0.0)
        search = Searcher(idx, emb, scene, area, d["block_size"])
        for k in args.k:
            res = nc_eval(search, data, k)
            per = "  ".join(f"{c} {v['region']:.2f}/{v['tile']:.2f}" for c, v in res["classes"].items())
            print(f"{name:>9} k={k}: region precision {res['region']:.3f}  tile precision {res['tile']:.3f}  "
                  f"(difference {res['region'] - res['tile']:+.3f}; {len(res['classes'])} classes, "
                  f"{res['tiles']} tiles / {res['regions']} boxes on held-out labels; index + queries "
                  f"{time.perf_counter() - t0:.0f} s)\n           per class region/tile: {per}")


# ------------------------------------------------------------------ NEON OSBS
def run_neon(args: argparse.Namespace) -> None:
    from geovec.backend.raster.scan import open_scene
    from geovec.training.data.region_pairs import box_iou, load_box_csv

    cfg = load_config(args.config or "neon_osbs_regions.yaml", args.out, args.steps)
    report, models = train(cfg, args.out)
    d, r = cfg["data"], cfg["data"]["regions"]
    scene = open_scene(d["raster"])
    feats = load_box_csv(d["labels"], scene)
    held, area = split_of(report, feats, d["block_size"])
    crowns = [tuple(float(v) for v in f.geometry.bounds) for f in held]
    rng = np.random.default_rng(0)
    print(f"data: NEON OSBS_029 (RGB 0.1 m, {scene.width}x{scene.height}), {len(feats)} crown boxes; index: "
          f"--tile-size {r['tile_size']} ({r['tile_size'] / 10:.1f} m) --overlap 0.5 "
          f"--regions grid={','.join(map(str, r['grid']))};overlap={r['overlap']:g}")
    print(f"split: spatial blocks of {d['block_size']} px; {report['split']['train_features']} training crowns, "
          f"{len(held)} held-out crowns; training images never show a held-out block; the query is confined to "
          "the held-out blocks (--within), boxes lying inside them are ranked")

    def hit_share(rects: Any) -> float:
        return float(np.mean([any(box_iou(c, tuple(b)) >= 0.3 for b in rects) for c in crowns]))

    x0, y0, x1, y1 = area.bounds
    for name, (model, emb) in models.items():
        idx = args.out / f"index-{name}"
        build_index(Path(d["raster"][0]).parent, idx, model, cfg, 0.5)
        boxes, scores = Searcher(idx, emb, scene, area, d["block_size"]).boxes(r["template"], "region")
        ok = inside_mask(area, boxes)
        boxes, scores = boxes[ok], scores[ok]
        top = nms(boxes, scores, keep=len(crowns))
        model_share, best = hit_share(boxes[top]), hit_share(boxes)
        sizes = boxes[top, 2:] - boxes[top, :2]
        draws = []
        for _ in range(args.draws):  # the same sizes placed uniformly inside the evaluation blocks
            cand = np.concatenate([rng.uniform([x0, y0], [x1, y1], size=(len(sizes) * 20, 2))], axis=0)
            wh = np.repeat(sizes, 20, axis=0)
            rects = np.concatenate([cand, cand + wh], axis=1)
            ok = inside_mask(area, rects).reshape(len(sizes), 20)
            first = ok.argmax(axis=1)
            chosen = rects.reshape(len(sizes), 20, 4)[np.arange(len(sizes)), first][ok.any(axis=1)]
            draws.append(hit_share(chosen))
        print(f"{name:>9}: held-out crowns hit at IoU>=0.3 by the top {len(top)} regions for {r['template']!r}: "
              f"{model_share:.3f}; {len(sizes)} random boxes of the same sizes {np.mean(draws):.3f} (95th "
              f"percentile {np.percentile(draws, 95):.3f}, {args.draws} draws); best the {len(boxes)} candidate "
              f"boxes allow {best:.3f}")


# ------------------------------------------------------------------ training
def train(cfg: dict[str, Any], out: Path) -> tuple[dict[str, Any], dict[str, tuple[str, Any]]]:
    """Adapt (or reuse the run in ``out``); the untrained and adapted models as (folder, Embedder)."""
    import json

    from geovec.backend.model.embedder import load_embedder
    from geovec.training.config import Config
    from geovec.training.trainer import Trainer

    saved = out / "proof_report.json"
    t0 = time.perf_counter()
    if saved.exists() and (out / "model" / "geovec.json").exists():
        report = json.loads(saved.read_text())
    else:
        report = Trainer(Config.from_dict(cfg), progress=False).run()
        report["train_s"] = time.perf_counter() - t0
        saved.write_text(json.dumps({k: report[k] for k in ("split", "base_model", "model_dir", "train_s")}))
    t = cfg["train"]
    print(f"model: tiny random Qwen2-VL (written locally, seed {t['seed']}), images {cfg['data']['image_size']} px; "
          f"adapted on CPU: {t['steps']} steps x {t['batch_size']} pairs ({', '.join(cfg['data']['pair_types'])}), "
          f"full fine-tuning, {report.get('train_s', 0):.0f} s")
    size = cfg["data"]["image_size"]
    base = load_embedder(report["base_model"], device="cpu", dtype="fp32", image_size=size)
    tuned = load_embedder(report["model_dir"], device="cpu", dtype="fp32")
    return report, {"untrained": (report["base_model"], base), "adapted": (report["model_dir"], tuned)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("proof", choices=("nc", "neon"))
    p.add_argument("--config", help="another training config (default: the proof's in training/configs)")
    p.add_argument("--steps", type=int, help="override train.steps of the config")
    p.add_argument("--out", type=Path, help="run folder (default runs/proof-<proof>)")
    p.add_argument("--k", type=int, nargs="+", default=[1, 3], help="NC: regions / tiles highlighted per query")
    p.add_argument("--draws", type=int, default=500, help="NEON: random placements of the boxes")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.out = args.out or Path("runs") / f"proof-{args.proof}"
    print(machine("cpu"))
    (run_nc if args.proof == "nc" else run_neon)(args)


if __name__ == "__main__":
    main()
