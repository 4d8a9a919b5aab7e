"""Checkpoint folders as lossviz runs: which files are checkpoints, their order, branches and
hyperparameters, all read without unpickling code (:mod:`lossviz.io.checkpoints`).

Recognised, in a folder (walked with its sub-folders) or a list of files:

* the reference's ``model_{e}.t7`` folders and plain ``.pt`` / ``.pth`` / ``.bin`` / ``.tar`` state
  dicts (or ``{"state_dict": ...}``-style wrappers; top-level numbers such as the reference's ``acc``
  become metrics);
* PyTorch Lightning ``.ckpt`` files: the ``state_dict`` entry, ``global_step``, the epochs completed
  (``epoch``, plus one for a file saved at the end of an epoch), and ``hyper_parameters`` as hparams
  (the LightningModule's attribute prefix is removed when the entries are fitted to the model,
  :func:`~lossviz.io.checkpoints.strip_prefix`);
* Hugging Face Trainer output folders: every ``checkpoint-N/`` with ``model.safetensors`` or
  ``pytorch_model.bin``; ``trainer_state.json`` gives the step, the epoch, the metrics logged at
  that step and hparams; ``training_args.json`` is read when present, ``training_args.bin`` only
  when ``torch.load(weights_only=True)`` can read it (a pickled ``TrainingArguments`` cannot: it is
  skipped, never unpickled);
* ``.safetensors`` files.

**Order**: by the epoch and step the file holds, else those in its name (``epoch=3-step=120``,
``checkpoint-500``, ``step_500``; a bare number, as in ``model_10.t7``, is the epoch). A checkpoint
with a step but no epoch is placed at ``epoch = step`` (the run's progress axis is then its steps).
**Branches**: each folder holding checkpoints is a branch (named by its path under the import root);
a sub-folder's branch forks from the last checkpoint of the nearest folder above it that comes
before its own first one, or starts a new root.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch

from lossviz.io.checkpoints import (
    SAFETENSORS_SUFFIXES,
    TORCH_SUFFIXES,
    check_fits,
    fill_tied,
    load_raw,
    normalize_state_dict,
    strip_prefix,
)
from lossviz.jsonable import json_safe
from lossviz.store import Checkpoint
from lossviz.training import HPARAM_CONSTRAINTS, OPTIMIZERS
from lossviz.validation import check

__all__ = ["HF_ARGS", "RUN_STATISTICS", "Found", "ImportResult", "Planned", "Read", "Refused", "find_checkpoints",
           "nothing_found", "plan_import", "read_found", "trainer_hparams"]

N = TypeVar("N", int, float)
CHECKPOINT_SUFFIXES = TORCH_SUFFIXES + SAFETENSORS_SUFFIXES
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json", "pytorch_model.bin.index.json")
"""A Hugging Face checkpoint folder's model file, or the index of its shards (``weight_map``: name -> file)."""
HF_FOLDER = re.compile(r"^checkpoint-(\d+)$")
HF_ALIASES = {"learning_rate": "lr", "weight_decay": "weight_decay", "seed": "seed",
              "per_device_train_batch_size": "batch_size", "train_batch_size": "batch_size", "momentum": "momentum"}
"""Hyperparameter names of other trainers -> lossviz's (:data:`lossviz.training.HPARAM_NAMES`)."""
HF_ARGS = ("learning_rate", "weight_decay", "per_device_train_batch_size", "gradient_accumulation_steps", "seed",
           "optim", "lr_scheduler_type", "warmup_steps", "num_train_epochs", "max_steps")
"""The Hugging Face training arguments kept as a checkpoint's hparams (the others say how to run, not what)."""
_STEP_IN_NAME = re.compile(r"(?:^|[^a-z])(?:global_?)?step[=_-]?(\d+)", re.IGNORECASE)
_EPOCH_IN_NAME = re.compile(r"(?:^|[^a-z])(?:epoch|ep)[=_-]?(\d+)", re.IGNORECASE)
_NUMBER_IN_NAME = re.compile(r"(\d+)(?!.*\d)")
_NOT_METRICS = ("epoch", "step", "global_step", "total_flos")
RUN_STATISTICS = ("_runtime", "_per_second")
"""Endings of the Hugging Face Trainer's summary values (``train_runtime``, ...): not metrics of a checkpoint."""


@dataclass
class Found:
    """A checkpoint file found: ``path``, the ``branch`` folder it belongs to (its path under the
    import root, ``""`` at the top) and its ``kind`` ("hf", "torch" or "safetensors")."""

    path: Path
    branch: str
    kind: str


@dataclass
class Read:
    """What a checkpoint file says beside its tensors (``None``: it does not say)."""

    epoch: float | None = None
    step: int | None = None
    hparams: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)


@dataclass
class Planned:
    """A checkpoint to import: its file, where it goes in the tree (``parent_entry``: the index of the
    planned checkpoint it continues or forks from, ``None`` for a root), and what to store."""

    found: Found
    epoch: float
    step: int
    hparams: dict
    metrics: dict
    parent_entry: int | None
    new_branch: bool


@dataclass
class Refused:
    """A file that was not imported, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class ImportResult:
    """What an import did: the ``checkpoints`` stored (in one transaction), the files ``refused``
    (with the reason: another architecture, unreadable, no order, a step claimed twice) and the
    files ``ignored`` (not checkpoints)."""

    checkpoints: list[Checkpoint] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"imported {len(self.checkpoints)} checkpoint(s)"
                 + (f" in {len({c.branch for c in self.checkpoints})} branch(es)" if self.checkpoints else "")]
        lines += [f"refused {r}" for r in self.refused]
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} file(s) that are no checkpoints: "
                         + ", ".join(self.ignored[:5]) + (", ..." if len(self.ignored) > 5 else ""))
        return "\n".join(lines)


# ------------------------------------------------------------------------------ finding files
def find_checkpoints(sources: str | os.PathLike | Iterable[str | os.PathLike]) -> tuple[list[Found], list[str]]:
    """The checkpoint files of a folder (and its sub-folders), of one file, or of a list of them (each
    folder of a list a branch of its own), in path order; and the files that are no checkpoints (their
    paths). ``FileNotFoundError`` names a source that does not exist."""
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    found: list[Found] = []
    ignored: list[str] = []
    for item in items:
        src = Path(item)
        if not src.exists():
            raise FileNotFoundError(f"{src} does not exist: give a folder of checkpoints or checkpoint files")
        if src.is_dir():
            f, i = _walk(src)
            if len(items) > 1:  # several folders: each is a branch of its own (named by the folder)
                f = [Found(x.path, "/".join(filter(None, (src.name, x.branch))), x.kind) for x in f]
            found += f
            ignored += i
        elif _hf_weights(src.parent) == src and HF_FOLDER.match(src.parent.name):
            found.append(Found(src, "", "hf"))
        elif src.suffix.lower() in CHECKPOINT_SUFFIXES:
            found.append(Found(src, "", _file_kind(src)))
        else:
            ignored.append(str(src))
    return found, ignored


def _walk(root: Path) -> tuple[list[Found], list[str]]:
    """:func:`find_checkpoints` of one folder: a ``checkpoint-N/`` folder is one checkpoint (its
    other files are the Trainer's); any other checkpoint file is one."""
    found: list[Found] = []
    ignored: list[str] = []
    if HF_FOLDER.match(root.name) and _hf_weights(root) is not None:  # a single checkpoint-N/ given
        return [Found(_hf_weights(root), "", "hf")], []  # type: ignore[arg-type]
    for folder, dirs, names in os.walk(root):
        here = Path(folder)
        branch = here.relative_to(root).as_posix()
        branch = "" if branch == "." else branch
        dirs.sort()
        for d in list(dirs):
            weights = _hf_weights(here / d)
            if HF_FOLDER.match(d) and weights is not None:
                found.append(Found(weights, branch, "hf"))
                dirs.remove(d)  # the Trainer's side files (optimizer.pt, rng_state.pth) are not checkpoints
        for name in sorted(names):
            p = here / name
            if p.suffix.lower() in CHECKPOINT_SUFFIXES:
                found.append(Found(p, branch, _file_kind(p)))
            else:
                ignored.append(str(p))
    return found, ignored


def _hf_weights(folder: Path) -> Path | None:
    """The model file of a Hugging Face ``checkpoint-N/`` folder, or ``None``."""
    return next((folder / n for n in HF_WEIGHTS if (folder / n).is_file()), None)


def _file_kind(path: Path) -> str:
    return "safetensors" if path.suffix.lower() in SAFETENSORS_SUFFIXES else "torch"


def nothing_found(sources: Any, ignored: Sequence[str]) -> str:
    """The message for sources that hold no checkpoint file."""
    where = sources if isinstance(sources, (str, os.PathLike)) else ", ".join(map(str, sources))
    if not ignored:
        return (f"{where} holds no files: give a folder of checkpoints ({', '.join(CHECKPOINT_SUFFIXES)} "
                "files, or a Hugging Face Trainer output folder with checkpoint-N/ folders)")
    return (f"{where} holds no checkpoint files, only {len(ignored)} other file(s) ("
            + ", ".join(ignored[:5]) + (", ..." if len(ignored) > 5 else "")
            + f"): lossviz imports {', '.join(CHECKPOINT_SUFFIXES)} files and Hugging Face checkpoint-N/ folders")


# ------------------------------------------------------------------------------ reading one
def read_found(found: Found, shapes: Mapping[str, Sequence[int]],
               ties: Sequence[Sequence[str]] = ()) -> tuple[dict[str, torch.Tensor], Read]:
    """The state dict of ``found`` fitted to a model whose entries have ``shapes`` (the wrapper's
    attribute prefix removed, the entries tied to others (``ties``, :func:`~lossviz.io.checkpoints.tied_names`)
    that the file left out restored, in the model's order), and what the file says beside it.
    ``ValueError`` (naming the file, and the first tensor that does not fit) for an unreadable file or
    another architecture."""
    if found.kind == "hf":
        sd = load_hf_shards(found.path) if found.path.name.endswith(".index.json") else normalize_state_dict(
            load_raw(found.path), source=str(found.path))
        read = read_hf_folder(found.path.parent)
    else:
        raw = load_raw(found.path)
        sd = normalize_state_dict(raw, source=str(found.path))
        read = read_beside(raw)
    fitted = fill_tied(strip_prefix(sd, list(shapes)), ties)
    check_fits(fitted, shapes, repr(str(found.path)))
    read = _with_name_order(read, found.path.parent.name if found.kind == "hf" else found.path.stem)
    return {k: fitted[k] for k in shapes if k in fitted}, read


def load_hf_shards(index: Path) -> dict[str, torch.Tensor]:
    """The tensors of a sharded Hugging Face checkpoint: every shard its index's ``weight_map`` names,
    each a plain file name inside the index's folder (an index naming another path is refused)."""
    weight_map = _json_file(index).get("weight_map")
    if not isinstance(weight_map, Mapping) or not weight_map:
        raise ValueError(f"{index} has no weight_map: it is not a Hugging Face shard index")
    sd: dict[str, torch.Tensor] = {}
    for shard in sorted({str(v) for v in weight_map.values()}):
        if Path(shard).name != shard or shard in ("", ".", ".."):
            raise ValueError(f"{index} names the shard {shard!r}, which is not a file beside it: refused")
        sd.update(normalize_state_dict(load_raw(index.parent / shard), source=str(index.parent / shard)))
    return sd


def read_beside(raw: Any) -> Read:
    """Epoch, step, hparams and metrics a torch file holds beside its tensors: Lightning's
    ``epoch`` / ``global_step`` / ``hyper_parameters``, the reference's ``epoch`` and ``acc``, and
    any other top-level number as a metric."""
    if not isinstance(raw, Mapping) or all(isinstance(v, torch.Tensor) for v in raw.values()):
        return Read()
    given = raw.get("hyper_parameters")
    hparams = trainer_hparams(given) if isinstance(given, Mapping) else {}
    metrics = {str(k): float(v) for k, v in raw.items() if _is_number(v) and str(k) not in _NOT_METRICS}
    step = raw.get("global_step", raw.get("step"))
    epoch = _lightning_epoch(raw) if "pytorch-lightning_version" in raw else _number(raw.get("epoch"), float)
    return Read(epoch, _number(step, int), hparams, metrics)


def _lightning_epoch(raw: Mapping[str, Any]) -> float | None:
    """The epochs completed at a Lightning checkpoint: its ``epoch`` (the index of the epoch it was saved
    in), plus one when it was saved after that epoch's last batch (as lossviz counts: epoch 2.0 is the
    end of the second epoch)."""
    epoch = _number(raw.get("epoch"), float)
    loops = raw.get("loops")
    fit = loops.get("fit_loop") if isinstance(loops, Mapping) else None
    batches = fit.get("epoch_loop.batch_progress") if isinstance(fit, Mapping) else None
    ended = isinstance(batches, Mapping) and batches.get("is_last_batch") is True
    return None if epoch is None else epoch + (1.0 if ended else 0.0)


def read_hf_folder(folder: Path) -> Read:
    """What a Hugging Face ``checkpoint-N/`` folder says: the step and epoch of ``trainer_state.json``,
    the metrics logged at that step (``loss``, ``eval_*``, ``learning_rate``, ...) and hparams from it
    (``lr``: the rate last logged at or before the step) and from ``training_args.json`` (or a
    ``training_args.bin`` readable with ``weights_only=True``), which win where both say."""
    state = _json_file(folder / "trainer_state.json")
    args = _json_file(folder / "training_args.json") or _plain_training_args(folder / "training_args.bin")
    step = state.get("global_step")
    epoch = state.get("epoch")
    metrics: dict[str, float] = {}
    for entry in state.get("log_history") or []:
        if isinstance(entry, Mapping) and entry.get("step") == step:
            metrics.update({str(k): float(v) for k, v in entry.items() if _is_number(v) and k not in _NOT_METRICS
                            and not str(k).endswith(RUN_STATISTICS)})
    given = {k: state[k] for k in ("train_batch_size", "num_train_epochs", "max_steps") if k in state}
    scheduled = _logged_rate(state.get("log_history") or [], step)
    if scheduled is not None:
        given["learning_rate"] = scheduled  # the rate in force at this step, where the arguments do not say
    given.update({k: v for k, v in args.items() if k in HF_ARGS})
    return Read(_number(epoch, float), _number(step, int), trainer_hparams(given), metrics)


def _logged_rate(history: list, step: Any) -> float | None:
    """The last ``learning_rate`` of ``trainer_state.json``'s log at or before ``step`` (the Trainer's
    default ``training_args.bin`` is a pickle, never read, so this is often the only rate it leaves)."""
    rates = [(e["step"], float(e["learning_rate"])) for e in history
             if isinstance(e, Mapping) and _is_number(e.get("learning_rate")) and _is_number(e.get("step"))
             and (not _is_number(step) or e["step"] <= step)]
    return max(rates)[1] if rates else None


def _json_file(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not readable JSON ({exc})") from None
    return dict(value) if isinstance(value, Mapping) else {}


def _plain_training_args(path: Path) -> dict:
    """``training_args.bin`` when it is plain data (``weights_only=True`` reads it); a pickled
    ``TrainingArguments`` (the Trainer's default) is skipped: ``{}``."""
    if not path.is_file():
        return {}
    try:
        value = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any refusal (a pickled class, a damaged file) means: skip it, never unpickle
        return {}
    return dict(value) if isinstance(value, Mapping) else {}


def trainer_hparams(given: Mapping[str, Any]) -> dict:
    """Another trainer's hyperparameters as a checkpoint's hparams: lossviz's names where they map and
    their values are valid (``learning_rate`` -> ``lr``, ``per_device_train_batch_size`` ->
    ``batch_size``, an ``optim`` / ``optimizer`` such as ``adamw_torch`` -> ``adamw``, ...), so a branch
    trained from the checkpoint inherits them; everything as given under ``"source"``."""
    source = json_safe(dict(given))
    out: dict[str, Any] = {}
    for key, value in given.items():
        name = HF_ALIASES.get(str(key), str(key))
        if name in ("optim", "optimizer") and isinstance(value, str):
            name, value = "optimizer", next((o for o in sorted(OPTIMIZERS, key=len, reverse=True)
                                             if value.lower().startswith(o)), value)
        if name in HPARAM_CONSTRAINTS and name not in out:
            try:
                out[name] = check(name, value, HPARAM_CONSTRAINTS[name])
            except (ValueError, TypeError):
                continue  # not a value lossviz's trainer takes: kept under "source" only
    return {**json_safe(out), "source": source} if source else json_safe(out)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _number(v: Any, kind: Callable[[Any], N]) -> N | None:
    """``kind(v)`` for a finite number ``v``, else ``None``."""
    return kind(v) if _is_number(v) else None


def _with_name_order(read: Read, stem: str) -> Read:
    """``read`` with the epoch and step its file name gives where the content gives none."""
    step, epoch = read.step, read.epoch
    if step is None and (m := _STEP_IN_NAME.search(stem) or HF_FOLDER.match(stem)):
        step = int(m.group(1))
    if epoch is None and (m := _EPOCH_IN_NAME.search(stem)):
        epoch = float(m.group(1))
    if epoch is None and step is None and (m := _NUMBER_IN_NAME.search(stem)):
        epoch = float(m.group(1))  # a bare number is the epoch, as in the reference's model_{e}.t7
    return Read(epoch, step, read.hparams, read.metrics)


# ------------------------------------------------------------------------------ ordering
def plan_import(read: Sequence[tuple[Found, Read]]) -> tuple[list[Planned], list[Refused]]:
    """The import order and tree of the files read: per branch folder, by ``(epoch, step)``; a
    branch forks from the last checkpoint before its first one in the nearest folder above it that has
    checkpoints (else it is a new root). Refused: two files of one folder claiming the same epoch and
    step (both named), and, in a folder of several files, one with neither an epoch nor a step."""
    by_branch: dict[str, list[tuple[Found, Read]]] = {}
    for item in read:
        by_branch.setdefault(item[0].branch, []).append(item)
    planned: list[Planned] = []
    refused: list[Refused] = []
    chains: dict[str, list[tuple[tuple[float, int], int]]] = {}  # branch -> [(order, planned index)]
    for branch in sorted(by_branch, key=lambda b: (b.count("/") + (b != ""), b)):
        ordered = _ordered(by_branch[branch], refused)
        if not ordered:
            continue
        parent = _fork_point(branch, ordered[0][0], chains)
        chain: list[tuple[tuple[float, int], int]] = []
        for key, (found, r) in ordered:
            planned.append(Planned(found, key[0], key[1], r.hparams, r.metrics, parent, parent is None or not chain))
            parent = len(planned) - 1
            chain.append((key, parent))
        chains[branch] = chain
    return planned, refused


def _ordered(items: list[tuple[Found, Read]],
             refused: list[Refused]) -> list[tuple[tuple[float, int], tuple[Found, Read]]]:
    """One folder's files by ``(epoch, step)`` (a step alone: ``epoch = step``); unorderable and
    clashing files go to ``refused``."""
    keyed: list[tuple[tuple[float, int], tuple[Found, Read]]] = []
    for found, r in items:
        if r.epoch is None and r.step is None:
            if len(items) > 1:
                refused.append(Refused(str(found.path), "neither its content nor its name gives an epoch or a "
                                       "step, so its place in the run is unknown: rename it, e.g. model_12.pt"))
                continue
            keyed.append(((0.0, 0), (found, r)))
            continue
        epoch = r.epoch if r.epoch is not None else float(r.step or 0)
        keyed.append(((epoch, r.step or 0), (found, r)))
    claims: dict[tuple[float, int], list[Found]] = {}
    for key, (found, _) in keyed:
        claims.setdefault(key, []).append(found)
    for key, clash in claims.items():
        if len(clash) > 1:
            names = " and ".join(str(f.path) for f in clash)
            for f in clash:
                refused.append(Refused(str(f.path), f"{names} both claim epoch {key[0]:g}, step {key[1]}: "
                                       "keep one, or import them as separate runs"))
    return sorted(((k, it) for k, it in keyed if len(claims[k]) == 1), key=lambda x: x[0])


def _fork_point(branch: str, first: tuple[float, int], chains: Mapping[str, list[tuple[tuple[float, int], int]]]
                ) -> int | None:
    """The planned index a sub-folder's branch forks from: the last checkpoint before ``first`` in
    the nearest folder above it that holds checkpoints; ``None`` (a new root) when there is none."""
    above = branch
    while above:
        above = above.rpartition("/")[0]
        chain = chains.get(above)
        if chain:
            before = [index for key, index in chain if key < first]
            return before[-1] if before else None
    return None
