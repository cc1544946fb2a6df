//! confluo-chaos: black-box fault testing of real `confluo serve` processes, as Jepsen tests
//! databases. The simulator (confluo-sim) proves the sans-IO node; this harness runs what
//! users run: the binary, its tokio driver, the TCP transport, the store's fsyncs, the RESP
//! server, process death.
//!
//! A run starts a cluster (by default three datacenters of a leader and a follower), each
//! node a `confluo serve` process with a generated config and its own data directory. Every
//! link between nodes runs through a [`Proxy`](confluo_server::proxy::Proxy) the harness
//! owns, so the harness *is* the network: it cuts links (both ways or one way), delays and
//! throttles them. Clients (the `redis` crate) write every value type to a few keys at every
//! leader and read everywhere; a seeded nemesis kills, pauses, partitions, slows and wipes.
//! After the chaos phase everything heals, the cluster must converge, and checkers read the
//! history against the final state ([`check`]).
//!
//! The same seed gives the same fault schedule:
//!
//! ```
//! use std::time::Duration;
//! use confluo_chaos::{FaultKind, Options};
//!
//! let mut options = Options::new("confluo".into());
//! options.seed = 42;
//! options.chaos = Duration::from_secs(30);
//! options.faults = FaultKind::parse_list("kill,partition,wipe").unwrap();
//! let schedule = options.schedule();
//! assert_eq!(schedule, options.schedule());
//! assert!(schedule.episodes.iter().all(|e| e.end <= options.chaos));
//! println!("{schedule}");
//! ```
//!
//! Running one needs the `confluo` binary (`confluo chaos` passes itself):
//!
//! ```no_run
//! # async fn example() -> Result<(), confluo_chaos::ChaosError> {
//! let options = confluo_chaos::Options::new(std::env::current_exe().unwrap());
//! let report = confluo_chaos::run(&options, &|_progress| {}).await?;
//! println!("{report}");
//! assert!(report.passed());
//! # Ok(())
//! # }
//! ```

pub mod check;
mod cluster;
mod config;
mod error;
pub mod history;
mod nemesis;
mod process;
mod report;
mod run;
mod shape;
mod workload;

pub use config::node_config;
pub use error::ChaosError;
pub use nemesis::{Episode, Fault, FaultKind, NemesisLog, Schedule};
pub use report::{OpCounts, Report, Summary};
pub use run::{Options, Progress, run};
pub use shape::{Member, Shape, Topology};
