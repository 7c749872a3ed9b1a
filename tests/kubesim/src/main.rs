//! `kubesim`: runs the Kubernetes API simulator until interrupted and prints the path of
//! its kubeconfig on stdout.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut config = kubesim::SimConfig::default();
    if let Ok(registry) = std::env::var("KUBESIM_REGISTRY") {
        config.registry = Some(kubesim::RegistryConfig::plain(&registry));
    }
    let sim = match kubesim::Simulator::start(config).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            return ExitCode::from(1);
        }
    };
    println!("{}", sim.kubeconfig_path().display());
    eprintln!("kubesim serving {} (Ctrl-C to stop)", sim.url());
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: installing the SIGTERM handler: {e}");
            return ExitCode::from(1);
        }
    };
    tokio::select! {
        result = tokio::signal::ctrl_c() => {
            if let Err(e) = result {
                eprintln!("error: waiting for Ctrl-C: {e}");
                return ExitCode::from(1);
            }
        }
        _ = terminate.recv() => {}
    }
    // Dropping the simulator removes its kubeconfig directory.
    drop(sim);
    ExitCode::SUCCESS
}
