#!/usr/bin/env bash
# `just bench`: build and verify throughput on synthetic incompressible layers beside the
# floors (cat, openssl dgst -sha256) and peers (tar | zstd -T0), inspect time on a real and
# a 100 GB sparse bundle, backup archive write/verify/export (plain and age), import and push
# beside skopeo, and peak memory of each. Not part of CI.
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

# --- Backups: a backup step's part streamed into an archive, plain and age-encrypted; what a
# restore verifies and reads back; the export as one file. Floors above: cat, openssl dgst.
cargo build --release -q -p agent --example backup_bench
X=target/release/examples/backup_bench
$M "backup: part from stdin, signed manifest" "$payload" -- "cat $(echo $layers) | $X write $work/bk-plain"
$M "backup: verify, read back" "$payload" -- "$X verify $work/bk-plain"
$M "backup: export as one file" "$payload" -- "$X export $work/bk-plain $work/bk.tar"
$M "backup: part, age-encrypted" "$payload" -- "cat $(echo $layers) | $X write $work/bk-age --encrypt"
$M "backup: verify, decrypt, read back" "$payload" -- "$X verify $work/bk-age"

# --- Import and push (sealift-agent) beside skopeo copy of the same images -----------------
A=target/release/sealift-agent
cargo build --release -q -p agent
start_registry() { # NAME -> echoes port; registry runs in the background
  local dir="$work/$1" port
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$dir/data"
  cat > "$dir/config.yml" <<YAML
version: 0.1
storage: {filesystem: {rootdirectory: $PWD/$dir/data}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port}
YAML
  docker-registry serve "$dir/config.yml" > "$dir/log" 2>&1 &
  echo "$!" > "$dir/pid"
  for _ in $(seq 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done
  echo "$port"
}
reg1=$(start_registry reg-agent)
reg2=$(start_registry reg-skopeo)
trap 'kill $(cat $work/reg-agent/pid $work/reg-skopeo/pid $work/agent.pid 2>/dev/null) 2>/dev/null || true' EXIT
mkdir -p "$work/agent"
head -c 32 /dev/urandom | base64 > "$work/agent/admin.token"
cp "$work/roots/1.root.json" "$work/agent/root.json"
agent_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/agent/agent.yaml" <<YAML
listen: 127.0.0.1:$agent_port
store: {dir: store, maxBytes: 100Gi, reserveBytes: 1Gi}
trust: {root: root.json, product: bench}
registry: {url: "http://127.0.0.1:$reg1", insecure: true}
tokens: {admin: [{name: bench, tokenFile: admin.token}]}
YAML
RUST_LOG=warn $A serve --config "$work/agent/agent.yaml" > "$work/agent.log" 2>&1 &
echo $! > "$work/agent.pid"
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$agent_port/healthz" >/dev/null && break; sleep 0.1; done
export SEALIFT_SERVER="http://127.0.0.1:$agent_port" SEALIFT_TOKEN=$(cat "$work/agent/admin.token")
$M "sealift-agent import (upload+verify+push)" "$size" -- "$A import $work/big.sealift"
agent_peak() { awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$(cat "$work/agent.pid")/status"; }
echo "agent server peak memory after the upload import: $(agent_peak)"
$M "sealift-agent import again (head only, 0 blobs)" "$size" -- "$A import $work/big.sealift"
$M "sealift-agent import --from-path (verify+copy)" "$size" -- "$A import --from-path $PWD/$work/big.sealift"
# Push alone: the registry emptied, a re-import sends the head and stages every blob from the store.
kill "$(cat "$work/reg-agent/pid")"; sleep 0.5; rm -rf "$work/reg-agent/data"; mkdir -p "$work/reg-agent/data"
docker-registry serve "$work/reg-agent/config.yml" > "$work/reg-agent/log" 2>&1 &
echo "$!" > "$work/reg-agent/pid"
for _ in $(seq 50); do curl -fs "http://127.0.0.1:$reg1/v2/" >/dev/null && break; sleep 0.1; done
$M "sealift-agent push into an empty registry (re-import)" "$payload" -- "$A import $work/big.sealift"
echo "agent server peak memory over every import above: $(agent_peak)"
$M "skopeo copy oci: -> registry (peer)" "$payload" -- \
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$work/layout:1.0.0" "docker://127.0.0.1:$reg2/bench/big:1.0.0"
$M "skopeo copy again (unchanged)" "$payload" -- \
  skopeo --insecure-policy copy --quiet --dest-tls-verify=false "oci:$work/layout:1.0.0" "docker://127.0.0.1:$reg2/bench/big:1.0.0"
