"""GeoVecProvider: the Processing provider (indexing, search, the analyst workflows and change)."""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .alg_ask import AskAlgorithm
from .alg_change import ChangeAlgorithm
from .alg_classify import ClassifyAlgorithm
from .alg_fewshot import FewShotAlgorithm
from .alg_index import IndexFolderAlgorithm
from .alg_locate import LocateAlgorithm
from .alg_search_geom import SearchBoxAlgorithm, SearchPointAlgorithm, SimilarPerFeatureAlgorithm
from .alg_search_text import SearchRegionsAlgorithm, SearchTextAlgorithm
from .alg_time import OtherDatesAlgorithm, ScoreMapAlgorithm

ICON = Path(__file__).resolve().parents[2] / "resources" / "icon.svg"


class GeoVecProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "geovec"

    def name(self) -> str:
        return "GeoVec"

    def icon(self) -> QIcon:
        return QIcon(str(ICON))

    def loadAlgorithms(self) -> None:  # noqa: N802 (QGIS API)
        self.addAlgorithm(IndexFolderAlgorithm())
        for alg in (SearchTextAlgorithm, SearchRegionsAlgorithm, SearchBoxAlgorithm, SearchPointAlgorithm,
                    SimilarPerFeatureAlgorithm, ClassifyAlgorithm, FewShotAlgorithm, LocateAlgorithm, AskAlgorithm,
                    ChangeAlgorithm, ScoreMapAlgorithm, OtherDatesAlgorithm):
            self.addAlgorithm(alg())
