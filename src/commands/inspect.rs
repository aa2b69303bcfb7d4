//! `hami inspect`: decode HAMi annotations of a node or pod object.

use std::process::ExitCode;

/// Arguments of `hami inspect`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A Kubernetes Node or Pod as YAML or JSON; `-` reads standard input.
    pub file: String,
}

/// Run the command.
pub fn run(_args: Args) -> Result<ExitCode, String> {
    Err("inspect is not wired yet".into())
}
