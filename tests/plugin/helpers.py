"""Helpers of the integration tests: backend readiness, waiting for searches, mouse drives."""

from __future__ import annotations

import time

from conftest import wait_until
from qgis.core import QgsPointXY, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QPoint, Qt, QTimer
from qgis.PyQt.QtTest import QTest


def wait_backend(plugin, timeout: float = 60) -> None:
    ctl = plugin.controller
    wait_until(lambda: ctl.backend.connection is not None or ctl.iface.messages(), timeout, "the backend")
    assert ctl.backend.connection is not None, ctl.iface.messages()


def wait_search(plugin, timeout: float = 120) -> None:
    """Wait for the running search task; fail with the message bar text if it failed."""
    ctl = plugin.controller
    wait_until(lambda: ctl.tasks, 10, "a search task to start")
    wait_until(lambda: not ctl.tasks, timeout, "the search to finish")
    status = ctl.dock.status_label.text()
    assert "hits for" in status, f"{status} / {ctl.iface.messages()}"


def add_raster(path: str) -> QgsRasterLayer:
    layer = QgsRasterLayer(path, "NEON OSBS_029")
    assert layer.isValid(), path
    QgsProject.instance().addMapLayer(layer)
    return layer


def to_pixel(canvas, point: QgsPointXY) -> QPoint:
    p = canvas.getCoordinateTransform().transform(point)
    return QPoint(int(round(p.x())), int(round(p.y())))


def drag_box(canvas, a: QPoint, b: QPoint) -> None:
    """A real press-move-release on the canvas viewport."""
    vp = canvas.viewport()
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, a)
    QTest.mouseMove(vp, QPoint((a.x() + b.x()) // 2, (a.y() + b.y()) // 2))
    QTest.mouseMove(vp, b)
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, b)


def click(canvas, p: QPoint) -> None:
    vp = canvas.viewport()
    QTest.mousePress(vp, Qt.LeftButton, Qt.NoModifier, p)
    QTest.mouseRelease(vp, Qt.LeftButton, Qt.NoModifier, p)


class StallProbe:
    """A 20 ms QTimer on the UI thread recording the longest gap between its ticks."""

    def __init__(self, interval_ms: int = 20) -> None:
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.last = 0.0
        self.max_gap = 0.0
        self.ticks = 0

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.last:
            self.max_gap = max(self.max_gap, now - self.last)
        self.last = now
        self.ticks += 1

    def start(self) -> StallProbe:
        self.last = 0.0
        self.timer.start()
        return self

    def stop(self) -> None:
        self.timer.stop()


def render_canvas(canvas, timeout: float = 30) -> None:
    """Refresh the canvas and wait until its map render has finished."""
    done = []
    canvas.mapCanvasRefreshed.connect(lambda: done.append(1))
    canvas.refreshAllLayers()
    wait_until(lambda: done and not canvas.isDrawing(), timeout, "the canvas to render")
