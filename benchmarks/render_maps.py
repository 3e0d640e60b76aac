"""Render a GeoVec change map or score map (GeoTIFF + legend) as a PNG beside its imagery, for the README.

    .venv/bin/python benchmarks/render_maps.py MAP.tif --image AFTER.tif [--before BEFORE.tif] --out docs/x.png

The colours are the map's own legend (the ramp in its ``.qml``, the title in its band metadata).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np


def _rgb(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """The raster's first three bands, 2-98 % stretched, resampled to ``shape`` (rows, cols)."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as ds:
        arr = ds.read([1, 2, 3] if ds.count >= 3 else [1, 1, 1], out_shape=(3, *shape),
                      resampling=Resampling.bilinear).astype(np.float32)
    lo, hi = np.percentile(arr, 2, axis=(1, 2), keepdims=True), np.percentile(arr, 98, axis=(1, 2), keepdims=True)
    return np.clip((arr - lo) / np.maximum(hi - lo, 1e-6), 0, 1).transpose(1, 2, 0)


def _ramp(qml: Path) -> tuple[list[tuple[float, str]], list[str]]:
    items = re.findall(r'<item alpha="\d+" value="([^"]+)" color="([^"]+)" label="([^"]*)"', qml.read_text())
    return [(float(v), c) for v, c, _ in items], [lab for _, _, lab in items]


def render(map_path: Path, image: Path, out: Path, title: str, *, before: Path | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import rasterio
    from matplotlib.colors import LinearSegmentedColormap

    with rasterio.open(map_path) as ds:
        values = ds.read(1)
        units = ds.tags(1).get("UNITS", "value")
    stops, labels = _ramp(map_path.with_suffix(".qml"))
    lo, hi = stops[0][0], stops[-1][0]
    cmap = LinearSegmentedColormap.from_list("legend", [((v - lo) / (hi - lo), c) for v, c in stops])
    shape = values.shape
    panels = ([("before", _rgb(before, shape))] if before is not None else []) + [("after" if before else "image",
                                                                                  _rgb(image, shape))]
    fig, axes = plt.subplots(1, len(panels) + 1, figsize=(4.2 * (len(panels) + 1), 4.4))
    for ax, (name, rgb) in zip(axes, panels, strict=False):
        ax.imshow(rgb)
        ax.set_title(name)
        ax.axis("off")
    ax = axes[-1]
    ax.imshow(panels[-1][1], alpha=0.55)
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=lo, vmax=hi, alpha=0.8, interpolation="nearest")
    ax.set_title(title, fontsize=8, wrap=True)
    ax.axis("off")
    cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03, ticks=[v for v, _ in stops])
    cb.ax.set_yticklabels(labels, fontsize=7)
    cb.set_label(units, fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("map")
    ap.add_argument("--image", required=True, help="the imagery the map was made from (after date)")
    ap.add_argument("--before", help="the before date's imagery (change maps)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--title", default="")
    a = ap.parse_args()
    render(Path(a.map), Path(a.image), Path(a.out), a.title or Path(a.map).stem,
           before=Path(a.before) if a.before else None)
    print(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
