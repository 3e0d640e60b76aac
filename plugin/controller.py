"""Controller: connects the dock, the map tools, the backend manager and the tasks."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
)
from qgis.PyQt.QtCore import QObject
from qgis.PyQt.QtWidgets import QFileDialog

from . import heatmap
from .backend_manager import BackendManager
from .client import get_json_async
from .export import FORMATS, ExportError, export_hits
from .gui.dock import GeoVecDock
from .gui.results import ResultsView
from .hits import crs_from_text, geometry_from_geojson
from .maptools.point_tool import PointMapTool
from .maptools.rectangle_tool import RectangleMapTool
from .messages import Action, log, notify, withdraw
from .params import Connection, IndexParams, SearchParams
from .query import QueryBuilder
from .settings import Setting
from .tasks import GeoVecTask, IndexJobTask, IndexSummaryTask, Outcome, SearchTask, describe_summary
from .tasks.search import forget_index

logger = logging.getLogger(__name__)


def area_of(params: SearchParams) -> tuple[QgsGeometry, QgsCoordinateReferenceSystem] | None:
    """The area a search was confined to ("Search in view" / the selected polygon), with its CRS."""
    if not isinstance(params.within, str | dict) or not params.within_crs:
        return None
    try:
        data = json.loads(params.within) if isinstance(params.within, str) else params.within
    except ValueError:
        geom = QgsGeometry.fromWkt(str(params.within))
    else:
        geom = geometry_from_geojson(data) if isinstance(data, dict) else QgsGeometry()
    crs = crs_from_text(params.within_crs)
    return (geom, crs) if not geom.isEmpty() and crs.isValid() else None


def status_line(health: dict) -> str:
    """Backend version, model, device and GPU in one line."""
    gpu = health.get("gpu_name") or "no GPU"
    if health.get("gpu_free_mb") is not None:
        gpu += f" ({health['gpu_free_mb'] / 1024:.1f} GiB free)"
    model = health.get("model") or "none loaded"
    return f"Backend {health.get('version', '?')} · model: {model}{load_note(health)} · " \
           f"device: {health.get('device', '?')} · {gpu}"


def load_note(health: dict) -> str:
    """' (loading, step 2/2: reading weights…, 12 s)' while the model loads, ' (failed: why)' after a failed load."""
    state = health.get("model_state")
    if state == "loading":
        return (f" (loading, step {health.get('load_step', '?')}/{health.get('load_steps', '?')}: "
                f"{health.get('load_stage') or 'starting'}, {float(health.get('load_seconds') or 0):.0f} s)")
    if state == "failed":
        return f" (load failed: {health.get('load_error') or 'see the backend log'})"
    return ""


class Controller(QObject):
    """Everything the dock asks for, done asynchronously; outcomes go to the message bar.

    ``fixes`` maps "settings" and "setup" to the plugin's "Open settings" / "Set up
    backend" actions, offered as buttons next to the errors they fix.
    """

    def __init__(self, iface, dock: GeoVecDock, fixes: dict[str, Callable[[], None]] | None = None,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.canvas = iface.mapCanvas()
        self.dock = dock
        self.fixes = fixes or {}
        self.results = ResultsView(dock.table, self.canvas)
        self.query = QueryBuilder(self.canvas, iface.activeLayer)
        self.backend = BackendManager(self)
        self.box_tool = RectangleMapTool(self.canvas)
        self.point_tool = PointMapTool(self.canvas)
        self.tasks: list[GeoVecTask] = []
        self.index_task: IndexJobTask | None = None
        self._waiting: list[Callable[[Connection], None]] = []
        self._jobs_checked = False
        self._backend_errors: list = []  # message-bar items about the backend, withdrawn once it is ready
        self._jobs_request = None
        self._models_request = None
        self.alive = True
        recent = [p for p in Setting.RECENT_INDEXES.get().split("\n") if p]
        dock.set_indexes(recent, Setting.LAST_INDEX.get())
        #: (signal, slot) of every connection made here; shutdown() undoes them all
        self._links = [
            (self.backend.ready, self._on_ready), (self.backend.failed, self._on_backend_failed),
            (self.backend.lost, self._on_lost),
            (self.box_tool.boxDrawn, self.search_box), (self.point_tool.pointClicked, self.search_point),
            (dock.toolToggled, self._toggle_tool), (dock.textSearchRequested, self.search_text),
            (dock.newIndexRequested, self.start_index), (dock.cancelRequested, self.cancel_index),
            (dock.summaryRequested, self.show_summary), (dock.saveRequested, self._save),
            (dock.exportRequested, self._export), (dock.zoomAllRequested, self.results.zoom_all),
            (dock.reconnectRequested, self.connect_backend), (dock.indexChosen, self._index_chosen),
            (self.canvas.mapToolSet, self._tool_changed),
        ]
        for signal, slot in self._links:
            signal.connect(slot)
        from .workflows import WorkflowController

        self.workflows = WorkflowController(self)  # feedback marks + Refine, ask about a region

    # --- messages -------------------------------------------------------------------------
    def fix(self, name: str) -> Action | None:
        labels = {"settings": "Open settings", "setup": "Set up backend"}
        return (labels[name], self.fixes[name]) if name in self.fixes else None

    def message(self, text: str, level: Qgis.MessageLevel = Qgis.Info, *, details: str = "",
                fix: str | None = None):  # -> QgsMessageBarItem
        """One message-bar item; the status line repeats only what is not an error."""
        if level != Qgis.Critical:
            self.dock.set_status(text)
        return notify(self.iface, text, level, details=details, action=self.fix(fix) if fix else None)

    # --- backend --------------------------------------------------------------------------
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
        withdraw(self.iface, self._backend_errors)  # fixed: the first-run error does not stay up
        self._backend_errors = []
        self.dock.reconnect_button.setText("Reconnect")
        waiting, self._waiting = self._waiting, []
        for fn in waiting:
            fn(conn)
        if self.index_task is None and not self._jobs_checked:
            self._jobs_checked = True
            self._jobs_request = get_json_async(conn, "/v1/jobs", self._on_jobs)
            self._models_request = get_json_async(conn, "/v1/models", self._on_models)

    def _on_models(self, models, error) -> None:
        if self.alive and error is None and isinstance(models, list):
            self.dock.index_panel.models = [m for m in models if isinstance(m, dict)]

    def _on_jobs(self, jobs, error) -> None:
        """Follow a job the backend runs already (one it resumed by itself at start)."""
        if not self.alive or error is not None or not isinstance(jobs, list) or self.index_task is not None:
            return
        running = [j for j in jobs if isinstance(j, dict) and j.get("state") in ("queued", "running")]
        if running:
            job = running[0]
            params = IndexParams(folder=str(job.get("folder", "")), index=str(job.get("index", "")))
            self.dock.set_job_running(True)
            self.dock.job_label.setText(f"Following the backend's job: {params.folder} → {params.index}")
            self._follow(self.backend.connection, params, str(job["job_id"]))

    def _on_backend_failed(self, message: str, hint: str) -> None:
        self._waiting = []
        if not self.alive:
            return
        self.dock.set_backend_status("Backend: not available")
        self.dock.reconnect_button.setText("Connect")
        fix = "setup" if "Set up backend" in hint else "settings"
        withdraw(self.iface, self._backend_errors)  # one backend error at a time, the latest
        self._backend_errors = [self.message(f"{message}: {hint}" if hint else message, Qgis.Critical, fix=fix,
                                             details=f"backend log: {self.backend.log_path}")]

    def _on_lost(self, text: str) -> None:
        if self.alive:
            self.dock.set_backend_status("Backend: lost (press Connect to restart it)")
            self.dock.reconnect_button.setText("Connect")
            log(text, Qgis.Warning)

    # --- tasks ----------------------------------------------------------------------------
    def _run(self, task: GeoVecTask) -> None:
        self.tasks.append(task)
        QgsApplication.taskManager().addTask(task)

    def _finish(self, task: GeoVecTask) -> bool:
        if task in self.tasks:
            self.tasks.remove(task)
        return self.alive

    def _task_failed(self, task: GeoVecTask) -> None:
        fix = "settings" if task.error and "token" in task.hint else None
        self.message(task.message, task.outcome.level, fix=fix, details=task.details)

    # --- indexing -------------------------------------------------------------------------
    def _index_chosen(self, path: str) -> None:
        Setting.LAST_INDEX.set(path)

    def start_index(self, params: IndexParams) -> None:
        if self.index_task is not None:
            self.message("An indexing job is already running: cancel it first.", Qgis.Warning)
            return
        self.dock.set_job_running(True)
        self.dock.job_label.setText(f"Starting job: {params.folder} → {params.index}")

        self.with_backend(lambda conn: self._follow(conn, params))

    def _follow(self, conn: Connection, params: IndexParams, job_id: str | None = None) -> None:
        task = IndexJobTask(conn, params, self._index_done, job_id=job_id)
        task.status.connect(self.dock.job_label.setText)
        task.progressChanged.connect(lambda p: self.dock.progress.setValue(int(p)))
        self.index_task = task
        self._run(task)

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
            if task.params.model:  # a model that indexed: the dialog's default from now on
                Setting.MODEL.set(task.params.model)
        forget_index(task.params.index)  # stored regions or not: asked again at the next search
        if task.file_errors:
            text += f"; {len(task.file_errors)} file(s) failed (details in the GeoVec log)"
        details = "\n".join(f"{e.get('path')}: {e.get('error')}" for e in task.file_errors)
        level = Qgis.Warning if task.outcome is Outcome.SUCCESS and task.file_errors else task.outcome.level
        self.dock.job_label.setText(text)
        self.message(text, level, details=details)

    def remember_index(self, path: str) -> None:
        recent = [path] + [p for p in Setting.RECENT_INDEXES.get().split("\n") if p and p != path]
        Setting.RECENT_INDEXES.set("\n".join(recent[:10]))
        Setting.LAST_INDEX.set(path)
        self.dock.set_indexes(recent[:10], path)

    def show_summary(self, path: str) -> None:
        if not path:
            self.message("Choose an index first.", Qgis.Warning)
            return
        self.with_backend(lambda conn: self._run(IndexSummaryTask(conn, path, self._summary_done)))

    def _summary_done(self, task: IndexSummaryTask) -> None:
        if not self._finish(task):
            return
        if task.outcome is not Outcome.SUCCESS:
            self._task_failed(task)
            return
        text = describe_summary(task.result)
        self.dock.job_label.setText(text)
        log(f"index {task.path}: {text}")

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

    def _params(self, mode: str, crs: QgsCoordinateReferenceSystem | None = None,
                center: QgsPointXY | None = None, **kw) -> SearchParams:
        return self.query.build(self.dock.index_path(), mode, self.dock.options(), crs, center, **kw)

    def search_box(self, rect: QgsRectangle, crs: QgsCoordinateReferenceSystem) -> None:
        box = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        self.search(self._params("box", crs, rect.center(), box=box))

    def search_point(self, point: QgsPointXY, crs: QgsCoordinateReferenceSystem) -> None:
        self.search(self._params("point", crs, point, point=(point.x(), point.y())))

    def search_text(self, text: str) -> None:
        self.search(self._params("text", text=text))

    def search(self, params: SearchParams) -> None:
        """Run one query in a SearchTask; the hits replace the result layers."""
        if not params.index:
            self.message("Choose an index first, or build one with 'New index from folder…'.", Qgis.Warning)
            return
        self.dock.query_panel.remember()
        where = f" in {self.query.within()[2]}" if params.within is not None else ""
        self.dock.set_status(f"Searching ({params.short_label}){where}…")
        self.with_backend(lambda conn: self._run(SearchTask(conn, params, self._search_done)))

    def _search_done(self, task: SearchTask) -> None:
        if not self._finish(task):
            return
        if task.outcome is not Outcome.SUCCESS:
            self.results.clear()  # the old hits would read as this query's answer
            heatmap.clear()
            self.dock.set_status(f"Search failed ({task.params.short_label})")
            self._task_failed(task)
            return
        crs = crs_from_text(task.params.out_crs)
        area = area_of(task.params)
        n = self.results.show(task.result, task.params.label, crs, within=area)
        heat = heatmap.show(task.result, task.params.short_label)
        self.workflows.on_search(task.params)
        took = task.result.get("took_ms", 0.0)
        shown = f"; heat map of {len(heat)} scene(s)" if heat else ""
        self.dock.set_status(f"{n} hits for {task.params.short_label} ({took:.0f} ms{shown})")
        if n == 0:
            self.message("No hits: lower the minimum score, untick 'Search in view', or index more imagery.",
                         Qgis.Warning)

    # --- saving ---------------------------------------------------------------------------
    def _save(self) -> None:
        self._export("gpkg")

    def _export(self, fmt: str) -> None:
        driver, suffix, _ = FORMATS[fmt]
        path, _ = QFileDialog.getSaveFileName(self.dock, f"Save hits as {driver}", "geovec_hits" + suffix,
                                              f"{driver} (*{suffix})")
        if path:
            self.save(path, fmt)

    def save(self, path: str, fmt: str = "gpkg") -> str | None:
        """Write the hits, read them back, add the file to the project; returns the path written."""
        try:
            path, saved = export_hits(self.results.layers(), path, fmt)
        except ExportError as e:
            self.message(str(e), Qgis.Critical)
            return None
        QgsProject.instance().addMapLayer(saved)
        self.results.saved = True
        self.message(f"Saved {saved.featureCount()} hits to {path}", Qgis.Success)
        return path

    # --- teardown -------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Never blocks: cancel tasks, disconnect every signal, remove map tools, stop an owned backend.

        The hit layers stay in the project (they are the user's results).
        """
        self.alive = False
        self.workflows.shutdown()
        for request in (self._jobs_request, self._models_request):
            if request is not None:
                request.cancel()
        for signal, slot in self._links:
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        for task in list(self.tasks):
            task.detach()
            task.cancel()
        self.tasks = []
        for tool in (self.box_tool, self.point_tool):
            if self.canvas.mapTool() is tool:
                self.canvas.unsetMapTool(tool)
            tool.remove()
        self.results.release()
        self.backend.stop()
