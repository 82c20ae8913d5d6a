//! `clawhive up`: the gateway and N agent workers in one process.
//!
//! Backends (`--backend`): `embedded` (default) runs on the in-process bus and
//! the embedded store (a redb file in the data dir) — no external servers;
//! `servers` starts its own `nats-server` and `redis-server` children;
//! `external` (also `--external`) uses the config's NATS and Redis URLs. The
//! services are the same code in every case; only the adapters differ.

use crate::local_servers::{LocalServers, Missing};
use clawhive_bus::port::Bus;
use clawhive_core::config::{Config, split_model};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// TOML config file (else $CLAWHIVE_CONFIG, else defaults + CLAWHIVE_* env).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Agent workers to run.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// Where the bus and the store live.
    #[arg(long, value_enum, default_value_t = Backend::Embedded)]
    pub backend: Backend,
    /// Use the config's NATS and Redis URLs (same as `--backend external`).
    #[arg(long)]
    pub external: bool,
    /// gRPC listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:50051")]
    pub grpc_addr: String,
    /// HTTP listen address (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http_addr: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// In-process bus and embedded file store; nothing else to install.
    Embedded,
    /// Child nats-server (>= 2.10) and redis-server processes.
    Servers,
    /// NATS and Redis at the configured URLs.
    External,
}

/// `$CLAWHIVE_DATA_DIR`, else `$HOME/.local/share/clawhive`.
pub fn data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CLAWHIVE_DATA_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".local/share/clawhive")
}

pub async fn run(args: UpArgs) -> ExitCode {
    clawhive_telemetry::install_crypto_provider();
    let mut cfg = match crate::load_config(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("config error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.workers == 0 {
        eprintln!("error: --workers must be at least 1");
        return ExitCode::from(2);
    }
    if let Err(e) = apply_model_override(&mut cfg) {
        eprintln!("config error: {e}");
        return ExitCode::from(2);
    }
    cfg.gateway.grpc_addr = args.grpc_addr.clone();
    cfg.gateway.http_addr = args.http_addr.clone();
    clawhive_telemetry::init_tracing(&cfg.telemetry, "clawhive");
    let shutdown = clawhive_telemetry::shutdown::on_signal();

    let dir = data_dir();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create data dir {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    // The local admin's token: kept in the data dir, registered in the identity store at start.
    let token = match bootstrap_token(&dir) {
        Ok(t) => Some(t),
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(2);
        }
    };
    // Secrets get a key of their own in the data dir unless one is configured.
    if std::env::var(&cfg.security.secrets_key_env).is_err() && cfg.security.secrets_key_file.is_empty() {
        match local_key_file(&dir, "secrets-key") {
            Ok(path) => cfg.security.secrets_key_file = path.display().to_string(),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(2);
            }
        }
    }
    warn_missing_llm_keys(&cfg);

    let backend = if args.external { Backend::External } else { args.backend };
    let mut servers = None;
    if backend == Backend::Servers {
        match LocalServers::start(&dir).await {
            Ok(s) => {
                cfg.bus.nats_url = s.nats_url();
                cfg.store.redis_url = s.redis_url();
                servers = Some(s);
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(if e.downcast_ref::<Missing>().is_some() { 2 } else { 1 });
            }
        }
    }

    let result = serve(&cfg, &args, backend, &dir, token.as_deref(), servers.as_ref(), shutdown).await;
    if let Some(s) = servers.as_mut() {
        s.stop().await;
    }
    match result {
        Ok(()) => {
            eprintln!("clawhive stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The bus, and the store three times: as sessions, identities and secrets (the same object).
type Adapters = (
    Arc<dyn Bus>,
    Arc<dyn clawhive_store::SessionStore>,
    Arc<dyn clawhive_store::IdentityStore>,
    Arc<dyn clawhive_store::SecretStore>,
    Arc<dyn clawhive_store::ScheduleStore>,
    SlackStores,
);

/// What the Slack bridge needs beyond the sessions and identities.
type SlackStores = (Arc<dyn clawhive_store::PairingStore>, Arc<dyn clawhive_store::MarkerStore>);

async fn adapters(cfg: &Config, backend: Backend, dir: &Path) -> anyhow::Result<Adapters> {
    use anyhow::Context;
    Ok(match backend {
        Backend::Embedded => {
            let path = dir.join("sessions.redb");
            let ttl = Duration::from_secs(cfg.store.turn_record_ttl_secs);
            let flush = Duration::from_millis(cfg.store.embedded_flush_ms);
            let store = clawhive_store::EmbeddedStore::open_with(&path, ttl, flush)
                .with_context(|| format!("cannot open the embedded store {}", path.display()))?;
            let store = Arc::new(store);
            let slack: SlackStores = (store.clone(), store.clone());
            (
                Arc::new(clawhive_bus::MemoryBus::new(&cfg.bus)),
                store.clone(),
                store.clone(),
                store.clone(),
                store,
                slack,
            )
        }
        Backend::Servers | Backend::External => {
            let bus = clawhive_bus::nats::NatsBus::connect(&cfg.bus).await.context("cannot connect to NATS")?;
            let store = clawhive_store::RedisStore::connect(&cfg.store).await.context("cannot connect to Redis")?;
            let store = Arc::new(store);
            let slack: SlackStores = (store.clone(), store.clone());
            (Arc::new(bus), store.clone(), store.clone(), store.clone(), store, slack)
        }
    })
}

async fn serve(
    cfg: &Config,
    args: &UpArgs,
    backend: Backend,
    dir: &Path,
    token: Option<&str>,
    servers: Option<&LocalServers>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use anyhow::Context;
    let (bus, store, identity, secret_store, schedules, (pairings, markers)) = adapters(cfg, backend, dir).await?;
    let jobs = clawhive_store::Jobs::new(schedules.clone(), identity.clone(), Arc::new(cfg.clone()));
    let secrets = clawhive_store::secrets::vault_from_config(&cfg.security, secret_store)
        .map_err(|e| anyhow::anyhow!("cannot set up secrets: {e}"))?;
    bus.ensure_topology().await.context("cannot set up the bus streams")?;
    if let Some(t) = token {
        provision_local_admin(identity.as_ref(), t).await?;
    }
    let llm = clawhive_llm::LlmRouter::from_config(&cfg.llm, &|k| std::env::var(k).ok())
        .context("cannot set up the LLM providers")?;

    let mut workers = Vec::with_capacity(args.workers);
    for _ in 0..args.workers {
        let deps = clawhive_agent_worker::Deps {
            bus: bus.clone(),
            store: store.clone(),
            llm: llm.clone(),
            secrets: secrets.clone(),
        };
        let extras = clawhive_agent_worker::Extras { jobs: Some(jobs.clone()) };
        let w = clawhive_agent_worker::start_with(cfg, deps, extras, shutdown.child_token()).await;
        match w {
            Ok(w) => workers.push(w),
            Err(e) => {
                shutdown.cancel();
                return Err(anyhow::anyhow!("cannot start an agent worker: {e}"));
            }
        }
    }
    let scheduler_deps = clawhive_scheduler::Deps {
        bus: bus.clone(),
        store: schedules.clone(),
        identity: identity.clone(),
        sessions: store.clone(),
        clock: Arc::new(clawhive_scheduler::SystemClock),
    };
    let scheduler = match clawhive_scheduler::start(cfg, scheduler_deps, shutdown.child_token()).await {
        Ok(s) => s,
        Err(e) => {
            shutdown.cancel();
            return Err(anyhow::anyhow!("cannot start the scheduler: {e}"));
        }
    };
    // The Slack bridge, when a workspace is mapped and the bot token is in the environment.
    let slack_secrets = clawhive_slack_bridge::SlackSecrets::from_env(&cfg.slack);
    let slack_status = if cfg.slack.teams.is_empty() {
        "off (no [[slack.teams]])".to_string()
    } else if slack_secrets.bot_token.is_empty() {
        format!("off ({} is not set)", cfg.slack.bot_token_env)
    } else {
        let deps = clawhive_slack_bridge::Deps {
            bus: bus.clone(),
            sessions: store.clone(),
            identity: identity.clone(),
            pairings,
            markers,
        };
        match clawhive_slack_bridge::start(cfg, deps, slack_secrets, shutdown.child_token()).await {
            Ok(h) => format!("on (bot {})", h.bot_user),
            Err(e) => {
                shutdown.cancel();
                return Err(anyhow::anyhow!("cannot start the Slack bridge: {e}"));
            }
        }
    };
    let gateway = match clawhive_gateway::start_with(
        cfg,
        clawhive_gateway::Deps { bus: bus.clone(), store: store.clone(), identity, secrets: secrets.clone() },
        clawhive_gateway::Extras { schedules: Some(schedules) },
        shutdown.child_token(),
    )
    .await
    {
        Ok(g) => g,
        Err(e) => {
            shutdown.cancel();
            for w in workers {
                let _ = w.wait().await;
            }
            return Err(anyhow::anyhow!("cannot start the gateway: {e}"));
        }
    };

    let mut block = String::from("clawhive is up\n");
    block += &format!("grpc: {}\n", gateway.grpc_addr);
    block += &format!("http: {}\n", gateway.http_addr);
    block += &format!("workers: {}\n", args.workers);
    block += "scheduler: running (clawhive schedule --help)\n";
    block += &format!("slack: {slack_status}\n");
    if backend == Backend::Embedded {
        block += "bus: in-process\n";
        block += &format!("store: {}\n", dir.join("sessions.redb").display());
    } else if let Some(s) = servers {
        block += &format!("nats: {} (nats-server pid: {})\n", s.nats_url(), s.nats.pid);
        block += &format!("redis: {} (redis-server pid: {})\n", s.redis_url(), s.redis.pid);
    } else {
        block += &format!("nats: {}\n", clawhive_core::config::redact_url(&cfg.bus.nats_url));
        block += &format!("redis: {}\n", clawhive_core::config::redact_url(&cfg.store.redis_url));
    }
    match token {
        Some(t) => block += &format!("export CLAWHIVE_TOKEN={t}\n"),
        None => block += "# sign in with a token issued by `clawhive admin token issue`\n",
    }
    block += &format!("try: clawhive chat --addr http://{} \"hello\"\n", gateway.grpc_addr);
    print!("{block}");
    {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }

    shutdown.cancelled().await;
    eprintln!("shutting down: draining the gateway and the workers");
    // Bounded: the gateway gives calls 10 s, workers `worker.drain_timeout_ms`.
    let bound = Duration::from_millis(cfg.worker.drain_timeout_ms) + Duration::from_secs(15);
    let drain = async {
        if let Err(e) = gateway.wait().await {
            tracing::warn!(error = %e, "gateway stopped with an error");
        }
        for w in workers {
            if let Err(e) = w.wait().await {
                tracing::warn!(error = %e, "worker stopped with an error");
            }
        }
        scheduler.wait().await;
    };
    if tokio::time::timeout(bound, drain).await.is_err() {
        tracing::warn!("drain did not finish in {bound:?}; stopping anyway");
    }
    Ok(())
}

/// `CLAWHIVE_MODEL=provider/model` replaces the default agent's model.
fn apply_model_override(cfg: &mut Config) -> Result<(), String> {
    let Ok(model) = std::env::var("CLAWHIVE_MODEL") else { return Ok(()) };
    let model = model.trim().to_string();
    if model.is_empty() {
        return Ok(());
    }
    let (provider, _) = split_model(&model).map_err(|e| format!("CLAWHIVE_MODEL: {e}"))?;
    if !cfg.llm.providers.contains_key(provider) {
        return Err(format!("CLAWHIVE_MODEL={model:?} names provider {provider:?}, which is not in [llm.providers]"));
    }
    let default = cfg.gateway.default_agent.clone();
    let agent = cfg.agents.iter_mut().find(|a| a.id.as_str() == default).ok_or("no default agent")?;
    agent.model = model;
    Ok(())
}

/// Warns when no model of the default agent can be used for lack of an API key.
fn warn_missing_llm_keys(cfg: &Config) {
    let Some(agent) = cfg.agent(&cfg.gateway.default_agent) else { return };
    let mut missing = Vec::new();
    for m in std::iter::once(&agent.model).chain(&agent.fallbacks) {
        let Ok((provider, _)) = split_model(m) else { return };
        let Some(p) = cfg.llm.providers.get(provider) else { return };
        if p.api_key_env.is_empty() || std::env::var(&p.api_key_env).is_ok_and(|v| !v.is_empty()) {
            return; // at least one model is usable
        }
        missing.push(p.api_key_env.clone());
    }
    missing.dedup();
    eprintln!(
        "warning: the default agent's model ({}) needs an API key, but {} is not set.\n\
         warning: set OPENROUTER_API_KEY (openrouter/…) or ANTHROPIC_API_KEY (anthropic/…), e.g. with\n\
         warning:   CLAWHIVE_MODEL=anthropic/claude-sonnet-4-5 ANTHROPIC_API_KEY=…\n\
         warning: or point at a local OpenAI-compatible server with CLAWHIVE_LLM__PROVIDERS__OPENAI__BASE_URL=http://127.0.0.1:11434/v1\n\
         warning:   (+ OPENAI_API_KEY if it needs one) and CLAWHIVE_MODEL=openai/<model>.\n\
         warning: clawhive keeps running; chats will fail until a key is set.",
        agent.model,
        missing.join(", ")
    );
}

/// The local admin (`admin`, role `admin`, tenant `local`), created on first start, and
/// the bootstrap token registered for them (idempotent across restarts).
async fn provision_local_admin(identity: &dyn clawhive_store::IdentityStore, token: &str) -> anyhow::Result<()> {
    use clawhive_store::StoreError;
    let tenant = clawhive_core::TenantId::new(LOCAL_TENANT).expect("valid tenant id");
    let user = clawhive_core::UserId::new(LOCAL_ADMIN).expect("valid user id");
    match identity.create_user(&tenant, &user, &["admin".to_string()], &[], "Local admin").await {
        Ok(_) | Err(StoreError::Conflict(_)) => {}
        Err(e) => return Err(anyhow::anyhow!("cannot create the local admin: {e}")),
    }
    if identity.resolve_token(token).await.map_err(|e| anyhow::anyhow!("cannot check the admin token: {e}"))?.is_some()
    {
        return Ok(());
    }
    let sha = clawhive_core::token::hash_token(token);
    match identity.register_token(&tenant, &user, &sha, None, "clawhive up").await {
        Ok(_) | Err(StoreError::Conflict(_)) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot register the admin token: {e}")),
    }
}

const LOCAL_TENANT: &str = "local";
const LOCAL_ADMIN: &str = "admin";

/// A random 32-byte key as hex in `<dir>/<name>` (mode 0600), created on first use.
fn local_key_file(dir: &Path, name: &str) -> anyhow::Result<std::path::PathBuf> {
    use anyhow::Context;
    let path = dir.join(name);
    if !path.exists() {
        let key = hex::encode(rand::random::<[u8; 32]>());
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&path).with_context(|| format!("cannot create {}", path.display()))?;
        std::io::Write::write_all(&mut f, key.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(path)
}

/// The bootstrap token in `<dir>/bootstrap-token` (mode 0600), created on first use.
fn bootstrap_token(dir: &Path) -> anyhow::Result<String> {
    use anyhow::Context;
    let path = dir.join("bootstrap-token");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let t = text.trim();
        if t.len() >= 32 && t.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(t.to_string());
        }
    }
    let token = hex::encode(rand::random::<[u8; 32]>());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(&path).with_context(|| format!("cannot write {}", path.display()))?;
    std::io::Write::write_all(&mut f, format!("{token}\n").as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(token)
}
