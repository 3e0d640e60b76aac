"""Regenerate resources/icon.png (from icon.svg) and resources/hits.qml (style graduated by score).

Run with the QGIS Python from the repo root: /usr/bin/python3 scripts/make_resources.py
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import (  # noqa: E402
    QgsApplication,
    QgsFillSymbol,
    QgsGraduatedSymbolRenderer,
    QgsPalLayerSettings,
    QgsRendererRange,
    QgsTextBufferSettings,
    QgsTextFormat,
    QgsVectorLayer,
    QgsVectorLayerSimpleLabeling,
)
from qgis.PyQt.QtCore import Qt  # noqa: E402
from qgis.PyQt.QtGui import QColor, QImage, QPainter  # noqa: E402
from qgis.PyQt.QtSvg import QSvgRenderer  # noqa: E402

CLASSES = [(-1.0, 0.2, "#ffffb2"), (0.2, 0.4, "#fecc5c"), (0.4, 0.6, "#fd8d3c"), (0.6, 0.8, "#f03b20"),
           (0.8, 1.0, "#bd0026")]


def icon_png() -> None:
    img = QImage(64, 64, QImage.Format_ARGB32)
    img.fill(Qt.transparent)
    painter = QPainter(img)
    QSvgRenderer("resources/icon.svg").render(painter)
    painter.end()
    img.save("resources/icon.png")


def hits_qml() -> None:
    layer = QgsVectorLayer("Polygon?crs=EPSG:4326&field=rank:integer&field=score:double", "hits", "memory")
    ranges = []
    for lo, hi, colour in CLASSES:
        sym = QgsFillSymbol.createSimple({})
        fill = QColor(colour)
        fill.setAlpha(35)
        sym.symbolLayer(0).setFillColor(fill)
        sym.symbolLayer(0).setStrokeColor(QColor(colour))
        sym.symbolLayer(0).setStrokeWidth(1.0)
        ranges.append(QgsRendererRange(lo, hi, sym, f"{lo:.1f} – {hi:.1f}"))
    layer.setRenderer(QgsGraduatedSymbolRenderer("score", ranges))
    label = QgsPalLayerSettings()
    label.fieldName = "rank"
    label.enabled = True
    label.placement = QgsPalLayerSettings.OverPoint
    fmt = QgsTextFormat()
    fmt.setSize(10)
    fmt.setColor(QColor("white"))
    buffer = QgsTextBufferSettings()
    buffer.setEnabled(True)
    buffer.setColor(QColor("black"))
    buffer.setSize(1)
    fmt.setBuffer(buffer)
    label.setFormat(fmt)
    layer.setLabeling(QgsVectorLayerSimpleLabeling(label))
    layer.setLabelsEnabled(True)
    layer.saveNamedStyle("resources/hits.qml")


if __name__ == "__main__":
    app = QgsApplication([], True)
    app.initQgis()
    icon_png()
    hits_qml()
    app.exitQgis()
