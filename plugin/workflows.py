"""WorkflowController: the dock's relevance-feedback and "ask about a region" panels.

It adds its panels to the dock under the results table and reuses the main
controller's backend connection, tasks and results view, so the dock itself
needs no change. Feedback: the last search (or the query vector the last
refine returned) plus the good/bad marks go to ``POST /v1/refine``; the refined
hits replace the result layer and the marks stay for the next round.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qgis.core import Qgis, QgsCoordinateReferenceSystem, QgsProject, QgsVectorLayer
from qgis.PyQt.QtCore import QObject
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import QFileDialog

from .gui.ask_panel import AskPanel
from .gui.feedback_panel import FeedbackPanel
from .gui.results import FID_ROLE, LAYER_ROLE
from .hits import crs_to_text, parse_bbox
from .maptools.rectangle_tool import RectangleMapTool
from .params import Connection, SearchParams
from .tasks import Outcome
from .tasks.workflow import WorkflowTask
from .workflow_params import AskParams, RefineParams

COLOURS = {"good": QColor(170, 230, 170), "bad": QColor(240, 170, 170)}


def region_marks(keys: list[str]) -> tuple[tuple[str, tuple[float, ...]], ...]:
    """("tile_id|x0,y0,x1,y1", ...) mark keys -> ((tile id, bbox_image), ...)."""
    out = []
    for key in keys:
        tile, _, box = key.partition("|")
        parsed = parse_bbox(box)
        if parsed is not None:
            out.append((tile, tuple(parsed)))
    return tuple(out)


class WorkflowController(QObject):
    def __init__(self, ctl: Any) -> None:  # the plugin's Controller (not imported: no cycle)
        super().__init__(ctl)
        self.ctl = ctl
        self.feedback = FeedbackPanel(ctl.dock)
        self.ask = AskPanel(ctl.dock)
        ctl.dock.add_section(self.feedback)
        ctl.dock.add_section(self.ask)
        self.query: dict[str, Any] | None = None  # the first round's SearchRequest body
        self.query_label = ""
        self.vector: list[float] | None = None
        self.out_crs = "EPSG:4326"
        self.level = "tile"  # the level of the search being refined: marks and refined hits keep it
        self.ask_tool = RectangleMapTool(ctl.canvas)
        self.ask_tool.boxDrawn.connect(self.ask_box)
        self.feedback.markRequested.connect(self.mark_selected)
        self.feedback.refineRequested.connect(self.refine)
        self.feedback.saveMarksRequested.connect(self._save_marks)
        self.ask.drawToggled.connect(self._toggle_ask_tool)
        ctl.canvas.mapToolSet.connect(self._tool_changed)

    # --- feedback -------------------------------------------------------------------------
    def on_search(self, params: SearchParams) -> None:
        """A new search starts a new feedback session."""
        self.query = params.to_request()
        self.query_label = params.label
        self.vector = None
        self.out_crs = params.out_crs
        self.level = params.level
        self.feedback.clear()
        self._paint_marks()

    def _tile_id(self, row: int) -> str | None:
        """The mark key of the hit in table row ``row``: its tile id, or at level region
        "tile_id|x0,y0,x1,y1" (the region hit itself)."""
        item = self.ctl.dock.table.item(row, 0)
        layer = QgsProject.instance().mapLayer(item.data(LAYER_ROLE)) if item is not None else None
        if layer is None or layer.fields().indexFromName("tile_id") < 0:
            return None
        feat = layer.getFeature(item.data(FID_ROLE))
        if not feat.isValid() or not feat["tile_id"]:
            return None
        if self.level == "region" and feat["level"] == "region" and parse_bbox(feat["bbox_image"]):
            return f"{feat['tile_id']}|{feat['bbox_image']}"
        return str(feat["tile_id"])

    def selected_tile_ids(self) -> list[str]:
        table = self.ctl.dock.table
        ids = [self._tile_id(idx.row()) for idx in table.selectionModel().selectedRows()]
        return [t for t in ids if t]

    def mark_selected(self, how: str) -> None:
        ids = self.selected_tile_ids()
        if not ids:
            self.ctl.message("Select a hit in the table first, then mark it.", Qgis.Warning)
            return
        self.feedback.mark(ids, how)
        self._paint_marks()

    def _paint_marks(self) -> None:
        table = self.ctl.dock.table
        for row in range(table.rowCount()):
            tile = self._tile_id(row)
            if tile is None:
                continue
            mark = self.feedback.marks.get(tile)
            for col in range(table.columnCount()):
                cell = table.item(row, col)
                if cell is not None:
                    cell.setBackground(COLOURS[mark] if mark else QColor(0, 0, 0, 0))

    def refine_params(self, save_marks: str | None = None) -> RefineParams | None:
        if self.query is None:
            self.ctl.message("Search first, then mark hits and refine.", Qgis.Warning)
            return None
        label = self.query.get("text") if save_marks else None
        common: dict[str, Any] = {}
        if self.level == "region":
            common = {"level": "region", "good_regions": region_marks(self.feedback.good()),
                      "bad_regions": region_marks(self.feedback.bad())}
        else:
            common = {"good": tuple(self.feedback.good()), "bad": tuple(self.feedback.bad())}
        return RefineParams(index=self.query["index"], query=None if self.vector is not None else self.query,
                            vector=tuple(self.vector) if self.vector is not None else None,
                            k=self.ctl.dock.options()["k"], out_crs=self.out_crs, save_marks=save_marks,
                            label=label or ("marked" if save_marks else None), **common)

    def refine(self, save_marks: str | None = None) -> None:
        params = self.refine_params(save_marks)
        if params is None:
            return
        good, bad = len(self.feedback.good()), len(self.feedback.bad())
        self.ctl.dock.set_status(f"Refining from {good} good, {bad} bad {self.level}s…")
        self.ctl.with_backend(lambda conn: self._start("refine", conn, params, "GeoVec refine", self._refined))

    def _start(self, name: str, conn: Connection, params: Any, title: str, done: Any) -> None:
        self.ctl._run(WorkflowTask(conn, name, params, title, done))

    def _refined(self, task: WorkflowTask) -> None:
        if not self.ctl._finish(task):
            return
        if task.outcome is not Outcome.SUCCESS:
            self.ctl.message(task.message, task.outcome.level)
            return
        resp = task.result
        self.vector = resp.get("query_vector") or self.vector
        crs = QgsCoordinateReferenceSystem(self.out_crs)
        if not crs.isValid():
            crs = QgsCoordinateReferenceSystem.fromWkt(self.out_crs)
        n = self.ctl.results.show(resp, f"refined: {self.query_label}", crs)
        self._paint_marks()
        self.ctl.dock.set_status(f"{n} refined hits for {self.query_label} "
                                 f"({len(self.feedback.good())} good, {len(self.feedback.bad())} bad; "
                                 f"{resp.get('took_ms', 0):.0f} ms)")
        if resp.get("marks_path"):
            layer = QgsVectorLayer(resp["marks_path"], Path(resp["marks_path"]).stem, "ogr")
            QgsProject.instance().addMapLayer(layer)
            self.ctl.message(f"Marks saved to {resp['marks_path']} (a training layer: one label per marked hit)", Qgis.Success)

    def _save_marks(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self.ctl.dock, "Save marks as a training layer",
                                              "geovec_marks.geojson", "GeoJSON (*.geojson)")
        if path:
            self.refine(save_marks=path)

    # --- ask about a region ---------------------------------------------------------------
    def _toggle_ask_tool(self, checked: bool) -> None:
        if checked:
            self.ctl.canvas.setMapTool(self.ask_tool)
        elif self.ctl.canvas.mapTool() is self.ask_tool:
            self.ctl.canvas.unsetMapTool(self.ask_tool)

    def _tool_changed(self, new_tool, old_tool=None) -> None:  # noqa: ARG002
        if new_tool is not self.ask_tool:
            self.ask.untoggle()

    def ask_box(self, rect, crs) -> None:
        index = self.ctl.dock.index_path()
        answers = self.ask.answers()
        if not index:
            self.ctl.message("Choose an index first.", Qgis.Warning)
            return
        if not answers:
            self.ctl.message("Type candidate answers first (comma-separated).", Qgis.Warning)
            return
        params = AskParams(index=index, box=(rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()),
                           crs=crs_to_text(crs), question=self.ask.question(), answers=tuple(answers),
                           raster=self.ctl.query.raster_under(rect.center(), crs))
        self.ask.answer_label.setText("Asking…")
        self.ctl.with_backend(lambda conn: self._start("ask", conn, params, "GeoVec ask", self._answered))

    def _answered(self, task: WorkflowTask) -> None:
        if not self.ctl._finish(task):
            return
        if task.outcome is not Outcome.SUCCESS:
            self.ask.answer_label.setText("")
            self.ctl.message(task.message, task.outcome.level)
            return
        self.ask.show_answers(task.result)
        best = (task.result.get("answers") or [{}])[0].get("answer", "?")
        self.ctl.dock.set_status(f"Best answer to {task.params.question!r}: {best}")

    def shutdown(self) -> None:
        if self.ctl.canvas.mapTool() is self.ask_tool:
            self.ctl.canvas.unsetMapTool(self.ask_tool)
        self.ask_tool.remove()
        try:
            self.ctl.canvas.mapToolSet.disconnect(self._tool_changed)
        except TypeError:
            pass
