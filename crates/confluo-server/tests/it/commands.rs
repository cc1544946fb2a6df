//! Every command's semantics against one leader, through the `redis` crate.

use redis::{Value, cmd};

use crate::support::{Cluster, connect_resp3, error_of};

#[test]
fn strings_set_get_and_their_options() {
    let c = Cluster::solo();
    let mut r = c.con(0);
    let _: () = cmd("SET").arg("k").arg("v1").query(&mut r).unwrap();
    assert_eq!(cmd("GET").arg("k").query::<String>(&mut r).unwrap(), "v1");
    assert_eq!(
        cmd("GET")
            .arg("missing")
            .query::<Option<String>>(&mut r)
            .unwrap(),
        None
    );
    // NX on a present key writes nothing and answers nil; XX on a missing key likewise.
    assert_eq!(
        cmd("SET")
            .arg("k")
            .arg("v2")
            .arg("NX")
            .query::<Option<String>>(&mut r)
            .unwrap(),
        None
    );
    assert_eq!(
        cmd("SET")
            .arg("new")
            .arg("x")
            .arg("XX")
            .query::<Option<String>>(&mut r)
            .unwrap(),
        None
    );
    assert_eq!(cmd("EXISTS").arg("new").query::<i64>(&mut r).unwrap(), 0);
    // GET returns the old value.
    assert_eq!(
        cmd("SET")
            .arg("k")
            .arg("v3")
            .arg("GET")
            .query::<String>(&mut r)
            .unwrap(),
        "v1"
    );
    assert_eq!(cmd("GET").arg("k").query::<String>(&mut r).unwrap(), "v3");
    let e = error_of::<()>(cmd("SET").arg("k").arg("v").arg("EX").arg(10), &mut r);
    assert!(e.contains("do not expire"), "{e}");
    let _: () = cmd("MSET")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query(&mut r)
        .unwrap();
    let got: Vec<Option<String>> = cmd("MGET")
        .arg("a")
        .arg("nope")
        .arg("b")
        .query(&mut r)
        .unwrap();
    assert_eq!(got, vec![Some("1".into()), None, Some("2".into())]);
    assert_eq!(cmd("GETDEL").arg("a").query::<String>(&mut r).unwrap(), "1");
    assert_eq!(
        cmd("GETDEL")
            .arg("a")
            .query::<Option<String>>(&mut r)
            .unwrap(),
        None
    );
}

#[test]
fn set_replaces_a_value_of_any_type() {
    let c = Cluster::solo();
    let mut r = c.con(0);
    let _: i64 = cmd("SADD").arg("k").arg("m").query(&mut r).unwrap();
    let _: () = cmd("SET")
        .arg("k")
        .arg("now a string")
        .query(&mut r)
        .unwrap();
    assert_eq!(
        cmd("TYPE").arg("k").query::<String>(&mut r).unwrap(),
        "string"
    );
    let e = error_of::<i64>(cmd("SCARD").arg("k"), &mut r);
    assert!(e.starts_with("WRONGTYPE"), "{e}");
    // MGET reads a key of another type as nil.
    let _: i64 = cmd("SADD").arg("s").arg("m").query(&mut r).unwrap();
    assert_eq!(
        cmd("MGET")
            .arg("s")
            .query::<Vec<Option<String>>>(&mut r)
            .unwrap(),
        vec![None]
    );
    // SET … GET on a key of another type fails and writes nothing.
    let e = error_of::<()>(cmd("SET").arg("s").arg("x").arg("GET"), &mut r);
    assert!(e.starts_with("WRONGTYPE"), "{e}");
    assert_eq!(cmd("TYPE").arg("s").query::<String>(&mut r).unwrap(), "set");
}

#[test]
fn counters_add_and_read_as_integers() {
    let c = Cluster::solo();
    let mut r = c.con(0);
    assert_eq!(cmd("INCR").arg("n").query::<i64>(&mut r).unwrap(), 1);
    assert_eq!(
        cmd("INCRBY").arg("n").arg(10).query::<i64>(&mut r).unwrap(),
        11
    );
    assert_eq!(cmd("DECR").arg("n").query::<i64>(&mut r).unwrap(), 10);
    assert_eq!(
        cmd("DECRBY").arg("n").arg(15).query::<i64>(&mut r).unwrap(),
        -5
    );
    assert_eq!(cmd("GET").arg("n").query::<String>(&mut r).unwrap(), "-5");
    assert_eq!(
        cmd("TYPE").arg("n").query::<String>(&mut r).unwrap(),
        "string"
    );
    // A string holding an integer counts from it; SET resets the increments.
    let _: () = cmd("SET").arg("m").arg("10").query(&mut r).unwrap();
    assert_eq!(cmd("INCR").arg("m").query::<i64>(&mut r).unwrap(), 11);
    assert_eq!(cmd("GET").arg("m").query::<String>(&mut r).unwrap(), "11");
    let _: () = cmd("SET").arg("m").arg("3").query(&mut r).unwrap();
    assert_eq!(
        cmd("INCRBY").arg("m").arg(2).query::<i64>(&mut r).unwrap(),
        5
    );
    // Zero after increments is still an integer string.
    assert_eq!(
        cmd("INCRBY").arg("z").arg(2).query::<i64>(&mut r).unwrap(),
        2
    );
    assert_eq!(
        cmd("DECRBY").arg("z").arg(2).query::<i64>(&mut r).unwrap(),
        0
    );
    assert_eq!(cmd("GET").arg("z").query::<String>(&mut r).unwrap(), "0");
    let _: () = cmd("SET").arg("w").arg("word").query(&mut r).unwrap();
    let e = error_of::<i64>(cmd("INCR").arg("w"), &mut r);
    assert!(e.contains("value is not an integer or out of range"), "{e}");
    let e = error_of::<i64>(cmd("INCRBY").arg("n").arg("1.5"), &mut r);
    assert!(e.contains("value is not an integer or out of range"), "{e}");
    let _: () = cmd("SET")
        .arg("big")
        .arg(i64::MAX.to_string())
        .query(&mut r)
        .unwrap();
    let e = error_of::<i64>(cmd("INCR").arg("big"), &mut r);
    assert!(e.contains("increment or decrement would overflow"), "{e}");
    let _: i64 = cmd("SADD").arg("s").arg("x").query(&mut r).unwrap();
    assert!(error_of::<i64>(cmd("INCR").arg("s"), &mut r).starts_with("WRONGTYPE"));
}

#[test]
fn sets_add_remove_and_read() {
    let c = Cluster::solo();
    let mut r = c.con(0);
    assert_eq!(
        cmd("SADD")
            .arg("s")
            .arg("b")
            .arg("a")
            .arg("b")
            .query::<i64>(&mut r)
            .unwrap(),
        2
    );
    assert_eq!(
        cmd("SADD")
            .arg("s")
            .arg("a")
            .arg("c")
            .query::<i64>(&mut r)
            .unwrap(),
        1
    );
    assert_eq!(
        cmd("SMEMBERS")
            .arg("s")
            .query::<Vec<String>>(&mut r)
            .unwrap(),
        ["a", "b", "c"]
    );
    assert_eq!(cmd("SCARD").arg("s").query::<i64>(&mut r).unwrap(), 3);
    assert_eq!(
        cmd("SISMEMBER")
            .arg("s")
            .arg("a")
            .query::<i64>(&mut r)
            .unwrap(),
        1
    );
    assert_eq!(
        cmd("SISMEMBER")
            .arg("s")
            .arg("z")
            .query::<i64>(&mut r)
            .unwrap(),
        0
    );
    assert_eq!(
        cmd("SMISMEMBER")
            .arg("s")
            .arg("a")
            .arg("z")
            .query::<Vec<i64>>(&mut r)
            .unwrap(),
        [1, 0]
    );
    assert_eq!(
        cmd("SREM")
            .arg("s")
            .arg("a")
            .arg("z")
            .query::<i64>(&mut r)
            .unwrap(),
        1
    );
    assert_eq!(
        cmd("SREM")
            .arg("s")
            .arg("b")
            .arg("c")
            .query::<i64>(&mut r)
            .unwrap(),
        2
    );
    assert_eq!(
        cmd("EXISTS").arg("s").query::<i64>(&mut r).unwrap(),
        0,
        "an emptied set is gone"
    );
    assert_eq!(
        cmd("SMEMBERS")
            .arg("nope")
            .query::<Vec<String>>(&mut r)
            .unwrap(),
        Vec::<String>::new()
    );
    let _: () = cmd("SET").arg("str").arg("x").query(&mut r).unwrap();
    for c in ["SMEMBERS", "SCARD"] {
        assert!(error_of::<Value>(cmd(c).arg("str"), &mut r).starts_with("WRONGTYPE"));
    }
    assert!(error_of::<Value>(cmd("SADD").arg("str").arg("m"), &mut r).starts_with("WRONGTYPE"));
}

#[test]
fn hashes_are_maps_of_strings_and_counters() {
    let c = Cluster::solo();
    let mut r = c.con(0);
    assert_eq!(
        cmd("HSET")
            .arg("h")
            .arg("f1")
            .arg("v1")
            .arg("f2")
            .arg("v2")
            .query::<i64>(&mut r)
            .unwrap(),
        2
    );
    assert_eq!(
        cmd("HSET")
            .arg("h")
            .arg("f1")
            .arg("v1b")
            .arg("f3")
            .arg("v3")
            .query::<i64>(&mut r)
            .unwrap(),
        1
    );
    assert_eq!(
        cmd("HGET")
            .arg("h")
            .arg("f1")
            .query::<String>(&mut r)
            .unwrap(),
        "v1b"
    );
    assert_eq!(
        cmd("HGET")
            .arg("h")
            .arg("zz")
            .query::<Option<String>>(&mut r)
            .unwrap(),
        None
    );
    assert_eq!(
        cmd("HMGET")
            .arg("h")
            .arg("f2")
            .arg("zz")
            .query::<Vec<Option<String>>>(&mut r)
            .unwrap(),
        [Some("v2".into()), None]
    );
    assert_eq!(cmd("HLEN").arg("h").query::<i64>(&mut r).unwrap(), 3);
    assert_eq!(
        cmd("HEXISTS")
            .arg("h")
            .arg("f3")
            .query::<i64>(&mut r)
            .unwrap(),
        1
    );
    assert_eq!(
        cmd("HKEYS").arg("h").query::<Vec<String>>(&mut r).unwrap(),
        ["f1", "f2", "f3"]
    );
    assert_eq!(
        cmd("HVALS").arg("h").query::<Vec<String>>(&mut r).unwrap(),
        ["v1b", "v2", "v3"]
    );
    let all: Vec<(String, String)> = cmd("HGETALL").arg("h").query(&mut r).unwrap();
    assert_eq!(all[0], ("f1".into(), "v1b".into()));
    assert_eq!(
        cmd("HDEL")
            .arg("h")
            .arg("f1")
            .arg("zz")
            .query::<i64>(&mut r)
            .unwrap(),
        1
    );
    assert_eq!(
        cmd("HINCRBY")
            .arg("h")
            .arg("n")
            .arg(5)
            .query::<i64>(&mut r)
            .unwrap(),
        5
    );
    assert_eq!(
        cmd("HINCRBY")
            .arg("h")
            .arg("n")
            .arg(-7)
            .query::<i64>(&mut r)
            .unwrap(),
        -2
    );
    assert_eq!(
        cmd("HGET")
            .arg("h")
            .arg("n")
            .query::<String>(&mut r)
            .unwrap(),
        "-2"
    );
    let e = error_of::<i64>(cmd("HINCRBY").arg("h").arg("f2").arg(1), &mut r);
    assert!(e.contains("hash value is not an integer"), "{e}");
    // HSET of a counter field makes it a string again.
    let _: i64 = cmd("HSET")
        .arg("h")
        .arg("n")
        .arg("text")
        .query(&mut r)
        .unwrap();
    assert_eq!(
        cmd("HGET")
            .arg("h")
            .arg("n")
            .query::<String>(&mut r)
            .unwrap(),
        "text"
    );
    assert_eq!(
        cmd("TYPE").arg("h").query::<String>(&mut r).unwrap(),
        "hash"
    );
    assert!(error_of::<Value>(cmd("GET").arg("h"), &mut r).starts_with("WRONGTYPE"));
    let e = error_of::<i64>(cmd("HSET").arg("h").arg("odd"), &mut r);
    assert!(
        e.contains("wrong number of arguments for 'hset' command"),
        "{e}"
    );
}

#[test]
fn mv_registers_keep_what_they_are_given() {
    let c = Cluster::solo();
    let mut r = c.con(0);
    let _: () = cmd("CONFLUO.MVSET")
        .arg("m")
        .arg("one")
        .query(&mut r)
        .unwrap();
    let _: () = cmd("CONFLUO.MVSET")
        .arg("m")
        .arg("two")
        .query(&mut r)
        .unwrap();
    // One leader: each write observed the one before, so one sibling remains.
    assert_eq!(
        cmd("CONFLUO.MVGET")
            .arg("m")
            .query::<Vec<String>>(&mut r)
            .unwrap(),
        ["two"]
    );
    assert_eq!(
        cmd("TYPE").arg("m").query::<String>(&mut r).unwrap(),
        "mvregister"
    );
    assert!(error_of::<Value>(cmd("GET").arg("m"), &mut r).starts_with("WRONGTYPE"));
    assert_eq!(
        cmd("CONFLUO.MVGET")
            .arg("none")
            .query::<Vec<String>>(&mut r)
            .unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn keys_exists_type_del_dbsize_and_a_full_scan() {
    let c = Cluster::solo();
    let mut r = c.con(0);
    for i in 0..250 {
        let _: () = cmd("SET")
            .arg(format!("user:{i}"))
            .arg(i)
            .query(&mut r)
            .unwrap();
    }
    let _: i64 = cmd("SADD").arg("set:1").arg("x").query(&mut r).unwrap();
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut r).unwrap(), 251);
    assert_eq!(
        cmd("EXISTS")
            .arg("user:1")
            .arg("user:1")
            .arg("nope")
            .query::<i64>(&mut r)
            .unwrap(),
        2
    );
    assert_eq!(
        cmd("TYPE").arg("nope").query::<String>(&mut r).unwrap(),
        "none"
    );
    let mut keys: Vec<String> = cmd("KEYS").arg("user:1?").query(&mut r).unwrap();
    keys.sort();
    assert_eq!(keys.len(), 10);
    // SCAN: every key exactly once over the iteration (nothing changes meanwhile).
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = 0u64;
    let mut steps = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(20)
            .query(&mut r)
            .unwrap();
        assert!(batch.len() <= 20 || next == 0);
        for k in batch {
            assert!(seen.insert(k), "a key came twice without changes");
        }
        steps += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    assert_eq!(seen.len(), 251);
    assert!(steps >= 13, "COUNT bounds each step: {steps} steps");
    let (_, sets): (u64, Vec<String>) = cmd("SCAN")
        .arg(0)
        .arg("COUNT")
        .arg(1000)
        .arg("TYPE")
        .arg("set")
        .query(&mut r)
        .unwrap();
    assert_eq!(sets, ["set:1"]);
    let (_, some): (u64, Vec<String>) = cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg("user:2??")
        .arg("COUNT")
        .arg(1000)
        .query(&mut r)
        .unwrap();
    assert_eq!(some.len(), 50);
    assert!(error_of::<Value>(cmd("SCAN").arg("x"), &mut r).contains("invalid cursor"));
    // COUNT is a hint, not an allocation size (resp_session found a COUNT preallocated).
    let (next, all): (u64, Vec<String>) = cmd("SCAN")
        .arg(0)
        .arg("COUNT")
        .arg(i64::MAX)
        .query(&mut r)
        .unwrap();
    assert_eq!((next, all.len()), (0, 251));
    assert_eq!(
        cmd("DEL")
            .arg("user:1")
            .arg("user:2")
            .arg("nope")
            .query::<i64>(&mut r)
            .unwrap(),
        2
    );
    assert_eq!(cmd("DBSIZE").query::<i64>(&mut r).unwrap(), 249);
}

#[test]
fn scan_returns_every_key_present_throughout_despite_deletes() {
    let c = Cluster::solo();
    let mut r = c.con(0);
    for i in 0..200 {
        let _: () = cmd("SET")
            .arg(format!("k{i}"))
            .arg(i)
            .query(&mut r)
            .unwrap();
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = 0u64;
    let mut round = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = cmd("SCAN").arg(cursor).query(&mut r).unwrap();
        seen.extend(batch);
        // Meanwhile, delete keys 100.. and add new ones.
        if round < 100 {
            let _: i64 = cmd("DEL")
                .arg(format!("k{}", 100 + round))
                .query(&mut r)
                .unwrap();
            let _: () = cmd("SET")
                .arg(format!("new{round}"))
                .arg(1)
                .query(&mut r)
                .unwrap();
        }
        round += 1;
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    for i in 0..100 {
        assert!(
            seen.contains(&format!("k{i}")),
            "k{i} was present throughout and must come"
        );
    }
}

#[test]
fn connection_commands_answer_as_redis() {
    let c = Cluster::solo();
    let mut r = c.con(0);
    assert_eq!(cmd("PING").query::<String>(&mut r).unwrap(), "PONG");
    assert_eq!(cmd("PING").arg("hi").query::<String>(&mut r).unwrap(), "hi");
    assert_eq!(
        cmd("ECHO").arg("x y").query::<String>(&mut r).unwrap(),
        "x y"
    );
    let _: () = cmd("SELECT").arg(0).query(&mut r).unwrap();
    assert!(error_of::<()>(cmd("SELECT").arg(1), &mut r).contains("DB index is out of range"));
    let id: i64 = cmd("CLIENT").arg("ID").query(&mut r).unwrap();
    assert!(id > 0);
    assert_eq!(
        cmd("CLIENT")
            .arg("GETNAME")
            .query::<Option<String>>(&mut r)
            .unwrap(),
        None
    );
    let _: () = cmd("CLIENT")
        .arg("SETNAME")
        .arg("worker-1")
        .query(&mut r)
        .unwrap();
    assert_eq!(
        cmd("CLIENT")
            .arg("GETNAME")
            .query::<String>(&mut r)
            .unwrap(),
        "worker-1"
    );
    let info: String = cmd("CLIENT").arg("INFO").query(&mut r).unwrap();
    assert!(info.contains("name=worker-1"), "{info}");
    assert!(
        info.contains("lib-name=redis-rs"),
        "the redis crate sent CLIENT SETINFO: {info}"
    );
    let n: i64 = cmd("COMMAND").arg("COUNT").query(&mut r).unwrap();
    assert!(n >= 45);
    let info: String = cmd("INFO").query(&mut r).unwrap();
    for section in [
        "# Server",
        "# Clients",
        "# Replication",
        "# Keyspace",
        "# Confluo",
    ] {
        assert!(info.contains(section), "{info}");
    }
    assert!(info.contains("role:master"));
    let only: String = cmd("INFO").arg("replication").query(&mut r).unwrap();
    assert!(
        only.starts_with("# Replication") && !only.contains("# Server"),
        "{only}"
    );
    let cfg: Vec<String> = cmd("CONFIG")
        .arg("GET")
        .arg("appendonly")
        .query(&mut r)
        .unwrap();
    assert_eq!(cfg, ["appendonly", "yes"]);
    let e = error_of::<()>(cmd("NOSUCH").arg("a"), &mut r);
    assert!(
        e.contains("unknown command 'NOSUCH', with args beginning with: 'a'"),
        "{e}"
    );
    assert!(
        error_of::<()>(&mut cmd("GET"), &mut r)
            .contains("wrong number of arguments for 'get' command")
    );
}

#[test]
fn resp3_clients_get_maps_sets_and_nulls() {
    let c = Cluster::solo();
    let mut r = connect_resp3(c.nodes[0].client);
    let _: i64 = cmd("HSET")
        .arg("h")
        .arg("f")
        .arg("v")
        .query(&mut r)
        .unwrap();
    let _: i64 = cmd("SADD").arg("s").arg("m").query(&mut r).unwrap();
    assert!(
        matches!(cmd("HGETALL").arg("h").query::<Value>(&mut r).unwrap(), Value::Map(m) if m.len() == 1)
    );
    assert!(
        matches!(cmd("SMEMBERS").arg("s").query::<Value>(&mut r).unwrap(), Value::Set(s) if s.len() == 1)
    );
    assert_eq!(
        cmd("GET").arg("nope").query::<Value>(&mut r).unwrap(),
        Value::Nil
    );
    let hello: Value = cmd("HELLO").arg(3).query(&mut r).unwrap();
    let Value::Map(fields) = hello else {
        panic!("{hello:?}")
    };
    assert!(fields.contains(&(Value::BulkString(b"proto".to_vec()), Value::Int(3))));
}
