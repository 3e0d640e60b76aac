"""Regenerate resources/icon.png (from icon.svg) and resources/hits.qml (score-graduated style).

Run with the QGIS Python: /usr/bin/python3 scripts/make_resources.py (from the repo root).
"""
import os, sys
os.environ["QT_QPA_PLATFORM"] = "offscreen"
from qgis.core import *
from qgis.PyQt.QtGui import QColor, QImage, QPainter
from qgis.PyQt.QtSvg import QSvgRenderer
from qgis.PyQt.QtCore import Qt
app = QgsApplication([], True); app.initQgis()
img = QImage(64, 64, QImage.Format_ARGB32); img.fill(Qt.transparent)
p = QPainter(img); QSvgRenderer("resources/icon.svg").render(p); p.end(); img.save("resources/icon.png")
layer = QgsVectorLayer("Polygon?crs=EPSG:4326&field=rank:integer&field=score:double&field=source:string&field=query:string", "h", "memory")
ranges = []
cols = ["#ffffb2", "#fecc5c", "#fd8d3c", "#f03b20", "#bd0026"]
bounds = [(-1.0, 0.2), (0.2, 0.4), (0.4, 0.6), (0.6, 0.8), (0.8, 1.0)]
for (lo, hi), c in zip(bounds, cols):
    sym = QgsFillSymbol.createSimple({"color": c + "40", "outline_color": c, "outline_width": "0.8", "style": "solid"})
    sym.setColor(QColor(c)); sym.symbolLayer(0).setFillColor(QColor(c + "")); 
    fc = QColor(c); fc.setAlpha(70); sym.symbolLayer(0).setFillColor(fc); sym.symbolLayer(0).setStrokeColor(QColor(c)); sym.symbolLayer(0).setStrokeWidth(0.8)
    ranges.append(QgsRendererRange(lo, hi, sym, f"{lo:.1f} – {hi:.1f}"))
r = QgsGraduatedSymbolRenderer("score", ranges)
layer.setRenderer(r)
pal = QgsPalLayerSettings(); pal.fieldName = "rank"; pal.enabled = True
fmt = QgsTextFormat(); fmt.setSize(10); fmt.setColor(QColor("white"))
buf = QgsTextBufferSettings(); buf.setEnabled(True); buf.setColor(QColor("black")); buf.setSize(1); fmt.setBuffer(buf)
pal.setFormat(fmt); pal.placement = QgsPalLayerSettings.OverPoint
layer.setLabeling(QgsVectorLayerSimpleLabeling(pal)); layer.setLabelsEnabled(True)
print(layer.saveNamedStyle("resources/hits.qml"))
app.exitQgis()
