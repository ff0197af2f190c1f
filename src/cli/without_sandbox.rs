//! `satflow demo` and `satflow sandbox` in a build without the `sandbox` feature: the commands
//! are still recognised, so that they say why they do nothing instead of "unrecognized
//! subcommand". This module must never pull in any of the simulator.

use super::Outcome;

/// Whatever follows the command is taken and ignored: the answer is the same.
#[derive(Debug, clap::Args)]
pub struct NotBuiltArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _ignored: Vec<String>,
}

pub type DemoArgs = NotBuiltArgs;
pub type SandboxArgs = NotBuiltArgs;

fn not_built(command: &str) -> anyhow::Result<Outcome> {
    eprintln!(
        "error: `satflow {command}` is not in this build: it was built without the `sandbox` feature (the simulator). Build with the default features (`cargo build --release`) to get it"
    );
    Ok(Outcome::UserError)
}

pub fn run_demo(_: &DemoArgs) -> anyhow::Result<Outcome> {
    not_built("demo")
}

pub fn run_sandbox(_: &std::path::Path, _: &SandboxArgs) -> anyhow::Result<Outcome> {
    not_built("sandbox")
}

pub mod demo {
    pub use super::{DemoArgs, run_demo as run};
}

pub mod sandbox {
    pub use super::{SandboxArgs, run_sandbox as run};
}
