"""Models and data sets by name, for the CLI, notebooks and tests."""

from lossviz.zoo.data import (
    DATASETS,
    get_data,
    list_data,
    make_spirals,
    write_fake_cifar10,
    write_fake_mnist,
)
from lossviz.zoo.models import MODELS, get_model, list_models

__all__ = [
    "DATASETS",
    "MODELS",
    "get_data",
    "get_model",
    "list_data",
    "list_models",
    "make_spirals",
    "write_fake_cifar10",
    "write_fake_mnist",
]
