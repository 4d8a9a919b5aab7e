"""lossviz.params: entries, roles and masks counted on a known model; flatten/unflatten round trips; the
flat vector against ``torch.func.functional_call`` and a module loaded in place."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lossviz.params import ParamSpace, iter_filters, parameter_space


class Net(nn.Module):
    """Every role once: conv/linear weights and biases, BatchNorm and LayerNorm affine parameters, BatchNorm
    running statistics (and its integer counter), and a plain float buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)  # weight (2, 1, 3, 3) = 18, bias 2
        self.bn = nn.BatchNorm2d(2)  # weight 2, bias 2; running_mean 2, running_var 2, num_batches_tracked
        self.lin = nn.Linear(8, 3)  # weight (3, 8) = 24, bias 3
        self.ln = nn.LayerNorm(3)  # weight 3, bias 3
        self.register_buffer("scale", torch.linspace(1.0, 2.0, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 1, 4, 4)
        h = torch.relu(self.bn(self.conv(x)))  # (B, 2, 2, 2)
        return self.ln(self.lin(h.flatten(1))) * self.scale


WEIGHTS = [  # name, shape, role, in parameters() order
    ("conv.weight", (2, 1, 3, 3), "weight"),
    ("conv.bias", (2,), "bias"),
    ("bn.weight", (2,), "bn"),
    ("bn.bias", (2,), "bn"),
    ("lin.weight", (3, 8), "weight"),
    ("lin.bias", (3,), "bias"),
    ("ln.weight", (3,), "bn"),
    ("ln.bias", (3,), "bn"),
]
STATES = [  # state_dict() order (a module's own tensors before its children's), without num_batches_tracked
    ("scale", (3,), "buffer"),
    ("conv.weight", (2, 1, 3, 3), "weight"),
    ("conv.bias", (2,), "bias"),
    ("bn.weight", (2,), "bn"),
    ("bn.bias", (2,), "bn"),
    ("bn.running_mean", (2,), "bn_stat"),
    ("bn.running_var", (2,), "bn_stat"),
    ("lin.weight", (3, 8), "weight"),
    ("lin.bias", (3,), "bias"),
    ("ln.weight", (3,), "bn"),
    ("ln.bias", (3,), "bn"),
]


@pytest.fixture
def net() -> Net:
    torch.manual_seed(0)
    model = Net()
    model.train()
    model(torch.randn(16, 1, 4, 4))  # move the BatchNorm statistics off their initial values
    return model.eval()


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


# ------------------------------------------------------------------------------------------- entries


@pytest.mark.parametrize("kind,expected", [("weights", WEIGHTS), ("states", STATES)])
def test_entries_names_shapes_roles_and_offsets(net, kind, expected):
    space = ParamSpace(net, kind)
    assert space.kind == kind
    assert [(e.name, e.shape, e.role) for e in space.entries] == expected
    assert space.names == [name for name, _, _ in expected]
    assert space.shapes == [shape for _, shape, _ in expected]
    assert len(space) == len(expected)
    assert [e.name for e in space] == space.names
    offset = 0
    for e in space.entries:
        assert e.offset == offset
        assert e.numel == _numel(e.shape)
        assert e.slice == slice(offset, offset + e.numel)
        assert e.dim == len(e.shape)
        assert space[e.name] is e
        offset += e.numel
    assert space.numel == offset == sum(_numel(s) for _, s, _ in expected)
    assert [e.is_parameter for e in space.entries] == [r not in ("bn_stat", "buffer") for _, _, r in expected]
    assert f"numel={space.numel}" in repr(space)


def test_the_known_model_sizes(net):
    assert ParamSpace(net).numel == 18 + 2 + 2 + 2 + 24 + 3 + 3 + 3 == 57
    assert ParamSpace(net, "states").numel == 57 + 2 + 2 + 3 == 64


def test_state_names_list_every_state_dict_entry(net):
    space = ParamSpace(net, "states")
    assert space.state_names == list(net.state_dict().keys())
    assert "bn.num_batches_tracked" in space.state_names
    assert "bn.num_batches_tracked" not in space.names
    assert space.state_shapes["bn.num_batches_tracked"] == ()
    assert space.state_shapes["conv.weight"] == (2, 1, 3, 3)


def test_unknown_kind_is_refused(net):
    with pytest.raises(ValueError, match="unknown space kind 'params': use 'weights' or 'states'"):
        ParamSpace(net, "params")


def test_parameter_space_is_the_same_space(net):
    a, b = parameter_space(net, "states"), ParamSpace(net, "states")
    assert a.names == b.names
    assert a.shapes == b.shapes
    assert a.compatible_with(b)


def test_compatible_with_compares_kind_names_and_shapes(net):
    weights = ParamSpace(net)
    assert weights.compatible_with(ParamSpace(copy.deepcopy(net)))
    assert not weights.compatible_with(ParamSpace(net, "states"))
    wider = Net()
    wider.lin = nn.Linear(8, 4)
    wider.ln = nn.LayerNorm(4)
    assert not weights.compatible_with(ParamSpace(wider))


# --------------------------------------------------------------------------------------------- masks


@pytest.mark.parametrize(
    "kind,roles,count",
    [
        ("weights", ("weight",), 18 + 24),
        ("weights", ("bias",), 2 + 3),
        ("weights", ("bn",), 2 + 2 + 3 + 3),
        ("weights", ("1d",), 2 + 2 + 2 + 3 + 3 + 3),  # the reference's ignore='biasbn'
        ("weights", ("weight", "bias"), 42 + 5),
        ("weights", ("bn_stat", "buffer"), 0),
        ("states", ("weight",), 42),
        ("states", ("bn_stat",), 4),
        ("states", ("buffer",), 3),
        ("states", ("1d",), 15 + 4 + 3),  # biases, affine parameters, running statistics, the buffer
        ("states", ("weight", "bias", "bn", "bn_stat", "buffer"), 64),
        ("states", (), 0),
    ],
)
def test_masks_by_role_count_the_known_model(net, kind, roles, count):
    space = ParamSpace(net, kind)
    mask = space.mask(*roles)
    assert mask.dtype == torch.bool
    assert mask.shape == (space.numel,)
    assert int(mask.sum()) == count


@pytest.mark.parametrize("kind", ["weights", "states"])
def test_a_mask_selects_exactly_its_entries_values(net, kind):
    space = ParamSpace(net, kind)
    vector = space.vector(net)
    tensors = space.tensors_of(net)
    for role in ("weight", "bias", "bn", "bn_stat", "buffer"):
        picked = [tensors[e.name].detach().reshape(-1) for e in space.entries if e.role == role]
        expected = torch.cat(picked) if picked else torch.zeros(0)
        torch.testing.assert_close(vector[space.mask(role)], expected, rtol=0, atol=0)
    one_d = torch.cat([tensors[e.name].detach().reshape(-1) for e in space.entries if e.dim <= 1])
    torch.testing.assert_close(vector[space.mask("1d")], one_d, rtol=0, atol=0)


# ------------------------------------------------------------------------------- flatten / unflatten


@pytest.mark.parametrize("kind", ["weights", "states"])
def test_flatten_unflatten_round_trip(net, kind):
    space = ParamSpace(net, kind)
    tensors = space.tensors_of(net)
    vector = space.flatten(tensors)
    assert vector.shape == (space.numel,)
    assert not vector.requires_grad
    torch.testing.assert_close(vector, space.vector(net), rtol=0, atol=0)
    back = space.unflatten(vector)
    assert list(back) == space.names
    for name, t in tensors.items():
        assert back[name].shape == t.shape
        torch.testing.assert_close(back[name], t.detach(), rtol=0, atol=0)
    torch.testing.assert_close(space.flatten(back), vector, rtol=0, atol=0)
    torch.testing.assert_close(space.flatten(list(back.values())), vector, rtol=0, atol=0)  # a sequence
    assert [t.shape for t in space.split(vector)] == [torch.Size(s) for s in space.shapes]


def test_unflatten_of_any_vector_round_trips(net):
    space = ParamSpace(net, "states")
    vector = torch.randn(space.numel, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    back = space.unflatten(vector)
    assert all(t.dtype == torch.float64 for t in back.values())
    torch.testing.assert_close(space.flatten(back), vector, rtol=0, atol=0)


def test_unflatten_gives_views_of_the_vector(net):
    space = ParamSpace(net)
    vector = torch.zeros(space.numel)
    back = space.unflatten(vector)
    back["lin.bias"].fill_(7.0)
    assert vector[space["lin.bias"].slice].tolist() == [7.0, 7.0, 7.0]
    assert int((vector != 0).sum()) == 3


def test_flatten_converts_dtype(net):
    space = ParamSpace(net)
    vector = space.flatten(space.tensors_of(net), dtype=torch.float64)
    assert vector.dtype == torch.float64
    torch.testing.assert_close(vector.float(), space.vector(net), rtol=0, atol=0)
    assert space.vector(net, dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize("kind", ["weights", "states"])
def test_batched_unflatten_equals_a_loop(net, kind):
    space = ParamSpace(net, kind)
    batch = torch.randn(5, space.numel, generator=torch.Generator().manual_seed(2))
    together = space.unflatten(batch)
    for name, shape in zip(space.names, space.shapes, strict=True):
        assert together[name].shape == (5, *shape)
    for k in range(5):
        alone = space.unflatten(batch[k])
        for name in space.names:
            torch.testing.assert_close(together[name][k], alone[name], rtol=0, atol=0)
    grid = torch.randn(2, 3, space.numel)  # any leading dimensions
    assert space.unflatten(grid)["conv.weight"].shape == (2, 3, 2, 1, 3, 3)


def test_flatten_of_a_state_dict_of_another_architecture_is_refused(net):
    space = ParamSpace(net)
    tensors = dict(space.tensors_of(net))
    del tensors["ln.bias"]
    with pytest.raises(KeyError, match=r"1 tensors of the model are missing, first 'ln\.bias'"):
        space.flatten(tensors)
    tensors["ln.bias"] = torch.zeros(4)
    with pytest.raises(ValueError, match=r"shape mismatch for 'ln\.bias': the model has \[3\], the given tensor \[4\]"):
        space.flatten(tensors)
    with pytest.raises(ValueError, match="expected 8 tensors for this weights space, got 7"):
        space.flatten(list(tensors.values())[:-1])


def test_unflatten_of_a_vector_of_the_wrong_length_is_refused(net):
    space = ParamSpace(net)
    with pytest.raises(ValueError, match="vector has 56 entries but this weights space has 57"):
        space.unflatten(torch.zeros(56))
    with pytest.raises(ValueError, match="vector has 58 entries"):
        space.unflatten(torch.zeros(3, 58))


def test_an_empty_space_flattens_to_an_empty_vector():
    space = ParamSpace(nn.ReLU())
    assert space.numel == 0
    assert len(space) == 0
    vector = space.flatten({})
    assert vector.shape == (0,)
    assert vector.dtype == torch.float32
    assert space.unflatten(vector) == {}


# ------------------------------------------------------------------------ against the module itself


@pytest.mark.parametrize("kind", ["weights", "states"])
def test_load_into_then_vector_gives_the_vector_back(net, kind):
    space = ParamSpace(net, kind)
    target = copy.deepcopy(net)
    original = space.vector(net)
    vector = torch.randn(space.numel, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert space.load_into(target, vector) is target
    torch.testing.assert_close(space.vector(target), vector.float(), rtol=0, atol=0)
    assert all(t.dtype == torch.float32 for t in target.state_dict().values() if t.is_floating_point())
    torch.testing.assert_close(space.vector(net), original, rtol=0, atol=0)  # the copy changed, not the original


def test_functional_call_with_unflatten_equals_the_loaded_module(net):
    """Two ways to evaluate a point of state space: functional_call on the unflattened vector, and a module
    whose tensors were overwritten in place."""
    space = ParamSpace(net, "states")
    point = space.vector(net) + 0.1 * torch.randn(space.numel, generator=torch.Generator().manual_seed(4))
    x = torch.randn(6, 1, 4, 4, generator=torch.Generator().manual_seed(5))
    functional = torch.func.functional_call(net, space.unflatten(point), (x,))
    loaded = space.load_into(copy.deepcopy(net), point)
    torch.testing.assert_close(functional, loaded(x), rtol=0, atol=0)
    assert not torch.allclose(functional, net(x))


def test_state_dict_from_replaces_the_entries_and_keeps_the_rest(net):
    space = ParamSpace(net, "states")
    base = net.state_dict()
    vector = torch.arange(space.numel, dtype=torch.float64)
    out = space.state_dict_from(vector, base)
    assert list(out) == list(base)
    assert torch.equal(out["bn.num_batches_tracked"], base["bn.num_batches_tracked"])
    for name, value in space.unflatten(vector).items():
        assert out[name].dtype == base[name].dtype
        torch.testing.assert_close(out[name], value.float(), rtol=0, atol=0)
    before = {k: v.clone() for k, v in base.items()}
    out["conv.bias"].add_(1.0)  # copies: neither base nor the model's tensors change
    for k, v in base.items():
        assert torch.equal(v, before[k])
        assert out[k].data_ptr() != v.data_ptr()
    assert torch.equal(net.conv.bias.detach(), before["conv.bias"])
    restored = copy.deepcopy(net)
    restored.load_state_dict(out)
    torch.testing.assert_close(space.vector(restored), space.flatten(out), rtol=0, atol=0)


def test_iter_filters_slices_along_the_first_dimension(net):
    filters = list(iter_filters(net.conv.weight))
    assert len(filters) == 2
    assert all(f.shape == (1, 3, 3) for f in filters)
    torch.testing.assert_close(torch.stack(filters), net.conv.weight, rtol=0, atol=0)
    assert [r.shape for r in iter_filters(net.lin.weight)] == [torch.Size([8])] * 3
