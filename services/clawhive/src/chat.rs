//! `clawhive chat`: one gRPC `Assistant.Chat` call per turn, deltas printed as they arrive.

use clawhive_proto::v1::assistant_client::AssistantClient;
use clawhive_proto::v1::{ChatRequest, chat_event::Event};
use std::io::Write;
use std::process::ExitCode;
use tokio::io::AsyncBufReadExt;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

#[derive(Debug, clap::Args)]
pub struct ChatArgs {
    /// Gateway gRPC address.
    #[arg(long, env = "CLAWHIVE_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,
    /// API token (`clawhive up` prints one).
    #[arg(long, env = "CLAWHIVE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Session id (default: a new `cli-<random>` id).
    #[arg(long)]
    pub session: Option<String>,
    /// Agent id (default: the tenant's default agent).
    #[arg(long)]
    pub agent: Option<String>,
    /// Deadline of each turn in milliseconds (bounded by the server).
    #[arg(long)]
    pub timeout_ms: Option<u32>,
    /// The message; without it, one turn per non-empty stdin line until EOF.
    pub message: Vec<String>,
}

pub async fn run(args: ChatArgs) -> ExitCode {
    let (channel, auth) = match crate::grpc::connect(&args.addr, args.token.as_deref()) {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("error: {reason}");
            return ExitCode::from(2);
        }
    };
    let mut client = AssistantClient::new(channel);
    let session = args.session.clone().unwrap_or_else(|| {
        let s = format!("cli-{}", hex::encode(rand::random::<[u8; 6]>()));
        eprintln!("session: {s}");
        s
    });

    if !args.message.is_empty() {
        let text = args.message.join(" ");
        return match turn(&mut client, &auth, &args, &session, text).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(status) => {
                report(&status);
                ExitCode::FAILURE
            }
        };
    }

    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        match lines.next_line().await {
            Ok(Some(line)) => {
                let line = line.trim();
                if line.is_empty() {
                    continue;
                }
                if let Err(status) = turn(&mut client, &auth, &args, &session, line.to_string()).await {
                    report(&status);
                }
            }
            Ok(None) => return ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: cannot read stdin: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
}

fn report(status: &tonic::Status) {
    let message = status.message().split_whitespace().collect::<Vec<_>>().join(" ");
    eprintln!("error: {:?}: {message}", status.code());
}

async fn turn(
    client: &mut AssistantClient<Channel>,
    auth: &MetadataValue<Ascii>,
    args: &ChatArgs,
    session: &str,
    text: String,
) -> Result<(), tonic::Status> {
    let mut request = tonic::Request::new(ChatRequest {
        session_id: session.to_string(),
        text,
        agent_id: args.agent.clone().unwrap_or_default(),
        idempotency_key: String::new(),
        timeout_ms: args.timeout_ms.unwrap_or(0),
    });
    request.metadata_mut().insert("authorization", auth.clone());
    let mut stream = client.chat(request).await?.into_inner();
    let mut out = std::io::stdout();
    let mut printed = false;
    while let Some(event) = stream.message().await? {
        match event.event {
            Some(Event::Delta(d)) if !d.text.is_empty() => {
                let _ = out.write_all(d.text.as_bytes());
                let _ = out.flush();
                printed = true;
            }
            Some(Event::Final(f)) => {
                if !printed {
                    let _ = out.write_all(f.text.as_bytes());
                }
                let _ = writeln!(out);
                let _ = out.flush();
                return Ok(());
            }
            _ => {}
        }
    }
    if printed {
        let _ = writeln!(out);
    }
    Err(tonic::Status::unknown("the stream ended without a final reply"))
}
