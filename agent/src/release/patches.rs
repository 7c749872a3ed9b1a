//! Site patches: JSON merge patches (RFC 7386) the admin keeps for this site, applied to the
//! rendered objects after the variables. A patch may not bring an image the bundle does not
//! hold, and may touch RBAC objects only when the site allows it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::release::render::{RenderedObject, pod_spec_pointer};

/// RBAC kinds a patch may change only with `allowRbacPatches`.
const RBAC_KINDS: [&str; 4] = ["Role", "ClusterRole", "RoleBinding", "ClusterRoleBinding"];

/// One patch: the object it targets (by kind and name) and the merge patch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SitePatch {
    pub kind: String,
    pub name: String,
    /// The merge patch (`null` removes a field).
    pub patch: Value,
}

/// Applies every patch; lists every problem at once.
pub fn apply(
    objects: &mut [RenderedObject],
    patches: &[SitePatch],
    allow_rbac: bool,
    allowed_images: &[String],
) -> Result<(), String> {
    let mut problems = Vec::new();
    for p in patches {
        let target = format!("{}/{}", p.kind, p.name);
        if RBAC_KINDS.contains(&p.kind.as_str()) && !allow_rbac {
            problems.push(format!(
                "site patch for {target}: RBAC objects may be patched only with allowRbacPatches"
            ));
            continue;
        }
        let Some(o) = objects.iter_mut().find(|o| o.kind == p.kind && o.name == p.name) else {
            problems.push(format!("site patch for {target}: the release has no such object"));
            continue;
        };
        let mut patched = o.object.clone();
        merge(&mut patched, &p.patch);
        for field in ["apiVersion", "kind"] {
            if patched[field] != o.object[field] {
                problems.push(format!("site patch for {target} changes {field}"));
            }
        }
        if patched.pointer("/metadata/name") != o.object.pointer("/metadata/name") {
            problems.push(format!("site patch for {target} renames it"));
        }
        for image in images(&patched) {
            if !allowed_images.contains(&image) {
                problems.push(format!(
                    "site patch for {target} brings image {image}, which the bundle does not hold"
                ));
            }
        }
        o.object = patched;
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    if let Value::Object(t) = target {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Every container image of the object's pod spec, if it has one.
fn images(object: &Value) -> Vec<String> {
    let (Some(av), Some(kind)) = (object["apiVersion"].as_str(), object["kind"].as_str()) else {
        return vec![];
    };
    let Some(spec) = pod_spec_pointer(av, kind).and_then(|p| object.pointer(p)) else {
        return vec![];
    };
    ["containers", "initContainers", "ephemeralContainers"]
        .iter()
        .flat_map(|list| spec[*list].as_array().cloned().unwrap_or_default())
        .filter_map(|c| c["image"].as_str().map(str::to_owned))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::release::render::Stage;
    use serde_json::json;

    fn deployment() -> RenderedObject {
        RenderedObject {
            document: 0,
            source: "t.yaml".into(),
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: None,
            name: "web".into(),
            wave: "rest".into(),
            stage: Stage::Wave(0),
            hook: None,
            object: json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
                "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "web", "image": "reg/web@sha256:aa"}]}}}}),
        }
    }

    #[test]
    fn merge_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1, 2]});
        merge(&mut t, &json!({"a": [3]}));
        assert_eq!(t, json!({"a": [3]}));
    }

    #[test]
    fn patches_apply_and_are_refused_for_new_images_rbac_and_missing_targets() {
        let allowed = vec!["reg/web@sha256:aa".to_owned()];
        let mut objects = vec![deployment()];
        let ok = SitePatch {
            kind: "Deployment".into(),
            name: "web".into(),
            patch: json!({"spec": {"replicas": 4, "template": {"metadata": {"annotations": {"site": "x"}}}}}),
        };
        apply(&mut objects, &[ok], false, &allowed).unwrap();
        assert_eq!(objects[0].object["spec"]["replicas"], 4);
        assert_eq!(
            objects[0].object["spec"]["template"]["spec"]["containers"][0]["image"],
            "reg/web@sha256:aa"
        );

        let image = SitePatch {
            kind: "Deployment".into(),
            name: "web".into(),
            patch: json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "evil/web:latest"}]}}}}),
        };
        let rbac = SitePatch {
            kind: "ClusterRole".into(),
            name: "admin".into(),
            patch: json!({"rules": []}),
        };
        let missing = SitePatch {
            kind: "Service".into(),
            name: "nope".into(),
            patch: json!({}),
        };
        let err = apply(&mut [deployment()], &[image, rbac, missing], false, &allowed).unwrap_err();
        assert!(err.contains("brings image evil/web:latest"), "{err}");
        assert!(
            err.contains("RBAC objects may be patched only with allowRbacPatches"),
            "{err}"
        );
        assert!(err.contains("Service/nope: the release has no such object"), "{err}");
    }
}
