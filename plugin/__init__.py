"""GeoVec QGIS plugin (imports only qgis, qgis.PyQt and the standard library)."""
