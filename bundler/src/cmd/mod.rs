//! One module per subcommand, each with `Args` and `run`.

pub mod build;
pub mod inspect;
pub mod keygen;
pub mod rbac;
pub mod root;
pub mod sign;
pub mod verify;
