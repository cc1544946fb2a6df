//! `confluo serve --config FILE` and `confluo check-config FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use confluo_server::{ConfigError, Server, ServerConfig};

/// `confluo serve` options.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The node's TOML config file.
    #[arg(long, short)]
    config: PathBuf,
}

/// `confluo check-config` options.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The TOML config file to check.
    file: PathBuf,
}

/// Prints each problem as `FILE:LINE:COLUMN: message`, as compilers do.
fn report(path: &std::path::Path, e: &ConfigError) {
    match e {
        ConfigError::Invalid { problems } => {
            for p in problems {
                eprintln!("{}:{p}", path.display());
            }
        }
        other => eprintln!("{other}"),
    }
}

/// Checks a config without starting anything.
pub fn check(args: CheckArgs) -> ExitCode {
    match ServerConfig::load(&args.file) {
        Ok(config) => {
            println!(
                "{}: ok: node {:?} (id {}), {} peer(s)",
                args.file.display(),
                config.node.name,
                config.node.id,
                config.peers.len()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            report(&args.file, &e);
            ExitCode::FAILURE
        }
    }
}

/// Runs a server until SIGTERM or SIGINT, then drains and exits 0.
pub fn serve(args: ServeArgs) -> ExitCode {
    init_logs();
    let config = match ServerConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            report(&args.config, &e);
            return ExitCode::FAILURE;
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("confluo serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(Server::run(config, signal())) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confluo serve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Logs to stderr, at the level `CONFLUO_LOG` names (default `info`).
fn init_logs() {
    let level = std::env::var("CONFLUO_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .try_init();
}
