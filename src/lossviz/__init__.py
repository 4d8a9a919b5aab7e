"""lossviz: loss landscapes and training trajectories of PyTorch models."""

from lossviz.grid import Axis, SurfaceGrid, parse_axis
from lossviz.params import ParamSpace
from lossviz.evaluate import EvalData, Evaluator, as_eval_data
from lossviz.surface import Surface, compute_surface, interpolate

# ``lossviz.surface(...)`` is compute_surface (the submodule stays importable with
# ``from lossviz.surface import ...``)
surface = compute_surface

__all__ = [
    "Axis",
    "EvalData",
    "Evaluator",
    "ParamSpace",
    "Surface",
    "SurfaceGrid",
    "as_eval_data",
    "compute_surface",
    "interpolate",
    "parse_axis",
    "surface",
]
__version__ = "0.1.0"
