"""Change proof: planted changes of known extent in real rasters, ranked by ``geovec change``.

From the Byte rasters in ``../shared/data`` (Olinda Landsat 7 bands 3,2,1; Haiti R,G,B; NEON
OSBS RGB) it builds, per raster, a *before* and an *after* scene on the raster's own grid:

* both dates get radiometric jitter that is **not** change: a different gain and offset per
  date and channel (before x1.00 +0, after x1.10 +8 and a slight colour cast) and Gaussian noise
  (sigma 2 and 3 digital numbers);
* the after date gets planted changes, each covering one whole tile of the index grid
  (``--tile`` px): a patch *moved* from a far part of the scene, a *flooded* tile (dark water
  colour over the texture), a *cleared* tile (flat bare-soil colour with noise);
  ``--fraction`` of the tiles are changed, a third of each kind, chosen at random (``--seed``).

Both dates are indexed into one index (dates from the file names), ``geovec change`` compares
2016 with 2017, and each scored tile pair is labelled changed / unchanged from the plant list.
Printed, with the machine: ROC AUC of the change score over changed vs unchanged tiles, precision
at the number of changed tiles, the same per kind of change (AUC of that kind vs unchanged), and
the same figures for a pixel baseline (mean absolute difference of the tile's pixels after a
per-scene gain/offset normalisation) for reference.

With ``--model`` left at the tiny random model the figures measure plumbing (co-location,
pairing, scoring, ranking) and how far *random* vision features separate content change from
radiometric jitter; they say nothing about what a trained model sees. Pass ``--model DIR`` for a
trained checkpoint.

    .venv/bin/python benchmarks/change_proof.py [--work DIR] [--model DIR] [--tile 32] [--figure docs/change_map.png]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _machine import machine  # noqa: E402

SOURCES = [("olinda", "olinda_landsat7/L7_ETMs.tif", (3, 2, 1)), ("haiti", "haiti_rgbn/rgbn.tif", (1, 2, 3)),
           ("osbs", "neon_osbs/OSBS_029.tif", (1, 2, 3))]
KINDS = ("moved", "flooded", "cleared")


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Probability that a random positive outranks a random negative (ties count half)."""
    pos, neg = scores[labels], scores[~labels]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(allv):  # average ranks of ties
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def precision_at_n(scores: np.ndarray, labels: np.ndarray) -> float:
    n = int(labels.sum())
    return float(labels[np.argsort(-scores, kind="mergesort")[:n]].mean()) if n else float("nan")


def plant(src: np.ndarray, tile: int, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    """``src`` (3, H, W) uint8 with planted changes; {(col, row) tile: kind}."""
    _, h, w = src.shape
    cols, rows = w // tile, h // tile
    cells = [(c, r) for r in range(rows) for c in range(cols)]
    n = max(3, int(round(fraction * len(cells))))
    chosen = rng.choice(len(cells), size=n, replace=False)
    out = src.astype(np.float32).copy()
    planted: dict[tuple[int, int], str] = {}
    for k, ci in enumerate(chosen):
        c, r = cells[int(ci)]
        kind = KINDS[k % 3]
        ys, xs = slice(r * tile, (r + 1) * tile), slice(c * tile, (c + 1) * tile)
        if kind == "moved":  # a patch from the far side of the scene
            fc, fr = (c + cols // 2) % cols, (r + rows // 2) % rows
            out[:, ys, xs] = src[:, fr * tile:(fr + 1) * tile, fc * tile:(fc + 1) * tile]
        elif kind == "flooded":
            water = np.array([25.0, 45.0, 70.0])[:, None, None]
            out[:, ys, xs] = 0.85 * water + 0.15 * out[:, ys, xs]
        else:
            soil = np.array([150.0, 120.0, 90.0])[:, None, None]
            out[:, ys, xs] = soil + rng.normal(0, 6, (3, tile, tile))
        planted[(c, r)] = kind
    return out, planted


def jitter(img: np.ndarray, gain: np.ndarray, offset: np.ndarray, sigma: float, rng: np.random.Generator
           ) -> np.ndarray:
    out = img.astype(np.float32) * gain[:, None, None] + offset[:, None, None] + rng.normal(0, sigma, img.shape)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def build(data: Path, work: Path, tile: int, fraction: float, seed: int) -> dict:
    """Write the before/after rasters; the plant list per after file name."""
    import rasterio

    rng = np.random.default_rng(seed)
    folder = work / "scenes"
    folder.mkdir(parents=True, exist_ok=True)
    truth: dict[str, dict] = {}
    for name, rel, bands in SOURCES:
        with rasterio.open(data / rel) as ds:
            src = ds.read(list(bands))
            profile = {"driver": "GTiff", "width": ds.width, "height": ds.height, "count": 3, "dtype": "uint8",
                       "crs": ds.crs, "transform": ds.transform}
        after_raw, planted = plant(src, tile, fraction, rng)
        before = jitter(src, np.ones(3), np.zeros(3), 2.0, rng)
        after = jitter(after_raw, np.array([1.10, 1.08, 1.12]), np.array([8.0, 6.0, 4.0]), 3.0, rng)
        for date, img in (("2016-01-05", before), ("2017-02-10", after)):
            with rasterio.open(folder / f"{name}_{date}.tif", "w", **profile) as dst:
                dst.write(img)
        truth[f"{name}_2017-02-10"] = {f"{c},{r}": k for (c, r), k in planted.items()}
        truth[f"{name}_2017-02-10:arrays"] = (before, after)  # type: ignore[assignment]
    return truth


def pixel_baseline(before: np.ndarray, after: np.ndarray, window: list[int]) -> float:
    """Mean absolute difference of the tile after matching each channel's mean/std over the scene."""
    b = before.astype(np.float32)
    a = after.astype(np.float32)
    a = (a - a.mean(axis=(1, 2), keepdims=True)) / (a.std(axis=(1, 2), keepdims=True) + 1e-6)
    b = (b - b.mean(axis=(1, 2), keepdims=True)) / (b.std(axis=(1, 2), keepdims=True) + 1e-6)
    c, r, w, h = window
    return float(np.abs(a[:, r:r + h, c:c + w] - b[:, r:r + h, c:c + w]).mean())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--work", default="/tmp/geovec-change-proof")
    ap.add_argument("--model", help="model dir (default: a tiny random model written into --work)")
    ap.add_argument("--tile", type=int, default=32)
    ap.add_argument("--fraction", type=float, default=0.15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", help="also render the olinda change map next to its after image to this PNG")
    ap.add_argument("--score-figure", help="also search the after date with a box on a flooded olinda tile, write "
                                           "its score map and render it to this PNG")
    args = ap.parse_args(argv)

    from geovec.backend.indexing import index_folder
    from geovec.backend.model.embedder import load_embedder
    from geovec.backend.schemas_change import ChangeRequest
    from geovec.backend.service import run_change
    from geovec.backend.types import TilingParams

    work = Path(args.work)
    if work.exists():
        import shutil

        shutil.rmtree(work)
    work.mkdir(parents=True)
    data = Path(args.data)
    print(machine("cpu") + "; load average " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    truth = build(data, work, args.tile, args.fraction, args.seed)
    if args.model:
        model_dir, label = Path(args.model), f"model {args.model}"
    else:
        from geovec.backend.model.tiny import write_tiny_model

        model_dir, label = write_tiny_model(work / "tiny-model"), "tiny random model (plumbing, not quality)"
    emb = load_embedder(str(model_dir), device="cpu", dtype="fp32")
    t0 = time.perf_counter()
    index_folder(work / "scenes", work / "idx", emb, params=TilingParams(tile_size=args.tile))
    t_index = time.perf_counter() - t0
    t0 = time.perf_counter()
    resp = run_change(ChangeRequest(before="2016", after="2017", index=str(work / "idx"), out=str(work / "change"),
                                    top=0))
    t_change = time.perf_counter() - t0
    feats = json.loads((work / "change" / "change.geojson").read_text())["features"]
    scores, labels, kinds, base = [], [], [], []
    for f in feats:
        p = f["properties"]
        name = Path(p["after_source"]).stem
        c, r, w, h = p["after_window"]
        key = f"{c // args.tile},{r // args.tile}"
        kind = truth[name].get(key) if (c % args.tile == 0 and r % args.tile == 0) else None
        before, after = truth[f"{name}:arrays"]
        scores.append(p["change"])
        labels.append(kind is not None)
        kinds.append(kind or "unchanged")
        base.append(pixel_baseline(before, after, p["after_window"]))
    s, y, b, k = np.array(scores), np.array(labels), np.array(base), np.array(kinds)
    print(f"{label}; tiles {args.tile} px; scenes {', '.join(n for n, _, _ in SOURCES)} (../shared/data); "
          f"seed {args.seed}")
    print(f"tile pairs {len(s)}: {int(y.sum())} changed ({', '.join(f'{x} {int((k == x).sum())}' for x in KINDS)}), "
          f"{int((~y).sum())} unchanged with jitter; index {t_index:.1f} s, change {t_change:.2f} s")
    print(f"{'':24s}{'ROC AUC':>9s}{'P@#changed':>12s}")
    print(f"{'change (1 - cosine)':24s}{roc_auc(s, y):9.3f}{precision_at_n(s, y):12.3f}")
    print(f"{'pixel baseline':24s}{roc_auc(b, y):9.3f}{precision_at_n(b, y):12.3f}")
    for kind in KINDS:
        m = (k == kind) | ~y
        print(f"  {kind + ' vs unchanged':22s}{roc_auc(s[m], y[m]):9.3f}{'':12s} (baseline {roc_auc(b[m], y[m]):.3f})")
    print(f"maps: {', '.join(Path(m.path).name for m in resp.maps)}")
    if args.figure:
        from render_maps import render

        olinda = next(m for m in resp.maps if m.after_scene.startswith("olinda"))
        render(Path(olinda.path), work / "scenes" / "olinda_2017-02-10.tif", Path(args.figure),
               f"change 2016 -> 2017, planted changes ({label.split(' (')[0]})",
               before=work / "scenes" / "olinda_2016-01-05.tif")
        print(f"figure: {args.figure}")
    if args.score_figure:
        score_figure(work, truth, args.tile, emb, Path(args.score_figure), label)
    return 0


def score_figure(work: Path, truth: dict, tile: int, emb: object, out: Path, label: str) -> None:
    """Box query on the first flooded olinda tile, its score map over the after scene, rendered."""
    import rasterio

    from geovec.backend.schemas import SearchRequest
    from geovec.backend.service import run_search

    after = work / "scenes" / "olinda_2017-02-10.tif"
    c, r = next(tuple(int(v) for v in key.split(",")) for key, kind in truth["olinda_2017-02-10"].items()
                if kind == "flooded")
    with rasterio.open(after) as ds:
        x0, y1 = ds.transform * (c * tile + 2, r * tile + 2)
        x1, y0 = ds.transform * ((c + 1) * tile - 2, (r + 1) * tile - 2)
        crs = ds.crs.to_string()
    req = SearchRequest(index=str(work / "idx"), box=[x0, y0, x1, y1], crs=crs, raster=str(after), k=5,
                        date_from="2017", score_map=str(work / "scores"))
    resp = run_search(req, emb)
    maps = resp.query["score_maps"]
    olinda = next(m for m in maps if m["scene"].startswith("olinda"))
    print(f"score map: box on flooded tile ({c}, {r}); top hits {[f.properties['window'][:2] for f in resp.features]}")
    from render_maps import render

    render(Path(olinda["path"]), after, out, f"similarity to a flooded tile ({label.split(' (')[0]})")
    print(f"figure: {out}")


if __name__ == "__main__":
    raise SystemExit(main())
