//! `confluo demo` (being written).

use std::process::ExitCode;

use clap::Args;

/// `confluo demo` options.
#[derive(Args, Debug)]
pub struct DemoArgs {}

/// Runs the demo.
pub fn run(_args: DemoArgs) -> ExitCode {
    ExitCode::FAILURE
}
