"""Indexing: turn a folder of rasters (or a GeoParquet file) into an index.

* :mod:`.stages` plans the scenes, reads and prepares tiles, embeds and writes them;
  :func:`index_folder` runs those stages in this process.
* :mod:`.region_stage` adds the candidate region vectors of each tile.
* :mod:`.ray_engine` runs the same read and embed stages as Ray Data stages.
* :mod:`.geoparquet` imports and exports an index's embeddings as GeoParquet.

Sits above ``raster``, ``model`` and ``index``; the service, CLI and server call it.
"""

from __future__ import annotations

from .run import index_folder
from .stages import ProgressEvent

__all__ = ["ProgressEvent", "index_folder"]
