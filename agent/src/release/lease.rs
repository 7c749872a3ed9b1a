//! The one lock every operation holds: a `coordination.k8s.io/v1` Lease in the agent's
//! namespace. A holder renews it while working; another agent (a restarted pod) takes it over
//! only once `renewTime` is older than `leaseDurationSeconds`.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// Annotation naming the operation the holder runs.
pub const OPERATION_ANNOTATION: &str = "sealift.dev/operation";

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("{operation} is running, held by {holder} (lease renewed {age_seconds}s ago)")]
    Held {
        holder: String,
        operation: String,
        age_seconds: i64,
    },
    #[error("the operation lease could not be written: {0}")]
    Api(String),
}

/// Who we are and which Lease we use.
#[derive(Debug, Clone)]
pub struct LeaseLock {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub duration_seconds: i32,
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

impl LeaseLock {
    fn api(&self, client: &kube::Client) -> Api<Lease> {
        Api::namespaced(client.clone(), &self.namespace)
    }

    /// Takes the lease for `operation`, or names who holds it. Taking over an expired lease
    /// of another holder counts a transition.
    pub async fn acquire(&self, client: &kube::Client, operation: &str) -> Result<(), LeaseError> {
        let api = self.api(client);
        let existing = api
            .get_opt(&self.name)
            .await
            .map_err(|e| LeaseError::Api(e.to_string()))?;
        let stamp = now();
        let mut annotations = std::collections::BTreeMap::new();
        annotations.insert(OPERATION_ANNOTATION.to_owned(), operation.to_owned());
        match existing {
            None => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.namespace.clone()),
                        annotations: Some(annotations),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(self.duration_seconds),
                        acquire_time: Some(stamp.clone()),
                        renew_time: Some(stamp),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                api.create(&PostParams::default(), &lease)
                    .await
                    .map_err(|e| LeaseError::Api(e.to_string()))?;
                Ok(())
            }
            Some(mut lease) => {
                let spec = lease.spec.clone().unwrap_or_default();
                let holder = spec.holder_identity.clone().unwrap_or_default();
                if !holder.is_empty() && holder != self.identity {
                    let age = spec
                        .renew_time
                        .as_ref()
                        .map(|t| stamp.0.as_second() - t.0.as_second())
                        .unwrap_or(i64::MAX);
                    let duration = i64::from(spec.lease_duration_seconds.unwrap_or(self.duration_seconds));
                    if age <= duration {
                        let operation = lease
                            .metadata
                            .annotations
                            .as_ref()
                            .and_then(|a| a.get(OPERATION_ANNOTATION))
                            .cloned()
                            .unwrap_or_else(|| "an operation".to_owned());
                        return Err(LeaseError::Held {
                            holder,
                            operation,
                            age_seconds: age,
                        });
                    }
                }
                let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(holder != self.identity);
                lease.metadata.annotations = Some(annotations);
                lease.spec = Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(self.duration_seconds),
                    acquire_time: Some(stamp.clone()),
                    renew_time: Some(stamp),
                    lease_transitions: Some(transitions),
                    ..Default::default()
                });
                // `replace` carries the resourceVersion we read: a concurrent taker gets 409.
                api.replace(&self.name, &PostParams::default(), &lease)
                    .await
                    .map_err(|e| LeaseError::Api(e.to_string()))?;
                Ok(())
            }
        }
    }

    /// Renews the lease if we still hold it; `false` if someone else took it.
    pub async fn renew(&self, client: &kube::Client) -> Result<bool, LeaseError> {
        let api = self.api(client);
        let Some(mut lease) = api
            .get_opt(&self.name)
            .await
            .map_err(|e| LeaseError::Api(e.to_string()))?
        else {
            return Ok(false);
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(false);
        }
        spec.renew_time = Some(now());
        lease.spec = Some(spec);
        api.replace(&self.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| LeaseError::Api(e.to_string()))?;
        Ok(true)
    }

    /// Gives the lease up (only if we hold it).
    pub async fn release(&self, client: &kube::Client) -> Result<(), LeaseError> {
        let api = self.api(client);
        let Some(mut lease) = api
            .get_opt(&self.name)
            .await
            .map_err(|e| LeaseError::Api(e.to_string()))?
        else {
            return Ok(());
        };
        let mut spec = lease.spec.clone().unwrap_or_default();
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        lease.spec = Some(spec);
        if let Some(a) = lease.metadata.annotations.as_mut() {
            a.remove(OPERATION_ANNOTATION);
        }
        api.replace(&self.name, &PostParams::default(), &lease)
            .await
            .map_err(|e| LeaseError::Api(e.to_string()))?;
        Ok(())
    }

    /// Waits until the lease is ours: immediately if free or ours, after expiry if a dead
    /// holder left it. Returns the error if it is live and held by someone else.
    pub async fn acquire_or_wait_expiry(&self, client: &kube::Client, operation: &str) -> Result<(), LeaseError> {
        loop {
            match self.acquire(client, operation).await {
                Err(LeaseError::Held { age_seconds, .. }) if age_seconds >= 0 => {
                    let wait = (i64::from(self.duration_seconds) - age_seconds + 1).max(1) as u64;
                    tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                }
                other => return other,
            }
        }
    }
}
