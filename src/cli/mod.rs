//! The command line: one module per command group; this file parses arguments, sets up logging
//! and turns outcomes into exit codes (0 success, 1 the user's input is wrong, 2 a runtime
//! failure).
//!
//! Commands print their results on stdout (for people, or one JSON document with `--json`);
//! problems, errors and logs go to stderr, so `report --csv > out.csv` never holds an error.
//! (`check` is the exception: its problems are its result.) A closed stdout (`satflow plan |
//! head -1`) ends the command quietly, as Unix tools do. Nothing below this layer prints or
//! exits.

mod addresses;
mod approvals;
mod audit;
mod check;
mod db;
#[cfg(feature = "sandbox")]
mod demo;
mod exchanges;
mod init;
pub mod labels;
mod logging;
mod order;
mod outbox;
mod plan;
pub mod report;
mod run;
mod runs;
#[cfg(feature = "sandbox")]
mod sandbox;
mod status;
mod trigger;
mod user;
mod withdrawals;
#[cfg(not(feature = "sandbox"))]
mod without_sandbox;
#[cfg(not(feature = "sandbox"))]
use without_sandbox::{demo, sandbox};

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::config::{self, Config, Loaded};
use crate::source::{Diagnostic, Diagnostics, ProcessEnv};
use crate::workflow::{self, Workflow};

pub use logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "satflow",
    version,
    about = "Automates recurring bitcoin purchases: standing Pocket orders, Lightning payouts, sweeps to cold storage",
    propagate_version = true
)]
pub struct Cli {
    /// The configuration file [default: $SATFLOW_CONFIG, else ./satflow.yaml]
    #[arg(short, long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// How log lines on stderr are written
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,

    /// More log output (-v debug, -vv trace)
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less log output (-q warnings only, -qq errors only)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Play three weeks of stacking on this machine: sandbox, node stand-in, emails, report
    #[cfg_attr(not(feature = "sandbox"), command(hide = true))]
    Demo(demo::DemoArgs),
    /// Write a commented satflow.yaml and ready-to-use workflows from your answers (--sandbox: a rehearsal)
    Init(init::InitArgs),
    /// Validate satflow.yaml and every workflow; print each problem as path:line:col: message
    Check,
    /// Show the next fire times of every scheduled workflow, in its zone and in UTC
    Plan(plan::PlanArgs),
    /// The daemon: scheduler, runner, outbox dispatcher and HTTP server, until SIGINT/SIGTERM
    Run,
    /// Queue a manual run of a workflow (the daemon picks it up), or run it here with --wait
    Trigger(trigger::TriggerArgs),
    /// Next fires, recent runs, the outbox backlog and dead letters
    Status(status::StatusArgs),
    /// Run history with each step's outcome
    Runs(runs::RunsArgs),
    /// Pending and dead outbox items; retry or discard one
    Outbox(outbox::OutboxArgs),
    /// A wallet's addresses by index with their state (fresh, reserved, used, by what)
    Addresses(addresses::AddressesArgs),
    /// Exchanges with their state and payout, and the events each went through
    Exchanges(exchanges::ExchangesArgs),
    /// Totals (fiat spent, BTC stacked, average price, fees) and the ledger; --format csv, json, koinly, cointracker
    Report(report::ReportArgs),
    /// BIP-329 labels (JSON Lines) of a wallet's addresses and payouts, for Sparrow and other wallets
    Labels(labels::LabelsArgs),
    /// Withdrawals to cold storage: state, amount, address, transaction, or why not
    Withdrawals(withdrawals::WithdrawalsArgs),
    /// The audit log of decisions and effects; `audit verify` checks its hash chain
    Audit(audit::AuditArgs),
    /// Steps waiting for approvals
    Approvals(approvals::ApprovalsArgs),
    /// Approve a step waiting for approvals
    Approve(approvals::DecideArgs),
    /// Reject a step waiting for approvals (the step fails)
    Reject(approvals::RejectArgs),
    /// Dashboard accounts: `user add NAME --role viewer|operator|admin`, list, remove, passwd, role
    User(user::UserArgs),
    /// Pocket orders: `order setup WORKFLOW` creates the order a workflow declares
    Order(order::OrderArgs),
    /// The Pocket simulator (and its control API), to rehearse workflows without money
    #[cfg_attr(not(feature = "sandbox"), command(hide = true))]
    Sandbox(sandbox::SandboxArgs),
    /// Move or back up the database: `db copy --from URL --to URL`, `db backup PATH`
    Db(db::DbArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell)
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The user's input (config, workflow, argument) is wrong.
    UserError,
    /// Something failed at run time (network, database).
    Failure,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> ExitCode {
        match o {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::UserError => ExitCode::from(1),
            Outcome::Failure => ExitCode::from(2),
        }
    }
}

/// The exit status of a command whose reader went away: what a shell shows for a process ended
/// by SIGPIPE (128 + 13), so pipelines behave as with any Unix tool.
pub const CLOSED_STDOUT: u8 = 141;

pub fn main() -> ExitCode {
    quiet_on_closed_stdout();
    let cli = Cli::parse();
    // The demo narrates; its daemon's routine log lines would drown that out.
    let quiet = match cli.command {
        Command::Demo(_) if cli.verbose == 0 => cli.quiet.max(1),
        _ => cli.quiet,
    };
    logging::init(cli.log_format, cli.verbose, quiet);
    let config_path = cli.config.clone().unwrap_or_else(config::default_path);
    let outcome = match cli.command {
        Command::Demo(args) => demo::run(&args),
        Command::Init(args) => init::run(&args),
        Command::Check => check::run(&config_path),
        Command::Plan(args) => plan::run(&config_path, &args),
        Command::Run => run::run(&config_path),
        Command::Trigger(args) => trigger::run(&config_path, &args),
        Command::Status(args) => status::run(&config_path, &args),
        Command::Runs(args) => runs::run(&config_path, &args),
        Command::Outbox(args) => outbox::run(&config_path, &args),
        Command::Db(args) => db::run(&config_path, &args),
        Command::Addresses(args) => addresses::run(&config_path, &args),
        Command::Exchanges(args) => exchanges::run(&config_path, &args),
        Command::Report(args) => report::run(&config_path, &args),
        Command::Labels(args) => labels::run(&config_path, &args),
        Command::Withdrawals(args) => withdrawals::run(&config_path, &args),
        Command::Order(args) => order::run(&config_path, &args),
        Command::Audit(args) => audit::run(&config_path, &args),
        Command::Approvals(args) => approvals::list(&config_path, &args),
        Command::Approve(args) => approvals::approve(&config_path, &args),
        Command::Reject(args) => approvals::reject(&config_path, &args),
        Command::User(args) => user::run(&config_path, &args),
        Command::Sandbox(args) => sandbox::run(&config_path, &args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "satflow",
                &mut std::io::stdout(),
            );
            Ok(Outcome::Success)
        }
    };
    match outcome {
        Ok(outcome) => outcome.into(),
        Err(err) if is_broken_pipe(&err) => ExitCode::from(CLOSED_STDOUT),
        Err(err) => {
            eprintln!("error: {err:#}");
            Outcome::Failure.into()
        }
    }
}

/// Whether an error is stdout's reader having gone away (decided by the I/O error's kind).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `println!` panics when stdout's reader has gone away. Commands that write much use a writer
/// whose errors are returned (see `plan`); for every other `println!`, a panic on the main
/// thread while stdout is a closed pipe ends the process quietly with `CLOSED_STDOUT` instead of
/// a panic message and exit 101. SIGPIPE itself stays ignored: its default action would also
/// kill a daemon whose peer closes a socket mid-write.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::thread::current().name() == Some("main") && stdout_is_closed_pipe() {
            std::process::exit(i32::from(CLOSED_STDOUT));
        }
        default(info);
    }));
}

/// A pipe whose read end is closed reports POLLERR on its write end (checked without writing).
#[cfg(unix)]
fn stdout_is_closed_pipe() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, a count of 1 and no wait; poll only writes `revents`.
    let ready = unsafe { libc::poll(&mut fd, 1, 0) };
    ready > 0 && fd.revents & libc::POLLERR != 0
}

#[cfg(not(unix))]
fn stdout_is_closed_pipe() -> bool {
    false
}

/// A configuration with its workflows, both free of problems.
pub struct Setup {
    pub config: Config,
    pub workflows: Vec<Workflow>,
}

/// Reads satflow.yaml and every workflow, returning every problem found in any of them.
pub fn load_setup(config_path: &std::path::Path) -> Result<Setup, Vec<Diagnostic>> {
    let mut diags = Diagnostics::default();
    if let Some(missing) = missing_config(config_path) {
        return Err(vec![missing]);
    }
    let Loaded {
        config,
        names,
        workflow_files,
    } = config::load(config_path, &ProcessEnv, &mut diags);
    tracing::debug!(config = %config_path.display(), files = workflow_files.len(), "reading workflows");
    let workflows = workflow::load_all(&workflow_files, &names, &ProcessEnv, &mut diags);
    tracing::debug!(valid = workflows.len(), problems = diags.len(), "checked");
    match config {
        Some(config) if diags.is_empty() => Ok(Setup { config, workflows }),
        _ => Err(diags.sorted()),
    }
}

/// What every command says when it finds no configuration: the three ways to give one.
const NO_CONFIG_HINT: &str = "there is no configuration file here; pass -c PATH, set $SATFLOW_CONFIG, or write one with `satflow init`";

/// The problem when there is nothing at all at `config_path`.
fn missing_config(config_path: &std::path::Path) -> Option<Diagnostic> {
    // `symlink_metadata`: a dangling symlink is there, and is reported as such when read.
    std::fs::symlink_metadata(config_path)
        .is_err()
        .then(|| Diagnostic {
            path: config_path.to_path_buf(),
            pos: crate::source::Pos::START,
            message: NO_CONFIG_HINT.into(),
        })
}

/// The async runtime for commands that need one: two workers are plenty (a Pi has four small
/// cores, and SQLite serialises writers anyway).
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    runtime_with(config::EngineConfig::DEFAULT_WORKERS_CAP)
}

/// The daemon's runtime: `engine.worker_threads`, or one worker per core and at most two.
fn daemon_runtime(engine: &config::EngineConfig) -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    runtime_with(engine.workers(cores))
}

/// Blocking threads (file reads, DNS lookups) are few and short here: a bounded handful instead
/// of tokio's 512, each of which would keep a stack and a malloc arena.
const MAX_BLOCKING_THREADS: usize = 8;

fn runtime_with(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
}

/// Reads satflow.yaml alone, for commands that do not need the workflows. `None` (after
/// printing the problems) when it is not valid.
fn open_config(config_path: &std::path::Path) -> Option<Config> {
    let mut diags = Diagnostics::default();
    if let Some(missing) = missing_config(config_path) {
        print_problems(&[missing]);
        return None;
    }
    let loaded = config::load(config_path, &ProcessEnv, &mut diags);
    match loaded.config {
        Some(config) if diags.is_empty() => Some(config),
        _ => {
            print_problems(&diags.sorted());
            None
        }
    }
}

/// Opens the database named by satflow.yaml, for commands that do not need the workflows.
async fn open_store(config_path: &std::path::Path) -> anyhow::Result<Option<crate::store::Store>> {
    match open_config(config_path) {
        Some(config) => Ok(Some(crate::store::Store::open(&config.database).await?)),
        None => Ok(None),
    }
}

/// Resolves on SIGINT or SIGTERM: the ways a user, a service manager or a container stops us.
/// The handlers are installed when this is called (inside the runtime), not when first awaited,
/// so a signal that comes early is not lost to the default action. Only the simulator's
/// commands (`demo --serve`, `sandbox`) wait on it; the daemon has its own (`run::Signals`).
#[cfg(feature = "sandbox")]
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut interrupt = signal(SignalKind::interrupt()).expect("SIGINT handler");
        let mut terminate = signal(SignalKind::terminate()).expect("SIGTERM handler");
        async move {
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Prints problems on stderr, one per line, and a count: for every command whose result they
/// would otherwise pollute.
fn print_problems(problems: &[Diagnostic]) {
    let _ = write_problems(&mut std::io::stderr().lock(), problems);
}

/// Writes problems, one per line, and a count.
fn write_problems(out: &mut dyn std::io::Write, problems: &[Diagnostic]) -> std::io::Result<()> {
    for p in problems {
        writeln!(out, "{p}")?;
    }
    let files = problems
        .iter()
        .map(|p| &p.path)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    writeln!(
        out,
        "{} problem{} in {} file{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        files,
        if files == 1 { "" } else { "s" }
    )
}

/// `1 order`, `2 orders`: a count with its noun in English.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
