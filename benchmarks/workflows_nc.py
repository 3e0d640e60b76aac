"""Workflow figures on NC Landsat 7 against ``landsat96_labelled_pixels.tif`` (spatially held-out blocks).

Needs the adapted tiny model from ``geovec train --config training/configs/nc_landsat7.yaml``
(``runs/nc_landsat7/model``) and its un-adapted start (``runs/nc_landsat7/base-model``).
Both index the scene (bands 4,3,2 like the training chips; 8-px = 228 m tiles read at
56 px, overlap 0.5); a tile's truth is the majority class of the labelled pixels in its
central 4x4 pixels (at least 8 labelled). Prints, with the machine:

* zero-shot accuracy (7 class prompts, the ``classification`` instruction) of the adapted
  vs the un-adapted model on the tiles inside the training run's held-out polygons;
* few-shot accuracy from at most 5 labelled polygons per class, cross-validated with whole
  spatial blocks (48 px = 1.37 km, the training run's block) held out (``geovec fewshot``):
  the accuracy of choosing among the classifiers by nested cross-validation, and each
  configuration's accuracy on the same folds (whose best is optimistic);
* relevance feedback: precision@10 of the 7 class queries over the labelled tiles after two
  simulated rounds of marking the shown top 10 (marks from the labels) vs the first round;

and writes the few-shot class map over the scene to ``--figure``.

    .venv/bin/python benchmarks/workflows_nc.py [--work DIR] [--figure docs/classmap_nc.png]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import machine  # noqa: E402

from geovec.backend.index.store import IndexStore  # noqa: E402
from geovec.backend.schemas_workflows import ClassifyRequest, FewShotRequest  # noqa: E402
from geovec.backend.types import EmbedInput, TilingParams  # noqa: E402
from geovec.backend.workflows.feedback import refine_direction  # noqa: E402
from geovec.backend.workflows.service import run_classify, run_fewshot  # noqa: E402
from geovec.backend.workflows.tiles import load_tiles, normalise  # noqa: E402

BANDS = ["lsat7_2000_10.tif", "lsat7_2000_20.tif", "lsat7_2000_30.tif", "lsat7_2000_40.tif",
         "lsat7_2000_50.tif", "lsat7_2000_70.tif"]
TILING = TilingParams(tile_size=56, resolution=28.5 * 8 / 56, overlap=0.5, bands=(4, 3, 2))
TEMPLATE = "a satellite image of {label}"


def build_index(model_dir: Path, data: Path, work: Path, name: str) -> Path:
    from geovec.backend.indexing import index_folder
    from geovec.backend.model.embedder import load_embedder

    idx = work / f"idx_{name}"
    if (idx / "index.json").exists():
        return idx
    folder = work / "nc_bands"
    folder.mkdir(parents=True, exist_ok=True)
    for b in BANDS:
        link = folder / b
        if not link.exists():
            link.symlink_to(data / "nc_landsat7" / b)
    t0 = time.perf_counter()
    s = index_folder(folder, idx, load_embedder(str(model_dir), device="cpu"), params=TILING, batch_size=64)
    print(f"indexed {name}: {s.tiles} tiles in {time.perf_counter() - t0:.0f} s")
    return idx


def class_codes(data: Path) -> dict[int, str]:
    """Pixel value -> class name of the labelled raster: the polygons' ``id`` field holds the code."""
    import fiona

    with fiona.open(data / "nc_landsat7" / "landsat96_polygons.shp") as src:
        pairs = {(int(f["properties"]["id"]), str(f["properties"]["label"])) for f in src}
    codes = dict(pairs)
    assert len(codes) == len(pairs) == 7, pairs
    return codes


def tile_truth(store: IndexStore, data: Path) -> dict[str, str]:
    """tile_id -> class name from the labelled pixels (majority of the central 4x4, >= 8 labelled)."""
    import rasterio

    names = class_codes(data)
    with rasterio.open(data / "nc_landsat7" / "landsat96_labelled_pixels.tif") as ds:
        lab = ds.read(1)
    out = {}
    for rec in load_tiles(store).records:
        c, r, w, h = rec.window
        block = lab[r + h // 2 - 2: r + h // 2 + 2, c + w // 2 - 2: c + w // 2 + 2].ravel()
        vals = [int(v) for v in block if int(v) in names]
        if len(vals) >= 8:
            out[rec.tile_id] = names[Counter(vals).most_common(1)[0][0]]
    return out


def held_out_tiles(store: IndexStore, data: Path) -> set[str]:
    """Tiles whose centre lies in a polygon the training run held out (validation or test, its config's split)."""
    from shapely import contains_xy

    from geovec.training.config import Config
    from geovec.training.data.dataset import split_features
    from geovec.training.data.vector_labels import load_features

    cfg = Config.from_yaml(ROOT / "training" / "configs" / "nc_landsat7.yaml").data
    table = load_tiles(store)
    scene = store.scene(table.records[0].scene_id)[0]  # type: ignore[index]
    feats = load_features(cfg.labels, scene, label_field=cfg.label_field)
    is_val, is_test = split_features(feats, cfg)
    is_val = is_val | is_test
    cols = np.array([r.window[0] + r.window[2] / 2 for r in table.records])
    rows = np.array([r.window[1] + r.window[3] / 2 for r in table.records])
    held = np.zeros(len(table), dtype=bool)
    for f, v in zip(feats, is_val, strict=True):
        if v:
            held |= contains_xy(f.geometry, cols, rows)
    return {table.records[i].tile_id for i in np.flatnonzero(held)}


def zero_shot_accuracy(idx: Path, truth: dict[str, str], keep: set[str], classes: list[str],
                       instruction: str | None = None) -> tuple[float, int]:
    from geovec.backend.service import model_for_index

    req = ClassifyRequest(index=str(idx), classes=classes, template=TEMPLATE, instruction=instruction)
    resp = run_classify(req, lambda: model_for_index(str(idx), device="cpu"))
    pred = {f.properties["tile_id"]: f.properties["class"] for f in resp.features}
    ids = [t for t in truth if t in keep]
    return float(np.mean([pred[t] == truth[t] for t in ids])), len(ids)


def feedback_p10(idx: Path, truth: dict[str, str], classes: list[str], rounds: int = 2) -> dict[str, list[float]]:
    """Per class: P@10 of the list shown in round 0..rounds (as the dock: bad marks never return)."""
    from geovec.backend.service import model_for_index

    emb = model_for_index(str(idx), device="cpu")
    with IndexStore.open(idx) as store:
        table = load_tiles(store)
    rows = [i for i, r in enumerate(table.records) if r.tile_id in truth]
    vecs = table.vectors[rows]
    labels = np.array([truth[table.records[i].tile_id] for i in rows])
    prompts = normalise(emb.encode([EmbedInput(emb.instructions["text_query"], text=TEMPLATE.replace("{label}", c))
                                    for c in classes]))
    out: dict[str, list[float]] = {}
    for c, q in zip(classes, prompts, strict=True):
        marked: dict[int, bool] = {}
        shown_p: list[float] = []
        d = q
        for r in range(rounds + 1):
            if r:
                good = vecs[[i for i, g in marked.items() if g]]
                bad = vecs[[i for i, g in marked.items() if not g]]
                d = refine_direction(q, good, bad)
            order = np.argsort(-(vecs @ d))
            bad_ids = {i for i, g in marked.items() if not g}
            shown = [i for i in order.tolist() if i not in bad_ids][:10]  # the dock: bad marks never return
            shown_p.append(float(np.mean(labels[shown] == c)))
            for i in shown:  # the analyst marks what is on screen (marks accumulate over rounds)
                marked.setdefault(i, bool(labels[i] == c))
        out[c] = shown_p
    return out


def figure(class_map: Path, data: Path, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import fiona
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from geovec.backend.writers import class_colours

    with rasterio.open(data / "nc_landsat7" / "lsat7_2000_40.tif") as nir, \
            rasterio.open(data / "nc_landsat7" / "lsat7_2000_30.tif") as red, \
            rasterio.open(data / "nc_landsat7" / "lsat7_2000_20.tif") as green:
        bands = [b.read(1, masked=True).astype(float) for b in (nir, red, green)]
        bounds = nir.bounds
    valid = ~np.logical_or.reduce([np.ma.getmaskarray(b) for b in bands]) & np.logical_and.reduce(
        [np.isfinite(b.filled(np.nan)) & (np.abs(b.filled(0)) < 1e30) for b in bands])
    rgb = np.dstack([b.filled(np.nan) for b in bands])
    for i in range(3):
        lo, hi = np.percentile(rgb[..., i][valid], (2, 98))
        rgb[..., i] = (rgb[..., i] - lo) / (hi - lo)
    rgb = np.dstack([np.clip(np.nan_to_num(rgb), 0, 1), valid.astype(float)])  # RGBA: nodata transparent
    with rasterio.open(class_map) as ds:
        cm = ds.read(1)
        import json

        classes = json.loads(ds.tags()["classes"])
    colours = [tuple(v / 255 for v in c) for c in class_colours(classes)]  # the class map's own legend colours
    extent = (bounds.left, bounds.right, bounds.bottom, bounds.top)
    fig, axes = plt.subplots(1, 2, figsize=(12, 5.6), dpi=110)
    axes[0].imshow(rgb, extent=extent)
    axes[0].set_title("Landsat 7 (bands 4-3-2) and the 34 labelled polygons")
    axes[1].imshow(rgb, extent=extent)
    masked = np.ma.masked_equal(cm, 0)
    axes[1].imshow(masked - 1, extent=extent, cmap=ListedColormap(colours), vmin=0, vmax=len(classes) - 1,
                   alpha=0.75, interpolation="nearest")
    axes[1].set_title(title, fontsize=9)
    with fiona.open(data / "nc_landsat7" / "landsat96_polygons.shp") as src:
        for f in src:
            xy = np.array(f["geometry"]["coordinates"][0])
            for ax in axes:
                ax.plot(xy[:, 0], xy[:, 1], color="white", lw=0.8)
    for ax in axes:
        ax.set_xlim(bounds.left, bounds.right)
        ax.set_ylim(bounds.bottom, bounds.top)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[1].legend(handles=[Patch(color=colours[i], label=c) for i, c in enumerate(classes)], loc="lower left",
                   fontsize=7, framealpha=0.8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    from PIL import Image

    with Image.open(path) as im:  # a palette PNG: a fifth of the size, same look
        im.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"figure: {path}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--adapted", default=str(ROOT / "runs" / "nc_landsat7" / "model"))
    ap.add_argument("--base", default=str(ROOT / "runs" / "nc_landsat7" / "base-model"))
    ap.add_argument("--data", default=os.environ.get("GEOVEC_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    ap.add_argument("--work", default="/tmp/geovec-workflows-nc", help="indexes and class maps (reused)")
    ap.add_argument("--figure", default=str(ROOT / "docs" / "classmap_nc.png"))
    args = ap.parse_args()
    data, work = Path(args.data), Path(args.work)
    for m in (args.adapted, args.base):
        if not (Path(m) / "config.json").exists():
            print(f"no model at {m}: run `geovec train --config training/configs/nc_landsat7.yaml` first")
            return 1
    print(machine("cpu"))
    print("model: tiny random Qwen2-VL (64-d) adapted on CPU by `geovec train --config "
          "training/configs/nc_landsat7.yaml`, vs its un-adapted start")
    print(f"data: NC Landsat 7 (489 x 443 px, 28.5 m), tiles of 8 px read at 56 px, overlap 0.5, bands 4-3-2; "
          f"truth: {data / 'nc_landsat7' / 'landsat96_labelled_pixels.tif'}")
    t0 = time.perf_counter()
    idx = {"adapted": build_index(Path(args.adapted), data, work, "adapted"),
           "un-adapted": build_index(Path(args.base), data, work, "base")}
    with IndexStore.open(idx["adapted"]) as store:
        truth = tile_truth(store, data)
        held = held_out_tiles(store, data)
    classes = ["water", "forest", "shrubland", "sediment", "herbaceous", "developed", "agriculture"]
    print(f"labelled tiles: {len(truth)} ({dict(Counter(truth.values()))}); held out by the training split: "
          f"{len(held & set(truth))}")

    print("\n1. zero-shot classification, 7 classes (chance 0.143), held-out tiles:")
    for name, path in idx.items():
        acc, n = zero_shot_accuracy(path, truth, held, classes)
        acc_q, _ = zero_shot_accuracy(path, truth, held, classes, instruction="Find me an overhead satellite "
                                      "image that matches the given caption:")
        print(f"   {name:>10}: accuracy {acc:.3f} (classification instruction), {acc_q:.3f} "
              f"(text_query instruction, as trained) on n={n}")

    print("\n2. few-shot from <= 5 labelled polygons per class (geovec fewshot --method auto, 5 folds of whole 1.37 km "
          "blocks):")
    for name, path in idx.items():
        req = FewShotRequest(index=str(path), labels=str(data / "nc_landsat7" / "landsat96_polygons.shp"),
                             block_km=48 * 28.5 / 1000, folds=5, out_dir=str(work / f"fewshot_{name}"),
                             return_features=False)
        resp = run_fewshot(req, max_features_per_class=5)
        cv = resp.cv
        assert cv is not None
        accs = ", ".join(f"{m} {a:.3f}" for m, a in cv.accuracy.items())
        assert cv.nested_accuracy is not None
        print(f"   {name:>10}: held-out accuracy of the whole choose-then-fit procedure {cv.nested_accuracy:.3f} "
              f"(nested CV: inner folds of each outer training set choose, the outer fold scores; "
              f"{cv.features} polygons, {cv.examples} tiles, {cv.blocks} blocks)")
        print(f"   {'':>10}  per configuration on the same 5 folds (the best of these is optimistic): {accs}")
        print(f"   {'':>10}  map made with {cv.method}; outer folds chose {', '.join(cv.outer_choices)}")
        if name == "adapted":
            fig_map = Path(resp.class_maps[0].path)
            fig_title = (f"few-shot class map (adapted tiny model, {cv.method}; nested-CV accuracy "
                         f"{cv.nested_accuracy:.2f})")

    print("\n3. relevance feedback, 7 class queries over the labelled tiles, marks = the labels of the shown top 10:")
    sizes = Counter(truth.values())
    ceiling = float(np.mean([min(10, sizes[c]) / 10 for c in classes]))
    for name, path in idx.items():
        res = feedback_p10(path, truth, classes)
        p = np.array(list(res.values()))
        print(f"   {name:>10}: P@10 round 0 {p[:, 0].mean():.3f} -> after two rounds {p[:, 2].mean():.3f} "
              f"(lift {p[:, 2].mean() - p[:, 0].mean():+.3f})")
        print(f"   {'':>10}  best possible P@10 with these class sizes: {ceiling:.3f}")
        print("   " + " " * 12 + ", ".join(f"{c} {v[0]:.1f}->{v[2]:.1f}" for c, v in res.items()))
    figure(fig_map, data, Path(args.figure), fig_title)
    print(f"wall time {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
