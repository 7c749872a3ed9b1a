#!/usr/bin/env bash
# `just demo`: builds the release binaries, then runs the demo (sealift-testkit demo).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p bundler -p tests --bins
target/release/sealift-testkit demo target/release/sealift-bundler target/demo
