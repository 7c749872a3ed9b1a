//! The kubeconfig file clients use to reach the simulator.

/// A kubeconfig with one cluster, context and (anonymous) user pointing at `url`.
pub fn render(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: kubesim
  cluster:
    server: {url}
contexts:
- name: kubesim
  context:
    cluster: kubesim
    user: kubesim
    namespace: default
current-context: kubesim
users:
- name: kubesim
  user: {{}}
"
    )
}
