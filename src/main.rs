use std::process::ExitCode;

use alert_triage_operator::cli::{Cli, Command, RunbookCommand};
use alert_triage_operator::{replay, runtime, telemetry};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let result = match cli.command {
        Command::Crd(args) => crd(args.dir.as_deref()),
        Command::Replay(args) => replay::run(&args, &mut std::io::stdout().lock()),
        Command::Runbook(RunbookCommand::Check { files }) => {
            replay::check_runbooks(&files, &mut std::io::stdout().lock())
        }
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

fn crd(dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let files = alert_triage_operator::crd_files();
    match dir {
        Some(dir) => {
            for (name, yaml) in files {
                let path = dir.join(name);
                std::fs::write(&path, yaml)
                    .map_err(|e| anyhow::anyhow!("writing {}: {e}", path.display()))?;
            }
        }
        None => {
            let all: Vec<String> = files.into_iter().map(|(_, yaml)| yaml).collect();
            print!("{}", all.join("---\n"));
        }
    }
    Ok(())
}

async fn run(args: alert_triage_operator::cli::RunArgs) -> anyhow::Result<()> {
    let client = alert_triage_operator::kube_client(args.kubeconfig.as_deref()).await?;
    runtime::run(client, &args).await
}
