//! `clawhive admin`: users, API tokens, pairing codes (here) and secrets, audit and
//! policy ([`crate::admin_ops`]) over the gateway's gRPC `Admin` service (needs an admin token, e.g. the one `clawhive up` prints).

use clawhive_proto::v1 as pb;
use clawhive_proto::v1::admin_client::AdminClient;
use std::process::ExitCode;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Gateway gRPC address.
    #[arg(long, env = "CLAWHIVE_ADDR", default_value = "http://127.0.0.1:50051", global = true)]
    pub addr: String,
    /// Admin API token (`clawhive up` prints one).
    #[arg(long, env = "CLAWHIVE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Users of your tenant.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// API tokens of your tenant's users.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Pairing codes of new Slack users.
    Pairing {
        #[command(subcommand)]
        command: PairingCommand,
    },
    /// Named secrets for tools (values are read from stdin and never shown).
    Secret {
        #[command(subcommand)]
        command: crate::admin_ops::SecretCommand,
    },
    /// The audit trail: authorization decisions and tool calls.
    Audit(crate::admin_ops::AuditArgs),
    /// Your tenant's own policy document.
    Policy {
        #[command(subcommand)]
        command: crate::admin_ops::PolicyCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Create a user.
    Create {
        user: String,
        /// A role (repeatable), e.g. `--role admin`.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A group (repeatable).
        #[arg(long = "group")]
        groups: Vec<String>,
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// List users.
    List,
    /// Delete a user and revoke their tokens.
    Delete { user: String },
}

#[derive(Debug, clap::Subcommand)]
pub enum PairingCommand {
    /// Pending codes (unexpired, not yet approved).
    List,
    /// Approve a code: link the Slack user to a user of your tenant.
    Approve {
        code: String,
        /// Link to this user (created if missing); default `slack:<team>:<user>`.
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Issue a token for a user; it is printed once and never stored.
    Issue {
        user: String,
        /// Expire after this many days (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Revoke a token by id.
    Revoke { token_id: String },
    /// List a user's tokens (ids, labels, expiry; never the tokens).
    List { user: String },
}

pub async fn run(args: AdminArgs) -> ExitCode {
    let (channel, auth) = match crate::grpc::connect(&args.addr, args.token.as_deref()) {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("error: {reason}");
            return ExitCode::from(2);
        }
    };
    let client = AdminClient::new(channel);
    match call(client, &auth, args.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(status) => {
            let message = status.message().split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("error: {:?}: {message}", status.code());
            ExitCode::FAILURE
        }
    }
}

fn authed<T>(msg: T, auth: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("authorization", auth.clone());
    req
}

async fn call(
    mut c: AdminClient<Channel>,
    auth: &MetadataValue<Ascii>,
    command: AdminCommand,
) -> Result<(), tonic::Status> {
    match command {
        AdminCommand::Secret { command } => crate::admin_ops::secret(&mut c, auth, command).await?,
        AdminCommand::Audit(args) => crate::admin_ops::audit(&mut c, auth, args).await?,
        AdminCommand::Policy { command } => crate::admin_ops::policy(&mut c, auth, command).await?,
        AdminCommand::User { command: UserCommand::Create { user, roles, groups, display_name } } => {
            let req = pb::CreateUserRequest { user_id: user, roles, groups, display_name, ..Default::default() };
            let u = c.create_user(authed(req, auth)).await?.into_inner().user.unwrap_or_default();
            println!("created user {} in tenant {} (roles: {})", u.user_id, u.tenant_id, u.roles.join(","));
        }
        AdminCommand::User { command: UserCommand::List } => {
            for u in c.list_users(authed(pb::ListUsersRequest::default(), auth)).await?.into_inner().users {
                println!(
                    "{}\troles={}\tgroups={}\t{}",
                    u.user_id,
                    u.roles.join(","),
                    u.groups.join(","),
                    u.display_name
                );
            }
        }
        AdminCommand::User { command: UserCommand::Delete { user } } => {
            c.delete_user(authed(pb::DeleteUserRequest { user_id: user.clone(), ..Default::default() }, auth)).await?;
            println!("deleted user {user}; their tokens are revoked");
        }
        AdminCommand::Token { command: TokenCommand::Issue { user, expires_in_days, label } } => {
            let expires_at_unix_ms = expires_in_days
                .map(|d| clawhive_core::time::now_unix_ms().saturating_add(i64::from(d) * 86_400_000))
                .unwrap_or(0);
            let req = pb::IssueTokenRequest { user_id: user.clone(), expires_at_unix_ms, label, ..Default::default() };
            let t = c.issue_token(authed(req, auth)).await?.into_inner();
            eprintln!("token id: {} (for {user}); the token is shown only once:", t.token_id);
            println!("{}", t.token);
        }
        AdminCommand::Token { command: TokenCommand::Revoke { token_id } } => {
            let req = pb::RevokeTokenRequest { token_id: token_id.clone(), ..Default::default() };
            c.revoke_token(authed(req, auth)).await?;
            println!("revoked {token_id}");
        }
        AdminCommand::Pairing { command: PairingCommand::List } => {
            for p in c.list_pairings(authed(pb::ListPairingsRequest::default(), auth)).await?.into_inner().pairings {
                println!(
                    "{}\t{}:{}\texpires={}\t{}",
                    p.code, p.provider, p.external_id, p.expires_unix_ms, p.display_name
                );
            }
        }
        AdminCommand::Pairing { command: PairingCommand::Approve { code, user } } => {
            let req = pb::ApprovePairingRequest { code, user_id: user.unwrap_or_default(), ..Default::default() };
            let r = c.approve_pairing(authed(req, auth)).await?.into_inner();
            let (p, u) = (r.pairing.unwrap_or_default(), r.user.unwrap_or_default());
            println!(
                "approved {}: {}:{} is now user {} in tenant {}",
                p.code, p.provider, p.external_id, u.user_id, u.tenant_id
            );
        }
        AdminCommand::Token { command: TokenCommand::List { user } } => {
            let req = pb::ListTokensRequest { user_id: user, ..Default::default() };
            for t in c.list_tokens(authed(req, auth)).await?.into_inner().tokens {
                let expires =
                    if t.expires_at_unix_ms == 0 { "never".to_string() } else { t.expires_at_unix_ms.to_string() };
                let state = if t.revoked { "revoked" } else { "active" };
                println!("{}\t{state}\texpires={expires}\t{}", t.token_id, t.label);
            }
        }
    }
    Ok(())
}
