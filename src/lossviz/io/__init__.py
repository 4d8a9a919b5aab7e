"""Files: Li-compatible HDF5 surfaces and directions (:mod:`lossviz.io.h5`) and checkpoints
(:mod:`lossviz.io.checkpoints`). Every writer is atomic (through
:func:`lossviz.files.atomic_path`): a killed process never leaves a half-written file under the final
name."""

from __future__ import annotations

from lossviz.io.checkpoints import (
    load_checkpoint_into,
    load_state_dict,
    save_state_dict,
)
from lossviz.io.h5 import (
    read_directions,
    read_surface,
    write_directions,
    write_surface,
)

__all__ = [
    "load_checkpoint_into",
    "load_state_dict",
    "read_directions",
    "read_surface",
    "save_state_dict",
    "write_directions",
    "write_surface",
]
