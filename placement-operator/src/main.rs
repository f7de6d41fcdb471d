#![forbid(unsafe_code)]
//! `placement-operator`: controllers (with their own issue) and the `simulate` command.

use clap::{Parser, Subcommand, ValueEnum};
use placement_operator::simulate;
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
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
