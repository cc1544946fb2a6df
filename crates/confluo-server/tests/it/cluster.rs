//! Several nodes: concurrent conflicting writes at three leaders converge to the documented
//! result; followers serve reads and refuse writes; WAIT counts sites through a partition;
//! a drain leaves every acknowledged write with the peers.

use std::time::{Duration, Instant};

use redis::cmd;

use crate::support::{Cluster, error_of};

const CONVERGE: Duration = Duration::from_secs(20);

#[test]
fn concurrent_conflicting_writes_converge_to_the_documented_result() {
    let c = Cluster::three_leaders();
    let (mut a, mut b, mut cc) = (c.con(0), c.con(1), c.con(2));
    // Shared history first, seen everywhere.
    let _: i64 = cmd("SADD")
        .arg("s")
        .arg("x")
        .arg("y")
        .query(&mut a)
        .unwrap();
    let _: i64 = cmd("SADD").arg("d").arg("1").query(&mut a).unwrap();
    let _: i64 = cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("old")
        .query(&mut a)
        .unwrap();
    assert!(c.converge(CONVERGE));
    // Every leader on its own: what each writes now is concurrent with the others.
    for dc in ["dc1", "dc2", "dc3"] {
        c.partition(dc, true);
    }
    for (i, con) in [&mut a, &mut b, &mut cc].into_iter().enumerate() {
        let _: i64 = cmd("INCRBY").arg("counter").arg(i + 1).query(con).unwrap();
        let _: () = cmd("CONFLUO.MVSET")
            .arg("mv")
            .arg(format!("from-{i}"))
            .query(con)
            .unwrap();
    }
    // b removes x; c removes and adds x again (a new add b did not observe): add wins.
    let _: i64 = cmd("SREM").arg("s").arg("x").query(&mut b).unwrap();
    let _: i64 = cmd("SREM").arg("s").arg("x").query(&mut cc).unwrap();
    let _: i64 = cmd("SADD").arg("s").arg("x").query(&mut cc).unwrap();
    // a deletes d while b adds to it: b's add survives, the member a saw does not.
    let _: i64 = cmd("DEL").arg("d").query(&mut a).unwrap();
    let _: i64 = cmd("SADD").arg("d").arg("2").query(&mut b).unwrap();
    // a updates a field that b deletes: the update wins.
    let _: i64 = cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("new")
        .query(&mut a)
        .unwrap();
    let _: i64 = cmd("HDEL").arg("h").arg("f").query(&mut b).unwrap();
    // One key written as two types at two leaders.
    let _: i64 = cmd("SADD").arg("two").arg("member").query(&mut a).unwrap();
    let _: () = cmd("SET").arg("two").arg("text").query(&mut b).unwrap();
    // LWW: c writes last (the hybrid logical clocks follow the wall clock here).
    let _: () = cmd("SET").arg("reg").arg("from-a").query(&mut a).unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let _: () = cmd("SET").arg("reg").arg("from-c").query(&mut cc).unwrap();
    for dc in ["dc1", "dc2", "dc3"] {
        c.partition(dc, false);
    }
    assert!(
        c.converge(CONVERGE),
        "the three leaders converge after the heal"
    );
    for i in 0..3 {
        let mut r = c.con(i);
        assert_eq!(
            cmd("GET").arg("counter").query::<i64>(&mut r).unwrap(),
            6,
            "increments add up"
        );
        let mut mv: Vec<String> = cmd("CONFLUO.MVGET").arg("mv").query(&mut r).unwrap();
        mv.sort();
        assert_eq!(
            mv,
            ["from-0", "from-1", "from-2"],
            "concurrent MV writes are siblings"
        );
        assert_eq!(
            cmd("SMEMBERS")
                .arg("s")
                .query::<Vec<String>>(&mut r)
                .unwrap(),
            ["x", "y"],
            "add wins"
        );
        assert_eq!(
            cmd("SMEMBERS")
                .arg("d")
                .query::<Vec<String>>(&mut r)
                .unwrap(),
            ["2"],
            "observed delete"
        );
        assert_eq!(
            cmd("HGET")
                .arg("h")
                .arg("f")
                .query::<String>(&mut r)
                .unwrap(),
            "new",
            "update wins"
        );
        assert_eq!(
            cmd("TYPE").arg("two").query::<String>(&mut r).unwrap(),
            "set",
            "alphabetical first"
        );
        assert_eq!(
            cmd("GET").arg("two").query::<String>(&mut r).unwrap(),
            "text",
            "each type reads its slot"
        );
        assert_eq!(
            cmd("SMEMBERS")
                .arg("two")
                .query::<Vec<String>>(&mut r)
                .unwrap(),
            ["member"]
        );
        assert_eq!(
            cmd("GET").arg("reg").query::<String>(&mut r).unwrap(),
            "from-c",
            "the later write wins"
        );
    }
}

#[test]
fn followers_serve_reads_and_refuse_writes_naming_the_leader() {
    let c = Cluster::three_sites();
    let mut leader = c.con(0);
    let _: () = cmd("SET").arg("k").arg("v").query(&mut leader).unwrap();
    assert!(c.converge(CONVERGE));
    let mut follower = c.con(1);
    assert_eq!(
        cmd("GET").arg("k").query::<String>(&mut follower).unwrap(),
        "v"
    );
    let e = error_of::<()>(cmd("SET").arg("k").arg("w"), &mut follower);
    assert!(e.contains("READONLY"), "{e}");
    assert!(
        e.contains(&c.nodes[0].client.to_string()),
        "names the leader's client address: {e}"
    );
    let e = error_of::<i64>(cmd("SADD").arg("s").arg("m"), &mut follower);
    assert!(e.contains("READONLY"), "{e}");
    let info: String = cmd("INFO").arg("replication").query(&mut follower).unwrap();
    assert!(info.contains("role:slave"), "{info}");
    assert!(
        info.contains(&format!("master_port:{}", c.nodes[0].client.port())),
        "{info}"
    );
    assert_eq!(
        cmd("WAIT")
            .arg(1)
            .arg(10)
            .query::<i64>(&mut follower)
            .unwrap(),
        0
    );
}

#[test]
fn wait_times_out_during_a_partition_and_succeeds_after_the_heal() {
    let c = Cluster::three_sites();
    let mut r = c.con(0);
    let _: () = cmd("SET").arg("k").arg("1").query(&mut r).unwrap();
    assert_eq!(
        cmd("WAIT").arg(2).arg(10_000).query::<i64>(&mut r).unwrap(),
        2
    );
    c.partition("dc3", true);
    let _: () = cmd("SET").arg("k").arg("2").query(&mut r).unwrap();
    let start = Instant::now();
    assert_eq!(
        cmd("WAIT").arg(2).arg(300).query::<i64>(&mut r).unwrap(),
        1,
        "dc3 is cut off"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "WAIT waited for its timeout"
    );
    c.partition("dc3", false);
    assert_eq!(
        cmd("WAIT").arg(2).arg(20_000).query::<i64>(&mut r).unwrap(),
        2,
        "dc3 has it after the heal"
    );
    // A connection with no write of its own waits for nothing.
    let mut fresh = c.con(0);
    assert_eq!(
        cmd("WAIT").arg(2).arg(0).query::<i64>(&mut fresh).unwrap(),
        2
    );
}

#[test]
fn a_drain_leaves_every_acknowledged_write_with_the_peers() {
    let mut c = Cluster::three_leaders();
    let mut a = c.con(0);
    for i in 0..100 {
        let _: () = cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut a)
            .unwrap();
    }
    // Shut down at once: the drain, not luck, must get the writes out.
    let report = c.stop(0);
    assert!(report.drained, "{report:?}");
    for peer in [1, 2] {
        let mut r = c.con(peer);
        let n: i64 = cmd("DBSIZE").query(&mut r).unwrap();
        assert_eq!(n, 100, "peer {peer} holds every acknowledged write");
    }
}

#[test]
fn writes_are_refused_and_reads_served_while_a_drain_waits() {
    let mut c = Cluster::three_leaders();
    let mut a = c.con(0);
    let _: () = cmd("SET").arg("k").arg("v").query(&mut a).unwrap();
    // With its peers cut off, the drain waits for its timeout (5 s in these configs).
    c.partition("dc1", true);
    let _: () = cmd("SET").arg("k2").arg("v").query(&mut a).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let report = c.stop(0);
            tx.send(report).unwrap();
        });
        std::thread::sleep(Duration::from_millis(300));
        let e = error_of::<()>(cmd("SET").arg("k3").arg("v"), &mut a);
        assert!(e.contains("READONLY") && e.contains("shutting down"), "{e}");
        assert_eq!(cmd("GET").arg("k").query::<String>(&mut a).unwrap(), "v");
        let report = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert!(!report.drained, "the peers were cut off");
        assert_eq!(report.behind.len(), 2);
    });
}

#[test]
fn a_restart_on_the_same_directory_keeps_every_acknowledged_write() {
    let mut c = Cluster::solo();
    let mut r = c.con(0);
    for i in 0..100 {
        let _: () = cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut r)
            .unwrap();
    }
    c.stop(0);
    c.restart(0);
    let mut r = c.con(0);
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut r).unwrap(), 100);
}
