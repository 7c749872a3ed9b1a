# The one entry point for local work and CI. `scripts/test` and `scripts/demo` bootstrap
# this (they install `just` into .venv); run `bash scripts/setup.sh` once to use it directly.

set shell := ["bash", "-euo", "pipefail", "-c"]

# The `helm template` stand-in over the real Helm engine (tests/helm) comes first on PATH.
export PATH := justfile_directory() / "tests/helm" + ":" + justfile_directory() / ".venv/bin" + ":" + env_var("PATH")

default: test

# Formatting, lints, then every test (registry, skopeo, helm engine, openssl are real).
test: lint
    cargo nextest run --workspace --no-fail-fast
    bash tests/helm/selftest.sh

# rustfmt and clippy with warnings as errors.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# End to end on built-in defaults: keys, a root, the sample app's images in a local
# registry, a signed bundle, verify and inspect.
demo:
    bash scripts/demo.sh

# Throughput and peak memory beside cat, openssl dgst, tar | zstd (not part of CI).
bench:
    bash scripts/bench.sh

# Regenerate the committed golden renders, JSON Schemas, deploy/crd.yaml and agent/openapi.json.
golden:
    SEALIFT_BLESS=1 cargo test -p bundler --test it golden
    SEALIFT_BLESS=1 cargo test -p schemas --test it json_schemas
    SEALIFT_BLESS=1 cargo test -p agent --test it deploy_crd
    SEALIFT_BLESS=1 cargo test -p agent --test it openapi_document

# Regenerate the committed JSON Schemas from the Rust types.
schemas:
    SEALIFT_BLESS=1 cargo test -p schemas --test it json_schemas

# Fuzz the bundle reader for SECONDS (default 60); new corpus entries land in
# schemas/fuzz/corpus/reader/ and are replayed by the normal tests once committed.
fuzz SECONDS="60":
    command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
    cd schemas/fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run reader corpus/reader -- -max_total_time={{SECONDS}} -rss_limit_mb=2048
