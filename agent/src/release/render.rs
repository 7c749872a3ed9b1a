//! The render step of a release: the bundle's signed render (`sealift/rendered.yaml`) with the
//! site's variable values and namespace put in **through the serializer** (each value set as a
//! JSON node at its recorded slot, never by editing YAML text), every image rewritten to the
//! site registry by digest, every object placed in its wave, Helm hooks parsed, and the
//! objects in apply order. Pure: no cluster, no registry, no clock.
//!
//! The applied objects differ from the signed render only at variable slots and image
//! references (site patches come later, in the engine).

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;
use regex::Regex;
use schemas::manifest::Manifest;
use schemas::names::{ImageName, ImageReference, VariableName};
use schemas::release::{Slot, SlotForm, VariableType, VariableValue, Variables};
use schemas::rendered::{self, Block, InvalidDocument};
use schemas::spec::ImageLocation;
use schemas::verified::Metadata;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The chart's image names (`ImageRecord::name`) mapped to the reference pods pull:
/// `<pull host>/<path prefix>/<target>@sha256:<digest>`, built by the caller from the
/// registry configuration and the manifest's images.
pub type ImageMap = BTreeMap<ImageName, String>;

/// Helm's install order by kind (`InstallOrder` in `kind_sorter.go`, Helm 3.13+ and 4: with
/// `PriorityClass` first, so pods naming one are admitted, and the webhook configurations
/// last, so they do not intercept the release's own objects). Kinds not listed come after
/// these, alphabetically.
pub const INSTALL_ORDER: [&str; 38] = [
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
];

/// The name under which namespace slots appear in substring templates (`${namespace}`).
pub const NAMESPACE_OWNER: &str = "namespace";

/// The release, rendered for this site, in apply order: Namespaces, then
/// CustomResourceDefinitions, then each wave in order (Helm's install order within a wave,
/// stable), then Helm hooks (by weight, then name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rendered {
    pub objects: Vec<RenderedObject>,
}

/// One object of the render.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RenderedObject {
    /// Index of the document in `sealift/rendered.yaml` (what slots and waves refer to).
    pub document: u32,
    /// The template it came from (`chart/templates/x.yaml`).
    pub source: String,
    pub api_version: String,
    pub kind: String,
    /// `metadata.namespace` as rendered. Helm leaves it out of most objects: a namespaced
    /// object without one goes to the release namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// The wave `sealift/migrations.json` assigns the document to.
    pub wave: String,
    /// When the object is applied.
    pub stage: Stage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<HelmHook>,
    /// The object to apply.
    pub object: Value,
}

impl RenderedObject {
    /// `Kind name`, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.kind, self.name)
    }
}

/// When an object is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "stage", content = "wave")]
pub enum Stage {
    /// Namespaces, first.
    Namespace,
    /// CustomResourceDefinitions, before every wave (then wait until Established).
    CustomResourceDefinition,
    /// Wave number `n` of `sealift/migrations.json` (0-based).
    Wave(usize),
    /// A Helm hook: run at its events, never applied with the waves.
    Hook,
}

/// A Helm hook's annotations, parsed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HelmHook {
    /// `helm.sh/hook`, in the order written.
    pub events: Vec<HookEvent>,
    /// `helm.sh/hook-weight` (default 0): lower weights run first.
    pub weight: i32,
    /// `helm.sh/hook-delete-policy` (default `before-hook-creation`).
    pub delete_policies: Vec<HookDeletePolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookEvent {
    PreInstall,
    PostInstall,
    PreUpgrade,
    PostUpgrade,
    PreDelete,
    PostDelete,
    PreRollback,
    PostRollback,
}

impl HookEvent {
    pub const ALL: [HookEvent; 8] = [
        HookEvent::PreInstall,
        HookEvent::PostInstall,
        HookEvent::PreUpgrade,
        HookEvent::PostUpgrade,
        HookEvent::PreDelete,
        HookEvent::PostDelete,
        HookEvent::PreRollback,
        HookEvent::PostRollback,
    ];

    /// The annotation value (`pre-install`).
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::PreInstall => "pre-install",
            HookEvent::PostInstall => "post-install",
            HookEvent::PreUpgrade => "pre-upgrade",
            HookEvent::PostUpgrade => "post-upgrade",
            HookEvent::PreDelete => "pre-delete",
            HookEvent::PostDelete => "post-delete",
            HookEvent::PreRollback => "pre-rollback",
            HookEvent::PostRollback => "post-rollback",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HookDeletePolicy {
    BeforeHookCreation,
    HookSucceeded,
    HookFailed,
}

impl HookDeletePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            HookDeletePolicy::BeforeHookCreation => "before-hook-creation",
            HookDeletePolicy::HookSucceeded => "hook-succeeded",
            HookDeletePolicy::HookFailed => "hook-failed",
        }
    }
}

impl Rendered {
    /// The objects of one stage, in apply order.
    pub fn stage(&self, stage: Stage) -> impl Iterator<Item = &RenderedObject> {
        self.objects.iter().filter(move |o| o.stage == stage)
    }
    /// The hooks that run at `event`, in Helm's order (weight, then name).
    pub fn hooks(&self, event: HookEvent) -> impl Iterator<Item = &RenderedObject> {
        self.objects
            .iter()
            .filter(move |o| o.hook.as_ref().is_some_and(|h| h.events.contains(&event)))
    }
}

/// Why the release cannot be rendered; every problem found is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot render the release: {}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct RenderError {
    pub problems: Vec<RenderProblem>,
}

impl From<RenderProblem> for RenderError {
    fn from(p: RenderProblem) -> Self {
        RenderError { problems: vec![p] }
    }
}

/// Where an image reference sits in an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageAt {
    /// A container, init container or ephemeral container of a pod spec.
    Container { name: String },
    /// A declared image location (a JSON pointer, or an arg / env value matched by a pattern).
    Field { pointer: String },
}

impl fmt::Display for ImageAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageAt::Container { name } => write!(f, "container {name:?}"),
            ImageAt::Field { pointer } => write!(f, "field {pointer}"),
        }
    }
}

/// One reason the render failed. `object` reads `Kind name (document N)`. Values are never
/// shown (they may be sensitive).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderProblem {
    #[error("namespace {namespace:?} is not a valid namespace name: {reason}")]
    InvalidNamespace { namespace: String, reason: &'static str },
    #[error("document {document} of sealift/rendered.yaml has no `# Source:` line")]
    NoSource { document: u32 },
    #[error("document {document} of sealift/rendered.yaml (from {source_path}) cannot be parsed: {reason}")]
    Parse {
        document: u32,
        source_path: String,
        reason: String,
    },
    #[error("document {document} of sealift/rendered.yaml (from {source_path}) is not a Kubernetes object")]
    NotAnObject { document: u32, source_path: String },
    #[error("{owner}: a slot is in document {document}, which the render does not have")]
    SlotOutsideRender { owner: String, document: u32 },
    #[error("{owner}: the slot at {pointer} is recorded for {expected}, but {object} is there")]
    SlotObjectMismatch {
        owner: String,
        pointer: String,
        expected: String,
        object: String,
    },
    #[error("{owner}: {object} has no {pointer} for its slot")]
    SlotMissing {
        owner: String,
        object: String,
        pointer: String,
    },
    #[error("{object}: the slots at {pointer} ({owners}) disagree on their form")]
    SlotsDisagree {
        object: String,
        pointer: String,
        owners: String,
    },
    #[error("{owner}: the slot template at {pointer} of {object} is malformed: {reason}")]
    BadTemplate {
        owner: String,
        object: String,
        pointer: String,
        reason: String,
    },
    #[error("{owner}: the signed value at {pointer} of {object} does not fit the slot ({reason})")]
    SlotMismatch {
        owner: String,
        object: String,
        pointer: String,
        reason: &'static str,
    },
    #[error("{owner}: an integer variable was given a value that is not an integer (slot {pointer} of {object})")]
    NotAnInteger {
        owner: String,
        object: String,
        pointer: String,
    },
    #[error("{object}: {at} uses image {image}, which the bundle does not hold")]
    UnknownImage { object: String, at: ImageAt, image: String },
    #[error("image location for {kind}: {what} {pattern:?} is not valid: {reason}")]
    BadImageLocation {
        kind: String,
        what: &'static str,
        pattern: String,
        reason: String,
    },
    #[error("{object}: annotation {annotation} {value:?}: {reason}")]
    BadHookAnnotation {
        object: String,
        annotation: &'static str,
        value: String,
        reason: String,
    },
    #[error("{object} is in no wave of sealift/migrations.json")]
    NoWave { object: String },
    #[error("{object} is in two waves, {first:?} and {second:?}")]
    TwoWaves {
        object: String,
        first: String,
        second: String,
    },
    #[error("wave {wave:?} lists document {document}, which the render does not have")]
    WaveOutsideRender { wave: String, document: u32 },
}

/// One document of the signed render, as parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct SignedDocument {
    /// `chart/templates/x.yaml`, from the `# Source:` line.
    pub source: String,
    pub object: Value,
}

impl SignedDocument {
    fn str_at(&self, pointer: &str) -> &str {
        self.object.pointer(pointer).and_then(Value::as_str).unwrap_or("")
    }
    pub fn api_version(&self) -> &str {
        self.str_at("/apiVersion")
    }
    pub fn kind(&self) -> &str {
        self.str_at("/kind")
    }
    pub fn name(&self) -> &str {
        self.str_at("/metadata/name")
    }
}

fn describe(document: u32, object: &Value) -> String {
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).unwrap_or("?").to_owned();
    format!("{} {} (document {document})", s("/kind"), s("/metadata/name"))
}

/// Parses `sealift/rendered.yaml` with the bundler's splitter ([`schemas::rendered`]), so
/// indexes match slots and waves. Every document that is not an object is a problem; it
/// keeps its index (as `null`).
pub fn signed_documents(render: &str) -> Result<Vec<SignedDocument>, RenderError> {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    for block in rendered::blocks(render) {
        let document = docs.len() as u32;
        let (source, error) = match block {
            Block::Object { source, object, .. } => {
                docs.push(SignedDocument {
                    source: source.to_owned(),
                    object,
                });
                continue;
            }
            Block::NoSource => {
                problems.push(RenderProblem::NoSource { document });
                continue;
            }
            Block::Invalid { source, error } => (source, error),
        };
        problems.push(match error {
            InvalidDocument::NotAnObject => RenderProblem::NotAnObject {
                document,
                source_path: source.to_owned(),
            },
            InvalidDocument::Parse(reason) => RenderProblem::Parse {
                document,
                source_path: source.to_owned(),
                reason,
            },
        });
        docs.push(SignedDocument {
            source: source.to_owned(),
            object: Value::Null,
        });
    }
    if problems.is_empty() {
        Ok(docs)
    } else {
        Err(RenderError { problems })
    }
}

/// Renders the release for this site: `values` (from [`super::values::resolve`]) and
/// `namespace` put into every slot, images rewritten through `images` at every pod spec
/// and declared image location, objects placed and ordered. Lists every problem at once.
pub fn render(
    metadata: &Metadata,
    manifest: &Manifest,
    values: &BTreeMap<VariableName, VariableValue>,
    namespace: &str,
    images: &ImageMap,
) -> Result<Rendered, RenderError> {
    let mut problems = Vec::new();
    if let Err(reason) = check_namespace(namespace) {
        problems.push(RenderProblem::InvalidNamespace {
            namespace: namespace.to_owned(),
            reason,
        });
    }
    let docs = signed_documents(&metadata.render)?;
    let rewriter = match ImageRewriter::new(images, &manifest.image_locations) {
        Ok(r) => Some(r),
        Err(e) => {
            problems.extend(e.problems);
            None
        }
    };
    let mut objects: Vec<Value> = docs.iter().map(|d| d.object.clone()).collect();
    problems.extend(fill_slots(&metadata.variables, &docs, &mut objects, values, namespace));
    if let Some(rewriter) = &rewriter {
        for (i, object) in objects.iter_mut().enumerate() {
            let what = describe(i as u32, object);
            problems.extend(rewriter.rewrite(object, &what));
        }
    }
    let waves = match wave_of_documents(metadata, &docs) {
        Ok(w) => w,
        Err(p) => {
            problems.extend(p);
            BTreeMap::new()
        }
    };
    let mut rendered = Vec::new();
    for (i, (doc, object)) in docs.iter().zip(objects).enumerate() {
        let document = i as u32;
        let what = describe(document, &object);
        let hook = match parse_hook(&object, &what) {
            Ok(h) => h,
            Err(p) => {
                problems.extend(p);
                None
            }
        };
        let Some((wave_index, wave)) = waves.get(&document) else {
            continue;
        };
        let s = |p: &str| object.pointer(p).and_then(Value::as_str).map(str::to_owned);
        let api_version = s("/apiVersion").unwrap_or_default();
        let kind = s("/kind").unwrap_or_default();
        let stage = if hook.is_some() {
            Stage::Hook
        } else if kind == "Namespace" && api_version == "v1" {
            Stage::Namespace
        } else if kind == "CustomResourceDefinition" && group(&api_version) == "apiextensions.k8s.io" {
            Stage::CustomResourceDefinition
        } else {
            Stage::Wave(*wave_index)
        };
        rendered.push(RenderedObject {
            document,
            source: doc.source.clone(),
            namespace: s("/metadata/namespace"),
            name: s("/metadata/name").unwrap_or_default(),
            api_version,
            kind,
            wave: wave.clone(),
            stage,
            hook,
            object,
        });
    }
    if !problems.is_empty() {
        return Err(RenderError { problems });
    }
    sort_for_apply(&mut rendered);
    Ok(Rendered { objects: rendered })
}

/// Orders objects: Namespaces, CRDs, waves in order with Helm's install order by kind within
/// each (unknown kinds last, alphabetically), then hooks by weight and name; stable.
pub fn sort_for_apply(objects: &mut [RenderedObject]) {
    objects.sort_by(|a, b| {
        a.stage.cmp(&b.stage).then_with(|| match (&a.hook, &b.hook) {
            (Some(ha), Some(hb)) => ha
                .weight
                .cmp(&hb.weight)
                .then_with(|| a.name.cmp(&b.name))
                .then_with(|| install_order_key(&a.kind).cmp(&install_order_key(&b.kind))),
            _ => install_order_key(&a.kind).cmp(&install_order_key(&b.kind)),
        })
    });
}

/// Sort key of a kind in Helm's install order: listed kinds by position, then the rest
/// alphabetically.
pub fn install_order_key(kind: &str) -> (usize, &str) {
    match INSTALL_ORDER.iter().position(|k| *k == kind) {
        Some(i) => (i, ""),
        None => (INSTALL_ORDER.len(), kind),
    }
}

fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

/// A DNS-1123 label: what Kubernetes accepts as a namespace name.
fn check_namespace(ns: &str) -> Result<(), &'static str> {
    if ns.is_empty() || ns.len() > 63 {
        return Err("must be 1 to 63 characters");
    }
    if !ns
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err("may hold only lowercase letters, digits and '-'");
    }
    if ns.starts_with('-') || ns.ends_with('-') {
        return Err("must start and end with a letter or digit");
    }
    Ok(())
}

// ---------------------------------------------------------------- slots

/// Who fills a slot: the namespace or a declared variable.
#[derive(Clone, Copy)]
enum Owner<'a> {
    Namespace(&'a str),
    Variable {
        ty: VariableType,
        value: Option<&'a VariableValue>,
    },
}

impl Owner<'_> {
    /// The text the owner contributes to a string, if it has a value.
    fn text(&self) -> Option<String> {
        match self {
            Owner::Namespace(ns) => Some((*ns).to_owned()),
            Owner::Variable { value, .. } => value.map(VariableValue::to_text),
        }
    }
}

/// A part of a substring template: `${name}` or literal text (`$$` is one `$`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Owner(String),
}

fn parse_template(template: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        text.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(r) = after.strip_prefix('$') {
            text.push('$');
            rest = r;
        } else if let Some(r) = after.strip_prefix('{') {
            let end = r.find('}').ok_or("unterminated `${`")?;
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(Part::Owner(r[..end].to_owned()));
            rest = &r[end + 1..];
        } else {
            return Err("a `$` that is neither `$$` nor `${name}`".into());
        }
    }
    text.push_str(rest);
    if !text.is_empty() {
        parts.push(Part::Text(text));
    }
    Ok(parts)
}

/// The text each owner has in `signed`, if `signed` is the template filled in.
fn match_template(parts: &[Part], signed: &str) -> Option<BTreeMap<String, String>> {
    let mut pattern = String::from("(?s)^");
    for p in parts {
        match p {
            Part::Text(t) => pattern.push_str(&regex::escape(t)),
            Part::Owner(_) => pattern.push_str("(.*?)"),
        }
    }
    pattern.push('$');
    let re = Regex::new(&pattern).ok()?;
    let caps = re.captures(signed)?;
    let mut found = BTreeMap::new();
    let mut group = 1;
    for p in parts {
        if let Part::Owner(name) = p {
            let text = caps.get(group)?.as_str().to_owned();
            group += 1;
            if let Some(prev) = found.insert(name.clone(), text.clone())
                && prev != text
            {
                return None;
            }
        }
    }
    Some(found)
}

fn fill(parts: &[Part], text: impl Fn(&str) -> String) -> String {
    parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.clone(),
            Part::Owner(o) => text(o),
        })
        .collect()
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Puts every owner's value into its slots. Owners without a value keep the signed text.
fn fill_slots(
    variables: &Variables,
    docs: &[SignedDocument],
    objects: &mut [Value],
    values: &BTreeMap<VariableName, VariableValue>,
    namespace: &str,
) -> Vec<RenderProblem> {
    let mut owners: BTreeMap<&str, Owner<'_>> = BTreeMap::new();
    owners.insert(NAMESPACE_OWNER, Owner::Namespace(namespace));
    for v in &variables.variables {
        owners.insert(
            v.declaration.name.as_str(),
            Owner::Variable {
                ty: v.declaration.ty,
                value: values.get(&v.declaration.name),
            },
        );
    }
    // Slots by (document, pointer): a scalar holding several owners has one slot per owner,
    // each with the same template.
    let mut by_scalar: BTreeMap<(u32, &str), Vec<(&str, &Slot)>> = BTreeMap::new();
    let all = variables.namespace.slots.iter().map(|s| (NAMESPACE_OWNER, s)).chain(
        variables
            .variables
            .iter()
            .flat_map(|v| v.slots.iter().map(|s| (v.declaration.name.as_str(), s))),
    );
    for (owner, slot) in all {
        by_scalar
            .entry((slot.document, slot.pointer.as_str()))
            .or_default()
            .push((owner, slot));
    }
    let mut problems = Vec::new();
    for ((document, pointer), slots) in by_scalar {
        let (first_owner, first) = slots[0];
        let Some(doc) = docs.get(document as usize) else {
            problems.push(RenderProblem::SlotOutsideRender {
                owner: first_owner.to_owned(),
                document,
            });
            continue;
        };
        let object = describe(document, &doc.object);
        if first.object.kind != doc.kind() || first.object.api_version != doc.api_version() {
            problems.push(RenderProblem::SlotObjectMismatch {
                owner: first_owner.to_owned(),
                pointer: pointer.to_owned(),
                expected: format!("{} {}", first.object.api_version, first.object.kind),
                object,
            });
            continue;
        }
        if slots
            .iter()
            .any(|(_, s)| s.form != first.form || s.base64 != first.base64)
            || (first.form == SlotForm::Whole && slots.len() > 1)
        {
            problems.push(RenderProblem::SlotsDisagree {
                object,
                pointer: pointer.to_owned(),
                owners: slots.iter().map(|(o, _)| *o).collect::<Vec<_>>().join(", "),
            });
            continue;
        }
        let Some(signed) = doc.object.pointer(pointer) else {
            problems.push(RenderProblem::SlotMissing {
                owner: first_owner.to_owned(),
                object,
                pointer: pointer.to_owned(),
            });
            continue;
        };
        let mismatch = |reason| RenderProblem::SlotMismatch {
            owner: first_owner.to_owned(),
            object: object.clone(),
            pointer: pointer.to_owned(),
            reason,
        };
        let value = match &first.form {
            SlotForm::Whole => {
                let Some(owner) = owners.get(first_owner) else {
                    problems.push(mismatch("the slot's owner is not a declared variable"));
                    continue;
                };
                match whole_value(owner, signed, first.base64) {
                    Ok(Some(v)) => v,
                    Ok(None) => continue,
                    Err(()) => {
                        problems.push(RenderProblem::NotAnInteger {
                            owner: first_owner.to_owned(),
                            object,
                            pointer: pointer.to_owned(),
                        });
                        continue;
                    }
                }
            }
            SlotForm::Substring { template } => {
                let parts = match parse_template(template) {
                    Ok(p) => p,
                    Err(reason) => {
                        problems.push(RenderProblem::BadTemplate {
                            owner: first_owner.to_owned(),
                            object,
                            pointer: pointer.to_owned(),
                            reason,
                        });
                        continue;
                    }
                };
                if let Some(Part::Owner(unknown)) = parts
                    .iter()
                    .find(|p| matches!(p, Part::Owner(o) if !owners.contains_key(o.as_str())))
                {
                    problems.push(RenderProblem::BadTemplate {
                        owner: first_owner.to_owned(),
                        object,
                        pointer: pointer.to_owned(),
                        reason: format!("`${{{unknown}}}` is neither the namespace nor a declared variable"),
                    });
                    continue;
                }
                let Some(signed_text) = signed.as_str() else {
                    problems.push(mismatch("not a string"));
                    continue;
                };
                let signed_text = if first.base64 {
                    match base64::engine::general_purpose::STANDARD
                        .decode(signed_text)
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                    {
                        Some(t) => t,
                        None => {
                            problems.push(mismatch("not base64 of UTF-8 text"));
                            continue;
                        }
                    }
                } else {
                    signed_text.to_owned()
                };
                // The signed scalar is the template filled with the render's defaults; an
                // owner without a site value keeps the text it has there.
                let Some(signed_parts) = match_template(&parts, &signed_text) else {
                    problems.push(mismatch("it is not the template filled in"));
                    continue;
                };
                let text = fill(&parts, |name| {
                    owners
                        .get(name)
                        .and_then(Owner::text)
                        .or_else(|| signed_parts.get(name).cloned())
                        .unwrap_or_default()
                });
                Value::String(if first.base64 { b64(&text) } else { text })
            }
        };
        if let Some(target) = objects[document as usize].pointer_mut(pointer) {
            *target = value;
        }
    }
    problems
}

/// The node a whole-scalar slot takes: the value's text as a string (base64 when the slot
/// is), or for an integer variable at a number node, the number. `Ok(None)`: no value, the
/// signed node stays. `Err`: an integer variable's value is not an integer.
fn whole_value(owner: &Owner<'_>, signed: &Value, base64: bool) -> Result<Option<Value>, ()> {
    let Some(text) = owner.text() else {
        return Ok(None);
    };
    if base64 {
        return Ok(Some(Value::String(b64(&text))));
    }
    match owner {
        Owner::Variable {
            ty: VariableType::Integer,
            value: Some(value),
        } => {
            let n = match value {
                VariableValue::Integer(n) => *n,
                VariableValue::String(s) => s.parse::<i64>().map_err(|_| ())?,
            };
            Ok(Some(if signed.is_string() {
                Value::String(n.to_string())
            } else {
                Value::from(n)
            }))
        }
        _ => Ok(Some(Value::String(text))),
    }
}

// ---------------------------------------------------------------- images

const CONTAINER_LISTS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];

/// Where the pod spec sits in a workload of `apiVersion` and `kind`.
pub fn pod_spec_pointer(api_version: &str, kind: &str) -> Option<&'static str> {
    let g = group(api_version);
    match (g, kind) {
        ("", "Pod") => Some("/spec"),
        ("", "PodTemplate") => Some("/template/spec"),
        ("", "ReplicationController")
        | ("apps" | "extensions", "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")
        | ("batch", "Job") => Some("/spec/template/spec"),
        ("batch", "CronJob") => Some("/spec/jobTemplate/spec/template/spec"),
        _ => None,
    }
}

struct CompiledLocation<'a> {
    location: &'a ImageLocation,
    pointers: Vec<Vec<String>>,
    args: Vec<Regex>,
    env: Vec<Regex>,
}

/// Rewrites image references to the pull references of an [`ImageMap`]: every container,
/// init container and ephemeral container of a pod spec (Pod, PodTemplate,
/// ReplicationController, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob),
/// and the declared extra image locations. Also for objects the engine makes itself (step
/// Jobs).
pub struct ImageRewriter<'a> {
    images: &'a ImageMap,
    locations: Vec<CompiledLocation<'a>>,
}

impl<'a> ImageRewriter<'a> {
    pub fn new(images: &'a ImageMap, locations: &'a [ImageLocation]) -> Result<Self, RenderError> {
        let mut problems = Vec::new();
        let mut compiled = Vec::new();
        for location in locations {
            let mut bad = |what, pattern: &str, reason: String| {
                problems.push(RenderProblem::BadImageLocation {
                    kind: location.kind.clone(),
                    what,
                    pattern: pattern.to_owned(),
                    reason,
                })
            };
            let mut pointers = Vec::new();
            for p in &location.pointers {
                match p.strip_prefix('/') {
                    Some(rest) => pointers.push(
                        rest.split('/')
                            .map(|s| s.replace("~1", "/").replace("~0", "~"))
                            .collect(),
                    ),
                    None => bad("pointer", p, "a JSON pointer starts with '/'".into()),
                }
            }
            let regexes = |patterns: &[String], bad: &mut dyn FnMut(&'static str, &str, String)| {
                let mut out = Vec::new();
                for p in patterns {
                    match Regex::new(p) {
                        Ok(re) if re.captures_len() >= 2 => out.push(re),
                        Ok(_) => bad("pattern", p, "it has no capture group 1 for the image".into()),
                        Err(e) => bad("pattern", p, e.to_string()),
                    }
                }
                out
            };
            let args = regexes(&location.arg_patterns, &mut bad);
            let env = regexes(&location.env_patterns, &mut bad);
            compiled.push(CompiledLocation {
                location,
                pointers,
                args,
                env,
            });
        }
        if problems.is_empty() {
            Ok(ImageRewriter {
                images,
                locations: compiled,
            })
        } else {
            Err(RenderError { problems })
        }
    }

    /// The pull reference for an image as the chart writes it: the same name, or failing
    /// that the same normalised reference (`nginx:1` is `docker.io/library/nginx:1`).
    pub fn pull_reference(&self, image: &str) -> Option<&'a str> {
        if let Some((_, pull)) = self.images.iter().find(|(name, _)| name.as_str() == image) {
            return Some(pull.as_str());
        }
        let wanted = ImageReference::parse(image).ok()?;
        self.images
            .iter()
            .find(|(name, _)| name.reference() == wanted)
            .map(|(_, pull)| pull.as_str())
    }

    /// Rewrites every image reference of `object` in place; `what` names it in problems.
    /// Each location is read from the object as given, so no reference is rewritten twice.
    pub fn rewrite(&self, object: &mut Value, what: &str) -> Vec<RenderProblem> {
        let api_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let kind = object.get("kind").and_then(Value::as_str).unwrap_or("").to_owned();
        let mut problems = Vec::new();
        // pointer → new string
        let mut edits: BTreeMap<String, String> = BTreeMap::new();
        let mut unknown = |at: ImageAt, image: &str| {
            problems.push(RenderProblem::UnknownImage {
                object: what.to_owned(),
                at,
                image: image.to_owned(),
            })
        };
        if let Some(pod) = pod_spec_pointer(&api_version, &kind)
            && let Some(spec) = object.pointer(pod)
        {
            for list in CONTAINER_LISTS {
                let Some(containers) = spec.get(list).and_then(Value::as_array) else {
                    continue;
                };
                for (i, c) in containers.iter().enumerate() {
                    let Some(image) = c.get("image").and_then(Value::as_str) else {
                        continue;
                    };
                    let name = c.get("name").and_then(Value::as_str).unwrap_or("").to_owned();
                    match self.pull_reference(image) {
                        Some(pull) => {
                            edits.insert(format!("{pod}/{list}/{i}/image"), pull.to_owned());
                        }
                        None => unknown(ImageAt::Container { name }, image),
                    }
                }
            }
        }
        let matching: Vec<&CompiledLocation<'_>> = self
            .locations
            .iter()
            .filter(|c| c.location.kind == kind && c.location.api_version.as_deref().is_none_or(|a| a == api_version))
            .collect();
        for c in &matching {
            for segments in &c.pointers {
                for (pointer, v) in expand(object, segments) {
                    let Some(image) = v.as_str() else { continue };
                    if edits.contains_key(&pointer) {
                        continue;
                    }
                    match self.pull_reference(image) {
                        Some(pull) => {
                            edits.insert(pointer, pull.to_owned());
                        }
                        None => unknown(ImageAt::Field { pointer }, image),
                    }
                }
            }
        }
        if matching.iter().any(|c| !c.args.is_empty() || !c.env.is_empty()) {
            let mut strings = Vec::new();
            collect_strings(object, &mut Vec::new(), &mut strings);
            for (segments, s) in strings {
                let pointer = to_pointer(&segments);
                if edits.contains_key(&pointer) {
                    continue;
                }
                let is_arg = segments[..segments.len().saturating_sub(1)]
                    .iter()
                    .any(|p| p == "args" || p == "command");
                let is_env = segments.iter().any(|p| p == "env") && segments.last().is_some_and(|l| l == "value");
                let patterns: Vec<&Regex> = matching
                    .iter()
                    .flat_map(|c| {
                        if is_arg {
                            c.args.iter().collect::<Vec<_>>()
                        } else if is_env {
                            c.env.iter().collect()
                        } else {
                            vec![]
                        }
                    })
                    .collect();
                // Every match on the original text, first wins on overlap, replaced at once.
                let mut spans: Vec<(usize, usize)> = Vec::new();
                for re in patterns {
                    for cap in re.captures_iter(s) {
                        if let Some(m) = cap.get(1)
                            && !spans.iter().any(|&(a, b)| m.start() < b && a < m.end())
                        {
                            spans.push((m.start(), m.end()));
                        }
                    }
                }
                if spans.is_empty() {
                    continue;
                }
                spans.sort_unstable();
                let mut out = String::new();
                let mut at = 0;
                let mut ok = true;
                for (a, b) in spans {
                    out.push_str(&s[at..a]);
                    match self.pull_reference(&s[a..b]) {
                        Some(pull) => out.push_str(pull),
                        None => {
                            ok = false;
                            unknown(
                                ImageAt::Field {
                                    pointer: pointer.clone(),
                                },
                                &s[a..b],
                            );
                        }
                    }
                    at = b;
                }
                out.push_str(&s[at..]);
                if ok {
                    edits.insert(pointer, out);
                }
            }
        }
        for (pointer, new) in edits {
            if let Some(target) = object.pointer_mut(&pointer) {
                *target = Value::String(new);
            }
        }
        problems
    }
}

fn escape_segment(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

fn to_pointer(segments: &[String]) -> String {
    segments.iter().map(|s| format!("/{}", escape_segment(s))).collect()
}

/// The values at a pointer whose `*` segments match every array item or map value, with
/// their concrete pointers.
fn expand<'v>(value: &'v Value, segments: &[String]) -> Vec<(String, &'v Value)> {
    let mut current = vec![(String::new(), value)];
    for seg in segments {
        let mut next = Vec::new();
        for (p, v) in current {
            if seg == "*" {
                match v {
                    Value::Array(a) => next.extend(a.iter().enumerate().map(|(i, x)| (format!("{p}/{i}"), x))),
                    Value::Object(m) => next.extend(m.iter().map(|(k, x)| (format!("{p}/{}", escape_segment(k)), x))),
                    _ => {}
                }
            } else {
                let child = match v {
                    Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
                    Value::Object(m) => m.get(seg),
                    _ => None,
                };
                if let Some(c) = child {
                    next.push((format!("{p}/{}", escape_segment(seg)), c));
                }
            }
        }
        current = next;
    }
    current
}

fn collect_strings<'v>(v: &'v Value, path: &mut Vec<String>, out: &mut Vec<(Vec<String>, &'v str)>) {
    match v {
        Value::String(s) => out.push((path.clone(), s)),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                path.push(i.to_string());
                collect_strings(x, path, out);
                path.pop();
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                path.push(k.clone());
                collect_strings(x, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------- waves and hooks

/// Each document's wave (index and name); every document must be in exactly one.
fn wave_of_documents(
    metadata: &Metadata,
    docs: &[SignedDocument],
) -> Result<BTreeMap<u32, (usize, String)>, Vec<RenderProblem>> {
    let mut problems = Vec::new();
    let mut map: BTreeMap<u32, (usize, String)> = BTreeMap::new();
    for (i, wave) in metadata.migrations.waves.iter().enumerate() {
        for &d in &wave.documents {
            let Some(doc) = docs.get(d as usize) else {
                problems.push(RenderProblem::WaveOutsideRender {
                    wave: wave.name.clone(),
                    document: d,
                });
                continue;
            };
            if let Some((_, first)) = map.insert(d, (i, wave.name.clone())) {
                problems.push(RenderProblem::TwoWaves {
                    object: describe(d, &doc.object),
                    first,
                    second: wave.name.clone(),
                });
            }
        }
    }
    for (i, doc) in docs.iter().enumerate() {
        if !map.contains_key(&(i as u32)) {
            problems.push(RenderProblem::NoWave {
                object: describe(i as u32, &doc.object),
            });
        }
    }
    if problems.is_empty() { Ok(map) } else { Err(problems) }
}

const HOOK: &str = "helm.sh/hook";
const HOOK_WEIGHT: &str = "helm.sh/hook-weight";
const HOOK_DELETE_POLICY: &str = "helm.sh/hook-delete-policy";

/// The object's Helm hook annotations; `None` when it is not a hook. Unknown event or policy
/// names and a weight that is not an integer are refused (Helm ignores them silently).
pub fn parse_hook(object: &Value, what: &str) -> Result<Option<HelmHook>, Vec<RenderProblem>> {
    let annotations = object.pointer("/metadata/annotations");
    let get = |key: &str| annotations.and_then(|a| a.get(key)).and_then(Value::as_str);
    let Some(events_text) = get(HOOK) else {
        return Ok(None);
    };
    let mut problems = Vec::new();
    let mut bad = |annotation, value: &str, reason: String| {
        problems.push(RenderProblem::BadHookAnnotation {
            object: what.to_owned(),
            annotation,
            value: value.to_owned(),
            reason,
        })
    };
    let mut events = Vec::new();
    for part in events_text.split(',').map(|p| p.trim().to_ascii_lowercase()) {
        match HookEvent::ALL.iter().find(|e| e.as_str() == part) {
            Some(e) if !events.contains(e) => events.push(*e),
            Some(_) => {}
            None => bad(
                HOOK,
                events_text,
                format!(
                    "{part:?} is not a hook event this agent runs ({})",
                    HookEvent::ALL.map(HookEvent::as_str).join(", ")
                ),
            ),
        }
    }
    let weight = match get(HOOK_WEIGHT).map(str::trim) {
        None | Some("") => 0,
        Some(w) => w.parse::<i32>().unwrap_or_else(|_| {
            bad(HOOK_WEIGHT, w, "not an integer".into());
            0
        }),
    };
    let mut delete_policies = Vec::new();
    if let Some(text) = get(HOOK_DELETE_POLICY) {
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let all = [
                HookDeletePolicy::BeforeHookCreation,
                HookDeletePolicy::HookSucceeded,
                HookDeletePolicy::HookFailed,
            ];
            match all.iter().find(|p| p.as_str() == part) {
                Some(p) if !delete_policies.contains(p) => delete_policies.push(*p),
                Some(_) => {}
                None => bad(
                    HOOK_DELETE_POLICY,
                    text,
                    format!("{part:?} is not before-hook-creation, hook-succeeded or hook-failed"),
                ),
            }
        }
    }
    if delete_policies.is_empty() {
        delete_policies.push(HookDeletePolicy::BeforeHookCreation);
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Some(HelmHook {
        events,
        weight,
        delete_policies,
    }))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::OnceLock;

    use proptest::prelude::*;
    use schemas::release::{Migrations, Wave};
    use serde_json::json;

    use super::*;

    const PULL: &str = "registry.site.test:5000/mirror";

    /// The committed format-1 sample bundle's manifest and metadata, verified once.
    fn sample() -> &'static (Manifest, Metadata) {
        static SAMPLE: OnceLock<(Manifest, Metadata)> = OnceLock::new();
        SAMPLE.get_or_init(|| {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../testdata/format-1");
            let roots = keys::root_dir::load(dir.join("roots")).unwrap();
            let trusted = keys::TrustedRoots::from_envelopes(&roots).unwrap();
            let (head, metadata) =
                schemas::inspect::read_metadata(&dir.join("sample-app-1.0.0.sealift"), trusted).unwrap();
            (head.manifest().clone(), metadata)
        })
    }

    fn image_map(manifest: &Manifest) -> ImageMap {
        manifest
            .images
            .iter()
            .map(|i| (i.name.clone(), format!("{PULL}/{}@{}", i.target, i.digest)))
            .collect()
    }

    fn name(s: &str) -> VariableName {
        s.parse().unwrap()
    }

    fn site_values(hostname: &str, password: &str) -> BTreeMap<VariableName, VariableValue> {
        BTreeMap::from([
            (name("hostname"), VariableValue::String(hostname.into())),
            (name("replicas"), VariableValue::Integer(5)),
            (name("adminPassword"), VariableValue::String(password.into())),
            (name("storageGi"), VariableValue::Integer(20)),
        ])
    }

    /// What a slot must hold, computed from the declaration without the render's code.
    fn expected_slot(
        slot: &Slot,
        value: &str,
        namespace: &str,
        values: &BTreeMap<VariableName, VariableValue>,
    ) -> Value {
        let text = match &slot.form {
            SlotForm::Whole => value.to_owned(),
            SlotForm::Substring { template } => {
                let mut t = template.replace("${namespace}", namespace);
                for (n, v) in values {
                    t = t.replace(&format!("${{{n}}}"), &v.to_text());
                }
                t.replace("$$", "$")
            }
        };
        if slot.base64 {
            Value::String(b64(&text))
        } else {
            Value::String(text)
        }
    }

    /// The signed objects with exactly the slot values and image rewrites a site expects.
    fn expected_objects(
        metadata: &Metadata,
        images: &ImageMap,
        values: &BTreeMap<VariableName, VariableValue>,
        namespace: &str,
    ) -> Vec<Value> {
        let mut objects: Vec<Value> = signed_documents(&metadata.render)
            .unwrap()
            .into_iter()
            .map(|d| d.object)
            .collect();
        for slot in &metadata.variables.namespace.slots {
            *objects[slot.document as usize].pointer_mut(&slot.pointer).unwrap() =
                expected_slot(slot, namespace, namespace, values);
        }
        for var in &metadata.variables.variables {
            let value = &values[&var.declaration.name];
            for slot in &var.slots {
                let target = objects[slot.document as usize].pointer_mut(&slot.pointer).unwrap();
                *target = match (value, &slot.form, target.is_number()) {
                    (VariableValue::Integer(i), SlotForm::Whole, true) => json!(i),
                    _ => expected_slot(slot, &value.to_text(), namespace, values),
                };
            }
        }
        for object in &mut objects {
            let kind = object["kind"].as_str().unwrap().to_owned();
            let api = object["apiVersion"].as_str().unwrap().to_owned();
            if let Some(pod) = pod_spec_pointer(&api, &kind) {
                for c in object
                    .pointer_mut(&format!("{pod}/containers"))
                    .unwrap()
                    .as_array_mut()
                    .unwrap()
                {
                    let image: ImageName = c["image"].as_str().unwrap().parse().unwrap();
                    c["image"] = json!(images[&image]);
                }
            }
        }
        objects
    }

    #[test]
    fn renders_sample_app_with_every_slot_filled_and_every_image_by_digest() {
        let (manifest, metadata) = sample();
        let images = image_map(manifest);
        let values = site_values("shop.example.org", "s3cret-Pa55");
        let r = render(metadata, manifest, &values, "prod", &images).unwrap();
        assert_eq!(r.objects.len(), 13);

        // Every slot holds its value.
        let by_doc = |d: u32| &r.objects.iter().find(|o| o.document == d).unwrap().object;
        assert_eq!(by_doc(10)["spec"]["rules"][0]["host"], "shop.example.org");
        assert_eq!(by_doc(2)["data"]["API_URL"], "https://shop.example.org/api");
        assert_eq!(by_doc(2)["data"]["DB_HOST"], "sample-app-db.prod.svc.cluster.local");
        assert_eq!(by_doc(8)["spec"]["replicas"], json!(5));
        assert_eq!(by_doc(1)["data"]["admin-password"], b64("s3cret-Pa55"));
        assert_eq!(
            by_doc(9)["spec"]["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"],
            "20Gi"
        );

        // Every pod image is the registry's digest form of a manifest image.
        let mut seen = 0;
        for o in &r.objects {
            if let Some(pod) = pod_spec_pointer(&o.api_version, &o.kind) {
                for list in CONTAINER_LISTS {
                    for c in o
                        .object
                        .pointer(&format!("{pod}/{list}"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        let image = c["image"].as_str().unwrap();
                        assert!(
                            manifest
                                .images
                                .iter()
                                .any(|i| image == format!("{PULL}/{}@{}", i.target, i.digest)),
                            "{} {}: {image}",
                            o.kind,
                            o.name
                        );
                        seen += 1;
                    }
                }
            }
        }
        assert_eq!(seen, 4, "api, web, db and the migrate hook");

        // Nothing else differs from the signed render.
        let expected = expected_objects(metadata, &images, &values, "prod");
        for o in &r.objects {
            assert_eq!(o.object, expected[o.document as usize], "document {}", o.document);
        }
    }

    #[test]
    fn install_order_is_helms() {
        let mut kinds = vec![
            "ValidatingWebhookConfiguration",
            "Deployment",
            "Widget",
            "MutatingWebhookConfiguration",
            "Apple",
            "ConfigMap",
            "PriorityClass",
            "Namespace",
        ];
        kinds.sort_by_key(|k| install_order_key(k));
        assert_eq!(
            kinds,
            [
                "PriorityClass",
                "Namespace",
                "ConfigMap",
                "Deployment",
                "MutatingWebhookConfiguration",
                "ValidatingWebhookConfiguration",
                "Apple",
                "Widget"
            ]
        );
    }

    #[test]
    fn orders_sample_app_by_stage_wave_and_install_order() {
        let (manifest, metadata) = sample();
        let r = render(
            metadata,
            manifest,
            &site_values("a.example", "pw"),
            "sample",
            &image_map(manifest),
        )
        .unwrap();
        let order: Vec<(String, &str, Stage, &str)> = r
            .objects
            .iter()
            .map(|o| (o.kind.clone(), o.name.as_str(), o.stage, o.wave.as_str()))
            .collect();
        let k = |kind: &str, name: &'static str, stage, wave: &'static str| (kind.to_owned(), name, stage, wave);
        assert_eq!(
            order,
            vec![
                k(
                    "CustomResourceDefinition",
                    "widgets.sample.sealift.dev",
                    Stage::CustomResourceDefinition,
                    "rest"
                ),
                k("StatefulSet", "sample-app-db", Stage::Wave(0), "data"),
                k("Deployment", "sample-app-api", Stage::Wave(1), "backend"),
                k("Deployment", "sample-app-web", Stage::Wave(2), "frontend"),
                k("Secret", "sample-app-db", Stage::Wave(3), "rest"),
                k("ConfigMap", "sample-app-config", Stage::Wave(3), "rest"),
                k("ConfigMap", "sample-app-legacy", Stage::Wave(3), "rest"),
                k("Service", "sample-app-api", Stage::Wave(3), "rest"),
                k("Service", "sample-app-db", Stage::Wave(3), "rest"),
                k("Service", "sample-app-web", Stage::Wave(3), "rest"),
                k("Ingress", "sample-app-web", Stage::Wave(3), "rest"),
                k("Widget", "sample-app-widget", Stage::Wave(3), "rest"),
                k("Job", "sample-app-migrate", Stage::Hook, "rest"),
            ]
        );
        let hook = r.objects.last().unwrap().hook.clone().unwrap();
        assert_eq!(
            hook,
            HelmHook {
                events: vec![HookEvent::PreInstall, HookEvent::PreUpgrade],
                weight: -5,
                delete_policies: vec![HookDeletePolicy::BeforeHookCreation, HookDeletePolicy::HookSucceeded],
            }
        );
        assert_eq!(r.hooks(HookEvent::PreUpgrade).count(), 1);
        assert_eq!(r.hooks(HookEvent::PostUpgrade).count(), 0);
        assert_eq!(r.stage(Stage::Wave(3)).count(), 8);
        assert!(r.objects.iter().all(|o| o.namespace.is_none()));
        // The plan is persisted: the render round-trips through JSON.
        let again: Rendered = serde_json::from_value(serde_json::to_value(&r).unwrap()).unwrap();
        assert_eq!(again, r);
    }

    #[test]
    fn unknown_image_and_bad_namespace_are_named_together() {
        let (manifest, metadata) = sample();
        let mut images = image_map(manifest);
        images.retain(|n, _| !n.as_str().contains("/web:"));
        let err = render(metadata, manifest, &site_values("a.example", "pw"), "Bad_NS", &images).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 2, "{text}");
        assert!(
            text.contains("namespace \"Bad_NS\" is not a valid namespace name"),
            "{text}"
        );
        assert!(
            text.contains(
                "Deployment sample-app-web (document 8): container \"web\" uses image quay.io/sealift-sample/web:1.0.0, \
                 which the bundle does not hold"
            ),
            "{text}"
        );
    }

    #[test]
    fn variable_without_value_keeps_the_signed_scalar() {
        let (manifest, metadata) = sample();
        let mut values = site_values("a.example", "pw");
        values.remove(&name("hostname"));
        values.remove(&name("replicas"));
        let r = render(metadata, manifest, &values, "sample", &image_map(manifest)).unwrap();
        let signed = signed_documents(&metadata.render).unwrap();
        let by_doc = |d: u32| &r.objects.iter().find(|o| o.document == d).unwrap().object;
        assert_eq!(by_doc(2)["data"], signed[2].object["data"]);
        assert_eq!(by_doc(10)["spec"], signed[10].object["spec"]);
        assert_eq!(by_doc(8)["spec"]["replicas"], json!(2));
    }

    fn synthetic(render_yaml: &str, variables: Variables, waves: Vec<Wave>) -> Metadata {
        Metadata {
            chart: vec![],
            render: render_yaml.to_owned(),
            variables,
            migrations: Migrations {
                steps: vec![],
                upgrade_policy: Default::default(),
                waves,
            },
        }
    }

    fn rest(n: u32) -> Vec<Wave> {
        vec![Wave {
            name: "rest".into(),
            select: vec![],
            documents: (0..n).collect(),
        }]
    }

    fn no_variables() -> Variables {
        serde_json::from_value(
            json!({"releaseName": "r", "namespace": {"default": "ns", "slots": []}, "variables": []}),
        )
        .unwrap()
    }

    fn images(names: &[&str]) -> ImageMap {
        names
            .iter()
            .map(|n| (n.parse().unwrap(), format!("{PULL}/x@sha256:{}", "a".repeat(64))))
            .collect()
    }

    #[test]
    fn rewrites_every_container_list_of_every_workload_kind() {
        let yaml = r#"---
# Source: c/templates/all.yaml
apiVersion: batch/v1
kind: CronJob
metadata:
  name: cj
spec:
  jobTemplate:
    spec:
      template:
        spec:
          initContainers:
            - name: init
              image: quay.io/x/init:1
          containers:
            - name: main
              image: nginx:1.25
---
# Source: c/templates/pt.yaml
apiVersion: v1
kind: PodTemplate
metadata:
  name: pt
template:
  spec:
    containers:
      - name: c
        image: quay.io/x/app:1
    ephemeralContainers:
      - name: debug
        image: quay.io/x/debug:1
---
# Source: c/templates/ds.yaml
apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: ds
spec:
  template:
    spec:
      containers:
        - name: agent
          image: quay.io/x/app:1
"#;
        let metadata = synthetic(yaml, no_variables(), rest(3));
        let (manifest, _) = sample();
        let map = images(&[
            "quay.io/x/init:1",
            "docker.io/library/nginx:1.25",
            "quay.io/x/app:1",
            "quay.io/x/debug:1",
        ]);
        let r = render(&metadata, manifest, &BTreeMap::new(), "ns", &map).unwrap();
        let pull = format!("{PULL}/x@sha256:{}", "a".repeat(64));
        let mut strings = Vec::new();
        for o in &r.objects {
            collect_strings(&o.object, &mut Vec::new(), &mut strings);
        }
        let image_fields: Vec<&str> = strings
            .iter()
            .filter(|(p, _)| p.last().is_some_and(|l| l == "image"))
            .map(|(_, s)| *s)
            .collect();
        assert_eq!(image_fields.len(), 5);
        assert!(image_fields.iter().all(|s| *s == pull), "{image_fields:?}");
        // Install order: DaemonSet before CronJob; PodTemplate is not a listed kind.
        let kinds: Vec<&str> = r.objects.iter().map(|o| o.kind.as_str()).collect();
        assert_eq!(kinds, ["DaemonSet", "CronJob", "PodTemplate"]);
    }

    #[test]
    fn rewrites_declared_image_locations_once_and_names_unknown_ones() {
        let yaml = r#"---
# Source: c/templates/db.yaml
apiVersion: db.example.com/v1
kind: Database
metadata:
  name: db
spec:
  engines:
    - image: quay.io/x/db:1
    - image: quay.io/x/db:1
  backup:
    image: quay.io/x/backup:1
  pod:
    containers:
      - name: c
        image: quay.io/x/app:1
        args: ["--sidecar=quay.io/x/side:1", "--image=quay.io/x/side:1 --other=quay.io/x/db:1"]
        env:
          - name: HELPER
            value: "use quay.io/x/side:1 please"
          - name: OTHER
            value: quay.io/x/unknown:9
---
# Source: c/templates/other.yaml
apiVersion: other.example.com/v1
kind: Database
metadata:
  name: not-matched
spec:
  engines:
    - image: quay.io/x/not-in-bundle:1
"#;
        let mut manifest = sample().0.clone();
        manifest.image_locations = vec![ImageLocation {
            api_version: Some("db.example.com/v1".into()),
            kind: "Database".into(),
            pointers: vec!["/spec/engines/*/image".into(), "/spec/backup/image".into()],
            arg_patterns: vec!["--sidecar=(\\S+)".into(), "=(quay\\.io/\\S+)".into()],
            env_patterns: vec!["(quay\\.io/x/[a-z]+:[0-9]+)".into()],
        }];
        let metadata = synthetic(yaml, no_variables(), rest(2));
        let map = images(&["quay.io/x/db:1", "quay.io/x/backup:1", "quay.io/x/side:1"]);
        let err = render(&metadata, &manifest, &BTreeMap::new(), "ns", &map).unwrap_err();
        assert_eq!(
            err.problems,
            vec![RenderProblem::UnknownImage {
                object: "Database db (document 0)".into(),
                at: ImageAt::Field {
                    pointer: "/spec/pod/containers/0/env/1/value".into()
                },
                image: "quay.io/x/unknown:9".into(),
            }]
        );
        let map = images(&[
            "quay.io/x/db:1",
            "quay.io/x/backup:1",
            "quay.io/x/side:1",
            "quay.io/x/unknown:9",
        ]);
        let r = render(&metadata, &manifest, &BTreeMap::new(), "ns", &map).unwrap();
        let pull = format!("{PULL}/x@sha256:{}", "a".repeat(64));
        let db = &r.objects[0].object["spec"];
        assert_eq!(db["engines"][0]["image"], pull);
        assert_eq!(db["engines"][1]["image"], pull);
        assert_eq!(db["backup"]["image"], pull);
        let c = &db["pod"]["containers"][0];
        assert_eq!(
            c["image"], "quay.io/x/app:1",
            "a custom kind's containers are not a pod spec"
        );
        assert_eq!(c["args"][0], format!("--sidecar={pull}"));
        assert_eq!(c["args"][1], format!("--image={pull} --other={pull}"));
        assert_eq!(c["env"][0]["value"], format!("use {pull} please"));
        assert_eq!(c["env"][1]["value"], pull);
        // Another group's kind of the same name is not a declared location.
        assert_eq!(
            r.objects[1].object["spec"]["engines"][0]["image"],
            "quay.io/x/not-in-bundle:1"
        );
    }

    #[test]
    fn bad_image_location_patterns_are_refused() {
        let locations = vec![ImageLocation {
            api_version: None,
            kind: "X".into(),
            pointers: vec!["spec/image".into()],
            arg_patterns: vec!["(".into(), "--no-group=\\S+".into()],
            env_patterns: vec![],
        }];
        let map = ImageMap::new();
        let err = ImageRewriter::new(&map, &locations).err().unwrap();
        assert_eq!(err.problems.len(), 3, "{err}");
        assert!(err.to_string().contains("it has no capture group 1"), "{err}");
    }

    #[test]
    fn substring_templates_fill_every_owner_and_keep_dollars() {
        let yaml = r#"---
# Source: c/templates/cm.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: cm
data:
  url: "$HOME https://api.example.com:8443/ns/default-ns"
  port: "8443"
  secret: ""
---
# Source: c/templates/s.yaml
apiVersion: v1
kind: Secret
metadata:
  name: s
data:
  dsn: dXNlcj1hZG1pbiBob3N0PWRlZmF1bHQtbnM=
"#;
        let variables: Variables = serde_json::from_value(json!({
            "releaseName": "r",
            "namespace": {"default": "default-ns", "slots": [
                {"document": 0, "object": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm"}, "pointer": "/data/url",
                 "form": {"kind": "substring", "template": "$$HOME https://${host}:${port}/ns/${namespace}"}},
                {"document": 1, "object": {"apiVersion": "v1", "kind": "Secret", "name": "s"}, "pointer": "/data/dsn",
                 "form": {"kind": "substring", "template": "user=${user} host=${namespace}"}, "base64": true}
            ]},
            "variables": [
                {"declaration": {"name": "host", "type": "string", "valuesPath": "host"}, "slots": [
                    {"document": 0, "object": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm"}, "pointer": "/data/url",
                     "form": {"kind": "substring", "template": "$$HOME https://${host}:${port}/ns/${namespace}"}}]},
                {"declaration": {"name": "port", "type": "integer", "valuesPath": "port"}, "slots": [
                    {"document": 0, "object": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm"}, "pointer": "/data/url",
                     "form": {"kind": "substring", "template": "$$HOME https://${host}:${port}/ns/${namespace}"}},
                    {"document": 0, "object": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm"}, "pointer": "/data/port",
                     "form": {"kind": "whole"}}]},
                {"declaration": {"name": "user", "type": "string", "valuesPath": "user"}, "slots": [
                    {"document": 1, "object": {"apiVersion": "v1", "kind": "Secret", "name": "s"}, "pointer": "/data/dsn",
                     "form": {"kind": "substring", "template": "user=${user} host=${namespace}"}, "base64": true}]}
            ]
        }))
        .unwrap();
        let metadata = synthetic(yaml, variables, rest(2));
        let (manifest, _) = sample();
        // `host` has no value: it keeps the signed render's text.
        let values = BTreeMap::from([
            (name("port"), VariableValue::Integer(9443)),
            (name("user"), VariableValue::String("root".into())),
        ]);
        let r = render(&metadata, manifest, &values, "prod", &ImageMap::new()).unwrap();
        let cm = &r.objects.iter().find(|o| o.kind == "ConfigMap").unwrap().object;
        assert_eq!(cm["data"]["url"], "$HOME https://api.example.com:9443/ns/prod");
        assert_eq!(cm["data"]["port"], "9443", "a quoted integer slot stays a string");
        let s = &r.objects.iter().find(|o| o.kind == "Secret").unwrap().object;
        assert_eq!(s["data"]["dsn"], b64("user=root host=prod"));
    }

    #[test]
    fn inconsistent_slots_and_waves_are_reported() {
        let yaml = "---\n# Source: c/templates/cm.yaml\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: \"x-1\"\n";
        let variables: Variables = serde_json::from_value(json!({
            "releaseName": "r",
            "namespace": {"default": "ns", "slots": []},
            "variables": [
                {"declaration": {"name": "a", "type": "string", "valuesPath": "a"}, "slots": [
                    {"document": 0, "object": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm"}, "pointer": "/data/a",
                     "form": {"kind": "substring", "template": "y-${a}"}},
                    {"document": 0, "object": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm"}, "pointer": "/data/missing",
                     "form": {"kind": "whole"}},
                    {"document": 3, "object": {"apiVersion": "v1", "kind": "ConfigMap", "name": "cm"}, "pointer": "/data/a",
                     "form": {"kind": "whole"}}]}
            ]
        }))
        .unwrap();
        let waves = vec![
            Wave {
                name: "one".into(),
                select: vec![],
                documents: vec![5],
            },
            Wave {
                name: "rest".into(),
                select: vec![],
                documents: vec![],
            },
        ];
        let metadata = synthetic(yaml, variables, waves);
        let values = BTreeMap::from([(name("a"), VariableValue::String("v".into()))]);
        let err = render(&metadata, &sample().0, &values, "ns", &ImageMap::new()).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.problems.len(), 5, "{text}");
        for part in [
            "a: the signed value at /data/a of ConfigMap cm (document 0) does not fit the slot (it is not the template filled in)",
            "a: ConfigMap cm (document 0) has no /data/missing for its slot",
            "a: a slot is in document 3, which the render does not have",
            "wave \"one\" lists document 5, which the render does not have",
            "ConfigMap cm (document 0) is in no wave of sealift/migrations.json",
        ] {
            assert!(text.contains(part), "{part}\n{text}");
        }
    }

    #[test]
    fn parses_hook_annotations_strictly() {
        let hook = |annotations: Value| parse_hook(&json!({"metadata": {"annotations": annotations}}), "Job j");
        assert_eq!(hook(json!({})).unwrap(), None);
        assert_eq!(
            hook(json!({"helm.sh/hook": " post-install , Post-Upgrade,post-install"})).unwrap(),
            Some(HelmHook {
                events: vec![HookEvent::PostInstall, HookEvent::PostUpgrade],
                weight: 0,
                delete_policies: vec![HookDeletePolicy::BeforeHookCreation],
            })
        );
        assert_eq!(
            hook(json!({"helm.sh/hook": "pre-delete,post-delete,pre-rollback,post-rollback", "helm.sh/hook-weight": " 10 ",
                        "helm.sh/hook-delete-policy": "hook-failed"}))
            .unwrap()
            .unwrap(),
            HelmHook {
                events: vec![
                    HookEvent::PreDelete,
                    HookEvent::PostDelete,
                    HookEvent::PreRollback,
                    HookEvent::PostRollback
                ],
                weight: 10,
                delete_policies: vec![HookDeletePolicy::HookFailed],
            }
        );
        let err = hook(
            json!({"helm.sh/hook": "pre-install,crd-install", "helm.sh/hook-weight": "high",
                              "helm.sh/hook-delete-policy": "never"}),
        )
        .unwrap_err();
        let text: Vec<String> = err.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(
            text[0].starts_with(
                "Job j: annotation helm.sh/hook \"pre-install,crd-install\": \"crd-install\" is not a hook event"
            ),
            "{text:?}"
        );
        assert_eq!(
            text[1],
            "Job j: annotation helm.sh/hook-weight \"high\": not an integer"
        );
        assert!(text[2].contains("\"never\" is not before-hook-creation"), "{text:?}");
    }

    #[test]
    fn hooks_sort_by_weight_then_name_and_unknown_kinds_alphabetically() {
        let obj = |kind: &str, name: &str, stage: Stage, weight: Option<i32>| RenderedObject {
            document: 0,
            source: String::new(),
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: None,
            name: name.into(),
            wave: "rest".into(),
            stage,
            hook: weight.map(|weight| HelmHook {
                events: vec![HookEvent::PreInstall],
                weight,
                delete_policies: vec![],
            }),
            object: Value::Null,
        };
        let mut objects = vec![
            obj("Job", "b", Stage::Hook, Some(1)),
            obj("Job", "z", Stage::Hook, Some(-1)),
            obj("Zeta", "1", Stage::Wave(0), None),
            obj("ConfigMap", "a", Stage::Hook, Some(1)),
            obj("Alpha", "2", Stage::Wave(0), None),
            obj("Service", "3", Stage::Wave(0), None),
            obj("Zeta", "0", Stage::Wave(0), None),
            obj("Namespace", "n", Stage::Namespace, None),
            obj("Secret", "s", Stage::Wave(1), None),
        ];
        sort_for_apply(&mut objects);
        let names: Vec<&str> = objects.iter().map(|o| o.name.as_str()).collect();
        assert_eq!(names, ["n", "3", "2", "1", "0", "s", "z", "a", "b"]);
    }

    fn tricky_string() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            Just("\n".to_owned()),
            Just("\r\n".to_owned()),
            Just(": ".to_owned()),
            Just("---".to_owned()),
            Just("\n---\n".to_owned()),
            Just("...".to_owned()),
            Just("{}".to_owned()),
            Just("{{".to_owned()),
            Just("}}".to_owned()),
            Just("${hostname}".to_owned()),
            Just("$$".to_owned()),
            Just("&a".to_owned()),
            Just("*a".to_owned()),
            Just("!!str".to_owned()),
            Just("!!binary".to_owned()),
            Just("<<".to_owned()),
            Just("#".to_owned()),
            Just(" # ".to_owned()),
            Just("'".to_owned()),
            Just("\"".to_owned()),
            Just("\\".to_owned()),
            Just("\\n".to_owned()),
            Just("- ".to_owned()),
            Just("? ".to_owned()),
            Just("|".to_owned()),
            Just(">".to_owned()),
            Just("%YAML".to_owned()),
            Just("@".to_owned()),
            Just("`".to_owned()),
            Just(" ".to_owned()),
            Just("\t".to_owned()),
            Just("true".to_owned()),
            Just("null".to_owned()),
            Just("~".to_owned()),
            Just("yes".to_owned()),
            Just("0x1F".to_owned()),
            Just("1e3".to_owned()),
            Just("0o17".to_owned()),
            Just(".inf".to_owned()),
            Just("12".to_owned()),
            Just("🚀".to_owned()),
            Just("👩‍👩‍👧".to_owned()),
            Just("שלום".to_owned()),
            Just("مرحبا".to_owned()),
            Just("\u{202e}".to_owned()),
            Just("\u{200b}".to_owned()),
            Just("\u{85}".to_owned()),
            Just("\u{2028}".to_owned()),
            Just("\u{feff}".to_owned()),
            Just("\u{7f}".to_owned()),
            "[a-z0-9.]{1,6}",
            any::<char>().prop_map(String::from),
        ];
        prop_oneof![
            3 => proptest::collection::vec(fragment, 0..10).prop_map(|v| v.concat()),
            1 => any::<String>(),
            1 => Just(String::new()),
        ]
    }

    /// Serializes as the engine sends objects (YAML through the serializer) and as it stores
    /// them (JSON), and parses each back.
    fn round_trips(object: &Value) -> Vec<Value> {
        let yaml = serde_saphyr::to_string(object).unwrap();
        let from_yaml: Value = serde_saphyr::from_str(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let from_json: Value = serde_json::from_str(&serde_json::to_string(object).unwrap()).unwrap();
        vec![from_yaml, from_json]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn any_string_lands_exactly_at_its_slots_and_nowhere_else(s in tricky_string()) {
            let (manifest, metadata) = sample();
            let images = image_map(manifest);
            let values = site_values(&s, &s);
            let r = render(metadata, manifest, &values, "sample", &images).unwrap();
            let signed = signed_documents(&metadata.render).unwrap();
            for o in &r.objects {
                let mut expected = signed[o.document as usize].object.clone();
                match o.document {
                    // Secret: base64 of the text, whole.
                    1 => expected["data"]["admin-password"] = json!(b64(&s)),
                    // ConfigMap: substring slot.
                    2 => expected["data"]["API_URL"] = json!(format!("https://{s}/api")),
                    // Ingress: whole string slot.
                    10 => expected["spec"]["rules"][0]["host"] = json!(s),
                    _ => continue,
                }
                for parsed in round_trips(&o.object) {
                    prop_assert_eq!(&parsed, &expected, "document {}", o.document);
                }
            }
            let secret = &r.objects.iter().find(|o| o.document == 1).unwrap().object;
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(secret["data"]["admin-password"].as_str().unwrap())
                .unwrap();
            prop_assert_eq!(String::from_utf8(decoded).unwrap(), s);
        }
    }
}
