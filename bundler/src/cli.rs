//! The command line: parsing, logging, error printing and exit codes.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;

/// Packs a Helm chart, its render and every image into one signed bundle, and verifies
/// and inspects bundles.
#[derive(Debug, Parser)]
#[command(name = "sealift-bundler", version, about, propagate_version = true)]
pub struct Cli {
    /// More log output on stderr (-v: debug, -vv: trace). `RUST_LOG` overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build a signed bundle from a spec (sealift.yaml).
    // `--version` is the product version here, not clap's version flag.
    #[command(disable_version_flag = true)]
    Build(Box<cmd::build::Args>),
    /// Verify a bundle offline: every check the agent makes without its state.
    Verify(cmd::verify::Args),
    /// Show what a bundle holds, reading only its head and metadata.
    Inspect(cmd::inspect::Args),
    /// Add a signature to a bundle, rewriting only its head; or sign detached.
    Sign(cmd::sign::Args),
    /// Print the Role and ClusterRole the agent needs to apply a bundle.
    Rbac(cmd::rbac::Args),
    /// Generate an ed25519 key pair (PKCS#8 and SPKI PEM).
    Keygen(cmd::keygen::Args),
    /// Manage the root of trust: init, rotate, sign.
    Root(cmd::root::Args),
}

/// Process exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Exit {
    /// Success.
    Ok = 0,
    /// The input was refused or the command failed; stderr names the reason.
    Failed = 1,
    /// Bad command line (clap's own code).
    Usage = 2,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e as u8)
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::env::var_os("NO_COLOR").is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .without_time()
        .init();
}

/// Stdout was closed by its reader (`… | head -1`): the program stops writing and exits 0
/// without an error message, as `cat` or `rg` do.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// The error of a write to stdout: [`StdoutClosed`] for a broken pipe, else the I/O error.
pub fn stdout_error(e: std::io::Error) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(e).context("cannot write to stdout")
    }
}

/// Prints `error: …`, each cause, then any `hint:` lines.
pub fn print_error(err: &anyhow::Error) {
    let mut hints = Vec::new();
    let mut split = |text: String| -> String {
        let mut main = Vec::new();
        for line in text.lines() {
            if line.starts_with("hint: ") {
                hints.push(line.to_owned());
            } else {
                main.push(line);
            }
        }
        main.join("\n")
    };
    eprintln!("error: {}", split(err.to_string()));
    for cause in err.chain().skip(1) {
        eprintln!("  caused by: {}", split(cause.to_string()));
    }
    for h in hints {
        eprintln!("{h}");
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let result = match cli.command {
        Command::Build(a) => cmd::build::run(*a),
        Command::Verify(a) => cmd::verify::run(a),
        Command::Inspect(a) => cmd::inspect::run(a),
        Command::Sign(a) => cmd::sign::run(a),
        Command::Rbac(a) => cmd::rbac::run(a),
        Command::Keygen(a) => cmd::keygen::run(a),
        Command::Root(a) => cmd::root::run(a),
    };
    match result {
        Ok(()) => Exit::Ok.into(),
        Err(e) if e.chain().any(|c| c.is::<StdoutClosed>()) => Exit::Ok.into(),
        Err(e) => {
            print_error(&e);
            Exit::Failed.into()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::Cli;

    /// clap checks its definition only in debug builds, when a command runs: check it here.
    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
