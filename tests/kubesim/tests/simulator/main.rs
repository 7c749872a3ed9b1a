//! Integration tests: the simulator driven by kube-rs and by kubectl 1.33.

mod api;
mod apply;
mod charts;
mod controllers;
mod crds_and_watch;
mod kubectl;
mod registry;
mod sample_app;

use kubesim::{SimConfig, Simulator};

/// Starts a simulator and returns it with a kube client.
pub async fn start() -> (Simulator, kube::Client) {
    start_with(SimConfig::default()).await
}

pub async fn start_with(config: SimConfig) -> (Simulator, kube::Client) {
    let sim = Simulator::start(config).await.expect("simulator starts");
    let client = sim.kube_client().expect("kube client");
    (sim, client)
}

/// The HTTP code of a kube API error.
pub fn code_of(err: &kube::Error) -> u16 {
    match err {
        kube::Error::Api(status) => status.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// The Status of a kube API error.
pub fn status_of(err: kube::Error) -> Box<kube::core::Status> {
    match err {
        kube::Error::Api(status) => status,
        other => panic!("expected an API error, got {other:?}"),
    }
}
