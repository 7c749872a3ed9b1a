//! `sealift-bundler`: packs, signs, verifies and inspects Sealift bundles.

fn main() -> std::process::ExitCode {
    bundler::cli::main()
}
