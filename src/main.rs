//! The `sparkbook` command: the notebook workflow on CSV files, from a shell.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sparkbook::Session;

/// Spark's broadcast / parallelize / mapPartitions / collect workflow, on one machine.
#[derive(Parser, Debug)]
#[command(name = "sparkbook", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the session a job would get on this machine (threads, partitions).
    Info {
        /// Worker threads (default: all cores).
        #[arg(long)]
        threads: Option<usize>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> sparkbook::Result<()> {
    match cli.command {
        Command::Info { threads } => {
            let mut builder = Session::builder();
            if let Some(threads) = threads {
                builder = builder.threads(threads);
            }
            let sc = builder.build()?;
            println!("sparkbook {}", env!("CARGO_PKG_VERSION"));
            println!("threads: {}", sc.threads());
            println!("default partitions: {}", sc.default_parallelism());
            println!(
                "POLARS_MAX_THREADS: {}",
                std::env::var("POLARS_MAX_THREADS").unwrap_or_else(|_| "unset (all cores)".into())
            );
            Ok(())
        }
    }
}
