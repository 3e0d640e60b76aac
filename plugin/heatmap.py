"""'Show as heat map': a search's similarity over every tile of the index, as styled raster layers.

The backend writes one score-map GeoTIFF per scene (with a ``.qml`` legend) into a folder the dock
names (``score_map`` in the search request); this module picks the folder and shows what came back,
replacing the previous search's heat maps.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

from qgis.core import QgsLayerTreeGroup, QgsProject, QgsRasterLayer

GROUP = "GeoVec heat maps"
#: custom property that marks the layers this module added (so only those are replaced)
MARK = "geovec/heatmap"


def _root() -> Path:
    return Path(tempfile.gettempdir()) / "geovec-heatmaps"


def new_folder() -> str:
    """A fresh folder for one search's score maps, under the system's temporary folder."""
    folder = _root() / uuid.uuid4().hex[:12]
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder)


def clear(project: QgsProject | None = None) -> None:
    """Remove the heat-map layers of the previous search (and their group when it is empty)."""
    project = project or QgsProject.instance()
    ours = {lid: lyr for lid, lyr in project.mapLayers().items() if lyr.customProperty(MARK)}
    folders = {Path(lyr.source()).parent for lyr in ours.values()}
    if ours:
        project.removeMapLayers(list(ours))
    for folder in folders:  # the files of replaced heat maps: only folders this module made
        if folder.parent == _root():
            shutil.rmtree(folder, ignore_errors=True)
    group = project.layerTreeRoot().findGroup(GROUP)
    if group is not None and not group.children():
        project.layerTreeRoot().removeChildNode(group)


def show(resp: dict[str, Any], label: str, project: QgsProject | None = None) -> list[QgsRasterLayer]:
    """Add the score maps of ``resp`` (``query.score_maps``) under one group, styled by their legend."""
    project = project or QgsProject.instance()
    clear(project)
    maps = (resp.get("query") or {}).get("score_maps") or []
    if not maps:
        return []
    root = project.layerTreeRoot()
    group: QgsLayerTreeGroup = root.findGroup(GROUP) or root.insertGroup(0, GROUP)
    layers = []
    for m in maps:
        layer = QgsRasterLayer(str(m["path"]), f"heat map: {label} ({m.get('scene', '')})")
        if not layer.isValid():
            continue
        style = m.get("style")
        if style and Path(style).is_file():
            layer.loadNamedStyle(str(style))
        layer.setCustomProperty(MARK, True)
        project.addMapLayer(layer, False)
        group.addLayer(layer)
        layers.append(layer)
    return layers
