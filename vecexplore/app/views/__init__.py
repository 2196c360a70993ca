"""The page's views, one per file; :data:`REGISTRY` is the page's order (tabs in this order).

A new panel is one file here with a :class:`~vecexplore.app.view.View` subclass
plus one line below.
"""

from __future__ import annotations

from vecexplore.app.views.calibration import CalibrationView
from vecexplore.app.views.class_bars import ClassBarsView
from vecexplore.app.views.class_table import ClassTableView
from vecexplore.app.views.clusters import ClustersView
from vecexplore.app.views.compare_header import CompareHeaderView
from vecexplore.app.views.compare_matrices import CompareMatricesView
from vecexplore.app.views.confusion import ConfusionView
from vecexplore.app.views.controls import ControlsView
from vecexplore.app.views.curve import CurveView
from vecexplore.app.views.detail import DetailView
from vecexplore.app.views.duplicates import DuplicatesView
from vecexplore.app.views.export import ExportView
from vecexplore.app.views.gallery import GalleryView
from vecexplore.app.views.header import HeaderView
from vecexplore.app.views.label_issues import LabelIssuesView
from vecexplore.app.views.level import LevelView
from vecexplore.app.views.pr_curves import PRCurvesView
from vecexplore.app.views.properties import PropertyView
from vecexplore.app.views.query import QueryView
from vecexplore.app.views.recommendations import RecommendationsView
from vecexplore.app.views.roc import ROCView
from vecexplore.app.views.scatter import ScatterView
from vecexplore.app.views.selection import SelectionView

REGISTRY = (
    HeaderView,
    CompareHeaderView,  # slot "toolbar": a row between the header bar and the toolbar
    ControlsView,
    LevelView,  # slot "map.bar", first: images / objects, for runs with an object map
    SelectionView,
    ScatterView,
    ConfusionView,
    CompareMatricesView,
    ClassTableView,
    ClustersView,
    PRCurvesView,
    CalibrationView,
    ROCView,
    CurveView,
    ClassBarsView,
    PropertyView,
    RecommendationsView,
    LabelIssuesView,
    DuplicatesView,
    QueryView,
    GalleryView,
    ExportView,
    DetailView,
)

__all__ = ["REGISTRY"]
