"""Regenerate resources/icon.png (from icon.svg). Hit layers are styled in code (plugin/style.py).

Run with the QGIS Python from the repo root: /usr/bin/python3 scripts/make_resources.py
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.core import QgsApplication  # noqa: E402
from qgis.PyQt.QtCore import Qt  # noqa: E402
from qgis.PyQt.QtGui import QImage, QPainter  # noqa: E402
from qgis.PyQt.QtSvg import QSvgRenderer  # noqa: E402


def icon_png() -> None:
    img = QImage(64, 64, QImage.Format_ARGB32)
    img.fill(Qt.transparent)
    painter = QPainter(img)
    QSvgRenderer("resources/icon.svg").render(painter)
    painter.end()
    img.save("resources/icon.png")


if __name__ == "__main__":
    app = QgsApplication([], True)
    app.initQgis()
    icon_png()
    app.exitQgis()
