//! `confluo serve` and `confluo check-config` as an operator runs them: real processes with
//! real data directories, driven by the `redis` crate and by `redis-cli` (where installed;
//! CI installs it).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::{BIN, Process, connect, until_writable};

fn free_addr() -> SocketAddr {
    common::free_addr(7_000)
}

/// Three leaders' config files in `dir`: (path, client address) each.
fn three_leaders(dir: &Path) -> Vec<(std::path::PathBuf, SocketAddr)> {
    let nodes: Vec<(SocketAddr, SocketAddr)> = (0..3).map(|_| (free_addr(), free_addr())).collect();
    let entry = |i: usize| {
        format!(
            "name = \"n{i}\"\nid = {}\ndatacenter = \"dc{i}\"\nrole = \"leader\"\nclient_addr = \"{}\"\npeer_addr = \"{}\"\n",
            i + 1,
            nodes[i].0,
            nodes[i].1
        )
    };
    (0..3)
        .map(|me| {
            let mut text = format!("cluster_id = 9\n[shutdown]\ndrain_timeout_ms = 10000\n[node]\n{}data_dir = \"data-{me}\"\n", entry(me));
            for o in (0..3).filter(|&o| o != me) {
                text.push_str(&format!("[[peers]]\n{}", entry(o)));
            }
            let path = dir.join(format!("n{me}.toml"));
            std::fs::write(&path, text).expect("write config");
            (path, nodes[me].0)
        })
        .collect()
}

fn serve(config: &Path) -> Process {
    Process(
        Command::new(BIN)
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn confluo serve"),
    )
}

fn redis_cli() -> Option<&'static str> {
    Command::new("redis-cli")
        .arg("--version")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|_| "redis-cli")
}

#[test]
fn check_config_names_the_line_of_each_problem() {
    let dir = tempfile::tempdir().unwrap();
    let configs = three_leaders(dir.path());
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&configs[0].0)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&configs[0].0).unwrap();
    let bad = text.replacen("id = 2", "id = 1", 1).replacen(
        "role = \"leader\"",
        "role = \"follower\"",
        1,
    );
    let bad_path = dir.path().join("bad.toml");
    std::fs::write(&bad_path, bad).unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&bad_path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let prefix = format!("{}:", bad_path.display());
    assert!(err.lines().all(|l| l.starts_with(&prefix)), "{err}");
    assert!(
        err.contains(":14:6: duplicate node id 1 (also at line 6)"),
        "{err}"
    );
    assert!(err.contains("needs `leader ="), "{err}");
}

#[test]
fn the_example_cluster_configs_check_clean() {
    // Copies, beside certificates minted as start.sh makes them (the repository has none).
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/cluster");
    let copy = tempfile::tempdir().unwrap();
    let dir = copy.path();
    let certs = dir.join("certs");
    std::fs::create_dir(&certs).unwrap();
    let ca = confluo_transport::testing::TestCa::new("confluo cluster CA").unwrap();
    std::fs::write(certs.join("ca.pem"), ca.pem()).unwrap();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let name = path.file_stem().unwrap().to_str().unwrap().to_string();
            let cert = ca.node(&name).unwrap();
            std::fs::write(certs.join(format!("{name}.pem")), &cert.cert_pem).unwrap();
            std::fs::write(certs.join(format!("{name}.key")), &cert.key_pem).unwrap();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = Command::new(BIN)
                .arg("check-config")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 6);
}

#[test]
fn serve_answers_redis_cli_and_the_redis_crate() {
    let dir = tempfile::tempdir().unwrap();
    let configs = three_leaders(dir.path());
    let mut node = serve(&configs[0].0);
    let addr = configs[0].1;
    let mut con = connect(addr);
    until_writable(&mut con);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("from the redis crate")
        .query(&mut con)
        .unwrap();
    assert!(
        dir.path().join("data-0").is_dir(),
        "the data directory is created"
    );
    if let Some(cli) = redis_cli() {
        let run = |args: &[&str]| {
            let out = Command::new(cli)
                .args(["-h", "127.0.0.1", "-p", &addr.port().to_string()])
                .args(args)
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim_end().to_string()
        };
        assert_eq!(run(&["GET", "k"]), "from the redis crate");
        assert_eq!(run(&["INCRBY", "n", "5"]), "5");
        assert_eq!(run(&["SADD", "s", "a", "b"]), "2");
        assert_eq!(run(&["SMEMBERS", "s"]), "a\nb");
        assert_eq!(run(&["HSET", "h", "f", "v"]), "1");
        assert_eq!(run(&["HGETALL", "h"]), "f\nv");
        assert_eq!(run(&["TYPE", "h"]), "hash");
        assert!(run(&["GET", "h"]).starts_with("WRONGTYPE"));
        assert_eq!(
            run(&["-3", "HGETALL", "h"]),
            "f v",
            "a RESP3 map, through HELLO 3"
        );
        assert!(run(&["INFO", "replication"]).contains("role:master"));
        assert!(run(&["COMMAND", "DOCS", "get"]).contains("summary"));
    }
    node.sigterm();
    assert_eq!(
        node.wait_exit(Duration::from_secs(20)),
        Some(0),
        "SIGTERM drains and exits 0"
    );
}

#[test]
fn sigterm_right_after_100_acknowledged_writes_leaves_them_all_with_the_peers() {
    let dir = tempfile::tempdir().unwrap();
    let configs = three_leaders(dir.path());
    let mut nodes: Vec<Process> = configs.iter().map(|(path, _)| serve(path)).collect();
    let mut a = connect(configs[0].1);
    let (mut b, mut c) = (connect(configs[1].1), connect(configs[2].1));
    until_writable(&mut a);
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut a)
            .unwrap();
    }
    nodes[0].sigterm();
    assert_eq!(nodes[0].wait_exit(Duration::from_secs(20)), Some(0));
    // No waiting after the exit: the drain made sure the peers hold every write.
    for peer in [&mut b, &mut c] {
        assert_eq!(redis::cmd("DBSIZE").query::<i64>(peer).unwrap(), 100);
        assert_eq!(redis::cmd("GET").arg("k99").query::<i64>(peer).unwrap(), 99);
    }
    for n in &mut nodes[1..] {
        n.sigterm();
        assert_eq!(n.wait_exit(Duration::from_secs(20)), Some(0));
    }
}

#[test]
fn a_restarted_process_keeps_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let configs = three_leaders(dir.path());
    let mut node = serve(&configs[0].0);
    let mut con = connect(configs[0].1);
    until_writable(&mut con);
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut con)
            .unwrap();
    }
    node.sigterm();
    assert_eq!(node.wait_exit(Duration::from_secs(20)), Some(0));
    let _node = serve(&configs[0].0);
    let mut con = connect(configs[0].1);
    assert_eq!(redis::cmd("DBSIZE").query::<i64>(&mut con).unwrap(), 100);
}
