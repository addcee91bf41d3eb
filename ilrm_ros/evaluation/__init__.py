"""The held-out synthetic benchmark (``ilrm eval``) and its baselines."""

from .benchmark import Case, GaussianOptim, Method, ModelMethod, NearestContext, Row, evaluate, make_cases, write_report

__all__ = [
    "Case",
    "GaussianOptim",
    "Method",
    "ModelMethod",
    "NearestContext",
    "Row",
    "evaluate",
    "make_cases",
    "write_report",
]
