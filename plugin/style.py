"""How hit layers look: outlines (the imagery stays visible), rank labels, score colours.

The colour classes span the scores of the layer's own features (the current result
set), not the theoretical -1..1, so the best and the worst hit always differ.
The dock, the saved GeoPackage and the Processing outputs share this style.
"""

from __future__ import annotations

from qgis.core import (
    QgsFillSymbol,
    QgsGraduatedSymbolRenderer,
    QgsPalLayerSettings,
    QgsRendererRange,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtGui import QColor, QFont

#: low score -> high score
COLOURS = ["#2c7bb6", "#abd9e9", "#ffffbf", "#fdae61", "#d7191c"]
CLASSES = len(COLOURS)


def score_range(layer: QgsVectorLayer) -> tuple[float, float]:
    """Lowest and highest ``score`` of the layer's features (0, 0 when empty)."""
    scores = [float(f["score"]) for f in layer.getFeatures()]
    return (min(scores), max(scores)) if scores else (0.0, 0.0)


def outline(colour: str, width_mm: float) -> QgsFillSymbol:
    """A fill symbol with no fill: only the outline in ``colour``."""
    return QgsFillSymbol.createSimple({"color": "0,0,0,0", "style": "no", "outline_color": colour,
                                       "outline_width": str(width_mm), "outline_width_unit": "MM",
                                       "joinstyle": "miter"})


def classes(lo: float, hi: float, n: int = CLASSES) -> list[tuple[float, float]]:
    """``n`` equal score classes covering [lo, hi] (one class when all scores are equal)."""
    if hi - lo < 1e-9:
        return [(lo - 1e-6, hi + 1e-6)]
    step = (hi - lo) / n
    bounds = [lo + i * step for i in range(n)] + [hi]
    bounds[0] -= 1e-9
    bounds[-1] += 1e-9
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def style_hits(layer: QgsVectorLayer, level: str = "tile") -> None:
    """Outline renderer graduated on score over the layer's range, plus rank labels.

    Regions get thicker outlines and labels above the line; tiles thinner ones.
    """
    lo, hi = score_range(layer)
    width = 0.9 if level == "region" else 0.5
    ranges = []
    spans = classes(lo, hi)
    for i, (a, b) in enumerate(spans):
        colour = COLOURS[-1] if len(spans) == 1 else COLOURS[i]
        ranges.append(QgsRendererRange(a, b, outline(colour, width), f"{a:.3f} – {b:.3f}"))
    renderer = QgsGraduatedSymbolRenderer("score", ranges)
    renderer.setSourceSymbol(outline(COLOURS[-1], width))
    layer.setRenderer(renderer)
    label_hits(layer, level)
    layer.triggerRepaint()


def label_hits(layer: QgsVectorLayer, level: str) -> None:
    """Rank labels in white with a dark halo (readable on any imagery)."""
    settings = QgsPalLayerSettings()
    settings.fieldName = "rank"
    settings.placement = QgsPalLayerSettings.OverPoint
    fmt = QgsTextFormat()
    font = QFont()
    font.setBold(True)
    fmt.setFont(font)
    fmt.setSize(10 if level == "region" else 8)
    fmt.setColor(QColor("white"))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setSize(1.0)
    buffer.setColor(QColor(20, 20, 20))
    fmt.setBuffer(buffer)
    settings.setFormat(fmt)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(settings))
    layer.setLabelsEnabled(True)
