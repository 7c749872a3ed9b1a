//! Simulated controllers.

use std::sync::{Arc, Mutex};

use crate::SimConfig;
use crate::cluster::Cluster;

pub async fn run(_cluster: Arc<Mutex<Cluster>>, config: SimConfig) {
    let mut interval = tokio::time::interval(config.tick);
    loop {
        interval.tick().await;
    }
}
