"""The public API: ``import lossviz`` is light, and its names are reached lazily (PEP 562)."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys

import pytest

import lossviz


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_import_lossviz_does_not_import_torch():
    done = _python("import lossviz, sys; assert 'torch' not in sys.modules, 'torch imported'")
    assert done.returncode == 0, done.stderr


def test_lossviz_version_is_the_package_metadata():
    assert lossviz.__version__ == importlib.metadata.version("lossviz")


def test_public_names_are_reached_lazily():
    done = _python(
        "import sys, lossviz\n"
        "from lossviz import Session, Explorer\n"
        "from lossviz.landscape import Surface, compute_surface, interpolate\n"
        "from lossviz.session import Session as S\n"
        "from lossviz.widget import Explorer as E\n"
        "assert Session is S and Explorer is E\n"
        "assert lossviz.surface is compute_surface and lossviz.Surface is Surface\n"
        "assert lossviz.interpolate is interpolate\n"
        "for name in ('hessian', 'projection', 'figures', 'io', 'zoo', 'landscape'):\n"
        "    assert getattr(lossviz, name) is sys.modules['lossviz.' + name], name\n"
    )
    assert done.returncode == 0, done.stderr


def test_all_and_dir_name_the_lazy_names():
    assert set(lossviz.__all__) == {"Explorer", "Session", "Surface", "__version__", "interpolate", "surface"}
    listed = dir(lossviz)
    for name in (*lossviz.__all__, "hessian", "projection", "figures", "io", "zoo"):
        assert name in listed, name


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        lossviz.no_such_thing  # noqa: B018


def test_the_cli_help_imports_no_torch():
    """``lossviz --help`` (and a subcommand's help, whose defaults come from refine and subsample) is
    printed without importing torch."""
    r = _python("import sys; from lossviz import cli; p = cli.build_parser(); "
                "assert 'torch' not in sys.modules, 'the parser imported torch'; "
                "h = ' '.join(p._subparsers._group_actions[0].choices['surface'].format_help().split()); "
                "import inspect; from lossviz.refine import refine_surface; "
                "rtol = inspect.signature(refine_surface).parameters['rtol'].default; "
                "assert f'interpolation (default {rtol})' in h, h; "
                "print('ok')")
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
