"""GeoVec backend: rasters, CRS math, the model, the index, the server and the CLI.

Never imports qgis.
"""

__version__ = "0.1.0"
