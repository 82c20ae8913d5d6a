//! `clawhive admin secret|audit|policy`: named secrets (values go in, never out),
//! the audit trail by user and time, and the tenant's own policy document.

use clawhive_proto::v1 as pb;
use clawhive_proto::v1::admin_client::AdminClient;
use std::io::Read;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// Store a secret; the value is read from standard input (never from the command line).
    Put {
        name: String,
        /// Whose secret: a user id; default the whole tenant's.
        #[arg(long)]
        user: Option<String>,
    },
    /// List secret names and owners (never values).
    List,
    /// Delete a secret.
    Delete {
        name: String,
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this user's records.
    #[arg(long)]
    pub user: Option<String>,
    /// Records of the last this many minutes (default: all kept).
    #[arg(long)]
    pub since_minutes: Option<u32>,
    /// At most this many records, oldest first.
    #[arg(long, default_value_t = 100)]
    pub limit: u32,
}

#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Print the tenant's own policy (empty: the deployment's applies).
    Get,
    /// Replace the tenant's policy with a TOML file (`-` = standard input).
    Set { file: String },
    /// Remove the tenant's policy; the deployment's applies again.
    Clear,
}

fn authed<T>(msg: T, auth: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("authorization", auth.clone());
    req
}

fn invalid(message: String) -> tonic::Status {
    tonic::Status::invalid_argument(message)
}

pub async fn secret(
    c: &mut AdminClient<Channel>,
    auth: &MetadataValue<Ascii>,
    command: SecretCommand,
) -> Result<(), tonic::Status> {
    match command {
        SecretCommand::Put { name, user } => {
            let mut value = String::new();
            std::io::stdin().read_to_string(&mut value).map_err(|e| invalid(format!("reading stdin: {e}")))?;
            let value = value.trim_end_matches(['\n', '\r']).to_string();
            if value.is_empty() {
                return Err(invalid("no secret value on standard input".into()));
            }
            let user_id = user.unwrap_or_default();
            let req =
                pb::PutSecretRequest { user_id: user_id.clone(), name: name.clone(), value, ..Default::default() };
            c.put_secret(authed(req, auth)).await?;
            let owner = if user_id.is_empty() { "the tenant".to_string() } else { format!("user {user_id}") };
            println!("stored secret {name} for {owner}");
        }
        SecretCommand::List => {
            for s in c.list_secrets(authed(pb::ListSecretsRequest::default(), auth)).await?.into_inner().secrets {
                let owner = if s.user_id.is_empty() { "(tenant)".to_string() } else { s.user_id };
                println!("{}\t{owner}", s.name);
            }
        }
        SecretCommand::Delete { name, user } => {
            let req =
                pb::DeleteSecretRequest { user_id: user.unwrap_or_default(), name: name.clone(), ..Default::default() };
            c.delete_secret(authed(req, auth)).await?;
            println!("deleted secret {name}");
        }
    }
    Ok(())
}

pub async fn audit(
    c: &mut AdminClient<Channel>,
    auth: &MetadataValue<Ascii>,
    args: AuditArgs,
) -> Result<(), tonic::Status> {
    let since_unix_ms = args
        .since_minutes
        .map(|m| clawhive_core::time::now_unix_ms().saturating_sub(i64::from(m) * 60_000))
        .unwrap_or(0);
    let req = pb::QueryAuditRequest {
        user_id: args.user.unwrap_or_default(),
        since_unix_ms,
        limit: args.limit,
        ..Default::default()
    };
    for r in c.query_audit(authed(req, auth)).await?.into_inner().records {
        let decision = if r.allowed { "allow" } else { "deny" };
        println!(
            "{}\t{}\t{}\t{}\t{}\t{decision}\t{}\trequest={}",
            r.at_unix_ms, r.user_id, r.agent_id, r.kind, r.tool, r.reason, r.request_id
        );
    }
    Ok(())
}

pub async fn policy(
    c: &mut AdminClient<Channel>,
    auth: &MetadataValue<Ascii>,
    command: PolicyCommand,
) -> Result<(), tonic::Status> {
    match command {
        PolicyCommand::Get => {
            let p = c.get_policy(authed(pb::GetPolicyRequest::default(), auth)).await?.into_inner();
            if p.version == 0 {
                eprintln!("the tenant has no policy of its own; the deployment's policy applies");
            } else {
                eprintln!("version {} (updated {})", p.version, p.updated_unix_ms);
                print!("{}", p.policy_toml);
            }
        }
        PolicyCommand::Set { file } => {
            let text = if file == "-" {
                let mut t = String::new();
                std::io::stdin().read_to_string(&mut t).map_err(|e| invalid(format!("reading stdin: {e}")))?;
                t
            } else {
                std::fs::read_to_string(&file).map_err(|e| invalid(format!("{file}: {e}")))?
            };
            let req = pb::PutPolicyRequest { policy_toml: text, ..Default::default() };
            let v = c.put_policy(authed(req, auth)).await?.into_inner().version;
            println!("policy version {v} stored; workers apply it within seconds");
        }
        PolicyCommand::Clear => {
            c.delete_policy(authed(pb::DeletePolicyRequest::default(), auth)).await?;
            println!("tenant policy removed; the deployment's policy applies");
        }
    }
    Ok(())
}
