#!/usr/bin/env bash
# `just demo`: builds the release binaries, then runs the demo (sealift-testkit demo): a
# vendor builds and signs bundles, the low side verifies them, an agent imports them.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p bundler -p agent -p tests -p kubesim --bins
target/release/sealift-testkit demo target/release/sealift-bundler target/release/sealift-agent target/demo
