"""A `helm template` stand-in over Helm's own Go engine (helm-python-sdk).

No Helm binary can be installed where Sealift's tests run. This program implements
the part of the `helm` command line that `sealift-bundler` calls and prints what real
`helm template` prints, byte for byte:

    helm version [--short]
    helm template [NAME] CHART [--namespace NS] [--kube-version V] [--api-versions X]...
                  [-f FILE | --values FILE]... [--set K=V]... [--set-string K=V]...
                  [--include-crds] [--skip-tests] [--is-upgrade]

Everything Helm computes is computed by Helm v4's Go code, reached through the SDK's C
library: chart loading, values coalescing and schema validation, dependency conditions,
the template engine with `.Capabilities` built from `--kube-version` / `--api-versions`
(the native render options `kube_version` / `api_versions`), `--set` parsing, YAML
parsing and semver constraints. What the SDK does not expose -- the part of
`helm template` that lives in Helm's `pkg/action` and `pkg/cmd` -- is reimplemented
here after Helm's source:

* `releaseutil.SortManifests`: files sorted by path, partials (`_*`) and empty files
  skipped, each file split on Helm's `---` regular expression, empty documents dropped,
  hooks (`helm.sh/hook`) separated from the rest, unknown hook types dropped, both lists
  stably sorted by `InstallOrder` kind (unknown kinds last, alphabetically).
* `renderResources` + `newTemplateCmd` output: CRDs (`--include-crds`, from `crds/` of the
  chart and its enabled subcharts, raw) then manifests, each as
  `---\\n# Source: PATH\\nCONTENT\\n`; that block trimmed and ended with one newline; then
  each hook the same way (test hooks unless `--skip-tests`). NOTES.txt is never printed.
* the chart's `kubeVersion` constraint against the Kubernetes version.
* the error texts (`Error: ...` on stderr, exit status 1).

Documents keep the v3 / v4.0-v4.1 form (trimmed on both sides). Helm v4.2.0-v4.2.4 leave a
template file's trailing newline on its last document, which prints a blank line before
the next `---` (helm/helm#32565); the objects are the same.

Limits, each stated where it applies: `--set` integers reach the engine as float64 (real
Helm keeps int64), so an integer of 1e6 or more set with `--set` prints in exponent form
(values files behave exactly as in Helm); `--debug`, `--show-only`, `--output-dir`,
`--post-renderer`, `--set-json`, `--set-file`, `--skip-schema-validation` and chart
repositories are not supported and are refused as unknown flags.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from typing import Any, NoReturn

STANDIN = "sealift helm-template stand-in"

# ---------------------------------------------------------------------------------------
# errors


class CLIError(Exception):
    """An error helm prints as `Error: <message>` and exits 1 on."""


def fail(message: str) -> NoReturn:
    raise CLIError(message)


# ---------------------------------------------------------------------------------------
# Go's whitespace, for strings.TrimSpace

GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def go_trim_space(s: str) -> str:
    return s.strip(GO_SPACE)


# releaseutil.SplitManifests's separator: Go RE2 `(?:^|\s*\n)---\s*`, where \s is
# [\t\n\f\r ] and ^ matches only at the start of the text.
SEP = re.compile(r"(?:^|[\t\n\f\r ]*\n)---[\t\n\f\r ]*")


def split_manifests(big: str) -> list[str]:
    """Helm's SplitManifests (v3, v4.0-4.1): documents in order, trimmed, empty ones dropped."""
    docs = []
    for d in SEP.split(go_trim_space(big)):
        d = go_trim_space(d)
        if d:
            docs.append(d)
    return docs


# ---------------------------------------------------------------------------------------
# releaseutil.InstallOrder and the sorters

INSTALL_ORDER = [
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
]
_ORDER = {k: i for i, k in enumerate(INSTALL_ORDER)}


def kind_key(kind: str) -> tuple[int, str]:
    """A sort key equivalent to Helm's lessByKind under a stable sort."""
    if kind in _ORDER:
        return (0, f"{_ORDER[kind]:04d}")
    return (1, kind)


HOOK_EVENTS = {
    "pre-install",
    "post-install",
    "pre-delete",
    "post-delete",
    "pre-upgrade",
    "post-upgrade",
    "pre-rollback",
    "post-rollback",
    "test",
    "test-success",  # Helm 2's name, still read as `test`
}


def json_type(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def parse_head(helm: Any, path: str, doc: str) -> dict[str, Any]:
    """yaml.Unmarshal of one document into releaseutil.SimpleHead, with Helm's errors."""

    def bad(msg: str) -> NoReturn:
        fail(f"YAML parse error on {path}: {msg}")

    try:
        obj = helm.values_from_yaml(doc)
    except helm.HelmError as e:
        bad(str(e).replace("common.Values", "util.SimpleHead"))
    if obj is None:
        obj = {}
    prefix = "error unmarshaling JSON: while decoding JSON: json: cannot unmarshal"
    for field in ("apiVersion", "kind"):
        v = obj.get(field)
        if v is not None and not isinstance(v, str):
            bad(f"{prefix} {json_type(v)} into Go struct field SimpleHead.{field} of type string")
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        bad(
            f"{prefix} {json_type(meta)} into Go struct field SimpleHead.metadata of type "
            'struct { Name string "json:\\"name\\""; Annotations map[string]string '
            '"json:\\"annotations\\"" }'
        )
    meta = meta or {}
    ann = meta.get("annotations")
    if ann is not None and not isinstance(ann, dict):
        bad(f"{prefix} {json_type(ann)} into Go struct field .metadata.annotations of type map[string]string")
    for k in sorted(ann or {}):
        v = ann[k]
        if v is not None and not isinstance(v, str):
            bad(f"{prefix} {json_type(v)} into Go struct field .metadata.annotations of type string")
    name = meta.get("name")
    if name is not None and not isinstance(name, str):
        bad(f"{prefix} {json_type(name)} into Go struct field .metadata.name of type string")
    return {
        "kind": obj.get("kind") or "",
        "name": name or "",
        "annotations": {k: (v or "") for k, v in (ann or {}).items()},
    }


def sort_manifests(helm: Any, files: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """releaseutil.SortManifests(files, nil, InstallOrder) -> (hooks, manifests)."""
    hooks: list[dict] = []
    generic: list[dict] = []
    for path in sorted(files):
        content = files[path]
        if os.path.basename(path).startswith("_"):
            continue
        if go_trim_space(content) == "":
            continue
        for doc in split_manifests(content):
            head = parse_head(helm, path, doc)
            hook_types = head["annotations"].get("helm.sh/hook")
            if hook_types is None:
                generic.append({"name": path, "content": doc, "kind": head["kind"]})
                continue
            events = [t.strip(GO_SPACE).lower() for t in hook_types.split(",")]
            if any(e not in HOOK_EVENTS for e in events):
                continue  # Helm skips documents with unknown hook types
            hooks.append({"path": path, "manifest": doc, "kind": head["kind"], "events": events})
    hooks.sort(key=lambda h: kind_key(h["kind"]))
    generic.sort(key=lambda m: kind_key(m["kind"]))
    return hooks, generic


# ---------------------------------------------------------------------------------------
# command line (pflag semantics: interspersed flags, --flag=value, -fvalue, -f value)

TEMPLATE_FLAGS = {
    # name: (kind, shorthand)
    "namespace": ("string", "n"),
    "kube-version": ("string", None),
    "api-versions": ("stringSlice", "a"),
    "values": ("stringSlice", "f"),
    "set": ("stringArray", None),
    "set-string": ("stringArray", None),
    "include-crds": ("bool", None),
    "skip-tests": ("bool", None),
    "is-upgrade": ("bool", None),
    "help": ("bool", "h"),
}
VERSION_FLAGS = {"short": ("bool", None), "help": ("bool", "h")}

TEMPLATE_USAGE = """Usage:
  helm template [NAME] [CHART] [flags]

Flags (this stand-in supports only these):
  -a, --api-versions strings   Kubernetes api versions used for Capabilities.APIVersions
  -h, --help                   help for template
      --include-crds           include CRDs in the templated output
      --is-upgrade             set .Release.IsUpgrade instead of .Release.IsInstall
      --kube-version string    Kubernetes version used for Capabilities.KubeVersion
  -n, --namespace string       namespace scope for this request
      --set stringArray        set values on the command line
      --set-string stringArray set STRING values on the command line
      --skip-tests             skip tests from templated output
  -f, --values strings         specify values in a YAML file (can specify multiple)
"""


def parse_bool(name: str, v: str) -> bool:
    if v in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if v in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    fail(f'invalid argument "{v}" for "--{name}" flag: strconv.ParseBool: parsing "{v}": invalid syntax')


def parse_flags(args: list[str], spec: dict[str, tuple[str, str | None]]) -> tuple[dict[str, Any], list[str]]:
    shorts = {s: n for n, (_, s) in spec.items() if s}
    opts: dict[str, Any] = {}
    positional: list[str] = []

    def store(name: str, value: str) -> None:
        kind = spec[name][0]
        if kind == "bool":
            opts[name] = parse_bool(name, value)
        elif kind == "string":
            opts[name] = value
        elif kind == "stringSlice":
            opts.setdefault(name, []).extend(value.split(",") if value != "" else [])
        else:
            opts.setdefault(name, []).append(value)

    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a == "--":
            positional.extend(args[i:])
            break
        if a.startswith("--") and len(a) > 2:
            name, eq, value = a[2:].partition("=")
            if name not in spec:
                fail(f"unknown flag: --{name}")
            if spec[name][0] == "bool":
                store(name, value if eq else "true")
            elif eq:
                store(name, value)
            elif i < len(args):
                store(name, args[i])
                i += 1
            else:
                fail(f"flag needs an argument: --{name}")
        elif a.startswith("-") and len(a) > 1:
            j = 1
            while j < len(a):
                c = a[j]
                if c not in shorts:
                    fail(f"unknown shorthand flag: '{c}' in {a}")
                name = shorts[c]
                rest = a[j + 1 :]
                if spec[name][0] == "bool":
                    if rest.startswith("="):
                        store(name, rest[1:])
                        break
                    store(name, "true")
                    j += 1
                    continue
                if rest:
                    store(name, rest[1:] if rest.startswith("=") else rest)
                elif i < len(args):
                    store(name, args[i])
                    i += 1
                else:
                    fail(f"flag needs an argument: '{c}' in -{c}")
                break
        else:
            positional.append(a)
    return opts, positional


# ---------------------------------------------------------------------------------------
# values (pkg/cli/values Options.MergeValues)


def merge_maps(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_maps(out[k], v)
        else:
            out[k] = v
    return out


def merge_values(helm: Any, opts: dict[str, Any]) -> dict:
    base: dict = {}
    for path in opts.get("values", []):
        try:
            if path == "-":
                data = sys.stdin.read()
            else:
                with open(path, encoding="utf-8") as f:
                    data = f.read()
        except FileNotFoundError:
            fail(f"open {path}: no such file or directory")
        except OSError as e:
            fail(f"open {path}: {e.strerror.lower() if e.strerror else e}")
        try:
            current = helm.values_from_yaml(data) or {}
        except helm.HelmError as e:
            fail(f"failed to parse {path}: " + str(e).replace("common.Values", "map[string]interface {}"))
        base = merge_maps(base, current)
    # Each --set is strvals.ParseInto(value, base); one parse of the values joined by
    # commas is the same thing (`,` separates assignments inside one --set too).
    for flag, parser in (("set", helm.parse_set_string), ("set-string", helm.parse_set_string_values)):
        exprs = [e for e in opts.get(flag, []) if e != ""]
        if not exprs:
            continue
        try:
            parsed = parser(",".join(exprs))
        except helm.HelmError as e:
            fail(f"failed parsing --{flag} data: {e}")
        base = merge_maps(base, parsed)
    return base


# ---------------------------------------------------------------------------------------
# chart checks that live in pkg/cmd and pkg/action


def path_value(values: Any, dotted: str) -> tuple[bool, Any]:
    cur = values
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return False, None
        cur = cur[part]
    return True, cur


def enabled_dependencies(chart_meta: dict, coalesced: dict) -> dict[str, list[str]]:
    """processDependencyTags + processDependencyConditions for a chart's direct
    dependencies: {chart name in charts/: [names it is rendered under (alias or name)]}."""
    out: dict[str, list[str]] = {}
    tags = coalesced.get("tags") if isinstance(coalesced.get("tags"), dict) else None
    for dep in chart_meta.get("dependencies") or []:
        enabled = True
        if tags is not None:
            has_true = has_false = False
            for t in dep.get("tags") or []:
                if t in tags and isinstance(tags[t], bool):
                    has_true |= tags[t]
                    has_false |= not tags[t]
            if not has_true and has_false:
                enabled = False
        for cond in (dep.get("condition") or "").split(","):
            cond = cond.strip(GO_SPACE)
            if not cond:
                continue
            found, v = path_value(coalesced, cond)
            if found and isinstance(v, bool):
                enabled = v
                break
        if enabled:
            out.setdefault(dep["name"], []).append(dep.get("alias") or dep["name"])
    return out


def chart_crds(helm: Any, chart: Any, user_values: dict) -> list[tuple[str, str]]:
    """ch.CRDObjects() after ProcessDependencies: (Source path, raw data) in Helm's order.

    The chart's own CRDs first, then each enabled direct dependency's (under its alias
    when it has one); deeper subcharts follow their enabled parent."""
    crds = chart.crds
    top = chart.name
    own = [(c["filename"], c["data"]) for c in crds if not c["filename"].startswith(f"{top}/charts/")]
    meta = chart.metadata
    if not meta.get("dependencies"):
        return own + [(c["filename"], c["data"]) for c in crds if c["filename"].startswith(f"{top}/charts/")]
    try:
        coalesced = chart.merge_values(user_values)
    except helm.HelmError:
        coalesced = user_values
    enabled = enabled_dependencies(meta, coalesced)
    declared = {d["name"] for d in meta.get("dependencies") or []}
    out = list(own)
    sub = [c for c in crds if c["filename"].startswith(f"{top}/charts/")]
    by_dir: dict[str, list[dict]] = {}
    for c in sub:
        d = c["filename"][len(top) + len("/charts/") :].split("/", 1)[0]
        by_dir.setdefault(d, []).append(c)
    # Subcharts not named in Chart.yaml come first (processDependencyEnabled), then the
    # declared ones in Chart.yaml order, once per alias.
    for d, items in by_dir.items():
        if d not in declared:
            out += [(c["filename"], c["data"]) for c in items]
    for dep in meta.get("dependencies") or []:
        name = dep["name"]
        if name not in enabled or (dep.get("alias") or name) not in enabled[name]:
            continue
        alias = dep.get("alias") or name
        for c in by_dir.get(name, []):
            prefix = f"{top}/charts/{name}/"
            out.append((f"{top}/charts/{alias}/" + c["filename"][len(prefix) :], c["data"]))
    return out


class KubeProbe:
    """Evaluates Masterminds semver constraints and the engine's default Kubernetes
    version by rendering a one-template chart with Helm's own engine."""

    def __init__(self, helm: Any, native: Any):
        self.helm = helm
        self.native = native
        self.dir = tempfile.mkdtemp(prefix="helm-standin-")
        os.makedirs(os.path.join(self.dir, "probe", "templates"))
        with open(os.path.join(self.dir, "probe", "Chart.yaml"), "w") as f:
            f.write("apiVersion: v2\nname: probe\nversion: 0.0.0\n")
        with open(os.path.join(self.dir, "probe", "templates", "p"), "w") as f:
            f.write(
                "{{ .Capabilities.KubeVersion.Version }}\n"
                '{{ if .Values.c }}{{ semverCompare .Values.c .Values.v }}{{ end }}'
            )
        self.chart = helm.Chart.load(os.path.join(self.dir, "probe"))

    def close(self) -> None:
        self.chart.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _render(self, values: dict, opts: dict) -> list[str]:
        out = self.native.call_string("helm_render", self.chart._raw(), json.dumps(values), json.dumps(opts))
        return json.loads(out)["probe/templates/p"].split("\n")

    def kube_version(self, opts: dict) -> str:
        return self._render({}, {k: v for k, v in opts.items() if k == "kube_version"})[0]

    def compatible(self, constraint: str, version: str) -> bool:
        """chartutil.IsCompatibleRange: false when either side does not parse."""
        try:
            return self._render({"c": constraint, "v": version}, {})[1] == "true"
        except self.helm.HelmError:
            return False


# ---------------------------------------------------------------------------------------
# commands


def load_sdk() -> tuple[Any, Any]:
    try:
        import helm_python as helm
        from helm_python import _native
    except ImportError as e:  # pragma: no cover - setup problem
        print(
            f"Error: {STANDIN}: helm-python-sdk is not installed ({e}); run `just venv` / tests/helm/setup.sh first",
            file=sys.stderr,
        )
        sys.exit(1)
    return helm, _native


def cmd_version(args: list[str]) -> int:
    opts, pos = parse_flags(args, VERSION_FLAGS)
    if pos:
        fail(f'unknown command "{pos[0]}" for "helm version"')
    helm, _ = load_sdk()
    engine = helm.helm_sdk_version()  # e.g. v4.2.3
    build = f"sealift.standin.sdk{helm.__version__}"
    if opts.get("short"):
        sys.stdout.write(f"{engine}+{build}\n")
    else:
        sys.stdout.write(
            f'version.BuildInfo{{Version:"{engine}", GitCommit:"{build}", GitTreeState:"", '
            f'GoVersion:"", Standin:"{STANDIN} over helm-python-sdk {helm.__version__} '
            f'(helm-c-sdk {helm.helm_c_version()}, Helm SDK {engine})"}}\n'
        )
    return 0


def cmd_template(args: list[str]) -> int:
    opts, pos = parse_flags(args, TEMPLATE_FLAGS)
    if opts.get("help"):
        sys.stdout.write(TEMPLATE_USAGE)
        return 0
    if not pos:
        fail('"helm template" requires at least 1 argument\n\n' + TEMPLATE_USAGE.rstrip("\n"))
    if len(pos) > 2:
        fail("expected at most two arguments, unexpected arguments: " + ", ".join(pos[2:]))
    name, chart_ref = (pos[0], pos[1]) if len(pos) == 2 else ("release-name", pos[0])
    namespace = opts.get("namespace") or os.environ.get("HELM_NAMESPACE") or "default"

    helm, native = load_sdk()
    render_opts: dict[str, Any] = {"name": name, "namespace": namespace, "revision": 1}
    if opts.get("is-upgrade"):
        render_opts["is_upgrade"] = True
    else:
        render_opts["is_install"] = True
    if opts.get("api-versions"):
        render_opts["api_versions"] = opts["api-versions"]

    probe = KubeProbe(helm, native)
    try:
        kv = opts.get("kube-version")
        if kv:
            try:
                probe.kube_version({"kube_version": kv})
            except helm.HelmError as e:
                fail(f"invalid kube version '{kv}': {e}")
            render_opts["kube_version"] = kv
        return render(helm, native, probe, name, chart_ref, render_opts, opts)
    finally:
        probe.close()


def render(helm: Any, native: Any, probe: KubeProbe, name: str, chart_ref: str, render_opts: dict, opts: dict) -> int:
    # LocateChart: a local directory or archive.
    if not os.path.exists(chart_ref):
        if "/" in chart_ref or chart_ref.startswith("."):
            fail(f'path "{chart_ref}" not found')
        fail(f"non-absolute URLs should be in form of repo_name/path_to_chart, got: {chart_ref}")
    user_values = merge_values(helm, opts)
    try:
        chart = helm.Chart.load(chart_ref)
    except helm.HelmError as e:
        fail(str(e))
    meta = chart.metadata
    ctype = meta.get("type") or ""
    if ctype not in ("", "application"):
        fail(f"{ctype} charts are not installable")
    if meta.get("deprecated"):
        print("WARNING: This chart is deprecated", file=sys.stderr)
    if meta.get("dependencies"):
        present = {d.get("name") for d in chart.dependencies}
        missing = [r["name"] for r in meta["dependencies"] if r.get("name") not in present]
        if missing:
            fail(
                "an error occurred while checking for chart dependencies. You may need to run "
                "`helm dependency build` to fetch missing dependencies: found in Chart.yaml, but "
                "missing in charts/ directory: " + ", ".join(missing)
            )
    try:
        helm.validate_release_name(name)
    except helm.HelmError as e:
        fail(f'release name "{name}": {e}')

    debug_hint = "\n\nUse --debug flag to render out invalid YAML"
    kube_version = probe.kube_version(render_opts)
    constraint = meta.get("kubeVersion") or ""

    def check_kube_version() -> None:
        if constraint and not probe.compatible(constraint, kube_version):
            fail(
                f"chart requires kubeVersion: {constraint} which is incompatible with Kubernetes {kube_version}"
                + debug_hint
            )

    try:
        out = native.call_string("helm_render", chart._raw(), json.dumps(user_values), json.dumps(render_opts))
    except helm.HelmRenderError as e:
        check_kube_version()
        fail(f"{e}{debug_hint}")
    except helm.HelmError as e:  # values: coalescing, schema validation
        fail(str(e))
    check_kube_version()
    files: dict[str, str] = json.loads(out)
    for k in list(files):
        if k.endswith("NOTES.txt"):
            del files[k]
    try:
        hooks, manifests = sort_manifests(helm, files)
    except CLIError as e:
        raise CLIError(f"{e}{debug_hint}") from None

    doc = []
    if opts.get("include-crds"):
        for source, data in chart_crds(helm, chart, user_values):
            doc.append(f"---\n# Source: {source}\n{data}\n")
    for m in manifests:
        doc.append(f"---\n# Source: {m['name']}\n{m['content']}\n")
    text = [go_trim_space("".join(doc)) + "\n"]
    for h in hooks:
        if opts.get("skip-tests") and ("test" in h["events"] or "test-success" in h["events"]):
            continue
        text.append(f"---\n# Source: {h['path']}\n{h['manifest']}\n")
    sys.stdout.buffer.write("".join(text).encode("utf-8"))
    sys.stdout.flush()
    chart.close()
    return 0


USAGE = """The Kubernetes package manager (sealift stand-in: only `template` and `version`).

Usage:
  helm [command]

Available Commands:
  template    locally render templates
  version     print the helm version information
"""


def main(argv: list[str]) -> int:
    try:
        if not argv or argv[0] in ("-h", "--help", "help"):
            sys.stdout.write(USAGE)
            return 0
        cmd, rest = argv[0], argv[1:]
        if cmd == "version":
            return cmd_version(rest)
        if cmd == "template":
            return cmd_template(rest)
        fail(f'unknown command "{cmd}" for "helm"\nRun \'helm --help\' for usage.')
    except CLIError as e:
        sys.stdout.flush()
        print(f"Error: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
