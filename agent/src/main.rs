//! `palisade-agent`: the enforcement agent that will sit in front of each API instance.
//! Enrollment, bundle verification and enforcement arrive with the agents issue; until then
//! the binary only describes itself and refuses to pretend to enforce anything.

use clap::Parser;
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "palisade-agent",
    version,
    about = "Palisade enforcement agent (not yet functional)",
    long_about = "Palisade enforcement agent.\n\nIt will enroll with a Palisade control plane, \
                  verify and activate signed policy bundles, and enforce them in front of an \
                  API instance. This build does not enforce anything yet: it exits with an error \
                  instead of running unprotected."
)]
struct Args {}

fn main() -> ExitCode {
    let _ = Args::parse();
    eprintln!("palisade-agent: enforcement is not implemented in this build; refusing to run");
    ExitCode::from(2)
}
