//! `sealift-agent`: runs in the customer's cluster.

fn main() -> std::process::ExitCode {
    agent::cli::main()
}
