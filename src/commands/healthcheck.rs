//! `hpflow healthcheck`: asks a running hpflow whether it answers, for container
//! HEALTHCHECKs and service monitors on images without curl or wget.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

/// `hpflow healthcheck [URL]`: exit 0 when the URL answers 2xx in time, 1 otherwise.
#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// What to ask: by default the Prometheus sink's endpoint.
    #[arg(default_value = "http://127.0.0.1:9464/metrics")]
    pub url: String,
    /// Time allowed for the whole request.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

pub async fn run(args: HealthcheckArgs) -> anyhow::Result<ExitCode> {
    let client = reqwest::Client::builder()
        .timeout(args.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    match client.get(&args.url).send().await {
        Ok(resp) if resp.status().is_success() => {
            println!("ok: {} answered {}", args.url, resp.status());
            Ok(ExitCode::SUCCESS)
        }
        Ok(resp) => {
            eprintln!("unhealthy: {} answered {}", args.url, resp.status());
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("unhealthy: {}: {e}", args.url);
            Ok(ExitCode::FAILURE)
        }
    }
}
