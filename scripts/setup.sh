#!/usr/bin/env bash
# Installs everything lossviz needs on a fresh Debian machine, idempotently:
# Debian's chromium (browser tests) and OpenMPI (MPI tests), a venv in .venv with torch and the
# package with its extras (whose build runs npm and esbuild to produce src/lossviz/static/) and the dev tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v mpiexec >/dev/null 2>&1 || need_apt+=(openmpi-bin libopenmpi-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned to the release on this platform's disk/index (CPU or CUDA build, whichever pip serves)
.venv/bin/python -c "import torch, torchvision" 2>/dev/null \
  || .venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
# dev = test + docs (mkdocs, mkdocstrings) + ruff, mypy, pre-commit: what scripts/check.sh and .ci/run use
.venv/bin/python -m pip install -q -e ".[dev,lab,dask,mpi]"
.venv/bin/python -c "import lossviz, pathlib; p = pathlib.Path(lossviz.__file__).parent / 'static' / 'widget.js'; print('lossviz', lossviz.__version__, 'front end', p.stat().st_size if p.exists() else 'MISSING', 'bytes')"
