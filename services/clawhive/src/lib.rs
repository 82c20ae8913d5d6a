//! The `clawhive` command line.
//!
//! - [`admin`]: `clawhive admin user|token|pairing …` — users, API tokens and Slack pairing codes via the Admin API.
//! - [`schedule`]: `clawhive schedule create|list|get|delete|pause|resume` — your scheduled jobs.
//! - [`chat`]: `clawhive chat` — talk to a gateway over gRPC.
//! - `config check` — print the effective (redacted) config or a one-line error.
//! - [`up`]: `clawhive up` — gateway + N agent workers in one process, with
//!   their own `nats-server` and `redis-server` ([`local_servers`]) unless `--external`.

pub mod admin;
pub mod admin_ops;
pub mod chat;
pub mod grpc;
pub mod local_servers;
pub mod schedule;
pub mod up;

use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Environment variables read by this CLI only; they are not config paths.
pub const CLI_ENV_VARS: &[&str] = &[
    "CLAWHIVE_ADDR",
    "CLAWHIVE_TOKEN",
    "CLAWHIVE_MODEL",
    "CLAWHIVE_DATA_DIR",
    "CLAWHIVE_NATS_SERVER",
    "CLAWHIVE_REDIS_SERVER",
];

#[derive(Debug, Parser)]
#[command(name = "clawhive", version, about = "Clawhive: an always-on team AI assistant")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage users and API tokens of your tenant (needs an admin token).
    Admin(admin::AdminArgs),
    /// Chat with a running gateway (one message, or one turn per stdin line).
    Chat(chat::ChatArgs),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage your scheduled jobs (prompts run on a cron, interval or once).
    Schedule(schedule::ScheduleArgs),
    /// Run the whole system (gateway + agent workers) in this process.
    Up(up::UpArgs),
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Load the effective config (defaults → file → CLAWHIVE_* env) and print it redacted.
    Check {
        /// TOML config file (else $CLAWHIVE_CONFIG, else none).
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

pub fn main_entry() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Config { command: ConfigCommand::Check { config } } => config_check(config.as_deref()),
        Command::Admin(args) => runtime().block_on(admin::run(args)),
        Command::Chat(args) => runtime().block_on(chat::run(args)),
        Command::Up(args) => runtime().block_on(up::run(args)),
        Command::Schedule(args) => runtime().block_on(schedule::run(args)),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("cannot build the tokio runtime")
}

/// The effective config, like `clawhive_telemetry::load_config`, except that
/// the CLI's own `CLAWHIVE_*` variables ([`CLI_ENV_VARS`]) are not read as
/// config paths (they would be rejected as unknown fields).
pub fn load_config(path: Option<&Path>) -> Result<clawhive_core::config::Config, String> {
    if !CLI_ENV_VARS.iter().any(|v| std::env::var_os(v).is_some()) {
        return clawhive_telemetry::load_config(path).map_err(|e| one_line(&e.to_string()));
    }
    let path: Option<PathBuf> =
        path.map(Path::to_path_buf).or_else(|| std::env::var_os("CLAWHIVE_CONFIG").map(PathBuf::from));
    let text = match &path {
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| format!("cannot read config file {}: {e}", p.display()))?)
        }
        None => None,
    };
    let env = std::env::vars().filter(|(k, _)| !CLI_ENV_VARS.contains(&k.as_str()));
    clawhive_core::config::Config::from_sources(text.as_deref(), env).map_err(|e| match &path {
        Some(p) => one_line(&format!("{}: {e}", p.display())),
        None => one_line(&e.to_string()),
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn config_check(path: Option<&Path>) -> ExitCode {
    match load_config(path) {
        Ok(cfg) => {
            print!("{}", cfg.redacted_toml());
            eprintln!("config ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("config error: {e}");
            ExitCode::from(2)
        }
    }
}
