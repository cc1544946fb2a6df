//! `confluo status`: a table of every node a config names (or of one address), with its
//! role, datacenter, whether it answers, its lag to each peer and its digest.
//!
//! It talks to nodes over RESP, as redis-cli would: every member has a client address in
//! the config (the HTTP address is optional and only in a node's own `[node]` table), and
//! CONFLUO.DIGEST, the convergence check, is a RESP command. Per node it sends `INFO
//! replication confluo` (role, name, datacenter), CONFLUO.PEERS (the per-peer table) and
//! CONFLUO.DIGEST. Equal digests mean equal replicated state.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use confluo_server::ServerConfig;

/// How long a node may take to answer before it is shown as unreachable.
const TIMEOUT: Duration = Duration::from_millis(800);

/// `confluo status` options.
#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["config", "addr"])))]
pub struct StatusArgs {
    /// A node's config file: every node it names is shown.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// One node's client address (host:port).
    #[arg(long)]
    addr: Option<SocketAddr>,
    /// Refresh the table in place once a second, until interrupted.
    #[arg(long)]
    watch: bool,
}

/// One node to ask: its name in the config (if known) and its client address.
struct Target {
    name: Option<String>,
    addr: SocketAddr,
}

/// What one node answered.
struct NodeStatus {
    name: String,
    role: String,
    datacenter: String,
    digest: String,
    peers: Vec<HashMap<String, String>>,
}

/// Runs `confluo status`: exit 0 when every node answered.
pub fn run(args: StatusArgs) -> ExitCode {
    let targets = match (&args.config, args.addr) {
        (Some(path), _) => match ServerConfig::load(path) {
            Ok(config) => config
                .members()
                .map(|m| Target {
                    name: Some(m.name.clone()),
                    addr: m.client_addr,
                })
                .collect(),
            Err(e) => {
                eprintln!("confluo status: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        (None, Some(addr)) => vec![Target { name: None, addr }],
        (None, None) => unreachable!("clap requires --config or --addr"),
    };
    loop {
        let rows: Vec<(&Target, Result<NodeStatus, String>)> =
            targets.iter().map(|t| (t, ask(t.addr))).collect();
        let table = render(&rows);
        if !args.watch {
            print!("{table}");
            return if rows.iter().all(|(_, r)| r.is_ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
        // Home the cursor and clear the screen: the table refreshes in place.
        print!("\x1b[H\x1b[2J{table}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn ask(addr: SocketAddr) -> Result<NodeStatus, String> {
    let client = redis::Client::open(format!("redis://{addr}/")).map_err(|e| e.to_string())?;
    let mut con = client
        .get_connection_with_timeout(TIMEOUT)
        .map_err(|e| e.to_string())?;
    con.set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .arg("confluo")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let fields: HashMap<&str, &str> = info
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .collect();
    let peers: Vec<HashMap<String, String>> = redis::cmd("CONFLUO.PEERS")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let digest: String = redis::cmd("CONFLUO.DIGEST")
        .query(&mut con)
        .map_err(|e| e.to_string())?;
    let field = |k: &str| fields.get(k).copied().unwrap_or("?").to_string();
    Ok(NodeStatus {
        name: field("node_name"),
        role: field("confluo_role"),
        datacenter: field("datacenter"),
        digest,
        peers,
    })
}

/// `peer state lag_ops/lag_ms`, for each peer of a node.
fn peer_cell(peers: &[HashMap<String, String>]) -> String {
    if peers.is_empty() {
        return "-".to_string();
    }
    let get = |p: &HashMap<String, String>, k: &str| p.get(k).cloned().unwrap_or_default();
    peers
        .iter()
        .map(|p| {
            format!(
                "{} {} {}/{}ms",
                get(p, "name"),
                get(p, "state"),
                get(p, "lag_ops"),
                get(p, "lag_ms")
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn render(rows: &[(&Target, Result<NodeStatus, String>)]) -> String {
    let mut lines: Vec<[String; 7]> = vec![[
        "NODE".into(),
        "ADDR".into(),
        "ROLE".into(),
        "DC".into(),
        "REACHABLE".into(),
        "DIGEST".into(),
        "PEERS (state updates/ms behind)".into(),
    ]];
    for (target, status) in rows {
        lines.push(match status {
            Ok(s) => [
                s.name.clone(),
                target.addr.to_string(),
                s.role.clone(),
                s.datacenter.clone(),
                "yes".into(),
                s.digest.clone(),
                peer_cell(&s.peers),
            ],
            Err(e) => [
                target.name.clone().unwrap_or_else(|| "?".into()),
                target.addr.to_string(),
                "?".into(),
                "?".into(),
                "no".into(),
                "-".into(),
                e.clone(),
            ],
        });
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| lines.iter().map(|l| l[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for l in &lines {
        for (c, w) in widths.iter().enumerate() {
            let _ = write!(out, "{:<w$}  ", l[c], w = *w);
        }
        let _ = writeln!(out, "{}", l[6]);
    }
    let digests: Vec<&str> = rows
        .iter()
        .filter_map(|(_, r)| r.as_ref().ok().map(|s| s.digest.as_str()))
        .collect();
    let reachable = digests.len();
    let mut distinct = digests.clone();
    distinct.sort_unstable();
    distinct.dedup();
    let verdict = match distinct.len() {
        0 => "no node answered".to_string(),
        1 => format!("converged: the {reachable} reachable node(s) hold the same state"),
        n => format!("not converged: {n} different digests among {reachable} node(s)"),
    };
    let _ = writeln!(out, "{verdict}; {}/{} reachable", reachable, rows.len());
    out
}
