//! One module per subcommand; each exposes `Args` (clap) and `run`.

pub mod device_plugin;
pub mod fgd;
pub mod inspect;
pub mod node_agent;
pub mod record;
pub mod replay;
pub mod scheduler;
pub mod sim;
pub mod webhook;
