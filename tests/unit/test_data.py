"""lossviz.data: user data as evaluation tensors, the data forms of factories, and the one probe."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lossviz.data import (
    CLI_SPELLING,
    EvalData,
    as_eval_data,
    data_splits,
    dataset_tensors,
    eval_mode,
    probe_model_data,
)


def _data(n: int = 23):
    g = torch.Generator().manual_seed(3)
    return torch.randn(n, 2, generator=g), torch.randint(0, 3, (n,), generator=g)


def _mlp(out: int = 3) -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Dropout(0.1), nn.Linear(8, out))


def test_as_eval_data_accepts_tensors_arrays_datasets_and_loaders():
    x, y = _data()
    ds = TensorDataset(x, y)
    forms = [
        (x, y),
        (x.numpy(), y.numpy()),
        ds,
        DataLoader(ds, batch_size=5),
        [ds[i] for i in range(23)],
        EvalData(x, y),
    ]
    for form in forms:
        d = as_eval_data(form)
        assert torch.equal(d.inputs, x) and torch.equal(d.targets, y)
    d = as_eval_data(DataLoader(ds, batch_size=5), max_samples=7)
    assert len(d) == 7 and torch.equal(d.inputs, x[:7])
    with pytest.raises(TypeError, match="evaluation data"):
        as_eval_data(42)
    with pytest.raises(ValueError, match="targets"):
        as_eval_data((x, y[:5]))
    with pytest.raises(ValueError, match="no samples"):
        as_eval_data((x[:0], y[:0]))


def test_dataset_tensors_are_the_eval_data_tensors():
    x, y = _data()

    class Samples(torch.utils.data.Dataset):  # a map-style dataset of (tensor, int) samples
        def __len__(self):
            return len(x)

        def __getitem__(self, i):
            return x[i], int(y[i])

    for form in ((x, y), TensorDataset(x, y), Samples()):
        xs, ys = dataset_tensors(form)
        assert torch.equal(xs, x) and torch.equal(ys, y)
    xs, ys = dataset_tensors(Samples(), 2)
    assert torch.equal(xs, x[:2]) and torch.equal(ys, y[:2])


def test_eval_data_casts_floats_only_and_knows_class_labels():
    x, y = _data()
    d = EvalData(x, y).to("cpu", torch.float64)
    assert d.inputs.dtype == torch.float64 and d.targets.dtype == torch.int64
    assert d.is_classification and not EvalData(x, y.double()).is_classification
    assert not EvalData(x, y > 0).is_classification


def test_data_splits_take_one_part_or_a_dict_and_name_what_is_wrong():
    x, y = _data()
    assert set(data_splits((x, y), "f")) == {"train"}
    parts = data_splits({"train": (x, y), "test": TensorDataset(x, y)}, "f")
    assert set(parts) == {"train", "test"}
    with pytest.raises(ValueError, match=r"--dataset 'm:f' returned an object of type 'int'; return \(X, y\)"):
        data_splits(3, "--dataset 'm:f'")
    with pytest.raises(ValueError, match=r"'validation'.*\"train\" and/or \"test\""):
        data_splits({"validation": (x, y)}, "f")
    with pytest.raises(ValueError, match="its 'train' split is a list of 3"):
        data_splits({"train": [1, 2, 3]}, "f")


def test_the_probe_names_inputs_classes_loss_and_scalars():
    x, y = _data()
    probe_model_data(_mlp(), (x, y), "cross_entropy", {"mae": lambda o, t: o.abs().mean()})
    with pytest.raises(ValueError, match=r"model 'lenet' cannot take inputs of shape \[2\] from data set 'spirals'"):
        probe_model_data(nn.Linear(5, 3), (x, y), "cross_entropy", model_name="lenet", data_name="spirals",
                         spelling=CLI_SPELLING)
    with pytest.raises(ValueError, match="pass model_kwargs to fit"):
        probe_model_data(nn.Linear(5, 3), (x, y), None)
    with pytest.raises(ValueError, match=r"has 2 outputs but data set 'd' has labels up to 2; pass --model-kwargs"):
        probe_model_data(_mlp(2), (x, y), None, data_name="d", spelling=CLI_SPELLING)
    with pytest.raises(ValueError, match=r"--loss l1 cannot compare .* class labels .* use --loss cross_entropy"):
        probe_model_data(_mlp(), (x, y), "l1", spelling=CLI_SPELLING)
    with pytest.raises(ValueError, match=r"loss=cross_entropy cannot compare .* targets of shape"):
        probe_model_data(_mlp(), (x, torch.randn(len(x), 3)), "cross_entropy")
    with pytest.raises(ValueError, match=r"loss=mse cannot compare .* broadcast"):  # (N, 3) outputs, (N,) targets
        probe_model_data(_mlp(), (x, torch.randn(len(x))), "mse")
    per_sample = lambda o, t: (o - t[:, None]).abs().mean(1)  # noqa: E731
    with pytest.raises(ValueError, match="not a scalar") as info:
        probe_model_data(_mlp(), (x, y.double()), per_sample)
    for words in ("the loss returned a tensor of shape [2]", "the loss returned [2]", "not a scalar", "batch mean"):
        assert words in str(info.value)
    with pytest.raises(ValueError, match=r"metric 'raw' returned a tensor of shape \[2, 3\]"):
        probe_model_data(_mlp(), (x, y), "cross_entropy", {"raw": lambda o, t: o})
    probe_model_data(_mlp(), (x, y), "mse", {"broken": lambda o, t: 1 / 0})  # a failing metric: not the probe's


def test_the_probe_leaves_every_module_in_its_mode():
    x, y = _data()
    model = _mlp()
    model.train()
    model[2].eval()
    probe_model_data(model, (x, y), "cross_entropy")
    assert [m.training for m in model.modules()] == [True, True, True, False, True]
    with eval_mode(model):
        assert not any(m.training for m in model.modules())
    assert model.training and not model[2].training


def test_eval_data_of_a_pair_indexes_and_unpacks_like_the_pair():
    x, y = _data()
    d = EvalData(x, y)
    inputs, targets = d
    assert d[0] is inputs is x and d[1] is targets is y and len(d[0]) == len(d)
    with pytest.raises(TypeError, match="no \\(inputs, targets\\) pair"):
        EvalData.of({"input_ids": x})[0]
