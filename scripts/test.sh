#!/usr/bin/env bash
# Install what the tests need and run them. Uses the active virtualenv, or makes ./.venv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VIRTUAL_ENV:-}" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi
python -m pip install -q --disable-pip-version-check -r requirements-dev.txt
# The browser tests drive Debian's Chromium through Playwright (never `playwright install`).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && apt-get install -y -qq chromium) >/dev/null
  else
    echo "Chromium is missing: run 'sudo apt-get install -y chromium' for the browser tests" >&2
  fi
fi
# FiftyOne pins packages that clash with ours (starlette, opencv without contrib), so the export test
# imports our FiftyOne layout with FiftyOne's own importers in a separate, cached environment.
if [ -z "${CAST_FIFTYONE_PYTHON:-}" ]; then
  fo_venv="${CAST_CI_VENV_ROOT:-$HOME/.cache/cast-explorer-ci}/fiftyone-1"
  if [ ! -f "$fo_venv/.complete" ]; then
    rm -rf "$fo_venv"
    if python3 -m venv "$fo_venv" && "$fo_venv/bin/python" -m pip install -q --disable-pip-version-check "fiftyone>=1.0,<2"; then
      touch "$fo_venv/.complete"
    else
      echo "FiftyOne could not be installed: the FiftyOne import test will say so" >&2
    fi
  fi
  if [ -f "$fo_venv/.complete" ]; then export CAST_FIFTYONE_PYTHON="$fo_venv/bin/python"; fi
fi
python -m pytest "$@"
