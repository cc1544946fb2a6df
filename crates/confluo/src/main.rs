//! The `confluo` binary: `confluo demo` shows three datacenters replicating over TCP through
//! a partition; `confluo sim` runs the deterministic fault simulator.

mod demo;
mod sim;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Multi-leader replication over CRDTs: a demo and a fault simulator.
#[derive(Parser, Debug)]
#[command(name = "confluo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Three datacenters (leader + follower each) on 127.0.0.1 over TCP: concurrent
    /// conflicting writes, a partition, heal, convergence.
    Demo(demo::DemoArgs),
    /// Runs the deterministic simulator over many seeds and checks every run.
    Sim(sim::SimArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(args) => demo::run(args),
        Command::Sim(args) => sim::run(args),
    }
}
