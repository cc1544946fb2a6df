//! INFO's sections and filters, CONFLUO.PEERS, and the HTTP endpoint's routes, on a lone
//! server in this process (the cluster behaviour is tested on real processes in the
//! `confluo` crate's tests/operability.rs).

use std::collections::HashMap;
use std::net::SocketAddr;

use confluo_server::{Server, ServerConfig};
use redis::cmd;

use crate::support::{Cluster, connect};

fn info(con: &mut redis::Connection, sections: &[&str]) -> String {
    let mut c = cmd("INFO");
    for s in sections {
        c.arg(*s);
    }
    c.query(con).expect("INFO")
}

fn headers(text: &str) -> Vec<&str> {
    text.split("\r\n")
        .filter_map(|l| l.strip_prefix("# "))
        .collect()
}

#[test]
fn info_prints_redis_cli_lines_and_filters_sections_as_redis_does() {
    let c = Cluster::solo();
    let mut con = c.con(0);
    let _: () = cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    let _: Option<String> = cmd("GET").arg("k").query(&mut con).unwrap();

    let all = info(&mut con, &[]);
    assert_eq!(
        headers(&all),
        [
            "Server",
            "Clients",
            "Memory",
            "Persistence",
            "Stats",
            "Replication",
            "Keyspace",
            "Confluo"
        ]
    );
    // Every line is a header, a blank separator or name:value, and ends in CRLF.
    assert!(all.ends_with("\r\n"));
    for line in all.strip_suffix("\r\n").unwrap().split("\r\n") {
        assert!(
            line.is_empty() || line.starts_with("# ") || line.split_once(':').is_some(),
            "{line:?}"
        );
        assert!(!line.contains('\n'), "{line:?}");
    }
    assert_eq!(
        headers(&info(&mut con, &["REPLICATION", "keyspace"])),
        ["Replication", "Keyspace"]
    );
    assert_eq!(info(&mut con, &["nosuchsection"]), "");
    assert!(!headers(&info(&mut con, &["default"])).contains(&"Commandstats"));
    let everything = info(&mut con, &["everything"]);
    assert!(headers(&everything).contains(&"Commandstats"));
    assert!(
        everything.contains("cmdstat_set:calls=1\r\n"),
        "{everything}"
    );
    assert!(everything.contains("cmdstat_get:calls=1\r\n"));
    let persistence = info(&mut con, &["persistence"]);
    assert!(
        persistence.contains("\r\nconfluo_recovered_keys:0\r\n"),
        "{persistence}"
    );
    assert!(info(&mut con, &["keyspace"]).contains("db0:keys=1,"));
}

#[test]
fn confluo_peers_lists_each_outbound_link_with_its_state_and_lag() {
    let c = Cluster::three_leaders();
    let mut con = c.con(0);
    let _: () = cmd("SET").arg("k").arg("v").query(&mut con).unwrap();
    assert!(c.converge(std::time::Duration::from_secs(20)));
    let peers: Vec<HashMap<String, String>> = loop {
        let peers: Vec<HashMap<String, String>> = cmd("CONFLUO.PEERS").query(&mut con).unwrap();
        if peers.iter().all(|p| p["state"] == "in_sync") {
            break peers;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut names: Vec<&str> = peers.iter().map(|p| p["name"].as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["b", "c"]);
    for p in &peers {
        assert_eq!(p["lag_ops"], "0");
        assert_eq!(p["link"], "connected");
        assert_eq!(p["role"], "leader");
        assert!(p["last_contact_ms"].parse::<i64>().unwrap() >= 0);
    }
    let err = cmd("CONFLUO.PEERS")
        .arg("x")
        .query::<redis::Value>(&mut con);
    assert!(err.is_err(), "CONFLUO.PEERS takes no arguments");
}

fn get(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let mut resp = match method {
        "GET" => agent.get(format!("http://{addr}{path}")).call(),
        _ => agent.post(format!("http://{addr}{path}")).send(""),
    }
    .expect("HTTP answer");
    let status = resp.status().as_u16();
    (status, resp.body_mut().read_to_string().unwrap_or_default())
}

#[test]
fn the_http_endpoint_serves_metrics_health_and_readiness_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig::parse(
        r#"
        cluster_id = 1
        [node]
        name = "solo"
        id = 1
        datacenter = "dc1"
        role = "leader"
        client_addr = "127.0.0.1:0"
        peer_addr = "127.0.0.1:0"
        http_addr = "127.0.0.1:0"
        data_dir = "data"
        "#,
        Some(dir.path()),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = rt.block_on(Server::bind(config)).unwrap();
    let http = server.http_addr().expect("an HTTP address");
    let client = server.client_addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = rt.spawn(server.serve(stopped));

    let mut con = connect(client);
    let _: i64 = cmd("SADD").arg("s").arg("a").query(&mut con).unwrap();
    let _: i64 = cmd("SCARD").arg("s").query(&mut con).unwrap();
    let _: i64 = cmd("SCARD").arg("s").query(&mut con).unwrap();

    let (status, body) = get(http, "GET", "/metrics");
    assert_eq!(status, 200);
    let scrape = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => v,
                _ => f64::NAN,
            })
    };
    assert_eq!(
        value(
            "confluo_client_commands_total",
            &[("family", "set"), ("access", "write")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            "confluo_client_commands_total",
            &[("family", "set"), ("access", "read")]
        ),
        Some(2.0)
    );
    assert_eq!(value("confluo_keys", &[]), Some(1.0));
    assert!(value("confluo_group_commits_total", &[]).unwrap() >= 1.0);
    assert_eq!(
        scrape.docs.get("confluo_keys").map(String::as_str),
        Some("Keys holding a value.")
    );

    let (status, body) = get(http, "GET", "/healthz");
    assert_eq!(status, 200);
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["status"], "alive");
    let (status, body) = get(http, "GET", "/readyz");
    assert_eq!(status, 200, "a lone leader is ready once recovered: {body}");
    assert_eq!(get(http, "GET", "/nope").0, 404);
    assert_eq!(get(http, "POST", "/metrics").0, 405);

    stop.send(()).unwrap();
    rt.block_on(serving).unwrap().unwrap();
    assert!(
        std::net::TcpStream::connect(http).is_err(),
        "the endpoint closes with the server"
    );
}
