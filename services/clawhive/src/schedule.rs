//! `clawhive schedule create|list|get|delete|pause|resume`: your scheduled jobs
//! over the gateway's gRPC `Schedules` service.

use clawhive_proto::v1 as pb;
use clawhive_proto::v1::schedules_client::SchedulesClient;
use std::process::ExitCode;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

#[derive(Debug, clap::Args)]
pub struct ScheduleArgs {
    /// Gateway gRPC address.
    #[arg(long, env = "CLAWHIVE_ADDR", default_value = "http://127.0.0.1:50051", global = true)]
    pub addr: String,
    /// API token (`clawhive up` prints one).
    #[arg(long, env = "CLAWHIVE_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    #[command(subcommand)]
    pub command: ScheduleCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum ScheduleCommand {
    /// Create a job: exactly one of --cron, --every or --at, and the prompt.
    Create {
        /// What the agent is asked at each run.
        prompt: String,
        /// 5-field cron expression, e.g. "0 7 * * 1-5".
        #[arg(long)]
        cron: Option<String>,
        /// IANA time zone of --cron (default: the server's scheduler.default_timezone).
        #[arg(long, default_value = "")]
        timezone: String,
        /// Interval in seconds.
        #[arg(long)]
        every: Option<u64>,
        /// One run at this Unix time in milliseconds.
        #[arg(long)]
        at: Option<i64>,
        #[arg(long, default_value = "")]
        agent: String,
        /// Deliver to your Slack DM: TEAM:USER (your linked Slack identity).
        #[arg(long)]
        slack_dm: Option<String>,
        /// Create it paused.
        #[arg(long)]
        paused: bool,
    },
    /// List your jobs (`--all`: every job of your tenant, admins only).
    List {
        #[arg(long)]
        all: bool,
    },
    /// Show one job.
    Get { job_id: String },
    /// Delete a job.
    Delete { job_id: String },
    /// Pause a job.
    Pause { job_id: String },
    /// Resume a paused job; it runs at its next slot.
    Resume { job_id: String },
}

pub async fn run(args: ScheduleArgs) -> ExitCode {
    let (channel, auth) = match crate::grpc::connect(&args.addr, args.token.as_deref()) {
        Ok(c) => c,
        Err(reason) => {
            eprintln!("error: {reason}");
            return ExitCode::from(2);
        }
    };
    let client = SchedulesClient::new(channel);
    match call(client, &auth, args.command).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(m)) => {
            eprintln!("error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Status(status)) => {
            let message = status.message().split_whitespace().collect::<Vec<_>>().join(" ");
            eprintln!("error: {:?}: {message}", status.code());
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    Usage(String),
    Status(tonic::Status),
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        Failure::Status(s)
    }
}

fn authed<T>(msg: T, auth: &MetadataValue<Ascii>) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert("authorization", auth.clone());
    req
}

fn schedule_text(s: Option<&pb::JobSchedule>) -> String {
    use pb::job_schedule::Kind;
    match s.and_then(|s| s.kind.as_ref()) {
        Some(Kind::Cron(c)) => format!("cron \"{}\" {}", c.expr, c.timezone),
        Some(Kind::Every(e)) => format!("every {}s", e.interval_secs),
        Some(Kind::At(a)) => format!("at {}", clawhive_core::schedule::rfc3339(a.at_unix_ms)),
        None => "?".into(),
    }
}

fn print_job(j: &pb::Job) {
    let state = if j.enabled { "active".to_string() } else { format!("paused {}", j.paused_reason) };
    let time = clawhive_core::schedule::rfc3339;
    let last = j.last_run.as_ref().map(|r| format!("{} at {}", r.outcome, time(r.slot_unix_ms))).unwrap_or("-".into());
    let next = if j.next_run_unix_ms == 0 { "-".to_string() } else { time(j.next_run_unix_ms) };
    println!(
        "{}\t{}\t{}\tnext={}\tlast={}\towner={}\t{}",
        j.job_id,
        schedule_text(j.schedule.as_ref()),
        state.trim(),
        next,
        last,
        j.owner_id,
        j.prompt
    );
}

fn create_request(command: ScheduleCommand) -> Result<pb::CreateJobRequest, Failure> {
    let ScheduleCommand::Create { prompt, cron, timezone, every, at, agent, slack_dm, paused } = command else {
        unreachable!("only called for create");
    };
    use pb::job_schedule::Kind;
    let kind = match (cron, every, at) {
        (Some(expr), None, None) => Kind::Cron(pb::CronSchedule { expr, timezone }),
        (None, Some(interval_secs), None) => Kind::Every(pb::EverySchedule { interval_secs }),
        (None, None, Some(at_unix_ms)) => Kind::At(pb::AtSchedule { at_unix_ms }),
        _ => return Err(Failure::Usage("give exactly one of --cron, --every or --at".into())),
    };
    let delivery = match slack_dm {
        None => None,
        Some(dm) => {
            let Some((team_id, user_id)) = dm.split_once(':') else {
                return Err(Failure::Usage(format!("--slack-dm {dm:?} must be TEAM:USER, e.g. T123:U456")));
            };
            Some(pb::JobDelivery {
                target: Some(pb::job_delivery::Target::SlackDm(pb::SlackDmDelivery {
                    team_id: team_id.into(),
                    user_id: user_id.into(),
                })),
            })
        }
    };
    Ok(pb::CreateJobRequest {
        schedule: Some(pb::JobSchedule { kind: Some(kind) }),
        prompt,
        agent_id: agent,
        delivery,
        paused,
    })
}

async fn call(
    mut c: SchedulesClient<Channel>,
    auth: &MetadataValue<Ascii>,
    command: ScheduleCommand,
) -> Result<(), Failure> {
    match command {
        cmd @ ScheduleCommand::Create { .. } => {
            let job = c.create_job(authed(create_request(cmd)?, auth)).await?.into_inner();
            print_job(&job);
        }
        ScheduleCommand::List { all } => {
            let jobs = c.list_jobs(authed(pb::ListJobsRequest { all_users: all }, auth)).await?.into_inner().jobs;
            if jobs.is_empty() {
                eprintln!("no jobs");
            }
            jobs.iter().for_each(print_job);
        }
        ScheduleCommand::Get { job_id } => {
            print_job(&c.get_job(authed(pb::GetJobRequest { job_id }, auth)).await?.into_inner());
        }
        ScheduleCommand::Delete { job_id } => {
            c.delete_job(authed(pb::DeleteJobRequest { job_id: job_id.clone() }, auth)).await?;
            println!("deleted {job_id}");
        }
        ScheduleCommand::Pause { job_id } => {
            print_job(&c.pause_job(authed(pb::PauseJobRequest { job_id }, auth)).await?.into_inner());
        }
        ScheduleCommand::Resume { job_id } => {
            print_job(&c.resume_job(authed(pb::ResumeJobRequest { job_id }, auth)).await?.into_inner());
        }
    }
    Ok(())
}
