//! `sealift-bundler`, the vendor program: packs one release — the Helm chart, its render
//! by real Helm, every image and the migration metadata — into one signed bundle.

/// `println!` to stdout that returns an error instead of panicking: a closed pipe
/// (`sealift-bundler inspect FILE | head -1`) becomes [`cli::StdoutClosed`], which ends the
/// program quietly.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*).map_err($crate::cli::stdout_error)
    }};
}

/// `print!` to stdout, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*).map_err($crate::cli::stdout_error)
    }};
}

pub mod assemble;
pub mod chart;
pub mod cli;
pub mod cmd;
pub mod helm;
pub mod image_refs;
pub mod images;
pub mod progress;
pub mod rbac;
pub mod render;
pub mod trust;
pub mod variables;
pub mod waves;
