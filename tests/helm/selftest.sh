#!/usr/bin/env bash
# Self-check of the `helm template` stand-in (tests/helm/helm). Needs the venv
# (tests/helm/setup.sh). Renders testdata/charts/scaffold with different values and
# Kubernetes versions and checks that the output changes exactly where it should, that the
# default render is byte-identical to testdata/golden/scaffold.yaml, and that errors are Helm's.
# Exits non-zero on any failure; the last line is "selftest: N passed, M failed".
set -uo pipefail

here="$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
helm="$here/helm"
scaffold="$repo/testdata/charts/scaffold"
sample="$repo/testdata/sample-app/1.0.0/chart"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); echo "FAIL $1"; }
check() { # check NAME COMMAND...
    local name="$1"; shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}
has() { grep -qxF -- "$2" "$1"; }      # file has this exact line
hasnt() { ! grep -qxF -- "$2" "$1"; }

# 1. version
"$helm" version --short >"$tmp/version" 2>&1
check "version --short names the stand-in over the v4 engine" grep -Eq '^v4\.[0-9]+\.[0-9]+\+sealift\.standin\.sdk[0-9.]+$' "$tmp/version"

# 2. default render, byte for byte
"$helm" template demo "$scaffold" --kube-version v1.33.0 >"$tmp/default" 2>"$tmp/default.err"
check "default render exits 0 with empty stderr" test ! -s "$tmp/default.err"
check "default render matches testdata/golden/scaffold.yaml byte for byte" cmp -s "$tmp/default" "$here/../../testdata/golden/scaffold.yaml"

# 3. render A: old Kubernetes, ingress on, other namespace
"$helm" template demo "$scaffold" --namespace one --kube-version v1.17.0 \
    --set ingress.enabled=true --set ingress.className=nginx >"$tmp/a" 2>/dev/null
# 4. render B: current Kubernetes, values file + --set, tests skipped
cat >"$tmp/values.yaml" <<'EOF'
replicaCount: 3
image:
  tag: "1.27.1"
ingress:
  enabled: true
EOF
"$helm" template demo "$scaffold" --namespace two --kube-version 1.33.0 -f "$tmp/values.yaml" \
    --set ingress.className=nginx --skip-tests >"$tmp/b" 2>/dev/null

check "A: --kube-version v1.17.0 selects networking.k8s.io/v1beta1" has "$tmp/a" "apiVersion: networking.k8s.io/v1beta1"
check "A: old Kubernetes gets the ingress.class annotation" has "$tmp/a" "    kubernetes.io/ingress.class: nginx"
check "A: old Kubernetes gets serviceName/servicePort" has "$tmp/a" "              serviceName: demo-scaffold"
check "B: --kube-version 1.33.0 selects networking.k8s.io/v1" has "$tmp/b" "apiVersion: networking.k8s.io/v1"
check "B: ingressClassName from --set" has "$tmp/b" "  ingressClassName: nginx"
check "B: replicas from the values file" has "$tmp/b" "  replicas: 3"
check "B: image tag from the values file" has "$tmp/b" '          image: "nginx:1.27.1"'
check "A: default replicas" has "$tmp/a" "  replicas: 1"
check "A: test hook printed last" test "$(grep '^# Source:' "$tmp/a" | tail -1)" = "# Source: scaffold/templates/tests/test-connection.yaml"
check "B: --skip-tests drops the test hook" hasnt "$tmp/b" "# Source: scaffold/templates/tests/test-connection.yaml"
check "Ingress sorts after Deployment (InstallOrder)" test "$(grep '^# Source:' "$tmp/b" | tr '\n' ' ')" = \
    "# Source: scaffold/templates/serviceaccount.yaml # Source: scaffold/templates/service.yaml # Source: scaffold/templates/deployment.yaml # Source: scaffold/templates/ingress.yaml "
# Outside the ingress document, A and B differ only in the replicas, the image and the
# test hook (B skips it).
strip() { awk '/^# Source: /{keep = ($3 != "scaffold/templates/ingress.yaml" && $3 != "scaffold/templates/tests/test-connection.yaml")} keep' "$1"; }
diff <(strip "$tmp/a") <(strip "$tmp/b") | grep '^[<>]' >"$tmp/ab.diff"
cat >"$tmp/ab.expected" <<'EOF'
<   replicas: 1
>   replicas: 3
<           image: "nginx:1.16.0"
>           image: "nginx:1.27.1"
EOF
check "A and B differ exactly where expected" cmp -s "$tmp/ab.diff" "$tmp/ab.expected"

# 5. errors: Helm's message on stderr, exit 1, nothing on stdout
"$helm" template demo "$scaffold" --set image=broken >"$tmp/e1.out" 2>"$tmp/e1.err"
rc=$?
check "template error exits 1" test "$rc" -eq 1
check "template error is Helm's 'Error: ...' with the --debug hint" \
    bash -c 'head -c 7 "$1" | grep -qx "Error: " && tail -1 "$1" | grep -qx "Use --debug flag to render out invalid YAML" && test ! -s "$2"' _ "$tmp/e1.err" "$tmp/e1.out"
"$helm" template sample-app "$sample" --set web.replicas=zero >"$tmp/e2.out" 2>"$tmp/e2.err"
rc=$?
check "schema violation exits 1" test "$rc" -eq 1
check "schema violation names the value" grep -qF -- "- at '/web/replicas': got string, want integer" "$tmp/e2.err"
"$helm" template demo "$scaffold" --no-such-flag >/dev/null 2>"$tmp/e3.err"
check "unknown flag is refused" grep -qx "Error: unknown flag: --no-such-flag" "$tmp/e3.err"

# 6. CRDs only with --include-crds, first
"$helm" template sample-app "$sample" --namespace sample --kube-version v1.33.0 >"$tmp/s1" 2>/dev/null
"$helm" template sample-app "$sample" --namespace sample --kube-version v1.33.0 --include-crds >"$tmp/s2" 2>/dev/null
check "no CRDs without --include-crds" hasnt "$tmp/s1" "kind: CustomResourceDefinition"
check "CRDs first with --include-crds" test "$(sed -n 2p "$tmp/s2")" = "# Source: sample-app/crds/widgets.sample.sealift.dev.yaml"

echo "selftest: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
