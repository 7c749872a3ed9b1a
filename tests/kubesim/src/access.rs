//! SelfSubjectAccessReview and SelfSubjectRulesReview answered from a configurable rule set,
//! so tests can exercise "missing permission" paths.

use serde_json::{Value, json};

/// One allow rule; `*` matches anything, an empty namespace list means every namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct AccessRule {
    pub verbs: Vec<String>,
    pub groups: Vec<String>,
    pub resources: Vec<String>,
    pub namespaces: Vec<String>,
}

impl AccessRule {
    /// A rule that allows everything (the default rule set).
    pub fn allow_all() -> Self {
        let star = vec!["*".to_string()];
        Self {
            verbs: star.clone(),
            groups: star.clone(),
            resources: star,
            namespaces: Vec::new(),
        }
    }

    fn allows(&self, verb: &str, group: &str, resource: &str, namespace: &str) -> bool {
        let has = |list: &[String], v: &str| list.iter().any(|x| x == "*" || x == v);
        has(&self.verbs, verb)
            && has(&self.groups, group)
            && has(&self.resources, resource)
            && (self.namespaces.is_empty() || has(&self.namespaces, namespace))
    }
}

/// Answers a SelfSubjectAccessReview body with its `status` filled in.
pub fn review_access(rules: &[AccessRule], mut review: Value) -> Value {
    let attrs = &review["spec"]["resourceAttributes"];
    let text = |k: &str| attrs[k].as_str().unwrap_or_default().to_string();
    let resource = if text("subresource").is_empty() {
        text("resource")
    } else {
        format!("{}/{}", text("resource"), text("subresource"))
    };
    let allowed = if attrs.is_null() {
        true
    } else {
        rules
            .iter()
            .any(|r| r.allows(&text("verb"), &text("group"), &resource, &text("namespace")))
    };
    review["status"] = if allowed {
        json!({"allowed": true, "reason": "allowed by simulator rule set"})
    } else {
        json!({"allowed": false, "reason": "no simulator rule allows this request"})
    };
    review
}

/// Answers a SelfSubjectRulesReview body for `spec.namespace`.
pub fn review_rules(rules: &[AccessRule], mut review: Value) -> Value {
    let namespace = review["spec"]["namespace"].as_str().unwrap_or_default().to_string();
    let resource_rules: Vec<Value> = rules
        .iter()
        .filter(|r| r.namespaces.is_empty() || r.namespaces.iter().any(|n| n == "*" || *n == namespace))
        .map(|r| json!({"verbs": r.verbs, "apiGroups": r.groups, "resources": r.resources}))
        .collect();
    review["status"] = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/version", "/openapi/*"]}],
        "incomplete": false,
    });
    review
}
