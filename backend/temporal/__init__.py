"""Time and change over an index: dated scenes compared (change maps), other dates of a place, score maps.

* :mod:`.maps` paints per-tile values onto a scene's grid as a styled GeoTIFF (QML legend sidecar);
* :mod:`.change` pairs co-located tiles of two dates and scores their change;
* :mod:`.scoremap` paints a query's similarity over every tile of a scene;
* :mod:`.other_dates` finds the tiles of other dates at a hit's place;
* :mod:`.hits` adds dates, other dates and score maps to a search.

``geovec.backend.service.run_change`` runs a comparison for the CLI and ``POST /v1/change``. This
package sits beside ``index`` and ``raster`` (below search), so it never imports search or the services.
"""
