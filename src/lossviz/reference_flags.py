"""The flags of ``tomgoldstein/loss-landscape``'s scripts, as aliases of ``lossviz``'s, and its file names.

One table, :data:`ALIASES`, maps each ``lossviz`` flag to the reference's spellings of it
(``--model-file`` is also ``--model_file``), so that the reference's README commands run when pasted
with ``python plot_surface.py`` replaced by ``lossviz surface``. :data:`REFUSED` names the reference's
flags that have no meaning here and why; :func:`direction_file_name` and :func:`surface_file_name`
name files from the flags as ``net_plotter.name_direction_file`` and ``plot_surface.name_surface_file``
do. Torch-free (building the parser imports no numeric module).
"""

from __future__ import annotations

from collections.abc import Sequence
from os.path import commonpath
from typing import Any

__all__ = [
    "ALIASES",
    "REFERENCE_SPELLINGS",
    "REFUSED",
    "direction_file_name",
    "flags",
    "is_reference_command",
    "loss_name",
    "refused_flags",
    "rule_name",
    "surface_file_name",
]

ALIASES: dict[str, tuple[str, ...]] = {
    # plot_surface.py
    "--model-file": ("--model_file",),
    "--model-file2": ("--model_file2",),
    "--model-file3": ("--model_file3",),
    "--model-folder": ("--model_folder",),
    "--dir-type": ("--dir_type",),
    "--dir-file": ("--dir_file",),
    "--same-dir": ("--same_dir",),
    "--out": ("--surf_file",),
    "--proj-file": ("--proj_file",),
    "--loss": ("--loss_name", "-l"),
    "--raw-data": ("--raw_data",),
    "--data-split": ("--data_split",),
    "--split-idx": ("--split_idx",),
    "--batch-size": ("--batch_size",),
    "--data-root": ("--datapath",),
    "--loss-max": ("--loss_max",),
    "--mpi": ("-m",),
    "--cuda": ("-c",),
    # plot_2D.py / plot_1D.py / h52vtp.py
    "--metric": ("--surf_name",),
    "--file": ("-f",),
    "--idx-min": ("--idx_min",),
    "--idx-max": ("--idx_max",),
    # plot_trajectory.py
    "--start-epoch": ("--start_epoch",),
    "--max-epoch": ("--max_epoch",),
    "--save-epoch": ("--save_epoch",),
}
"""Each lossviz flag and the reference's spellings of it (same-spelled flags such as ``--x``,
``--xnorm``, ``--ngpu``, ``--threads``, ``--vmin`` need no entry)."""

REFERENCE_SPELLINGS: frozenset[str] = frozenset(
    {a for spellings in ALIASES.values() for a in spellings if a.startswith("--") and "_" in a}
    | {"-m", "-c", "-l", "--cuda", "--ngpu", "--idx", "--show", "--trainloader", "--testloader"}
)
"""Flags only the reference spells (their presence marks a pasted reference command)."""

REFUSED: dict[str, str] = {
    "--trainloader": "it names a pickled DataLoader, and lossviz never unpickles: save the samples as "
                     "tensors and pass --dataset package.module:factory returning (X, y)",
    "--testloader": "it names a pickled DataLoader, and lossviz never unpickles: save the samples as "
                    "tensors and pass --dataset package.module:factory returning {'train': ..., 'test': ...}",
}
"""The reference's flags with no meaning here, and why (they end the run with exit status 2)."""

_LOSS_VALUES = {"crossentropy": "cross_entropy"}  # plot_surface.py's --loss_name values


def flags(name: str) -> tuple[str, ...]:
    """``name`` and its reference spellings, for ``parser.add_argument(*flags("--model-file"), ...)``."""
    return (name, *[a for a in ALIASES.get(name, ()) if a != name])


def loss_name(text: str) -> str:
    """A ``--loss`` value: the reference's ``crossentropy`` is ``cross_entropy``."""
    return _LOSS_VALUES.get(text, text)


def rule_name(text: str) -> str:
    """A ``--xnorm``/``--xignore`` value: the reference's empty string (no rule) is ``none``."""
    return text or "none"


def is_reference_command(argv: Sequence[str]) -> bool:
    """True when ``argv`` spells a flag only the reference spells (a pasted ``plot_surface.py`` command)."""
    return any(a.split("=", 1)[0] in REFERENCE_SPELLINGS for a in argv)


def refused_flags(argv: Sequence[str]) -> list[str]:
    """The flags of ``argv`` that :data:`REFUSED` names, in order."""
    return [a.split("=", 1)[0] for a in argv if a.split("=", 1)[0] in REFUSED]


def _folder(path: str) -> str:
    return path[: path.rfind("/")]


def _base(path: str) -> str:
    return path[path.rfind("/") + 1:]


def direction_file_name(args: Any, *, two_d: bool) -> str:
    """The direction file's name from the flags, as ``net_plotter.name_direction_file`` builds it.

    ``args`` has ``model_file``, ``model_file2``, ``model_file3``, ``dir_type``, ``xignore``, ``xnorm``,
    ``yignore``, ``ynorm``, ``same_dir``, ``idx`` (rules as given: ``none`` is the reference's empty
    string). Without a model file the prefix is the model's name. Unlike the reference, a
    ``--model-file3`` in the folder of ``--model-file`` adds its file name, not its whole path.
    """
    file1 = args.model_file or str(args.model).replace(":", "_").replace("/", "_")
    file2, file3 = args.model_file2, args.model_file3
    if file2:
        if _folder(file1) == _folder(file2):
            name = file1 + "_" + _base(file2)
        else:
            prefix = commonpath([file1, file2])  # the reference's commonprefix cut back to its last '/'
            name = f"{_folder(file1)}_{_base(file1)}_{file2[len(prefix) + 1: file2.rfind('/')]}_{_base(file2)}"
    else:
        name = file1
    name += "_" + args.dir_type
    name += _rule_part("xignore", args.xignore) + _rule_part("xnorm", args.xnorm)
    if two_d:
        if file3:
            name += _base(file3) if _folder(file1) == _folder(file3) else f"{_folder(file3)}_{_base(file3)}"
        else:
            name += _rule_part("yignore", args.yignore) + _rule_part("ynorm", args.ynorm)
            if args.same_dir:
                name += "_same_dir"
    if getattr(args, "idx", 0):
        name += f"_idx={args.idx}"
    return name + ".h5"


def _rule_part(flag: str, value: str | None) -> str:
    return f"_{flag}={value}" if value and value != "none" else ""


def surface_file_name(dir_file: str, x: Any, y: Any, *, raw_data: bool, data_split: int, split_idx: int) -> str:
    """The surface file's name, as ``plot_surface.name_surface_file`` builds it from the direction
    file's: ``<dir_file>_[xmin,xmax,xnum]x[ymin,ymax,ynum]_rawdata_datasplit=N_splitidx=i.h5``
    (``x``/``y`` are :class:`lossviz.grid.Axis`; the reference prints floats, e.g. ``-1.0``)."""
    name = dir_file + f"_[{float(x.min)},{float(x.max)},{int(x.num)}]"
    if y is not None:
        name += f"x[{float(y.min)},{float(y.max)},{int(y.num)}]"
    if raw_data:
        name += "_rawdata"
    if data_split > 1:
        name += f"_datasplit={data_split}_splitidx={split_idx}"
    return name + ".h5"
