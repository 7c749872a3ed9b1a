#!/usr/bin/env bash
# `just bench`: build and verify throughput on synthetic incompressible layers beside the
# floors (cat, openssl dgst -sha256) and peers (tar | zstd -T0), inspect time on a real and
# a 100 GB sparse bundle, and peak memory of each. Not part of CI.
#
# BENCH_BYTES (default 1 GiB) sets the payload size.
set -euo pipefail
cd "$(dirname "$0")/.."
bytes=${BENCH_BYTES:-1073741824}
work=target/bench
command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd >/dev/null; }
cargo build --release -q -p bundler -p tests --bins
B=target/release/sealift-bundler
K=target/release/sealift-testkit
M=".venv/bin/python bench/measure.py"
rm -rf "$work" && mkdir -p "$work"

$B keygen --out "$work/keys" --name root >/dev/null
$B keygen --out "$work/keys" --name release >/dev/null
$B root init --root-dir "$work/roots" --root-key "$work/keys/root.key" --release-pub "$work/keys/release.pub" >/dev/null
$K synth-layout "$work/layout" "$bytes" >/dev/null

mkdir -p "$work/spec/chart/templates"
cat > "$work/spec/chart/Chart.yaml" <<'YAML'
apiVersion: v2
name: big
version: 1.0.0
YAML
cat > "$work/spec/chart/templates/pod.yaml" <<'YAML'
apiVersion: v1
kind: Pod
metadata:
  name: big
spec:
  containers:
    - name: big
      image: quay.io/bench/big:1.0.0
YAML
cat > "$work/spec/sealift.yaml" <<YAML
product: bench
chart: {path: chart, releaseName: big, namespace: bench, kubeVersion: v1.33.0}
images:
  - name: quay.io/bench/big:1.0.0
    source: {ociLayout: {path: $PWD/$work/layout, reference: "1.0.0"}}
YAML

layers=$(find "$work/layout/blobs/sha256" -type f -size +1M | sort)
payload=$(cat $layers | wc -c)
echo "payload: $payload bytes in $(echo "$layers" | wc -l) incompressible layers; $(nproc) cores"
printf '%-44s %11s %14s %14s\n' step time throughput memory
$M "cat (read floor)" "$payload" -- "cat $(echo $layers) > /dev/null"
$M "openssl dgst -sha256 (SHA-NI floor)" "$payload" -- "openssl dgst -sha256 $(echo $layers)"
$M "sha256sum (coreutils)" "$payload" -- "sha256sum $(echo $layers)"
$M "tar c | zstd -T0" "$payload" -- "tar cf - -C $work/layout . | zstd -T0 -q -c > /dev/null"
export SOURCE_DATE_EPOCH=1767225600
export PATH="$PWD/tests/helm:$PATH"
$M "sealift-bundler build (OCI layout source)" "$payload" -- \
  $B build "$work/spec/sealift.yaml" --version 1.0.0 --sequence 1 --key "$work/keys/release.key" \
  --root-dir "$work/roots" --out "$work/big.sealift" --format json
size=$(stat -c %s "$work/big.sealift")
$M "sealift-bundler verify" "$size" -- $B verify "$work/big.sealift" --root-dir "$work/roots" --format json
$M "sealift-bundler inspect (1 GB bundle)" 0 -- $B inspect "$work/big.sealift" --root-dir "$work/roots" --format json
$K sparse-bundle "$work/sparse.sealift" 107374182400 --key "$work/keys/release.key" --root-dir "$work/roots" >/dev/null
$M "sealift-bundler inspect (100 GB sparse)" 0 -- $B inspect "$work/sparse.sealift" --root-dir "$work/roots" --format json
