"""Controller: connects the dock, the map tools, the backend manager and the tasks."""

from __future__ import annotations

import logging
from collections.abc import Callable

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QObject
from qgis.PyQt.QtWidgets import QFileDialog

from .backend_manager import BackendManager
from .gui.dock import GeoVecDock
from .gui.results import ResultsView
from .hits import crs_to_text
from .maptools.point_tool import PointMapTool
from .maptools.rectangle_tool import RectangleMapTool
from .params import Connection, IndexParams, SearchParams
from .settings import Setting
from .tasks import GeoVecTask, IndexJobTask, Outcome, SearchTask

log = logging.getLogger(__name__)
WGS84 = QgsCoordinateReferenceSystem("EPSG:4326")


def status_line(health: dict) -> str:
    """Backend version, model, device and GPU in one line."""
    gpu = health.get("gpu_name") or "no GPU"
    if health.get("gpu_free_mb") is not None:
        gpu += f" ({health['gpu_free_mb'] / 1024:.1f} GiB free)"
    model = health.get("model") or "none loaded"
    return f"Backend {health.get('version', '?')} · model: {model} · device: {health.get('device', '?')} · {gpu}"


class Controller(QObject):
    """Everything the dock asks for, done asynchronously; outcomes go to the message bar."""

    def __init__(self, iface, dock: GeoVecDock, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.canvas = iface.mapCanvas()
        self.dock = dock
        self.results = ResultsView(dock.table, self.canvas)
        self.backend = BackendManager(self)
        self.backend.ready.connect(self._on_ready)
        self.backend.failed.connect(self._on_backend_failed)
        self.box_tool = RectangleMapTool(self.canvas)
        self.point_tool = PointMapTool(self.canvas)
        self.box_tool.boxDrawn.connect(self.search_box)
        self.point_tool.pointClicked.connect(self.search_point)
        self.tasks: list[GeoVecTask] = []
        self.index_task: IndexJobTask | None = None
        self._waiting: list[Callable[[Connection], None]] = []
        self.alive = True
        recent = [p for p in Setting.RECENT_INDEXES.get().split("\n") if p]
        dock.set_indexes(recent, Setting.LAST_INDEX.get())
        dock.toolToggled.connect(self._toggle_tool)
        dock.textSearchRequested.connect(self.search_text)
        dock.newIndexRequested.connect(self.start_index)
        dock.cancelRequested.connect(self.cancel_index)
        dock.saveRequested.connect(self._save)
        dock.reconnectRequested.connect(self.connect_backend)
        dock.indexChosen.connect(lambda p: Setting.LAST_INDEX.set(p))
        self.canvas.mapToolSet.connect(self._tool_changed)

    # --- backend --------------------------------------------------------------------------
    def message(self, text: str, level: Qgis.MessageLevel = Qgis.Info, duration: int = 8) -> None:
        self.dock.set_status(text)
        self.iface.messageBar().pushMessage("GeoVec", text, level, 0 if level == Qgis.Critical else duration)

    def connect_backend(self) -> None:
        self.dock.set_backend_status("Backend: connecting…")
        self.backend.ensure()

    def with_backend(self, fn: Callable[[Connection], None]) -> None:
        """Run ``fn(connection)`` now if connected, else once the backend is ready."""
        if self.backend.connection is not None and (self.backend.owned or self.backend.process is None):
            fn(self.backend.connection)
            return
        self._waiting.append(fn)
        self.connect_backend()

    def _on_ready(self, conn: Connection) -> None:
        if not self.alive:
            return
        self.dock.set_backend_status(status_line(self.backend.health or {}))
        waiting, self._waiting = self._waiting, []
        for fn in waiting:
            fn(conn)

    def _on_backend_failed(self, message: str, hint: str) -> None:
        self._waiting = []
        if self.alive:
            self.dock.set_backend_status("Backend: not available")
            self.message(f"{message} — {hint}" if hint else message, Qgis.Critical)

    # --- tasks ----------------------------------------------------------------------------
    def _run(self, task: GeoVecTask) -> None:
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)

    def _finish(self, task: GeoVecTask) -> bool:
        if task in self.tasks:
            self.tasks.remove(task)
        return self.alive

    # --- indexing -------------------------------------------------------------------------
    def start_index(self, params: IndexParams) -> None:
        if self.index_task is not None:
            self.message("An indexing job is already running; cancel it first.", Qgis.Warning)
            return
        self.dock.set_job_running(True)
        self.dock.job_label.setText(f"Starting job: {params.folder} → {params.index}")

        def go(conn: Connection) -> None:
            task = IndexJobTask(conn, params, self._index_done)
            task.status.connect(self.dock.job_label.setText)
            task.progressChanged.connect(lambda p: self.dock.progress.setValue(int(p)))
            self.index_task = task
            self._run(task)

        self.index_task = None
        self.with_backend(go)

    def cancel_index(self) -> None:
        if self.index_task is not None:
            self.index_task.cancel()

    def _index_done(self, task: IndexJobTask) -> None:
        if not self._finish(task):
            return
        self.index_task = None
        self.dock.set_job_running(False)
        text = task.message
        if task.outcome is Outcome.SUCCESS:
            summary = (task.result or {}).get("summary") or {}
            text = (f"Indexed {summary.get('tiles', task.result.get('tiles_done', 0))} tiles from "
                    f"{summary.get('scenes', '?')} scenes into {task.params.index}")
            self.remember_index(task.params.index)
        if task.file_errors:
            text += f"; {len(task.file_errors)} file(s) failed: " + "; ".join(
                f"{e.get('path')}: {e.get('error')}" for e in task.file_errors[:5])
        level = Qgis.Warning if task.outcome is Outcome.SUCCESS and task.file_errors else task.outcome.level
        self.dock.job_label.setText(text)
        self.message(text, level)

    def remember_index(self, path: str) -> None:
        recent = [path] + [p for p in Setting.RECENT_INDEXES.get().split("\n") if p and p != path]
        Setting.RECENT_INDEXES.set("\n".join(recent[:10]))
        Setting.LAST_INDEX.set(path)
        self.dock.set_indexes(recent[:10], path)

    # --- searching ------------------------------------------------------------------------
    def _toggle_tool(self, name: str, checked: bool) -> None:
        tool = self.box_tool if name == "box" else self.point_tool
        if checked:
            self.canvas.setMapTool(tool)
            other = self.dock.point_button if name == "box" else self.dock.box_button
            other.blockSignals(True)
            other.setChecked(False)
            other.blockSignals(False)
        elif self.canvas.mapTool() is tool:
            self.canvas.unsetMapTool(tool)

    def _tool_changed(self, new_tool, old_tool=None) -> None:  # noqa: ARG002
        if new_tool not in (self.box_tool, self.point_tool):
            self.dock.uncheck_tools()

    def _to_latlon(self, point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> tuple[float, float]:
        p = QgsCoordinateTransform(crs, WGS84, QgsProject.instance()).transform(point)
        return (p.y(), p.x())

    def _raster_under(self, point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> str | None:
        """The file of the topmost visible GDAL raster under ``point`` (what the query was drawn on)."""
        for layer in self.canvas.layers():
            if not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
                continue
            try:
                extent = QgsCoordinateTransform(layer.crs(), crs, QgsProject.instance()).transformBoundingBox(
                    layer.extent())
            except Exception:  # noqa: BLE001 - QgsCsException: not comparable, try the next
                continue
            if extent.contains(point):
                return layer.source().split("|")[0]
        return None

    def _params(self, mode: str, crs: QgsCoordinateReferenceSystem | None = None,
                center: QgsPointXY | None = None, **kw) -> SearchParams:
        opts = self.dock.options()
        project_crs = QgsProject.instance().crs()
        out_crs = project_crs if project_crs.isValid() else self.canvas.mapSettings().destinationCrs()
        if center is None:
            center, crs_c = self.canvas.extent().center(), self.canvas.mapSettings().destinationCrs()
        else:
            crs_c = crs
        latlon = self._to_latlon(center, crs_c) if opts["condition_location"] else None
        raster = self._raster_under(center, crs_c) if mode != "text" else None
        return SearchParams(index=self.dock.index_path(), mode=mode, crs=crs_to_text(crs) if crs else "EPSG:4326",
                            raster=raster, latlon=latlon, k=opts["k"], min_score=opts["min_score"],
                            exclude_own=opts["exclude_own"], out_crs=crs_to_text(out_crs), **kw)

    def search_box(self, rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> None:
        box = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        self.search(self._params("box", crs, rect.center(), box=box))

    def search_point(self, point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> None:
        self.search(self._params("point", crs, point, point=(point.x(), point.y())))

    def search_text(self, text: str) -> None:
        self.search(self._params("text", text=text))

    def search(self, params: SearchParams) -> None:
        """Run one query in a SearchTask; the hits replace the result layer."""
        if not params.index:
            self.message("Choose an index first (or build one with 'New index from folder…').", Qgis.Warning)
            return
        self.dock.set_status(f"Searching ({params.label})…")
        self.with_backend(lambda conn: self._run(SearchTask(conn, params, self._search_done)))

    def _search_done(self, task: SearchTask) -> None:
        if not self._finish(task):
            return
        if task.outcome is not Outcome.SUCCESS:
            self.message(task.message, task.outcome.level)
            return
        crs = QgsCoordinateReferenceSystem(task.params.out_crs)
        if not crs.isValid():
            crs = QgsCoordinateReferenceSystem.fromWkt(task.params.out_crs)
        n = self.results.show(task.result, task.params.label, crs)
        took = task.result.get("took_ms", 0.0)
        self.dock.set_status(f"{n} hits for {task.params.label} ({took:.0f} ms)")
        if n == 0:
            self.message("No hits: lower the minimum score or index more imagery.", Qgis.Warning)

    def _save(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.dock, "Save hits", "geovec_hits.gpkg", "GeoPackage (*.gpkg)")
        if path:
            try:
                self.results.save_gpkg(path)
                self.message(f"Saved hits to {path}", Qgis.Success)
            except OSError as e:
                self.message(str(e), Qgis.Critical)

    # --- teardown -------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Cancel tasks, remove map tools and the result layer, stop the backend if started here."""
        self.alive = False
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            task.waitForFinished(5000)
        for tool in (self.box_tool, self.point_tool):
            if self.canvas.mapTool() is tool:
                self.canvas.unsetMapTool(tool)
            tool.remove()
        try:
            self.canvas.mapToolSet.disconnect(self._tool_changed)
        except TypeError:
            pass
        self.results.remove()
        self.backend.stop()
