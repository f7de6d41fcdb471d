#![forbid(unsafe_code)]
//! `placement-operator`: controllers (with their own issue), the `simulate` and `plan` commands, and `crdgen`, which
//! writes (or checks) the CRD files under `deploy/crds`.

use clap::{Parser, Subcommand, ValueEnum};
use placement_operator::{crdgen, plan, simulate};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "placement-operator", version, about = "Keeps pod placement true and utilization balanced")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a scenario (the embedded demo by default) through every placement decision and print the result.
    Simulate {
        /// A scenario file (docs/scenarios.md); without it, the embedded demo runs.
        #[arg(long, env = "PLACEMENT_SCENARIO")]
        scenario: Option<std::path::PathBuf>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Table, env = "PLACEMENT_FORMAT")]
        format: Format,
    },
    /// Print the rebalance plan the controller would make next (never evicts): against the cluster of
    /// the kubeconfig, or saved objects (`--snapshot`), as a table with reasons or JSON.
    Plan(plan::PlanArgs),
    /// Write every placement CRD to `<out>/<plural>.placement.dev.yaml`, or with --check fail when the
    /// files there differ from what the code generates.
    Crdgen {
        /// Directory of the CRD files.
        #[arg(long, default_value = "deploy/crds")]
        out: std::path::PathBuf,
        /// Write nothing; exit non-zero, naming each drifting file, when the files differ.
        #[arg(long)]
        check: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crdgen { out, check } => run_crdgen(&out, check),
        Command::Plan(args) => plan::main(args),
        Command::Simulate { scenario, format } => {
            let loaded = match &scenario {
                Some(path) => {
                    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display())).and_then(|text| {
                        simulate::Scenario::parse(&path.display().to_string(), &text).map_err(|e| e.to_string())
                    })
                }
                None => simulate::Scenario::demo().map_err(|e| e.to_string()),
            };
            let scenario = match loaded {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let report = simulate::run(&scenario);
            match format {
                Format::Table => print!("{}", report.render()),
                Format::Json => match serde_json::to_string_pretty(&report) {
                    Ok(json) => println!("{json}"),
                    Err(e) => {
                        eprintln!("error: cannot encode the report: {e}");
                        return ExitCode::FAILURE;
                    }
                },
            }
            ExitCode::SUCCESS
        }
    }
}

fn run_crdgen(out: &std::path::Path, check: bool) -> ExitCode {
    if check {
        match crdgen::check(out) {
            Ok(drift) if drift.is_empty() => {
                println!("CRDs in {} are up to date", out.display());
                ExitCode::SUCCESS
            }
            Ok(drift) => {
                for d in &drift {
                    eprintln!("error: {d}");
                }
                eprintln!(
                    "run `cargo run -p placement-operator -- crdgen --out {}` and commit the result",
                    out.display()
                );
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        }
    } else {
        match crdgen::write(out) {
            Ok(files) => {
                for f in files {
                    println!("{}", f.display());
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        }
    }
}
