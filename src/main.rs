use std::process::ExitCode;

use alert_triage_operator::cli::{Cli, Command};
use alert_triage_operator::{controller, crd, redact, replay, telemetry};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Crd => {
            print!("{}", crd::crd_yaml());
            Ok(())
        }
        Command::Replay(args) => replay::run(&args, &mut std::io::stdout().lock()),
        Command::Run(args) => run(*args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: alert_triage_operator::cli::RunArgs) -> anyhow::Result<()> {
    // Before anything is read from the cluster, so no evidence or log line escapes the
    // user's patterns.
    redact::install(args.redact_patterns.clone())?;
    let client = alert_triage_operator::kube_client(args.kubeconfig.as_deref()).await?;
    controller::run(client, &args).await
}
