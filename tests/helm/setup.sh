#!/usr/bin/env bash
# Creates the project venv (<repo>/.venv) and installs the helm stand-in's Python
# packages into it. Idempotent: a venv that already has them is left as it is.
set -euo pipefail
repo="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)"
cd "$repo"
req=tests/helm/requirements.txt
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
# Skip pip when every pinned requirement is already installed at its version.
if .venv/bin/python - "$req" <<'PY'
import sys
from importlib import metadata
for line in open(sys.argv[1]):
    line = line.split("#", 1)[0].strip()
    if not line:
        continue
    name, _, version = line.partition("==")
    try:
        if metadata.version(name) != version:
            sys.exit(1)
    except metadata.PackageNotFoundError:
        sys.exit(1)
PY
then
    exit 0
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
