"""Processing algorithms "Search by text" and "Find regions by description"."""

from __future__ import annotations

from qgis.core import QgsProcessingParameterString

from .search_base import SearchAlgorithm


class SearchTextAlgorithm(SearchAlgorithm):
    TEXT = "TEXT"

    def name(self) -> str:
        return "search_text"

    def displayName(self) -> str:  # noqa: N802 (QGIS API)
        return "Search by text"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Finds the K tiles (or regions inside tiles) of the GeoVec index that best match TEXT; outputs "
                "their footprints with rank, score, source and query, styled by score.")

    def initAlgorithm(self, config=None) -> None:  # noqa: N802
        self.add_index_parameter()
        self.addParameter(QgsProcessingParameterString(self.TEXT, "Description to find"))
        self.add_common_parameters()

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        return self.run_one(parameters, context, feedback, mode="text",
                            text=self.parameterAsString(parameters, self.TEXT, context), exclude_own=False)


class SearchRegionsAlgorithm(SearchTextAlgorithm):
    """A referring expression ("the circular tanks next to the pier") highlighted as region boxes."""

    default_level = 1

    def name(self) -> str:
        return "search_regions"

    def displayName(self) -> str:  # noqa: N802
        return "Find regions by description"

    def shortHelpString(self) -> str:  # noqa: N802
        return ("Ranks region boxes inside the indexed tiles against a referring expression (TEXT) and outputs "
                "the K best boxes, outlined and labelled by rank.")
