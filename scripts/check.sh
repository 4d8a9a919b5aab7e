#!/usr/bin/env bash
# The one check command: lint, type-check, build the docs and test, with the tools scripts/setup.sh installs
# in .venv. .ci/run calls the same steps after installing everything.
#
#   scripts/check.sh                      # every step, the whole test suite
#   scripts/check.sh lint types           # only these steps (lint types js docs tests)
#   scripts/check.sh tests -m "not slow"  # arguments after the step names go to pytest: the unit tests only
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}

lint()  { "$VENV/bin/ruff" check .; }
types() { "$VENV/bin/mypy"; }                          # files and strictness: [tool.mypy] in pyproject.toml
js() {
  [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error
  npm run --if-present lint
  npm run --if-present typecheck
}
docs()  { NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict --site-dir build/site; }   # warnings are errors
tests() { "$VENV/bin/python" -m pytest "$@"; }         # the test command of README.md

steps=()
while [ $# -gt 0 ]; do
  case "$1" in
    lint|types|js|docs|tests) steps+=("$1"); shift ;;
    *) break ;;
  esac
done
[ ${#steps[@]} -gt 0 ] || steps=(lint types js docs tests)

for step in "${steps[@]}"; do
  echo "== $step"
  if [ "$step" = tests ]; then tests "$@"; else "$step"; fi
done
