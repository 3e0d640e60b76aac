"""GeoVec QGIS plugin entry point.

QGIS imports this file inside its own Python, where torch and friends are
absent: it must import nothing heavy. The same folder is also the Python
package ``geovec`` of the backend environment.
"""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    """Return the plugin instance QGIS asks for."""
    from .plugin.main import GeoVecPlugin

    return GeoVecPlugin(iface)
