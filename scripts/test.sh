#!/usr/bin/env bash
# Sets up everything on a fresh machine (Python 3.11 + pip) and runs the whole test suite, slow tests included.
# Usage: bash scripts/test.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install --quiet --upgrade pip
python3 -m pip install --quiet "torch==2.13.0"
python3 -m pip install --quiet -e ".[all]"
# Debian's chromium drives the browser tests (playwright's own browser download is not used).
if ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install chromium; browser tests will be skipped" >&2
  fi
fi
# pyproject's addopts deselect the slow tests (multi-process colorize-many, FID, a 12 MP photo) for
# quick local runs; the whole suite includes them (about 1 extra minute on 2 CPU cores). Extra args
# come after, so e.g. `bash scripts/test.sh -m "not slow"` still narrows it.
python3 -m pytest -m "slow or not slow" "$@"
