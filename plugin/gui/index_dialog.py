"""New index dialog: folder, index location (a folder), model, tile size, overlap, bands, regions."""

from __future__ import annotations

from pathlib import Path

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QSpinBox,
    QWidget,
)

from ..params import IndexParams, parse_bands
from ..settings import Setting
from .model_choice import ModelChoice, model_problem

TIFF = (".tif", ".tiff")


def count_geotiffs(folder: Path, limit: int = 1) -> int:
    """How many .tif/.tiff files lie under ``folder`` (stops counting at ``limit``)."""
    n = 0
    for path in folder.rglob("*"):
        if path.suffix.lower() in TIFF and path.is_file():
            n += 1
            if n >= limit:
                break
    return n


class IndexDialog(QDialog):
    """OK only with a folder that holds GeoTIFFs, an index folder and valid bands."""

    def __init__(self, parent: QWidget | None = None, models: list[dict] | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("GeoVecIndexDialog")
        self.setWindowTitle("New GeoVec index")
        form = QFormLayout(self)
        # first: whether the model can be had at all (offline first run), before any folder is asked for
        self.model = ModelChoice(Setting.MODEL.get(), models, self)
        form.addRow("Model", self.model)
        self.folder = QgsFileWidget(self)
        self.folder.setStorageMode(QgsFileWidget.GetDirectory)
        self.folder.setDialogTitle("Folder of GeoTIFFs to index")
        self.folder.fileChanged.connect(self._suggest_index)
        self.index = QgsFileWidget(self)
        self.index.setStorageMode(QgsFileWidget.GetDirectory)  # a folder picker, not a file-save dialog
        self.index.setDialogTitle("Index folder (created if absent)")
        self.tile_size = QSpinBox(self)
        self.tile_size.setRange(16, 8192)
        self.tile_size.setValue(Setting.TILE_SIZE.get())
        self.tile_size.setSuffix(" px")
        self.overlap = QDoubleSpinBox(self)
        self.overlap.setRange(0.0, 0.9)
        self.overlap.setSingleStep(0.25)
        self.overlap.setValue(Setting.OVERLAP.get())
        self.bands = QLineEdit(self)
        self.bands.setPlaceholderText("R,G,B band numbers, e.g. 4,3,2 (empty: the RGB default)")
        self.regions = QCheckBox("Also index regions inside tiles (faster region search)", self)
        self.error = QLabel("", self)
        self.error.setObjectName("GeoVecIndexDialogError")
        self.error.setStyleSheet("color: #b00020")
        self.error.setWordWrap(True)
        form.addRow("Folder of GeoTIFFs", self.folder)
        form.addRow("Index folder", self.index)
        form.addRow("Tile size", self.tile_size)
        form.addRow("Overlap (fraction)", self.overlap)
        form.addRow("Bands", self.bands)
        form.addRow(self.regions)
        form.addRow(self.error)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel, self)
        self.buttons.button(QDialogButtonBox.Ok).setText("Index")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        form.addRow(self.buttons)

    def _suggest_index(self, folder: str) -> None:
        if folder and not self.index.filePath():
            self.index.setFilePath(folder.rstrip("/\\") + "_geovec")

    def problem(self) -> str:
        """What is wrong with the values ('' when they are fine)."""
        folder = Path(self.folder.filePath().strip() or ".").expanduser()
        if model_problem(self.model.text()):
            return model_problem(self.model.text())
        if not self.folder.filePath().strip():
            return "Choose the folder of GeoTIFFs to index."
        if not folder.is_dir():
            return f"The folder {folder} does not exist."
        if not count_geotiffs(folder):
            return f"The folder {folder} holds no GeoTIFF (.tif/.tiff): choose a folder of GeoTIFFs."
        if not self.index.filePath().strip():
            return "Choose where the index folder goes."
        try:
            parse_bands(self.bands.text())
        except ValueError as e:
            return str(e)
        return ""

    def params(self) -> IndexParams:
        return IndexParams(folder=self.folder.filePath().strip(), index=self.index.filePath().strip(),
                           model=self.model.text() or None, tile_size=self.tile_size.value(),
                           overlap=self.overlap.value(), bands=parse_bands(self.bands.text()),
                           regions="" if self.regions.isChecked() else None)

    def accept(self) -> None:
        problem = self.problem()
        self.error.setText(problem)
        if problem:
            return
        Setting.TILE_SIZE.set(self.tile_size.value())
        # the model becomes the default only once a job indexed with it (the controller saves it then)
        Setting.OVERLAP.set(self.overlap.value())
        super().accept()
