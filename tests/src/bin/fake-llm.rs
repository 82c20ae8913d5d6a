//! Runs the fake LLM server standalone: `fake-llm [--port N]` (default: a free port).
//! Prints its base URLs, then serves until interrupted.

use anyhow::{Context, bail};
use std::io::Write;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut port: u16 = 0;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                port = args.next().context("--port needs a value")?.parse().context("--port must be a port number")?
            }
            "-h" | "--help" => {
                println!("usage: fake-llm [--port N]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?}; usage: fake-llm [--port N]"),
        }
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.context("bind the fake LLM")?;
    let addr = listener.local_addr()?;
    println!("openai_base_url=http://{addr}/v1");
    println!("anthropic_base_url=http://{addr}");
    std::io::stdout().flush()?;
    tokio::select! {
        served = clawhive_tests::fake_llm::serve(listener) => served.context("serve the fake LLM")?,
        _ = tokio::signal::ctrl_c() => {}
    }
    Ok(())
}
