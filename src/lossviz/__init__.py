"""lossviz: loss landscapes and training trajectories of PyTorch models."""

from lossviz.grid import Axis, SurfaceGrid, parse_axis
from lossviz.params import ParamSpace

__all__ = ["Axis", "ParamSpace", "SurfaceGrid", "parse_axis"]
__version__ = "0.1.0"
