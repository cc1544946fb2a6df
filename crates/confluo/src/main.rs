//! The `confluo` binary: `confluo serve --config FILE` runs a node that Redis clients talk
//! to; `confluo check-config FILE` checks a config; `confluo demo` shows three datacenters
//! replicating through a partition; `confluo sim` runs the deterministic fault simulator;
//! `confluo status` shows every node of a cluster, its lag and its digest; `confluo
//! hash-password` hashes a client password for the config; `confluo chaos` runs the
//! black-box fault harness against real `confluo serve` processes.

mod chaos;
mod demo;
mod hash_password;
mod serve;
mod sim;
mod status;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Multi-leader replication over CRDTs: a Redis-protocol server, a demo and a fault simulator.
#[derive(Parser, Debug)]
#[command(name = "confluo", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs a node: RESP clients on its client address, replication on its peer address.
    /// SIGTERM or SIGINT drains it (writes refused, peers catch up) and exits 0.
    Serve(serve::ServeArgs),
    /// Checks a config file without starting anything; problems name their line.
    CheckConfig(serve::CheckArgs),
    /// Three datacenters (leader + follower each) on 127.0.0.1 over TCP: concurrent
    /// conflicting writes, a partition, heal, convergence.
    Demo(demo::DemoArgs),
    /// Runs the deterministic simulator over many seeds and checks every run.
    Sim(sim::SimArgs),
    /// Reads a password on standard input and prints its salted hash for the config's
    /// `[auth]` (`requirepass` or a user's `password`).
    HashPassword(hash_password::HashArgs),
    /// Shows every node a config names (or one address): role, datacenter, reachable,
    /// lag to each peer, digest (equal digests: converged). `--watch` refreshes it.
    Status(status::StatusArgs),
    /// Runs real `confluo serve` processes (this binary) through proxied links under a seeded
    /// nemesis (kill -9, pauses, partitions, slow links, disk loss), then heals and checks
    /// the clients' history against the converged state.
    Chaos(chaos::ChaosArgs),
}

/// mimalloc rather than the system's allocator: a write's update is allocated on the node's
/// task and freed on the storage thread and in the sessions, and glibc's malloc spends a
/// quarter of a replicating node's CPU consolidating and moving such chunks between
/// arenas (a profile of the node benchmark's throughput row; Redis ships with jemalloc for
/// the same reason). The node benchmark measures both.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::serve(args),
        Command::CheckConfig(args) => serve::check(args),
        Command::Demo(args) => demo::run(args),
        Command::Sim(args) => sim::run(args),
        Command::HashPassword(args) => hash_password::run(args),
        Command::Status(args) => status::run(args),
        Command::Chaos(args) => chaos::run(args),
    }
}
