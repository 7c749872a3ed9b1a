//! What the build checks in the chart and its renders: non-deterministic template
//! functions, renders that differ, variables that change structure, schemas that refuse
//! test values, unused variables; and what the render and variables entries hold.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use bundler::variables::{Set, string_sentinel};
use serde_json::{Value, json};
use tests::sample::helm_stand_in;

use crate::common::*;

/// A copy of the sample app 1.0.0 in the lab; returns (spec, chart dir).
fn sample_copy(lab: &Lab, name: &str) -> (PathBuf, PathBuf) {
    let dir = lab.at(name);
    let spec = copy_sample("1.0.0", &dir);
    (spec, dir.join("chart"))
}

/// Adds a subchart `charts/sub` whose only template calls `randAlphaNum` on line 6, and
/// lets the parent's strict values schema accept the `sub` values Helm adds for it.
fn add_random_subchart(chart: &Path) {
    write(
        chart,
        "charts/sub/Chart.yaml",
        "apiVersion: v2\nname: sub\nversion: 0.1.0\n",
    );
    write(
        chart,
        "charts/sub/templates/x.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sub-random\ndata:\n  token: {{ randAlphaNum 10 | quote }}\n",
    );
    edit(
        &chart.join("values.schema.json"),
        "    \"widget\": {",
        "    \"sub\": { \"type\": \"object\" },\n    \"widget\": {",
    );
}

/// Appends lines to a template of the chart.
fn append(chart: &Path, template: &str, text: &str) {
    let path = chart.join("templates").join(template);
    let mut body = fs_err::read_to_string(&path).unwrap();
    body.push_str(text);
    fs_err::write(path, body).unwrap();
}

#[test]
fn templates_calling_now_or_rand_are_refused_naming_file_and_line() {
    let lab = Lab::offline();
    let (spec, chart) = sample_copy(&lab, "app");
    // configmap.yaml has 11 lines: the call is on line 12.
    append(&chart, "configmap.yaml", "  BUILT: {{ now | date \"2006\" | quote }}\n");
    add_random_subchart(&chart);

    let r = lab.build(&spec, "1.0.0", lab.at("x.sealift")).run().refused();
    assert!(
        r.stderr.contains(
            "error: the chart calls functions whose output differs between runs or sites:\n  \
             charts/sub/templates/x.yaml:6: calls `randAlphaNum`\n  \
             templates/configmap.yaml:12: calls `now`\n"
        ),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.hints(),
        ["hint: a value generated per site must be a variable with `generate`; --allow-template-fn NAME overrides"]
    );

    // Allowing one function leaves the other refused.
    lab.build(&spec, "1.0.0", lab.at("x.sealift"))
        .args(["--allow-template-fn", "randAlphaNum"])
        .run()
        .refused()
        .stderr_has("WARN charts/sub/templates/x.yaml:6: calls `randAlphaNum` (allowed by --allow-template-fn")
        .stderr_has("differs between runs or sites:\n  templates/configmap.yaml:12: calls `now`\n")
        .stderr_lacks("x.yaml:6: calls `randAlphaNum`\n");
}

#[test]
fn allowed_random_function_passes_the_scan_but_differing_renders_are_refused() {
    let lab = Lab::offline();
    let (spec, chart) = sample_copy(&lab, "app");
    add_random_subchart(&chart);
    let out = lab.at("x.sealift");
    let r = lab
        .build(&spec, "1.0.0", &out)
        .args(["--allow-template-fn", "randAlphaNum"])
        .run()
        .refused()
        .stderr_has(
            " WARN charts/sub/templates/x.yaml:6: calls `randAlphaNum` (allowed by --allow-template-fn; renders may \
             differ between runs or sites)",
        );
    assert_eq!(
        r.error_line(),
        "error: two renders of the same chart and values differ (first in sample-app/charts/sub/templates/x.yaml); \
         the chart is not deterministic"
    );
    assert!(!out.exists());
}

#[test]
fn variable_in_an_if_that_changes_a_field_is_refused_naming_the_template() {
    let lab = Lab::offline();
    let (spec, chart) = sample_copy(&lab, "app");
    append(
        &chart,
        "configmap.yaml",
        "  {{- if eq .Values.hostname \"sample.example.com\" }}\n  DEFAULT_HOST: \"true\"\n  {{- end }}\n",
    );
    let r = lab.build(&spec, "1.0.0", lab.at("x.sealift")).run().refused();
    assert_eq!(
        r.error_line(),
        "error: ConfigMap sample-app-config (from sample-app/templates/configmap.yaml) differs between the default \
         render and the test render outside any recorded slot, at /data/DEFAULT_HOST"
    );
}

#[test]
fn variable_in_an_if_that_adds_an_object_is_refused_naming_the_template() {
    let lab = Lab::offline();
    let (spec, chart) = sample_copy(&lab, "app");
    write(
        &chart,
        "templates/big.yaml",
        "{{- if gt (int .Values.web.replicas) 10 }}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: big\ndata:\n  big: \"true\"\n{{- end }}\n",
    );
    let r = lab.build(&spec, "1.0.0", lab.at("x.sealift")).run().refused();
    assert_eq!(
        r.error_line(),
        "error: variables change which objects the chart renders (13 objects with defaults, 14 and 14 with test \
         values, from sample-app/templates/big.yaml); variables may only set values — structure is the vendor's decision"
    );
}

#[test]
fn values_schema_refusing_a_test_value_is_refused_naming_the_variable() {
    let lab = Lab::offline();
    let (spec, chart) = sample_copy(&lab, "app");
    // The default (4 characters) passes, the 16-character test value does not.
    edit(
        &chart.join("values.schema.json"),
        "\"maxLength\": 253,",
        "\"maxLength\": 5,",
    );
    edit(&spec, "default: sample.example.com", "default: a.io");
    let r = lab.build(&spec, "1.0.0", lab.at("x.sealift")).run().refused();
    let sentinel = string_sentinel(Set::A, "hostname");
    assert_eq!(
        r.error_line(),
        format!(
            "error: the chart refuses a test value of variable hostname (test value \"{sentinel}\"); its \
             values.schema.json must accept any value of the variable's type (strings: up to 20 lowercase DNS \
             characters; integers: 6 digits)"
        )
    );
    r.stderr_has("- at '/hostname': maxLength: got 16, want 5");
}

#[test]
fn declared_variable_the_render_never_uses_is_refused_naming_it() {
    let lab = Lab::offline();
    let (spec, chart) = sample_copy(&lab, "app");
    edit(
        &chart.join("values.schema.json"),
        "\"logLevel\": {",
        "\"unusedKnob\": { \"type\": \"string\" },\n        \"logLevel\": {",
    );
    edit(
        &spec,
        "steps:\n",
        "  - name: knob\n    type: string\n    description: Nothing reads it.\n    valuesPath: api.unusedKnob\n    default: quiet\nsteps:\n",
    );
    let r = lab.build(&spec, "1.0.0", lab.at("x.sealift")).run().refused();
    assert_eq!(
        r.error_line(),
        "error: variable knob (valuesPath api.unusedKnob) does not appear in the render; remove it or use it in a template"
    );
}

/// The documents of `sealift/rendered.yaml` as (source, text).
fn documents(render: &str) -> Vec<(String, String)> {
    render
        .split("---\n# Source: ")
        .skip(1)
        .map(|d| {
            let (source, text) = d.split_once('\n').unwrap();
            (source.to_owned(), text.to_owned())
        })
        .collect()
}

/// The one slot of `owner` in `variables.json` at `pointer`.
fn slot<'a>(vars: &'a Value, owner: &str, pointer: &str) -> &'a Value {
    let slots = if owner == "namespace" {
        &vars["namespace"]["slots"]
    } else {
        let v = vars["variables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["declaration"]["name"] == owner)
            .unwrap_or_else(|| panic!("no variable {owner}"));
        &v["slots"]
    };
    let found: Vec<&Value> = slots
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["pointer"] == pointer)
        .collect();
    assert_eq!(found.len(), 1, "{owner} at {pointer}: {slots:#}");
    found[0]
}

#[test]
fn render_entry_drops_test_hooks_and_notes_and_variables_entry_records_every_slot() {
    let lab = Lab::with_versions(&["1.0.0"]);
    let file = lab.sample_bundle("1.0.0", "sample");

    // What Helm itself prints for the chart has the test hook and skips NOTES.txt.
    let helm = String::from_utf8(tool(
        helm_stand_in().to_str().unwrap(),
        [
            OsStr::new("template"),
            OsStr::new("sample-app"),
            tests::sample::sample_spec("1.0.0")
                .parent()
                .unwrap()
                .join("chart")
                .as_os_str(),
            OsStr::new("--namespace"),
            OsStr::new("sample"),
            OsStr::new("--kube-version"),
            OsStr::new("v1.33.0"),
            OsStr::new("--include-crds"),
        ],
    ))
    .unwrap();
    assert!(helm.contains("# Source: sample-app/templates/tests/test-connection.yaml\n"));

    let render = String::from_utf8(tar_entry(&file, "sealift/rendered.yaml")).unwrap();
    assert!(!render.contains("test-connection"), "{render}");
    assert!(!render.contains("\"helm.sh/hook\": test"), "{render}");
    assert!(!render.contains("NOTES.txt"));
    let docs = documents(&render);
    let sources: Vec<&str> = docs.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        sources,
        [
            "sample-app/crds/widgets.sample.sealift.dev.yaml",
            "sample-app/templates/secret.yaml",
            "sample-app/templates/configmap.yaml",
            "sample-app/templates/legacy-configmap.yaml",
            "sample-app/templates/api-service.yaml",
            "sample-app/templates/db-service.yaml",
            "sample-app/templates/web-service.yaml",
            "sample-app/templates/api-deployment.yaml",
            "sample-app/templates/web-deployment.yaml",
            "sample-app/templates/db-statefulset.yaml",
            "sample-app/templates/web-ingress.yaml",
            "sample-app/templates/widget.yaml",
            "sample-app/templates/migrate-job.yaml",
        ]
    );
    // Other hooks stay, with their annotations.
    let job = &docs[12].1;
    assert!(job.contains("\"helm.sh/hook\": pre-install,pre-upgrade\n"), "{job}");
    assert!(job.contains("\"helm.sh/hook-weight\": \"-5\"\n"), "{job}");
    // Every document of the render is exactly what Helm printed for it.
    for (source, text) in &docs {
        assert!(
            helm.contains(&format!("# Source: {source}\n{text}")),
            "{source} differs from Helm's output"
        );
    }

    let vars: Value = serde_json::from_slice(&tar_entry(&file, "sealift/variables.json")).unwrap();
    assert_eq!(vars["releaseName"], "sample-app");
    assert_eq!(vars["namespace"]["default"], "sample");
    let check = |owner: &str, pointer: &str, kind: &str, name: &str, form: Value, base64: bool| {
        let s = slot(&vars, owner, pointer);
        assert_eq!(s["object"]["kind"], kind, "{s:#}");
        assert_eq!(s["object"]["name"], name, "{s:#}");
        assert_eq!(s["form"], form, "{s:#}");
        assert_eq!(s["base64"], base64, "{s:#}");
        // The slot's document index points at that object in the render.
        let (_, text) = &docs[s["document"].as_u64().unwrap() as usize];
        assert!(
            text.contains(&format!("kind: {kind}\n")) && text.contains(&format!("name: {name}\n")),
            "{owner}: document {} is not {kind} {name}",
            s["document"]
        );
    };
    check(
        "hostname",
        "/spec/rules/0/host",
        "Ingress",
        "sample-app-web",
        json!({"kind": "whole"}),
        false,
    );
    check(
        "hostname",
        "/data/API_URL",
        "ConfigMap",
        "sample-app-config",
        json!({"kind": "substring", "template": "https://${hostname}/api"}),
        false,
    );
    check(
        "replicas",
        "/spec/replicas",
        "Deployment",
        "sample-app-web",
        json!({"kind": "whole"}),
        false,
    );
    check(
        "adminPassword",
        "/data/admin-password",
        "Secret",
        "sample-app-db",
        json!({"kind": "whole"}),
        true,
    );
    check(
        "storageGi",
        "/spec/volumeClaimTemplates/0/spec/resources/requests/storage",
        "StatefulSet",
        "sample-app-db",
        json!({"kind": "substring", "template": "${storageGi}Gi"}),
        false,
    );
    check(
        "namespace",
        "/data/DB_HOST",
        "ConfigMap",
        "sample-app-config",
        json!({"kind": "substring", "template": "sample-app-db.${namespace}.svc.cluster.local"}),
        false,
    );
    let counts: Vec<(String, usize)> = vars["variables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["declaration"]["name"].as_str().unwrap().to_owned(),
                v["slots"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        counts,
        [
            ("hostname".to_owned(), 2),
            ("replicas".to_owned(), 1),
            ("adminPassword".to_owned(), 1),
            ("storageGi".to_owned(), 1)
        ]
    );
    assert_eq!(vars["namespace"]["slots"].as_array().unwrap().len(), 1);
}
