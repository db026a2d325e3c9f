//! `palisade-agent`: parses the command line, sets up logging and runs the agent.
//! Exit codes: 0 after a clean stop, 1 on a start-up failure, 2 when enrollment is refused
//! (or impossible without a token) and on command-line errors.

use agent::app::{self, Failure};
use agent::config::{Args, Config};
use clap::Parser;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

// Small allocations on every request, freed on other threads (the spool's writer).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match Config::from_args(args) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("palisade-agent: {message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("palisade-agent: cannot start the runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(app::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Enrollment(message)) => {
            eprintln!("palisade-agent: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Other(message)) => {
            eprintln!("palisade-agent: {message}");
            ExitCode::from(1)
        }
    }
}
