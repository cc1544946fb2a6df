//! What an operator watches, on real `confluo serve` processes: /metrics scraped over HTTP
//! and parsed as Prometheus text, through a partition of one site and its heal; /readyz
//! before the peers handshake and during a drain; INFO replication as redis-cli prints it;
//! `confluo status` over a running cluster.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use confluo_server::proxy::Proxy;
use prometheus_parse::{Scrape, Value};

mod common;

use common::{BIN, Process, connect};

fn free_addr() -> SocketAddr {
    common::free_addr(3_500)
}

/// One node of a test cluster.
struct Node {
    name: String,
    client: SocketAddr,
    peer: SocketAddr,
    http: SocketAddr,
    config: PathBuf,
}

/// Leaders `n0…`, one per datacenter, each with an HTTP address; with `proxied`, every
/// link goes through a proxy the test can cut (dialer, dialed, proxy).
struct Cluster {
    nodes: Vec<Node>,
    proxies: Vec<(usize, usize, Proxy)>,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn new(n: usize, proxied: bool, extra: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                name: format!("n{i}"),
                client: free_addr(),
                peer: free_addr(),
                http: free_addr(),
                config: dir.path().join(format!("n{i}.toml")),
            })
            .collect();
        let mut proxies = Vec::new();
        if proxied {
            for a in 0..n {
                for (b, target) in nodes.iter().enumerate() {
                    if a != b {
                        let p = rt
                            .block_on(Proxy::start("127.0.0.1:0".parse().unwrap(), target.peer))
                            .expect("proxy");
                        proxies.push((a, b, p));
                    }
                }
            }
        }
        let entry = |i: usize, node: &Node, peer: SocketAddr| {
            format!(
                "name = \"{}\"\nid = {}\ndatacenter = \"dc{i}\"\nrole = \"leader\"\nclient_addr = \"{}\"\npeer_addr = \"{peer}\"\n",
                node.name,
                i + 1,
                node.client
            )
        };
        for me in 0..n {
            let mut text = format!(
                "cluster_id = 11\n{extra}\n[node]\n{}http_addr = \"{}\"\ndata_dir = \"data-{me}\"\n",
                entry(me, &nodes[me], nodes[me].peer),
                nodes[me].http
            );
            for (o, other) in nodes.iter().enumerate().filter(|(o, _)| *o != me) {
                let via = proxies
                    .iter()
                    .find(|(a, b, _)| *a == me && *b == o)
                    .map_or(other.peer, |(_, _, p)| p.addr());
                text.push_str(&format!("[[peers]]\n{}", entry(o, other, via)));
            }
            std::fs::write(&nodes[me].config, text).expect("write config");
        }
        Cluster {
            nodes,
            proxies,
            rt,
            _dir: dir,
        }
    }

    fn serve(&self, i: usize) -> Process {
        serve(&self.nodes[i].config)
    }

    /// Cuts (or heals) every link to and from node `i`.
    fn partition(&self, i: usize, cut: bool) {
        let _enter = self.rt.enter();
        for (a, b, p) in &self.proxies {
            if *a == i || *b == i {
                if cut { p.cut() } else { p.heal() }
            }
        }
    }
}

fn serve(config: &Path) -> Process {
    Process(
        Command::new(BIN)
            .args(["serve", "--log", "warn", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn confluo serve"),
    )
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into()
}

/// GET `path` from `addr`: the status and the body (`None` while nothing listens).
fn get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut resp = agent().get(format!("http://{addr}{path}")).call().ok()?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().ok()?;
    Some((status, body))
}

/// /metrics of the node at `addr`, parsed as Prometheus text.
fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = get(addr, "/metrics").expect("the endpoint answers");
    assert_eq!(status, 200, "{body}");
    Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).expect("Prometheus text")
}

/// The value of the sample `name` whose labels include every pair of `labels`.
fn sample(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(_) | Value::Summary(_) => f64::NAN,
        })
}

/// The sync state `node`'s metrics give for `peer` (the one state gauge at 1).
fn sync_state(scrape: &Scrape, peer: &str) -> Option<String> {
    scrape
        .samples
        .iter()
        .find(|s| {
            s.metric == "confluo_peer_sync_state"
                && s.labels.get("peer") == Some(peer)
                && matches!(s.value, Value::Gauge(v) if v == 1.0)
        })
        .and_then(|s| s.labels.get("state").map(str::to_string))
}

fn until<T>(within: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Writes `key` at the node, once it takes writes (it answers LOADING while it joins).
fn write(con: &mut redis::Connection, key: &str) {
    until(Duration::from_secs(20), "a write to be taken", || {
        redis::cmd("SET").arg(key).arg("v").query::<()>(con).ok()
    });
}

fn redis_cli_available() -> bool {
    Command::new("redis-cli")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `name:value` lines, as redis-cli users read INFO: `# Section` headers, CRLF endings.
fn parse_info(text: &str) -> std::collections::HashMap<String, String> {
    text.lines()
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("not name:value: {l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn a_partitioned_site_falls_behind_in_the_metrics_and_catches_up_after_the_heal() {
    let c = Cluster::new(3, true, "[health]\npeer_grace_ms = 20000");
    let _procs: Vec<Process> = (0..3).map(|i| c.serve(i)).collect();
    let (n0, metrics) = (&c.nodes[0], c.nodes[0].http);
    // Ready once every peer is connected (long before the 20 s grace ends).
    until(Duration::from_secs(30), "every node ready", || {
        c.nodes
            .iter()
            .all(|n| get(n.http, "/readyz").is_some_and(|(s, _)| s == 200))
            .then_some(())
    });
    let mut con = connect(n0.client);
    write(&mut con, "before");
    until(Duration::from_secs(20), "both peers in sync", || {
        let s = scrape(metrics);
        (sync_state(&s, "n1").as_deref() == Some("in_sync")
            && sync_state(&s, "n2").as_deref() == Some("in_sync"))
        .then_some(())
    });

    c.partition(2, true);
    for i in 0..20 {
        write(&mut con, &format!("during-{i}"));
    }
    // n2's lag shows and stays; the last writes may still be on their way to n1.
    let cut = until(
        Duration::from_secs(20),
        "n2 behind and n1 caught up",
        || {
            let s = scrape(metrics);
            let lag = sample(&s, "confluo_peer_lag_updates", &[("peer", "n2")])?;
            let age = sample(&s, "confluo_peer_lag_seconds", &[("peer", "n2")])?;
            let n1 = sample(&s, "confluo_peer_lag_updates", &[("peer", "n1")])?;
            (lag >= 20.0 && age > 0.0 && n1 == 0.0).then_some(s)
        },
    );
    let state = sync_state(&cut, "n2").expect("a state for n2");
    assert_ne!(state, "in_sync", "a cut-off site is not in sync");
    assert!(
        sample(&cut, "confluo_peer_lag_updates", &[("peer", "n2")]).unwrap() >= 20.0,
        "n2 is still behind"
    );
    assert_eq!(sync_state(&cut, "n1").as_deref(), Some("in_sync"));
    // The rest of the scrape is there and typed as documented.
    let commits = cut
        .samples
        .iter()
        .find(|s| s.metric == "confluo_fsync_duration_seconds")
        .expect("the fsync histogram");
    assert!(matches!(&commits.value, Value::Histogram(b) if !b.is_empty()));
    assert!(
        sample(
            &cut,
            "confluo_client_commands_total",
            &[("family", "string"), ("access", "write")]
        )
        .unwrap()
            >= 21.0
    );
    assert_eq!(sample(&cut, "confluo_keys", &[]), Some(21.0));
    assert!(sample(&cut, "confluo_store_size_bytes", &[]).unwrap() > 0.0);
    assert_eq!(sample(&cut, "confluo_client_connections", &[]), Some(1.0));

    // While cut off, INFO and CONFLUO.PEERS say the same as the metrics.
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query(&mut con)
        .unwrap();
    assert!(info.starts_with("# Replication\r\n"), "{info:?}");
    let fields = parse_info(&info);
    assert_eq!(fields["role"], "master");
    assert_eq!(fields["peers"], "2");
    let peer_line = fields
        .values()
        .find(|v| v.starts_with("name=n2,"))
        .expect("a peer line for n2");
    let peer: std::collections::HashMap<&str, &str> = peer_line
        .split(',')
        .filter_map(|kv| kv.split_once('='))
        .collect();
    assert!(peer["lag_ops"].parse::<u64>().unwrap() >= 20, "{peer_line}");
    let peers: Vec<std::collections::HashMap<String, String>> =
        redis::cmd("CONFLUO.PEERS").query(&mut con).unwrap();
    let n2 = peers
        .iter()
        .find(|p| p["name"] == "n2")
        .expect("n2 in CONFLUO.PEERS");
    assert!(n2["lag_ops"].parse::<u64>().unwrap() >= 20);
    assert_ne!(n2["state"], "in_sync");

    c.partition(2, false);
    until(Duration::from_secs(60), "n2's lag back to zero", || {
        let s = scrape(metrics);
        let lag = sample(&s, "confluo_peer_lag_updates", &[("peer", "n2")])?;
        let age = sample(&s, "confluo_peer_lag_seconds", &[("peer", "n2")])?;
        (lag == 0.0 && age == 0.0 && sync_state(&s, "n2").as_deref() == Some("in_sync"))
            .then_some(())
    });

    documented_and_alerted(&scrape(metrics));

    // `confluo status` shows every node, reachable and converged.
    let out = until(
        Duration::from_secs(20),
        "status to show convergence",
        || {
            let out = Command::new(BIN)
                .args(["status", "--config"])
                .arg(&n0.config)
                .output()
                .expect("run confluo status");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.success() && text.contains("converged: the 3 reachable")).then_some(text)
        },
    );
    for n in &c.nodes {
        let row = out
            .lines()
            .find(|l| l.starts_with(&format!("{} ", n.name)))
            .unwrap_or_else(|| panic!("no row for {}:\n{out}", n.name));
        assert!(row.contains(" leader ") && row.contains(" yes "), "{row}");
    }
    if redis_cli_available() {
        let cli = Command::new("redis-cli")
            .args(["-p", &n0.client.port().to_string(), "INFO", "replication"])
            .output()
            .expect("run redis-cli");
        let text = String::from_utf8(cli.stdout).expect("utf-8");
        let fields = parse_info(&text);
        assert_eq!(fields["confluo_role"], "leader");
        assert_eq!(fields["peers_in_sync"], "2", "{text}");
    }
}

#[test]
fn readyz_waits_for_peers_or_the_grace_period_and_fails_during_the_drain() {
    // One node of three: its peers never come up.
    let c = Cluster::new(
        3,
        false,
        "[health]\npeer_grace_ms = 4000\n[shutdown]\ndrain_timeout_ms = 3000",
    );
    let http = c.nodes[0].http;
    let mut node = c.serve(0);
    let started = Instant::now();
    // The endpoint answers from the start, before the store is open: 503 throughout.
    let (status, body) = until(Duration::from_secs(10), "/readyz after recovery", || {
        let (status, body) = get(http, "/readyz")?;
        assert_eq!(
            status, 503,
            "not ready before the peers or the grace: {body}"
        );
        let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
        (detail["recovered"] == true).then_some((status, body))
    });
    assert_eq!(
        status, 503,
        "not ready before the peers or the grace: {body}"
    );
    let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(detail["ready"], false);
    assert_eq!(detail["peers_connected"], 0);
    assert_eq!(
        detail["peers_not_connected"].as_array().map(Vec::len),
        Some(2)
    );
    let (alive, _) = get(http, "/healthz").unwrap();
    assert_eq!(alive, 200, "alive while not ready");

    until(
        Duration::from_secs(20),
        "ready once the grace passed",
        || get(http, "/readyz").filter(|(s, _)| *s == 200),
    );
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "not before the grace period"
    );

    // A write the absent peers never get: the drain waits its whole timeout.
    let mut con = connect(c.nodes[0].client);
    write(&mut con, "k");
    node.sigterm();
    let (_, body) = until(
        Duration::from_secs(5),
        "/readyz to fail in the drain",
        || get(http, "/readyz").filter(|(s, _)| *s == 503),
    );
    let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(detail["draining"], true, "{body}");
    until(Duration::from_secs(15), "the process to exit", || {
        node.exited().then_some(())
    });
}

/// Every metric family of a scrape has its row in docs/operations.md, and every metric the
/// example alert rules use exists (the TLS expiry gauge only with TLS).
fn documented_and_alerted(scrape: &Scrape) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let docs = std::fs::read_to_string(root.join("docs/operations.md")).expect("operations.md");
    let mut names: Vec<&String> = scrape.docs.keys().collect();
    names.sort();
    assert!(names.len() > 40, "a full scrape: {names:?}");
    for name in &names {
        assert!(
            docs.contains(&format!("`{name}`")) || docs.contains(&format!("`{name}{{")),
            "docs/operations.md does not describe {name}"
        );
    }
    let rules = std::fs::read_to_string(root.join("examples/prometheus/rules.yml")).expect("rules");
    let used = rules
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("confluo_"))
        .map(|w| w.strip_suffix("_bucket").unwrap_or(w));
    for metric in used {
        if metric == "confluo_tls_certificate_expiry_timestamp_seconds" {
            continue;
        }
        assert!(
            scrape.docs.contains_key(metric),
            "rules.yml uses {metric}, which the scrape lacks"
        );
    }
}

#[test]
fn json_logs_tell_the_config_the_recovery_and_the_drain() {
    use std::io::{BufRead, BufReader};
    let c = Cluster::new(1, false, "");
    let mut child = Command::new(BIN)
        .args(["serve", "--log-format", "json", "--config"])
        .arg(&c.nodes[0].config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn confluo serve");
    let stderr = child.stderr.take().expect("stderr");
    let node = Process(child);
    let mut lines = BufReader::new(stderr).lines();
    let mut events: Vec<serde_json::Value> = Vec::new();
    let mut next = |events: &mut Vec<serde_json::Value>| {
        let line = lines.next().expect("a log line").expect("utf-8");
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let message = event["fields"]["message"]
            .as_str()
            .unwrap_or("")
            .to_string();
        events.push(event);
        message
    };
    while next(&mut events) != "confluo serving" {}
    node.sigterm();
    while !next(&mut events).starts_with("drained") {}
    let find = |m: &str| {
        events
            .iter()
            .find(|e| {
                e["fields"]["message"]
                    .as_str()
                    .is_some_and(|s| s.starts_with(m))
            })
            .unwrap_or_else(|| panic!("no {m:?} line"))
    };
    let start = &find("starting")["fields"];
    assert_eq!(start["node"], "n0");
    assert_eq!(start["datacenter"], "dc0");
    let recovered = &find("recovered from the store")["fields"];
    assert_eq!(recovered["keys"], 0);
    assert!(recovered["took_ms"].is_u64());
    assert_eq!(find("draining:")["level"], "INFO");
}

#[test]
fn status_watch_redraws_the_table_in_place_every_second() {
    use std::io::Read;
    let c = Cluster::new(1, false, "");
    let _node = c.serve(0);
    let mut con = connect(c.nodes[0].client);
    write(&mut con, "k");
    let mut watch = Process(
        Command::new(BIN)
            .args([
                "status",
                "--watch",
                "--addr",
                &c.nodes[0].client.to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn confluo status --watch"),
    );
    let mut stdout = watch.0.stdout.take().expect("stdout");
    std::thread::sleep(Duration::from_millis(2_500));
    watch.0.kill().expect("stop the watch");
    let mut text = String::new();
    stdout.read_to_string(&mut text).expect("utf-8");
    let frames: Vec<&str> = text
        .split("\x1b[H\x1b[2J")
        .filter(|f| !f.is_empty())
        .collect();
    assert!(
        frames.len() >= 2,
        "{} redraws in 2.5 s: {text:?}",
        frames.len()
    );
    for frame in frames {
        assert!(frame.contains("n0 ") && frame.contains(" yes "), "{frame}");
    }
}

#[test]
fn readyz_is_503_while_a_large_store_is_recovered_after_a_kill() {
    let c = Cluster::new(1, false, "");
    let mut node = c.serve(0);
    let mut con = connect(c.nodes[0].client);
    write(&mut con, "first");
    // Enough keys that restoring them takes a visible while (about a second in a debug
    // build), written as few durable MSETs.
    for batch in 0..60 {
        let mut mset = redis::cmd("MSET");
        for i in 0..1000 {
            mset.arg(format!("key-{batch}-{i}")).arg("value");
        }
        let _: () = mset.query(&mut con).expect("MSET");
    }
    node.0.kill().expect("kill -9");
    let _ = node.0.wait();
    let _node = c.serve(0);
    let http = c.nodes[0].http;
    let mut seen_recovering = false;
    let body = until(Duration::from_secs(30), "ready after recovery", || {
        let (status, body) = get(http, "/readyz")?;
        let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
        if detail["recovered"] == false {
            assert_eq!(status, 503, "{body}");
            seen_recovering = true;
        }
        (status == 200).then_some(detail)
    });
    assert!(
        seen_recovering,
        "/readyz answered while the store was recovered"
    );
    assert!(body["recovery_seconds"].as_f64().unwrap() > 0.0);
    let info: String = redis::cmd("INFO")
        .arg("persistence")
        .query(&mut connect(c.nodes[0].client))
        .unwrap();
    assert!(
        info.contains("\r\nconfluo_recovered_keys:60001\r\n"),
        "{info}"
    );
}
