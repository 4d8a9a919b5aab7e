"""Fixtures shared by the unit tests of the widget."""

from __future__ import annotations

import pytest

DATA = {"n": 120, "n_test": 40}


@pytest.fixture
def session(tmp_path):
    """A small project: the zoo's mlp on 120 + 40 spirals, batches of 60 at lr 0.05, on CPU (one thread).
    A test file may define its own ``session``, which then wins."""
    import torch

    from lossviz.session import Session

    torch.set_num_threads(1)
    s = Session(tmp_path / "p", model="mlp", data="spirals", data_kwargs=DATA, device="cpu",
                hparams={"batch_size": 60, "lr": 0.05})
    yield s
    s.close()
