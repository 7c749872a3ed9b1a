#!/usr/bin/env bash
# Installs what the tests and the demo need, idempotently: Debian packages (the real
# `distribution` registry, skopeo, openssl), the project venv with the Helm engine
# (helm-python-sdk) and `just` (rust-just from PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
command -v perl >/dev/null || need+=(perl)
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
