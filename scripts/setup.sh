#!/usr/bin/env bash
# Installs what the tests and the demo need, idempotently: Debian packages (the real
# `distribution` registry, skopeo, openssl, chromium for the web page's browser test, node
# and npm when node is missing), the project venv with the Helm engine (helm-python-sdk),
# `just` (rust-just from PyPI) and the browser test's npm packages (playwright-core,
# axe-core; `npm ci` from the committed lock file).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v perl >/dev/null || need+=(perl)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if ((${#need[@]})); then
  echo "setup: installing ${need[*]}" >&2
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import helm' 2>/dev/null || [ ! -x .venv/bin/just ]; then
  echo "setup: installing the Python tools into .venv" >&2
  .venv/bin/pip install -q --disable-pip-version-check -r tests/helm/requirements.txt 'rust-just==1.*'
fi

# The web page's browser test (agent/tests/e2e): exact versions from package-lock.json.
e2e=agent/tests/e2e
if ! cmp -s "$e2e/package-lock.json" "$e2e/node_modules/.sealift-lock.json"; then
  echo "setup: npm ci in $e2e" >&2
  (cd "$e2e" && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.sealift-lock.json)
fi
