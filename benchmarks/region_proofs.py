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

    cfg = Config.from_yaml(CONFIGS / name)
    cfg.output_dir = str(out)
    if steps is not None:
        cfg.train.steps = steps
    return cfg.to_dict()


# ------------------------------------------------------------------ shared pieces
def nms(boxes: np.ndarray, scores: np.ndarray, iou: float = 0.5, keep: int = 10) -> list[int]:
    """Greedy non-maximum suppression; indices of the kept boxes, best first."""
    from geovec.training.data.region_pairs import box_iou

    out: list[int] = []
    for i in np.argsort(-scores):
        if all(box_iou(tuple(boxes[i]), tuple(boxes[j])) < iou for j in out):
            out.append(int(i))
            if len(out) == keep:
                break
    return out


class Embedded:
    """Tile and candidate-box vectors of one scene (what `geovec index --regions` stores)."""

    def __init__(self, emb: Any, scene: Any, stretch: Any, bands: Any, tile: int, grid: list[int],
                 overlap: float, stride: int | None = None) -> None:
        from geovec.backend.raster.tiling import read_tile
        from geovec.backend.types import EmbedInput
        from geovec.training.data.region_pairs import grid_boxes

        size = int(emb.preset.image.size)
        image_boxes = grid_boxes(size, grid, overlap)
        self.windows, tiles, regions, boxes, owner = [], [], [], [], []
        step = stride or tile
        for row in range(0, scene.height - tile + 1, step):
            for col in range(0, scene.width - tile + 1, step):
                image, _ = read_tile(scene, (col, row, tile, tile), stretch, out_size=size, bands=bands)
                self.windows.append((col, row, tile, tile))
                tiles.append(EmbedInput(emb.instructions["tile"], image=image))
                regions.append(emb.encode_regions(image, image_boxes))
                s = tile / size
                boxes += [(col + b[0] * s, row + b[1] * s, col + b[2] * s, row + b[3] * s) for b in image_boxes]
                owner += [len(self.windows) - 1] * len(image_boxes)
        self.tile_vecs = emb.encode(tiles, batch_size=16)
        self.region_vecs = np.concatenate(regions)
        self.boxes, self.owner = np.array(boxes), np.array(owner)

    def query(self, emb: Any, text: str, level: str) -> np.ndarray:
        from geovec.backend.types import EmbedInput

        key = "referring_query" if level == "region" else "text_query"
        q = emb.encode([EmbedInput(emb.instructions[key], text=text)])[0]
        return (self.region_vecs if level == "region" else self.tile_vecs) @ q


def split_of(report: dict[str, Any], features: list[Any], block: int) -> tuple[list[Any], Any]:
    """Held-out features (the run's validation and test ids) and the evaluation area: their blocks."""
    from geovec.training.data.region_pairs import held_out_area

    ids = set(report["split"].get("val_feature_ids", [])) | set(report["split"].get("test_feature_ids", []))
    held = [f for f in features if f.fid in ids]
    return held, held_out_area(held, block, 0.0)


def inside(area: Any, box: Any) -> bool:
    from shapely.geometry import box as shapely_box

    return bool(area.buffer(1e-6).contains(shapely_box(*box)))


# ------------------------------------------------------------------ NC Landsat 7
def nc_eval(emb: Any, data: dict[str, Any], k: int) -> dict[str, Any]:
    """Per-class region and tile precision on the held-out labelled pixels."""
    truth, held_mask, e, area, classes = data["truth"], data["held_mask"], data["embedded"], data["area"], data["classes"]
    held_truth = np.where(held_mask, truth, 0)
    tiles_ok = [i for i, (c, r, w, h) in enumerate(e.windows)
                if inside(area, (c, r, c + w, r + h)) and held_truth[r:r + h, c:c + w].any()]
    boxes = np.round(e.boxes).astype(int)
    regions_ok = [j for j in np.flatnonzero(np.isin(e.owner, tiles_ok))
                  if held_truth[boxes[j, 1]:boxes[j, 3], boxes[j, 0]:boxes[j, 2]].any()]
    out: dict[str, Any] = {"tiles": len(tiles_ok), "regions": len(regions_ok), "classes": {}}
    for code, label in classes.items():
        if not (held_truth == code).any():
            continue
        res = {}
        for level, ok in (("tile", tiles_ok), ("region", regions_ok)):
            scores = e.query(emb, label, level)[ok]
            if level == "tile":
                top = [ok[i] for i in np.argsort(-scores)[:k]]
                rects = [(c, r, c + w, r + h) for c, r, w, h in (e.windows[i] for i in top)]
            else:
                top = [ok[i] for i in nms(boxes[ok], scores, keep=k)]
                rects = [tuple(boxes[j]) for j in top]
            lit = np.zeros_like(held_mask)
            for x0, y0, x1, y1 in rects:
                lit[y0:y1, x0:x1] = True
            labelled = lit & (held_truth > 0)
            res[level] = float((held_truth[labelled] == code).sum() / max(labelled.sum(), 1))
        out["classes"][label] = res
    for level in ("tile", "region"):
        out[level] = float(np.mean([r[level] for r in out["classes"].values()]))
    return out


def run_nc(args: argparse.Namespace) -> None:
    import rasterio
    from rasterio import features as rfeatures

    from geovec.backend.raster.scan import open_scene
    from geovec.backend.raster.stretch import compute_stretch
    from geovec.training.data.vector_labels import load_features

    cfg = load_config("nc_landsat7_regions.yaml", args.out, args.steps)
    report, base, tuned = train(cfg)
    d = cfg["data"]
    scene = open_scene(d["raster"], bands=d["bands"])
    stretch = compute_stretch(scene, bands=d["bands"])
    feats = load_features(d["labels"], scene, label_field="label")
    held, area = split_of(report, feats, d["block_size"])
    with rasterio.open(NC / "landsat96_labelled_pixels.tif") as src:
        raw = src.read(1)
    truth = np.where(raw > 0, raw, 0).astype(int)
    held_mask = rfeatures.rasterize([(f.geometry, 1) for f in held], out_shape=truth.shape,
                                    transform=rasterio.Affine.identity(), dtype="uint8").astype(bool)
    import fiona

    with fiona.open(d["labels"]) as src:
        classes = {int(f["properties"]["id"]): str(f["properties"]["label"]) for f in src}
    r = d["regions"]
    print(f"data: NC Landsat 7 (bands 4,3,2 of 6, 28.5 m, {scene.width}x{scene.height}); truth "
          f"landsat96_labelled_pixels.tif; tiles {r['tile_size']} px ({r['tile_size'] * 28.5 / 1000:.2f} km), "
          f"candidates grid={','.join(map(str, r['grid']))};overlap={r['overlap']} per tile")
    print(f"split: spatial blocks of {d['block_size']} px; {report['split']['train_features']} training polygons, "
          f"{len(held)} held-out polygons ({int(held_mask.sum())} held-out labelled pixels); training images never "
          "show a held-out block")
    for name, emb in (("untrained", base), ("adapted", tuned)):
        t0 = time.perf_counter()
        embedded = Embedded(emb, scene, stretch, d["bands"], r["tile_size"], r["grid"], r["overlap"])
        data = {"truth": truth, "held_mask": held_mask, "embedded": embedded, "area": area, "classes": classes}
        for k in args.k:
            res = nc_eval(emb, data, k)
            per = "  ".join(f"{c} {v['region']:.2f}/{v['tile']:.2f}" for c, v in res["classes"].items())
            print(f"{name:>9} k={k}: region precision {res['region']:.3f}  tile precision {res['tile']:.3f}  "
                  f"(difference {res['region'] - res['tile']:+.3f}; {len(res['classes'])} classes, "
                  f"{res['tiles']} tiles / {res['regions']} boxes on held-out labels; embedded in "
                  f"{time.perf_counter() - t0:.0f} s)\n           per class region/tile: {per}")


# ------------------------------------------------------------------ NEON OSBS
def run_neon(args: argparse.Namespace) -> None:
    from geovec.backend.raster.scan import open_scene
    from geovec.backend.raster.stretch import compute_stretch
    from geovec.training.data.region_pairs import box_iou, load_box_csv

    cfg = load_config("neon_osbs_regions.yaml", args.out, args.steps)
    report, base, tuned = train(cfg)
    d, r = cfg["data"], cfg["data"]["regions"]
    scene = open_scene(d["raster"])
    stretch = compute_stretch(scene)
    feats = load_box_csv(d["labels"], scene)
    held, area = split_of(report, feats, d["block_size"])
    crowns = [tuple(float(v) for v in f.geometry.bounds) for f in held]
    rng = np.random.default_rng(0)
    print(f"data: NEON OSBS_029 (RGB 0.1 m, {scene.width}x{scene.height}), {len(feats)} crown boxes; tiles "
          f"{r['tile_size']} px ({r['tile_size'] / 10:.1f} m, overlap 0.5), candidates grid={','.join(map(str, r['grid']))};"
          f"overlap={r['overlap']} per tile")
    print(f"split: spatial blocks of {d['block_size']} px; {report['split']['train_features']} training crowns, "
          f"{len(held)} held-out crowns in {area.area / 1e4:.1f} blocks' area; training images never show a held-out block")
    for name, emb in (("untrained", base), ("adapted", tuned)):
        e = Embedded(emb, scene, stretch, None, r["tile_size"], r["grid"], r["overlap"], stride=r["tile_size"] // 2)
        ok = [j for j in range(len(e.boxes)) if inside(area, e.boxes[j])]
        scores = e.query(emb, r["template"], "region")[ok]
        top = [ok[i] for i in nms(e.boxes[ok], scores, keep=len(crowns))]

        def hit_share(rects: list[tuple[float, ...]]) -> float:
            return float(np.mean([any(box_iou(c, b) >= 0.3 for b in rects) for c in crowns]))

        model = hit_share([tuple(e.boxes[j]) for j in top])
        best = hit_share([tuple(e.boxes[j]) for j in ok])
        x0, y0, x1, y1 = area.bounds
        sizes = [(e.boxes[j, 2] - e.boxes[j, 0], e.boxes[j, 3] - e.boxes[j, 1]) for j in top]
        draws = []
        for _ in range(2000):
            rects = []
            for w, h in sizes:
                for _try in range(100):
                    bx, by = rng.uniform(x0, x1 - w), rng.uniform(y0, y1 - h)
                    if inside(area, (bx, by, bx + w, by + h)):
                        rects.append((bx, by, bx + w, by + h))
                        break
            draws.append(hit_share(rects))
        print(f"{name:>9}: held-out crowns hit at IoU>=0.3 by the top {len(top)} regions for 'a tree crown': "
              f"{model:.3f}; random boxes of the same sizes {np.mean(draws):.3f} (95th percentile "
              f"{np.percentile(draws, 95):.3f}); best the {len(ok)} candidates allow {best:.3f}")


# ------------------------------------------------------------------ training
def train(cfg: dict[str, Any]) -> tuple[dict[str, Any], Any, Any]:
    from geovec.backend.model.embedder import load_embedder
    from geovec.training.config import Config
    from geovec.training.trainer import Trainer

    t0 = time.perf_counter()
    report = Trainer(Config.from_dict(cfg), progress=False).run()
    print(f"model: tiny random Qwen2-VL (written locally, seed 0), images {cfg['data']['image_size']} px; adapted on "
          f"CPU: {cfg['train']['steps']} steps x {cfg['train']['batch_size']} pairs ({cfg['data']['pair_types']}), "
          f"full fine-tuning, {time.perf_counter() - t0:.0f} s")
    base = load_embedder(report["base_model"], device="cpu", dtype="fp32", image_size=cfg["data"]["image_size"])
    tuned = load_embedder(report["model_dir"], device="cpu", dtype="fp32")
    return report, base, tuned


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("proof", choices=("nc", "neon"))
    p.add_argument("--steps", type=int, help="override train.steps of the config")
    p.add_argument("--out", type=Path, help="run folder (default runs/proof-<proof>)")
    p.add_argument("--k", type=int, nargs="+", default=[1, 3], help="NC: regions / tiles highlighted per query")
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
