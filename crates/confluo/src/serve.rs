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
    /// Which log lines to print, as RUST_LOG says it (`info`, `confluo_server=debug,warn`);
    /// default: RUST_LOG, else `info`.
    #[arg(long, value_name = "FILTER")]
    log: Option<String>,
    /// `human` (the default) or `json` (one JSON object a line, for log shippers).
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event.
    Human,
    /// One JSON object per event.
    Json,
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
    if let Err(e) = init_logs(args.log.as_deref(), args.log_format) {
        eprintln!("confluo serve: {e}");
        return ExitCode::FAILURE;
    }
    let config = match ServerConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            report(&args.config, &e);
            return ExitCode::FAILURE;
        }
    };
    let mut builder = if config.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(config.threads);
        b
    };
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("confluo serve: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The handlers are installed before the server binds: a SIGTERM that comes while the
    // store is recovered must drain, not kill (the default action).
    let stop = {
        let _context = runtime.enter();
        signal()
    };
    match runtime.block_on(Server::run(config, stop)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("confluo serve: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Installs the SIGTERM and SIGINT handlers now; the future resolves on either.
pub(crate) fn signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match handlers {
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
}

/// Logs to stderr: lines the filter lets through (`--log`, else `RUST_LOG`, else `info`),
/// readable or as JSON.
fn init_logs(filter: Option<&str>, format: LogFormat) -> Result<(), String> {
    use tracing_subscriber::EnvFilter;
    let filter = match filter {
        Some(f) => EnvFilter::try_new(f).map_err(|e| format!("--log {f:?}: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A subscriber set already (a second call in one process) is not an error.
    let _ = match format {
        LogFormat::Human => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}
