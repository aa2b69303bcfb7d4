//! One module per subcommand; each exposes `Args` (clap) and `run`.

pub mod inspect;
pub mod scheduler;
pub mod webhook;
