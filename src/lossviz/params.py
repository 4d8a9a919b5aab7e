"""A model's parameter space: ordered names, shapes and masks, flatten and unflatten.

Two kinds of vector, as in Li et al.'s reference implementation:

* ``"weights"``: the trainable parameters, in ``model.parameters()`` order.
* ``"states"``: the ``state_dict()`` entries (parameters *and* buffers such as BatchNorm running
  mean/var), in ``state_dict()`` order, without the integer ``num_batches_tracked`` counters.

A point of the space is a flat 1-D tensor of length ``ParamSpace.numel``; ``unflatten`` turns it back
into a ``{name: tensor}`` mapping that ``torch.func.functional_call`` accepts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

SpaceKind = Literal["weights", "states"]
EntryRole = Literal["weight", "bias", "bn", "bn_stat", "buffer"]

_BN_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


@dataclass(frozen=True)
class ParamEntry:
    """One tensor of the space.

    ``role`` is ``"weight"`` (a parameter with ``dim > 1``: filters, matrices), ``"bias"`` (a 1-D
    parameter that is not a normalization layer's), ``"bn"`` (a normalization layer's affine
    parameter), ``"bn_stat"`` (a normalization layer's running statistic) or ``"buffer"`` (any other
    floating-point buffer).
    """

    name: str
    shape: tuple[int, ...]
    role: EntryRole
    is_parameter: bool
    offset: int
    numel: int

    @property
    def dim(self) -> int:
        return len(self.shape)

    @property
    def slice(self) -> slice:
        return slice(self.offset, self.offset + self.numel)


class ParamSpace:
    """The ordered tensors of a module that define a point in weight or state space.

    Parameters
    ----------
    module:
        Any ``nn.Module``.
    kind:
        ``"weights"`` (default) for parameters only, ``"states"`` for the state dict with buffers
        (BatchNorm running statistics) included and ``num_batches_tracked`` excluded.
    """

    def __init__(self, module: nn.Module, kind: str = "weights"):
        self.kind: SpaceKind = space_kind(kind)
        norm_names = {
            name for name, sub in module.named_modules() if isinstance(sub, _BN_TYPES)
        }
        param_names = {name for name, _ in module.named_parameters()}
        if kind == "weights":
            items = list(module.named_parameters())
        else:
            items = [
                (name, t)
                for name, t in module.state_dict(keep_vars=True).items()
                if t.is_floating_point() or t.is_complex()
            ]
        entries: list[ParamEntry] = []
        offset = 0
        for name, t in items:
            owner = name.rsplit(".", 1)[0] if "." in name else ""
            is_param = name in param_names
            if is_param and t.dim() > 1:
                role: EntryRole = "weight"
            elif is_param:
                role = "bn" if owner in norm_names else "bias"
            else:
                role = "bn_stat" if owner in norm_names else "buffer"
            n = t.numel()
            entries.append(ParamEntry(name, tuple(t.shape), role, is_param, offset, n))
            offset += n
        self.entries: list[ParamEntry] = entries
        self.numel: int = offset
        self._index = {e.name: e for e in entries}
        # all state_dict names, in order, for the reference's direction files (which list every entry)
        self.state_names: list[str] = list(module.state_dict().keys())
        # their shapes (incl. the 0-d integer num_batches_tracked), for reference-order random draws
        self.state_shapes: dict[str, tuple[int, ...]] = {
            k: tuple(v.shape) for k, v in module.state_dict().items()
        }

    # ------------------------------------------------------------------ description
    @property
    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    @property
    def shapes(self) -> list[tuple[int, ...]]:
        return [e.shape for e in self.entries]

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries)

    def __getitem__(self, name: str) -> ParamEntry:
        return self._index[name]

    def __repr__(self) -> str:
        return f"ParamSpace(kind={self.kind!r}, tensors={len(self.entries)}, numel={self.numel})"

    def compatible_with(self, other: ParamSpace) -> bool:
        return self.kind == other.kind and self.names == other.names and self.shapes == other.shapes

    def mask(self, *roles: EntryRole | Literal["1d"]) -> torch.Tensor:
        """Boolean mask over the flat vector selecting the given roles.

        ``"1d"`` selects every entry with ``dim <= 1`` (what the reference's ``ignore='biasbn'``
        zeroes: biases, BN affine parameters and, for states, BN running statistics).
        """
        out = torch.zeros(self.numel, dtype=torch.bool)
        for e in self.entries:
            if e.role in roles or ("1d" in roles and e.dim <= 1):
                out[e.slice] = True
        return out

    # ------------------------------------------------------------------ conversion
    def flatten(
        self, tensors: Mapping[str, torch.Tensor] | Sequence[torch.Tensor], dtype=None
    ) -> torch.Tensor:
        """Concatenate tensors (a mapping by name, or a sequence in this space's order) to one vector."""
        if isinstance(tensors, Mapping):
            missing = [e.name for e in self.entries if e.name not in tensors]
            if missing:
                raise KeyError(
                    f"{len(missing)} tensors of the model are missing, first {missing[0]!r}: "
                    "the state dict does not belong to this architecture"
                )
            seq = [tensors[e.name] for e in self.entries]
        else:
            seq = list(tensors)
            if len(seq) != len(self.entries):
                raise ValueError(
                    f"expected {len(self.entries)} tensors for this {self.kind} space, got {len(seq)}"
                )
        for e, t in zip(self.entries, seq, strict=True):
            if tuple(t.shape) != e.shape:
                raise ValueError(
                    f"shape mismatch for {e.name!r}: the model has {list(e.shape)}, the given tensor "
                    f"{list(t.shape)}; the checkpoint or direction belongs to another architecture"
                )
        if not seq:
            return torch.zeros(0, dtype=dtype or torch.float32)
        dtype = dtype or seq[0].dtype
        device = seq[0].device
        return torch.cat([t.detach().reshape(-1).to(device=device, dtype=dtype) for t in seq])

    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a vector of shape ``(numel,)`` or batched ``(K, numel)`` into named views."""
        if vector.shape[-1] != self.numel:
            raise ValueError(
                f"vector has {vector.shape[-1]} entries but this {self.kind} space has {self.numel}"
            )
        lead = tuple(vector.shape[:-1])
        return {e.name: vector[..., e.slice].reshape(lead + e.shape) for e in self.entries}

    def split(self, vector: torch.Tensor) -> list[torch.Tensor]:
        """Like :meth:`unflatten` but as a list in this space's order."""
        return list(self.unflatten(vector).values())

    def vector(self, module: nn.Module, dtype=None) -> torch.Tensor:
        """The module's current point in this space, as one detached vector."""
        return self.flatten(self.tensors_of(module), dtype=dtype)

    def tensors_of(self, module: nn.Module) -> dict[str, torch.Tensor]:
        source = (
            dict(module.named_parameters())
            if self.kind == "weights"
            else module.state_dict(keep_vars=True)
        )
        return {e.name: source[e.name] for e in self.entries}

    @torch.no_grad()
    def load_into(self, module: nn.Module, vector: torch.Tensor) -> nn.Module:
        """Copy a vector of this space into ``module``'s tensors in place; returns the module."""
        target = self.tensors_of(module)
        for name, value in self.unflatten(vector).items():
            target[name].copy_(value.to(target[name].dtype))
        return module

    def state_dict_from(
        self, vector: torch.Tensor, base: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """A full state dict: ``base`` with this space's entries replaced by ``vector``'s values."""
        out = {k: v.detach().clone() for k, v in base.items()}
        for name, value in self.unflatten(vector).items():
            out[name] = value.detach().clone().to(out[name].dtype)
        return out


def space_kind(kind: str) -> SpaceKind:
    """``kind`` as a :data:`SpaceKind`, or a ValueError naming the two there are."""
    if kind == "weights":
        return "weights"
    if kind == "states":
        return "states"
    raise ValueError(f"unknown space kind {kind!r}: use 'weights' or 'states'")


def parameter_space(module: nn.Module, kind: str = "weights") -> ParamSpace:
    """Shorthand for :class:`ParamSpace`."""
    return ParamSpace(module, kind)


def iter_filters(t: torch.Tensor) -> Iterable[torch.Tensor]:
    """Slices of ``t`` along dimension 0 (the filters of a conv weight, the rows of a linear one)."""
    return t.unbind(0)
