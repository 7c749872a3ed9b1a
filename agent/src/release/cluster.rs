//! The cluster as the release engine sees it: objects by [`ObjectKey`], resolved through API
//! discovery, written with server-side apply under one field manager.

use std::collections::BTreeMap;
use std::sync::Mutex;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::{ApiCapabilities, Discovery, Scope};
use serde_json::Value;

use crate::release::history::ObjectKey;
use crate::release::resource::FIELD_MANAGER;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("the cluster does not serve {api_version} {kind}")]
    NotServed { api_version: String, kind: String },
    #[error("{object}: {message}")]
    Api { object: String, message: String },
    #[error("the Kubernetes API is unreachable: {0}")]
    Unreachable(String),
}

impl ClusterError {
    fn from_kube(object: &str, e: kube::Error) -> Self {
        match e {
            kube::Error::Api(s) => ClusterError::Api {
                object: object.to_owned(),
                message: format!("{} ({})", s.message, s.reason),
            },
            other => ClusterError::Unreachable(other.to_string()),
        }
    }
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

type Resolved = (ApiResource, ApiCapabilities);

/// A kube client with a cached discovery of what the cluster serves.
pub struct Cluster {
    client: kube::Client,
    resolved: Mutex<BTreeMap<(String, String), Resolved>>,
}

impl Cluster {
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            resolved: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Forgets what discovery said (after CRDs were created or changed).
    pub fn refresh_discovery(&self) {
        self.resolved.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<Resolved, ClusterError> {
        let key = (api_version.to_owned(), kind.to_owned());
        if let Some(r) = self.resolved.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return Ok(r.clone());
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let found = match kube::discovery::pinned_kind(&self.client, &gvk).await {
            Ok(r) => r,
            Err(kube::Error::Api(s)) if s.code == 404 => {
                return Err(ClusterError::NotServed {
                    api_version: api_version.to_owned(),
                    kind: kind.to_owned(),
                });
            }
            Err(e) if e.to_string().contains("not found") || e.to_string().contains("Missing") => {
                return Err(ClusterError::NotServed {
                    api_version: api_version.to_owned(),
                    kind: kind.to_owned(),
                });
            }
            Err(e) => return Err(ClusterError::Unreachable(e.to_string())),
        };
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, found.clone());
        Ok(found)
    }

    /// Whether a kind is namespaced (`None` when the cluster does not serve it).
    pub async fn is_namespaced(&self, api_version: &str, kind: &str) -> Result<Option<bool>, ClusterError> {
        match self.resolve(api_version, kind).await {
            Ok((_, caps)) => Ok(Some(caps.scope == Scope::Namespaced)),
            Err(ClusterError::NotServed { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn api(&self, key: &ObjectKey) -> Result<Api<DynamicObject>, ClusterError> {
        let (ar, caps) = self.resolve(&key.api_version, &key.kind).await?;
        Ok(if caps.scope == Scope::Namespaced {
            Api::namespaced_with(self.client.clone(), &key.namespace, &ar)
        } else {
            Api::all_with(self.client.clone(), &ar)
        })
    }

    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Value>, ClusterError> {
        let api = self.api(key).await?;
        match api.get(&key.name).await {
            Ok(o) => Ok(Some(serde_json::to_value(o).unwrap_or(Value::Null))),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(ClusterError::from_kube(&key.to_string(), e)),
        }
    }

    /// Server-side apply as `sealift-agent`; `force` takes fields other managers own.
    pub async fn apply(&self, object: &Value, force: bool, dry_run: bool) -> Result<Value, ClusterError> {
        let key = ObjectKey::of(object).ok_or_else(|| ClusterError::Api {
            object: "?".into(),
            message: "object without apiVersion, kind or name".into(),
        })?;
        let api = self.api(&key).await?;
        let mut params = PatchParams::apply(FIELD_MANAGER);
        params.force = force;
        params.dry_run = dry_run;
        let applied = api
            .patch(&key.name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| ClusterError::from_kube(&key.to_string(), e))?;
        Ok(serde_json::to_value(applied).unwrap_or(Value::Null))
    }

    /// Creates an object (for Jobs, which must not be re-applied with a new template).
    pub async fn create(&self, object: &Value) -> Result<Value, ClusterError> {
        let key = ObjectKey::of(object).ok_or_else(|| ClusterError::Api {
            object: "?".into(),
            message: "object without apiVersion, kind or name".into(),
        })?;
        let api = self.api(&key).await?;
        let obj: DynamicObject = serde_json::from_value(object.clone()).map_err(|e| ClusterError::Api {
            object: key.to_string(),
            message: e.to_string(),
        })?;
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..Default::default()
        };
        let created = api
            .create(&params, &obj)
            .await
            .map_err(|e| ClusterError::from_kube(&key.to_string(), e))?;
        Ok(serde_json::to_value(created).unwrap_or(Value::Null))
    }

    /// Deletes with background propagation; an absent object is fine.
    pub async fn delete(&self, key: &ObjectKey) -> Result<bool, ClusterError> {
        let api = self.api(key).await?;
        match api.delete(&key.name, &DeleteParams::background()).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(ClusterError::from_kube(&key.to_string(), e)),
        }
    }

    /// Objects of a kind in a namespace matching a label selector.
    pub async fn list(
        &self,
        api_version: &str,
        kind: &str,
        namespace: &str,
        selector: &str,
    ) -> Result<Vec<Value>, ClusterError> {
        let key = ObjectKey {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: namespace.to_owned(),
            name: String::new(),
        };
        let api = self.api(&key).await?;
        let list = api
            .list(&ListParams::default().labels(selector))
            .await
            .map_err(|e| ClusterError::from_kube(&format!("{kind} list"), e))?;
        Ok(list
            .items
            .into_iter()
            .map(|o| serde_json::to_value(o).unwrap_or(Value::Null))
            .collect())
    }

    /// Logs of a pod's first container (empty when unavailable).
    pub async fn pod_log(&self, namespace: &str, pod: &str) -> String {
        let api: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(self.client.clone(), namespace);
        api.logs(pod, &Default::default()).await.unwrap_or_default()
    }

    /// `git version` of the API server (`v1.33.0`).
    pub async fn server_version(&self) -> Result<String, ClusterError> {
        self.client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .map_err(|e| ClusterError::Unreachable(e.to_string()))
    }

    /// Asks the API server whether the agent may do `verb` on `resource`.
    pub async fn can_i(&self, verb: &str, group: &str, resource: &str, namespace: &str) -> Result<bool, ClusterError> {
        use k8s_openapi::api::authorization::v1::{
            ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
        };
        let api: Api<SelfSubjectAccessReview> = Api::all(self.client.clone());
        let review = SelfSubjectAccessReview {
            spec: SelfSubjectAccessReviewSpec {
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.to_owned()),
                    group: Some(group.to_owned()),
                    resource: Some(resource.to_owned()),
                    namespace: (!namespace.is_empty()).then(|| namespace.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answer = api
            .create(&PostParams::default(), &review)
            .await
            .map_err(|e| ClusterError::from_kube("SelfSubjectAccessReview", e))?;
        Ok(answer.status.map(|s| s.allowed).unwrap_or(false))
    }

    /// The plural resource name of a kind (for access reviews and RBAC snippets).
    pub async fn plural(&self, api_version: &str, kind: &str) -> Option<String> {
        self.resolve(api_version, kind).await.ok().map(|(ar, _)| ar.plural)
    }

    /// Everything the cluster serves (used by preflight for API versions).
    pub async fn discovery(&self) -> Result<Discovery, ClusterError> {
        Discovery::new(self.client.clone())
            .run()
            .await
            .map_err(|e| ClusterError::Unreachable(e.to_string()))
    }
}
