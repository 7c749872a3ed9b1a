//! The simulated cluster: served kinds, the store, and the generic REST operations every
//! kind shares (get, list, create, update, patch, apply, delete with propagation and
//! finalizers, garbage collection).

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, Hasher};

use serde_json::{Value, json};

use crate::access::AccessRule;
use crate::apply::{ApplyOptions, apply};
use crate::fields::{BuiltinSchema, CrdSchema, MergeSchema};
use crate::kinds::{ResourceKind, Tier, builtin_kinds, kinds_from_crd};
use crate::managed;
use crate::schema::{self, UnknownField};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::status::{ApiError, group_resource, success_status};
use crate::store::{ObjectKey, Store};
use crate::{defaults, validation};

const CRD_GROUP: &str = "apiextensions.k8s.io";
const CRD_RESOURCE: &str = "customresourcedefinitions";

/// `fieldValidation`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// Query options of a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_manager: Option<String>,
    pub field_validation: FieldValidation,
    pub force: bool,
}

/// `propagationPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

/// A patch body and how to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

/// A successful answer: HTTP code, body and `Warning` headers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub code: u16,
    pub body: Value,
    pub warnings: Vec<String>,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Self {
            code: 200,
            body,
            warnings: Vec::new(),
        }
    }
}

/// Options of a LIST.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// The whole simulated cluster behind one lock.
#[derive(Debug)]
pub struct Cluster {
    pub store: Store,
    builtins: Vec<ResourceKind>,
    custom: Vec<ResourceKind>,
    next_ip: u32,
    counter: u64,
    seed: u64,
    pub access_rules: Vec<AccessRule>,
    /// Container logs by (namespace, pod, container).
    pub logs: BTreeMap<(String, String, String), String>,
}

pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| jiff::Timestamp::now().to_string())
}

impl Cluster {
    pub fn new(history_limit: usize, access_rules: Vec<AccessRule>) -> Self {
        let mut cluster = Self {
            store: Store::new(history_limit),
            builtins: builtin_kinds(),
            custom: Vec::new(),
            next_ip: 10,
            counter: 0,
            seed: std::collections::hash_map::RandomState::new().build_hasher().finish(),
            access_rules,
            logs: BTreeMap::new(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Some(kind) = cluster.kind_by_resource("", "v1", "namespaces") {
                // Built-in namespaces always validate.
                let _ = cluster.create(&kind, None, body, &WriteOptions::default());
            }
        }
        cluster
    }

    // ---- kinds -------------------------------------------------------------------------

    /// Every served kind: built-ins, then custom resources of Established CRDs.
    pub fn kinds(&self) -> impl Iterator<Item = &ResourceKind> {
        self.builtins.iter().chain(self.custom.iter())
    }

    pub fn kind_by_resource(&self, group: &str, version: &str, resource: &str) -> Option<ResourceKind> {
        self.kinds()
            .find(|k| k.group == group && k.version == version && k.plural == resource)
            .cloned()
    }

    /// The preferred served version of a group-kind.
    pub fn kind_by_gk(&self, group: &str, kind: &str) -> Option<ResourceKind> {
        self.kinds().find(|k| k.group == group && k.kind == kind).cloned()
    }

    fn refresh_custom_kinds(&mut self) {
        self.custom = self
            .store
            .list(CRD_GROUP, CRD_RESOURCE, None)
            .flat_map(|(_, crd)| kinds_from_crd(crd))
            .collect();
    }

    fn merge_schema(kind: &ResourceKind) -> Box<dyn MergeSchema + '_> {
        if kind.tier == Tier::Custom {
            Box::new(CrdSchema {
                schema: kind.schema.as_ref(),
            })
        } else {
            Box::new(BuiltinSchema {
                kind: kind.kind.clone(),
            })
        }
    }

    // ---- identities --------------------------------------------------------------------

    fn next_random(&mut self) -> u64 {
        self.counter += 1;
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(self.seed ^ self.counter);
        h.finish()
    }

    fn new_uid(&mut self) -> String {
        let a = self.next_random();
        let b = self.next_random();
        let hex = format!("{a:016x}{b:016x}");
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.next_random();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    // ---- reads -------------------------------------------------------------------------

    fn key(kind: &ResourceKind, namespace: Option<&str>, name: &str) -> ObjectKey {
        let ns = if kind.namespaced {
            namespace.unwrap_or("default")
        } else {
            ""
        };
        ObjectKey::new(&kind.group, &kind.plural, ns, name)
    }

    /// An object as served at the kind's version.
    pub fn present(kind: &ResourceKind, object: &Value) -> Value {
        let mut o = object.clone();
        o["apiVersion"] = json!(kind.api_version());
        o["kind"] = json!(kind.kind);
        o
    }

    pub fn get(&self, kind: &ResourceKind, namespace: Option<&str>, name: &str) -> Result<Value, ApiError> {
        self.store
            .get(&Self::key(kind, namespace, name))
            .map(|o| Self::present(kind, o))
            .ok_or_else(|| ApiError::not_found(&kind.group, &kind.plural, name))
    }

    pub fn list(&self, kind: &ResourceKind, namespace: Option<&str>, opts: &ListOptions) -> Result<Value, ApiError> {
        let rv = self.store.resource_version();
        let (after, snapshot_rv) = match &opts.continue_token {
            Some(token) => {
                let (rv_text, key) = token
                    .split_once(':')
                    .ok_or_else(|| ApiError::bad_request(format!("continue key is not valid: {token}")))?;
                let token_rv: u64 = rv_text
                    .parse()
                    .map_err(|_| ApiError::bad_request(format!("continue key is not valid: {token}")))?;
                if token_rv < self.store.oldest_watchable() {
                    return Err(ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ));
                }
                (Some(key.to_string()), token_rv)
            }
            None => (None, rv),
        };
        let mut matching: Vec<Value> = self
            .store
            .list(&kind.group, &kind.plural, namespace)
            .filter(|(k, _)| {
                after
                    .as_ref()
                    .is_none_or(|a| format!("{}/{}", k.namespace, k.name).as_str() > a.as_str())
            })
            .map(|(_, o)| o)
            .filter(|o| opts.labels.matches(o) && opts.fields.matches(o))
            .map(|o| Self::present(kind, o))
            .collect();
        let mut metadata = json!({"resourceVersion": snapshot_rv.to_string()});
        if let Some(limit) = opts.limit.filter(|l| *l > 0 && *l < matching.len()) {
            let rest = matching.split_off(limit);
            if let Some(last) = matching.last() {
                let ns = last["metadata"]["namespace"].as_str().unwrap_or_default();
                let name = last["metadata"]["name"].as_str().unwrap_or_default();
                metadata["continue"] = json!(format!("{snapshot_rv}:{ns}/{name}"));
                metadata["remainingItemCount"] = json!(rest.len());
            }
        }
        Ok(json!({
            "kind": format!("{}List", kind.kind),
            "apiVersion": kind.api_version(),
            "metadata": metadata,
            "items": matching,
        }))
    }

    // ---- writes ------------------------------------------------------------------------

    fn check_namespace(&self, kind: &ResourceKind, namespace: &str) -> Result<(), ApiError> {
        if !kind.namespaced {
            return Ok(());
        }
        match self.store.get(&ObjectKey::new("", "namespaces", "", namespace)) {
            None => Err(ApiError::not_found("", "namespaces", namespace)),
            Some(ns) if !ns["metadata"]["deletionTimestamp"].is_null() => Err(ApiError::forbidden(format!(
                "{} \"{}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                group_resource(&kind.group, &kind.plural),
                namespace
            ))),
            Some(_) => Ok(()),
        }
    }

    /// Validates the schema of the body: unknown fields refused under Strict, pruned and
    /// warned about otherwise.
    fn check_fields(
        kind: &ResourceKind,
        body: &mut Value,
        validation: FieldValidation,
    ) -> Result<Vec<String>, ApiError> {
        let unknown: Vec<UnknownField> = schema::unknown_fields(kind, body);
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        if validation == FieldValidation::Strict {
            let list: Vec<String> = unknown
                .iter()
                .map(|u| format!("unknown field \"{}\"", u.path))
                .collect();
            return Err(ApiError::bad_request(format!(
                "strict decoding error: {}",
                list.join(", ")
            )));
        }
        for u in unknown.iter().rev() {
            schema::remove(body, &u.segments);
        }
        Ok(if validation == FieldValidation::Warn {
            unknown
                .iter()
                .map(|u| format!("unknown field \"{}\"", u.path))
                .collect()
        } else {
            Vec::new()
        })
    }

    fn check_identity(kind: &ResourceKind, body: &Value) -> Result<(), ApiError> {
        let api_version = body["apiVersion"].as_str().unwrap_or_default();
        let body_kind = body["kind"].as_str().unwrap_or_default();
        if (!api_version.is_empty() && api_version != kind.api_version())
            || (!body_kind.is_empty() && body_kind != kind.kind)
        {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({api_version}) does not match the expected API version ({})",
                kind.api_version()
            )));
        }
        Ok(())
    }

    /// The common last step of every write: masks, generation, defaults, validation,
    /// precondition, store.
    #[allow(clippy::too_many_arguments)]
    fn commit(
        &mut self,
        kind: &ResourceKind,
        key: ObjectKey,
        old: Option<Value>,
        mut new: Value,
        subresource: &str,
        opts: &WriteOptions,
        tracking: Tracking<'_>,
    ) -> Result<Value, ApiError> {
        let name = key.name.clone();
        if !new.is_object() {
            return Err(ApiError::bad_request("the body of the request is not a JSON object"));
        }
        new["apiVersion"] = json!(kind.api_version());
        new["kind"] = json!(kind.kind);
        if !new["metadata"].is_object() {
            new["metadata"] = json!({});
        }
        let time = now();
        match &old {
            Some(old) => {
                // Identity and server-owned metadata never change through a write.
                for field in [
                    "name",
                    "namespace",
                    "uid",
                    "creationTimestamp",
                    "deletionTimestamp",
                    "deletionGracePeriodSeconds",
                    "generation",
                ] {
                    match old["metadata"].get(field) {
                        Some(v) => new["metadata"][field] = v.clone(),
                        None => {
                            if let Some(m) = new["metadata"].as_object_mut() {
                                m.shift_remove(field);
                            }
                        }
                    }
                }
                if subresource == "status" {
                    let status = new["status"].clone();
                    let meta = new["metadata"].clone();
                    new = old.clone();
                    new["status"] = status;
                    new["metadata"]["managedFields"] = meta["managedFields"].clone();
                } else if kind.status {
                    new["status"] = old["status"].clone();
                }
                if new["status"].is_null()
                    && let Some(m) = new.as_object_mut()
                {
                    m.shift_remove("status");
                }
            }
            None => {
                let uid = self.new_uid();
                let meta = &mut new["metadata"];
                meta["uid"] = json!(uid);
                meta["creationTimestamp"] = json!(time);
                if kind.namespaced {
                    meta["namespace"] = json!(key.namespace);
                } else if let Some(m) = meta.as_object_mut() {
                    m.shift_remove("namespace");
                }
                meta["name"] = json!(name);
                if kind.status
                    && let Some(m) = new.as_object_mut()
                {
                    m.shift_remove("status");
                }
            }
        }
        if let Some(m) = new["metadata"].as_object_mut() {
            m.shift_remove("resourceVersion");
            m.shift_remove("selfLink");
        }

        if kind.tier != Tier::Custom {
            let mut allocate = || {
                self.next_ip += 1;
                format!("10.96.{}.{}", self.next_ip / 250, self.next_ip % 250 + 1)
            };
            defaults::apply(&kind.kind, &mut new, &mut allocate);
            if kind.kind == "Job" && old.is_none() {
                job_selector(&mut new);
            }
        }

        if kind.tier == Tier::Custom {
            if let Some(schema) = &kind.schema {
                schema::apply_defaults(schema, &mut new);
            }
        } else {
            crate::typed::check(kind, &new)?;
        }

        // Validation.
        let mut causes = Vec::new();
        if let (Tier::Custom, Some(schema)) = (kind.tier, &kind.schema) {
            causes.extend(schema::type_errors(schema, &new));
        }
        if old.is_none() {
            causes.extend(validation::check_name(&kind.kind, &name));
        }
        if kind.tier != Tier::Custom {
            causes.extend(validation::check_object(&kind.kind, &new));
            if let Some(old) = &old {
                causes.extend(validation::check_immutable(&kind.kind, old, &new));
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(&kind.group, &kind.kind, &name, &causes));
        }

        // Generation bumps on spec changes only.
        let spec_view = |o: &Value| {
            let mut o = o.clone();
            if let Some(m) = o.as_object_mut() {
                m.shift_remove("metadata");
                m.shift_remove("apiVersion");
                m.shift_remove("kind");
                if kind.status {
                    m.shift_remove("status");
                }
            }
            o
        };
        let generation = match &old {
            None => 1,
            Some(old) => {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                if spec_view(old) != spec_view(&new) { g + 1 } else { g }
            }
        };
        new["metadata"]["generation"] = json!(generation);

        // Ownership.
        let schema = Self::merge_schema(kind);
        match tracking {
            Tracking::Update {
                manager,
                request_managed,
            } => {
                let entries = match request_managed {
                    Some(entries) => entries,
                    None => old.as_ref().map(managed::read).unwrap_or_default(),
                };
                managed::record_update(
                    old.as_ref(),
                    &mut new,
                    entries,
                    manager,
                    &kind.api_version(),
                    subresource,
                    &time,
                    schema.as_ref(),
                );
            }
            Tracking::Applied => {
                let mut entries = managed::read(&new);
                managed::prune_missing(&new, &mut entries, schema.as_ref());
                managed::write(&mut new, &entries);
            }
        }
        drop(schema);

        if opts.dry_run {
            if let Some(old) = &old {
                new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
            }
            return Ok(new);
        }

        // Finalizers all gone on an object being deleted: it goes away now.
        if old.is_some()
            && !new["metadata"]["deletionTimestamp"].is_null()
            && new["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty())
        {
            let gone = self.store.remove(&key).unwrap_or(new);
            self.after_removal(&key);
            self.settle();
            return Ok(Self::present(kind, &gone));
        }

        if let Some(old) = &old
            && without_times(old) == without_times(&new)
        {
            // A no-op write keeps the resourceVersion, as on a real server.
            return Ok(Self::present(kind, old));
        }
        let stored = self.store.put(key.clone(), new);
        if key.group == CRD_GROUP && key.resource == CRD_RESOURCE {
            self.establish_crd(&key);
            self.refresh_custom_kinds();
        }
        self.settle();
        let latest = self.store.get(&key).cloned().unwrap_or(stored);
        Ok(Self::present(kind, &latest))
    }

    /// The CRD "controller": accept the names and mark it Established at once.
    fn establish_crd(&mut self, key: &ObjectKey) {
        let Some(crd) = self.store.get(key).cloned() else {
            return;
        };
        if crd["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Established" && c["status"] == "True"))
        {
            return;
        }
        let mut crd = crd;
        let time = now();
        let stored: Vec<Value> = crd["spec"]["versions"]
            .as_array()
            .map(|vs| {
                vs.iter()
                    .filter(|v| v["storage"] == true)
                    .map(|v| v["name"].clone())
                    .collect()
            })
            .unwrap_or_default();
        crd["status"] = json!({
            "acceptedNames": crd["spec"]["names"].clone(),
            "conditions": [
                {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": time},
                {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": time},
            ],
            "storedVersions": stored,
        });
        self.store.put(key.clone(), crd);
    }

    pub fn create(
        &mut self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<Reply, ApiError> {
        if kind.create_only {
            return Ok(Reply {
                code: 201,
                body: self.review(kind, body),
                warnings: Vec::new(),
            });
        }
        Self::check_identity(kind, &body)?;
        let warnings = Self::check_fields(kind, &mut body, opts.field_validation)?;
        let mut name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if name.is_empty()
            && let Some(prefix) = body["metadata"]["generateName"].as_str()
        {
            name = format!("{prefix}{}", self.random_suffix());
        }
        if let (Some(ns), Some(body_ns)) = (namespace, body["metadata"]["namespace"].as_str())
            && kind.namespaced
            && ns != body_ns
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let key = Self::key(kind, namespace, &name);
        if kind.namespaced {
            self.check_namespace(kind, &key.namespace)?;
        }
        if !name.is_empty() && self.store.get(&key).is_some() {
            return Err(ApiError::already_exists(&kind.group, &kind.plural, &name));
        }
        let manager = opts.field_manager.clone().unwrap_or_else(|| "unknown".to_string());
        let request_managed = None;
        let created = self.commit(
            kind,
            key,
            None,
            body,
            "",
            opts,
            Tracking::Update {
                manager: &manager,
                request_managed,
            },
        )?;
        Ok(Reply {
            code: 201,
            body: created,
            warnings,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        name: &str,
        subresource: &str,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<Reply, ApiError> {
        Self::check_identity(kind, &body)?;
        let warnings = Self::check_fields(kind, &mut body, opts.field_validation)?;
        if let Some(body_name) = body["metadata"]["name"].as_str()
            && body_name != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let key = Self::key(kind, namespace, name);
        let Some(old) = self.store.get(&key).cloned() else {
            return Err(ApiError::not_found(&kind.group, &kind.plural, name));
        };
        if let Some(rv) = body["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(
                &kind.group,
                &kind.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let manager = opts.field_manager.clone().unwrap_or_else(|| "unknown".to_string());
        let request_managed = body["metadata"]["managedFields"]
            .as_array()
            .filter(|a| !a.is_empty())
            .map(|_| managed::read(&body));
        let updated = self.commit(
            kind,
            key,
            Some(old),
            body,
            subresource,
            opts,
            Tracking::Update {
                manager: &manager,
                request_managed,
            },
        )?;
        Ok(Reply {
            code: 200,
            body: updated,
            warnings,
        })
    }

    #[allow(clippy::too_many_arguments)]
    pub fn patch(
        &mut self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        name: &str,
        subresource: &str,
        patch_type: PatchType,
        patch: Value,
        opts: &WriteOptions,
    ) -> Result<Reply, ApiError> {
        let key = Self::key(kind, namespace, name);
        let old = self.store.get(&key).cloned().map(|o| Self::present(kind, &o));
        if patch_type == PatchType::Apply {
            return self.apply(kind, key, old, subresource, patch, opts);
        }
        if opts.force {
            return Err(ApiError::bad_request("force may not be specified for non-apply patch"));
        }
        let Some(old) = old else {
            return Err(ApiError::not_found(&kind.group, &kind.plural, name));
        };
        let mut patched = match patch_type {
            PatchType::Merge => {
                let mut target = old.clone();
                json_patch::merge(&mut target, &patch);
                target
            }
            PatchType::Json => {
                let ops: json_patch::Patch = serde_json::from_value(patch)
                    .map_err(|e| ApiError::bad_request(format!("the JSON patch is not valid: {e}")))?;
                let mut target = old.clone();
                json_patch::patch(&mut target, &ops).map_err(|e| {
                    ApiError::new_invalid_patch(format!(
                        "the server rejected our request due to an error in our request: {e}"
                    ))
                })?;
                target
            }
            PatchType::Strategic | PatchType::Apply => {
                return Err(ApiError::unsupported_media_type(
                    "strategic merge patch is not simulated by kubesim; use application/merge-patch+json, application/json-patch+json or server-side apply",
                ));
            }
        };
        let warnings = Self::check_fields(kind, &mut patched, opts.field_validation)?;
        if let Some(rv) = patched["metadata"]["resourceVersion"].as_str()
            && rv != old["metadata"]["resourceVersion"].as_str().unwrap_or_default()
        {
            return Err(ApiError::conflict(
                &kind.group,
                &kind.plural,
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let manager = opts.field_manager.clone().unwrap_or_else(|| "unknown".to_string());
        let updated = self.commit(
            kind,
            key,
            Some(old),
            patched,
            subresource,
            opts,
            Tracking::Update {
                manager: &manager,
                request_managed: None,
            },
        )?;
        Ok(Reply {
            code: 200,
            body: updated,
            warnings,
        })
    }

    fn apply(
        &mut self,
        kind: &ResourceKind,
        key: ObjectKey,
        old: Option<Value>,
        subresource: &str,
        mut applied: Value,
        opts: &WriteOptions,
    ) -> Result<Reply, ApiError> {
        let Some(manager) = opts.field_manager.clone().filter(|m| !m.is_empty()) else {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml, requires fieldManager to be set",
            ));
        };
        if !applied.is_object() {
            return Err(ApiError::bad_request("the applied configuration is not an object"));
        }
        if applied["apiVersion"].as_str().is_none_or(str::is_empty)
            || applied["kind"].as_str().is_none_or(str::is_empty)
        {
            return Err(ApiError::bad_request(
                "invalid object type: apiVersion and kind must be set in an applied configuration",
            ));
        }
        Self::check_identity(kind, &applied)?;
        let body_name = applied["metadata"]["name"].as_str().unwrap_or_default();
        if body_name != key.name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({})",
                key.name
            )));
        }
        if let Some(ns) = applied["metadata"]["namespace"].as_str()
            && kind.namespaced
            && ns != key.namespace
        {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let warnings = Self::check_fields(kind, &mut applied, opts.field_validation)?;
        if old.is_none() {
            if subresource == "status" {
                return Err(ApiError::not_found(&kind.group, &kind.plural, &key.name));
            }
            self.check_namespace(kind, &key.namespace)?;
        }
        if let (Some(old), Some(rv)) = (&old, applied["metadata"]["resourceVersion"].as_str())
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(
                &kind.group,
                &kind.plural,
                &key.name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        let schema = Self::merge_schema(kind);
        let time = now();
        let api_version = kind.api_version();
        let aopts = ApplyOptions {
            manager: &manager,
            force: opts.force,
            api_version: &api_version,
            subresource,
            time: &time,
        };
        let merged = apply(old.as_ref(), &applied, &aopts, schema.as_ref())
            .map_err(|c| ApiError::apply_conflict(&kind.group, &kind.plural, &key.name, c.message, &c.causes))?;
        drop(schema);
        let created = old.is_none();
        let result = self.commit(kind, key, old, merged, subresource, opts, Tracking::Applied)?;
        Ok(Reply {
            code: if created { 201 } else { 200 },
            body: result,
            warnings,
        })
    }

    /// Deletes one object with a propagation policy; `202` with the object while
    /// finalizers or dependents hold it, `200` with a success Status when it is gone.
    pub fn delete(
        &mut self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        name: &str,
        propagation: Propagation,
        precondition_rv: Option<&str>,
        dry_run: bool,
    ) -> Result<Reply, ApiError> {
        let key = Self::key(kind, namespace, name);
        let Some(obj) = self.store.get(&key).cloned() else {
            return Err(ApiError::not_found(&kind.group, &kind.plural, name));
        };
        if let Some(rv) = precondition_rv
            && Some(rv) != obj["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(
                &kind.group,
                &kind.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    obj["metadata"]["resourceVersion"].as_str().unwrap_or_default()
                ),
            ));
        }
        if dry_run {
            return Ok(Reply::ok(Self::present(kind, &obj)));
        }
        match self.delete_key(&key, propagation) {
            Some(pending) => Ok(Reply {
                code: 202,
                body: Self::present(kind, &pending),
                warnings: Vec::new(),
            }),
            None => Ok(Reply::ok(success_status(
                &kind.group,
                &kind.plural,
                name,
                obj["metadata"]["uid"].as_str().unwrap_or_default(),
            ))),
        }
    }

    pub fn delete_collection(
        &mut self,
        kind: &ResourceKind,
        namespace: Option<&str>,
        opts: &ListOptions,
        propagation: Propagation,
    ) -> Result<Reply, ApiError> {
        let list = self.list(
            kind,
            namespace,
            &ListOptions {
                limit: None,
                continue_token: None,
                ..opts.clone()
            },
        )?;
        for item in list["items"].as_array().cloned().unwrap_or_default() {
            let ns = item["metadata"]["namespace"].as_str().map(str::to_string);
            let name = item["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let key = Self::key(kind, ns.as_deref(), &name);
            self.delete_key(&key, propagation);
        }
        Ok(Reply::ok(list))
    }

    /// Starts deleting an object; returns it when it is still there (pending).
    fn delete_key(&mut self, key: &ObjectKey, propagation: Propagation) -> Option<Value> {
        let mut obj = self.store.get(key).cloned()?;
        let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        if propagation == Propagation::Orphan {
            self.orphan_dependents(&uid);
        }
        let deleting = !obj["metadata"]["deletionTimestamp"].is_null();
        let mut finalizers: Vec<Value> = obj["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
        if propagation == Propagation::Foreground && !deleting && self.has_dependents(&uid) {
            finalizers.push(json!("foregroundDeletion"));
        }
        let is_namespace = key.group.is_empty() && key.resource == "namespaces";
        if is_namespace {
            if !deleting {
                obj["metadata"]["deletionTimestamp"] = json!(now());
                obj["status"]["phase"] = json!("Terminating");
                let stored = self.store.put(key.clone(), obj);
                self.empty_namespace(&key.name);
                self.settle();
                return self
                    .store
                    .get(key)
                    .cloned()
                    .or(Some(stored))
                    .filter(|_| self.store.get(key).is_some());
            }
            return Some(obj);
        }
        if !finalizers.is_empty() {
            if !deleting {
                obj["metadata"]["deletionTimestamp"] = json!(now());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
                obj["metadata"]["finalizers"] = Value::Array(finalizers);
                self.store.put(key.clone(), obj);
                self.settle();
            }
            return self.store.get(key).cloned();
        }
        self.store.remove(key);
        self.after_removal(key);
        self.settle();
        None
    }

    fn after_removal(&mut self, key: &ObjectKey) {
        if key.group == CRD_GROUP && key.resource == CRD_RESOURCE {
            // Instances of a deleted CRD go with it.
            let group = key.name.split_once('.').map(|(_, g)| g.to_string()).unwrap_or_default();
            let plural = key.name.split_once('.').map(|(p, _)| p.to_string()).unwrap_or_default();
            let instances: Vec<ObjectKey> = self.store.list(&group, &plural, None).map(|(k, _)| k.clone()).collect();
            for k in instances {
                self.store.remove(&k);
            }
            self.refresh_custom_kinds();
        }
    }

    fn has_dependents(&self, uid: &str) -> bool {
        self.store.all().any(|(_, o)| owner_uids(o).contains(uid))
    }

    fn orphan_dependents(&mut self, uid: &str) {
        let dependents: Vec<(ObjectKey, Value)> = self
            .store
            .all()
            .filter(|(_, o)| owner_uids(o).contains(uid))
            .map(|(k, o)| (k.clone(), o.clone()))
            .collect();
        for (k, mut o) in dependents {
            if let Some(refs) = o["metadata"]["ownerReferences"].as_array_mut() {
                refs.retain(|r| r["uid"] != uid);
            }
            self.store.put(k, o);
        }
    }

    fn empty_namespace(&mut self, namespace: &str) {
        let keys: Vec<ObjectKey> = self
            .store
            .all()
            .filter(|(k, _)| k.namespace == namespace)
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.delete_key(&k, Propagation::Background);
        }
    }

    /// Garbage collection, foreground deletion and namespace finalization, run to a fixed
    /// point after every write.
    pub fn settle(&mut self) {
        for _ in 0..32 {
            let mut changed = false;
            let uids: BTreeSet<String> = self
                .store
                .all()
                .filter_map(|(_, o)| o["metadata"]["uid"].as_str().map(str::to_string))
                .collect();
            let deleting_foreground: BTreeSet<String> = self
                .store
                .all()
                .filter(|(_, o)| {
                    !o["metadata"]["deletionTimestamp"].is_null()
                        && o["metadata"]["finalizers"]
                            .as_array()
                            .is_some_and(|f| f.iter().any(|x| x == "foregroundDeletion"))
                })
                .filter_map(|(_, o)| o["metadata"]["uid"].as_str().map(str::to_string))
                .collect();
            // Dependents whose owners are all gone, or whose owner is deleting in the foreground.
            let doomed: Vec<(ObjectKey, Propagation)> = self
                .store
                .all()
                .filter(|(_, o)| o["metadata"]["deletionTimestamp"].is_null())
                .filter_map(|(k, o)| {
                    let owners = owner_uids(o);
                    if owners.is_empty() {
                        return None;
                    }
                    if owners.iter().all(|u| !uids.contains(u)) {
                        Some((k.clone(), Propagation::Background))
                    } else if owners.iter().any(|u| deleting_foreground.contains(u)) {
                        Some((k.clone(), Propagation::Foreground))
                    } else {
                        None
                    }
                })
                .collect();
            for (k, p) in doomed {
                self.delete_key_once(&k, p);
                changed = true;
            }
            // Foreground owners whose dependents are gone lose their finalizer.
            let finished: Vec<ObjectKey> = self
                .store
                .all()
                .filter(|(_, o)| {
                    o["metadata"]["uid"]
                        .as_str()
                        .is_some_and(|u| deleting_foreground.contains(u))
                })
                .filter(|(_, o)| {
                    let uid = o["metadata"]["uid"].as_str().unwrap_or_default();
                    !self.store.all().any(|(_, d)| owner_uids(d).contains(uid))
                })
                .map(|(k, _)| k.clone())
                .collect();
            for k in finished {
                if let Some(mut o) = self.store.get(&k).cloned() {
                    if let Some(f) = o["metadata"]["finalizers"].as_array_mut() {
                        f.retain(|x| x != "foregroundDeletion");
                    }
                    self.finish_or_put(&k, o);
                    changed = true;
                }
            }
            // Terminating namespaces with nothing left in them.
            let empty_namespaces: Vec<ObjectKey> = self
                .store
                .list("", "namespaces", None)
                .filter(|(_, o)| !o["metadata"]["deletionTimestamp"].is_null())
                .filter(|(k, _)| !self.store.all().any(|(ok, _)| ok.namespace == k.name))
                .map(|(k, _)| k.clone())
                .collect();
            for k in empty_namespaces {
                if let Some(mut o) = self.store.get(&k).cloned() {
                    o["spec"]["finalizers"] = json!([]);
                    self.finish_or_put(&k, o);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    fn delete_key_once(&mut self, key: &ObjectKey, propagation: Propagation) {
        let Some(mut obj) = self.store.get(key).cloned() else {
            return;
        };
        let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        let mut finalizers: Vec<Value> = obj["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
        if propagation == Propagation::Foreground && self.has_dependents(&uid) {
            finalizers.push(json!("foregroundDeletion"));
        }
        if finalizers.is_empty() {
            self.store.remove(key);
            self.after_removal(key);
        } else {
            obj["metadata"]["deletionTimestamp"] = json!(now());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            obj["metadata"]["finalizers"] = Value::Array(finalizers);
            self.store.put(key.clone(), obj);
        }
    }

    fn finish_or_put(&mut self, key: &ObjectKey, obj: Value) {
        let no_finalizers = obj["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty());
        if no_finalizers {
            self.store.remove(key);
            self.after_removal(key);
        } else {
            self.store.put(key.clone(), obj);
        }
    }

    fn review(&self, kind: &ResourceKind, body: Value) -> Value {
        let mut out = if kind.kind == "SelfSubjectAccessReview" {
            crate::access::review_access(&self.access_rules, body)
        } else {
            crate::access::review_rules(&self.access_rules, body)
        };
        out["apiVersion"] = json!(kind.api_version());
        out["kind"] = json!(kind.kind);
        if !out["metadata"].is_object() {
            out["metadata"] = json!({});
        }
        out["metadata"]["creationTimestamp"] = Value::Null;
        out
    }

    /// Writes by the simulator's own controllers: a status (or whole-object) update under
    /// a controller's field manager, skipped when nothing changes.
    pub fn controller_write(
        &mut self,
        group: &str,
        kind_name: &str,
        object: Value,
        subresource: &str,
        manager: &str,
    ) -> Option<Value> {
        let kind = self.kind_by_gk(group, kind_name)?;
        let ns = object["metadata"]["namespace"].as_str().map(str::to_string);
        let name = object["metadata"]["name"].as_str()?.to_string();
        let key = Self::key(&kind, ns.as_deref(), &name);
        let old = self.store.get(&key).cloned();
        let opts = WriteOptions {
            field_manager: Some(manager.to_string()),
            ..WriteOptions::default()
        };
        match old {
            Some(old) => {
                let mut comparable = old.clone();
                if subresource == "status" {
                    comparable["status"] = object["status"].clone();
                    if comparable == old {
                        return Some(old);
                    }
                }
                self.commit(
                    &kind,
                    key,
                    Some(old),
                    object,
                    subresource,
                    &opts,
                    Tracking::Update {
                        manager,
                        request_managed: None,
                    },
                )
                .ok()
            }
            None => self
                .commit(
                    &kind,
                    key,
                    None,
                    object,
                    "",
                    &opts,
                    Tracking::Update {
                        manager,
                        request_managed: None,
                    },
                )
                .ok(),
        }
    }

    /// Deletes on behalf of a controller (background propagation).
    pub fn controller_delete(&mut self, key: &ObjectKey) {
        self.delete_key(key, Propagation::Background);
    }

    /// The log of a pod's container (the first container when none is named).
    pub fn pod_log(&self, namespace: &str, pod: &str, container: Option<&str>) -> String {
        self.logs
            .iter()
            .find(|((ns, p, c), _)| ns == namespace && p == pod && container.is_none_or(|want| want == c))
            .map(|(_, text)| text.clone())
            .unwrap_or_default()
    }

    /// A copy of every object, for snapshots.
    pub fn objects(&self) -> BTreeMap<ObjectKey, Value> {
        self.store.all().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// How a write records field ownership.
enum Tracking<'a> {
    Update {
        manager: &'a str,
        request_managed: Option<Vec<managed::ManagedEntry>>,
    },
    Applied,
}

/// An object without its resourceVersion and managedFields timestamps, to detect no-ops.
fn without_times(object: &Value) -> Value {
    let mut o = object.clone();
    if let Some(meta) = o["metadata"].as_object_mut() {
        meta.shift_remove("resourceVersion");
    }
    if let Some(entries) = o["metadata"]["managedFields"].as_array_mut() {
        for e in entries {
            if let Some(m) = e.as_object_mut() {
                m.shift_remove("time");
            }
        }
    }
    o
}

fn owner_uids(object: &Value) -> BTreeSet<String> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r["uid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Jobs get a generated selector and template labels on create, as the Job strategy does.
fn job_selector(job: &mut Value) {
    if job["spec"]["manualSelector"] == true || !job["spec"]["selector"].is_null() {
        return;
    }
    let uid = job["metadata"]["uid"].clone();
    let name = job["metadata"]["name"].clone();
    job["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    let labels = &mut job["spec"]["template"]["metadata"]["labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels["batch.kubernetes.io/controller-uid"] = uid.clone();
    labels["batch.kubernetes.io/job-name"] = name.clone();
    labels["controller-uid"] = uid;
    labels["job-name"] = name;
}

impl ApiError {
    fn new_invalid_patch(message: String) -> Self {
        ApiError {
            code: 422,
            reason: "Invalid",
            message,
            details: None,
        }
    }
}
