//! The clients: several per leader, each writing every value type to a small set of keys (so
//! that leaders conflict all the time) and reading at leaders and followers. Every request
//! goes into the history with its outcome.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use confluo_sim::rng::SimRng;
use redis::aio::MultiplexedConnection;

use crate::cluster::Addresses;
use crate::history::{Observed, Op, Outcome, Record};
use crate::shape::Member;

/// How long a request may take before its outcome is unknown. Longer than a group commit
/// under load, shorter than a pause, so a paused node's requests end as unknown.
pub const REQUEST_TIMEOUT: Duration = Duration::from_millis(1_500);

/// How many keys of each type.
pub const KEYS_PER_TYPE: usize = 2;

/// The fields `HSET` and `HDEL` use; `HINCRBY` uses its own field, so that an increment never
/// meets a field holding text.
pub const HASH_FIELDS: [&str; 3] = ["f0", "f1", "f2"];

/// The field `HINCRBY` adds to.
pub const COUNTER_FIELD: &str = "n";

/// The type a key holds: its name says it (`s0` a set, `c1` a counter…).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyType {
    /// `s…`: SADD, SREM, DEL (`s1` only); read with SMEMBERS.
    Set,
    /// `c…`: INCRBY only (never deleted, so it can be checked exactly); read with GET.
    Counter,
    /// `r…`: SET, DEL; read with GET.
    Register,
    /// `h…`: HSET, HDEL, HINCRBY, DEL; read with HGETALL.
    Hash,
    /// `m…`: CONFLUO.MVSET, DEL; read with CONFLUO.MVGET.
    MvRegister,
}

impl KeyType {
    /// Every type.
    pub const ALL: [KeyType; 5] = [
        KeyType::Set,
        KeyType::Counter,
        KeyType::Register,
        KeyType::Hash,
        KeyType::MvRegister,
    ];

    /// The type of `key`.
    pub fn of(key: &str) -> Option<KeyType> {
        KeyType::ALL
            .into_iter()
            .find(|t| key.starts_with(t.prefix()))
    }

    fn prefix(self) -> &'static str {
        match self {
            KeyType::Set => "s",
            KeyType::Counter => "c",
            KeyType::Register => "r",
            KeyType::Hash => "h",
            KeyType::MvRegister => "m",
        }
    }
}

/// Every key of a run.
pub fn keys() -> Vec<String> {
    KeyType::ALL
        .iter()
        .flat_map(|t| (0..KEYS_PER_TYPE).map(move |i| format!("{}{i}", t.prefix())))
        .collect()
}

/// What the clients share: the history, and the members each set was given (so removes hit
/// members that exist).
#[derive(Debug)]
pub struct Shared {
    started: Instant,
    records: Mutex<Vec<Record>>,
    members: Mutex<BTreeMap<String, Vec<String>>>,
    unique: AtomicU64,
    stop: AtomicBool,
    /// Requests not sent because the node was down or refused the connection.
    pub not_sent: AtomicU64,
}

impl Shared {
    /// A workload whose times count from `started`.
    pub fn new(started: Instant) -> Arc<Shared> {
        Arc::new(Shared {
            started,
            records: Mutex::new(Vec::new()),
            members: Mutex::new(BTreeMap::new()),
            unique: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            not_sent: AtomicU64::new(0),
        })
    }

    /// Tells every client to stop after its current request.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// How many requests ended so far.
    pub fn ops(&self) -> usize {
        self.records.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The records, in the order requests were sent, numbered in that order.
    pub fn take_records(&self) -> Vec<Record> {
        let mut records =
            std::mem::take(&mut *self.records.lock().unwrap_or_else(|e| e.into_inner()));
        records.sort_by_key(|r| (r.start, r.client));
        for (i, r) in records.iter_mut().enumerate() {
            r.id = i;
        }
        records
    }

    fn unique(&self, prefix: &str) -> String {
        format!("{prefix}{}", self.unique.fetch_add(1, Ordering::Relaxed))
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }
}

/// One client: writes to its datacenter's leader, reads anywhere.
pub struct Client {
    /// Its number in the history.
    pub id: usize,
    /// The leader it writes to.
    pub leader: usize,
    /// Where it reads: its leader's datacenter first, then any node.
    pub members: Vec<Member>,
    /// Its draws (which requests, where; the timing is the machine's).
    pub rng: SimRng,
    /// Client addresses.
    pub addresses: Arc<Addresses>,
    /// The workload.
    pub shared: Arc<Shared>,
    connections: BTreeMap<usize, (SocketAddr, MultiplexedConnection)>,
}

impl Client {
    /// A client of `leader`.
    pub fn new(
        id: usize,
        leader: usize,
        members: Vec<Member>,
        rng: SimRng,
        addresses: Arc<Addresses>,
        shared: Arc<Shared>,
    ) -> Client {
        Client {
            id,
            leader,
            members,
            rng,
            addresses,
            shared,
            connections: BTreeMap::new(),
        }
    }

    /// Sends requests until told to stop.
    pub async fn run(mut self) {
        while !self.shared.stop.load(Ordering::Relaxed) {
            let (node, op) = self.next_op();
            self.request(node, op).await;
            let pause = self.rng.range(5, 25);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }

    fn next_op(&mut self) -> (usize, Op) {
        let t = *self.rng.pick(&KeyType::ALL).expect("types");
        let key = format!("{}{}", t.prefix(), self.rng.below(KEYS_PER_TYPE as u64));
        if self.rng.chance(300_000) {
            return (self.read_node(), Op::Read { key });
        }
        let roll = self.rng.below(100);
        let op = match t {
            // Only the second key of a type is ever deleted: a DEL can explain the loss of
            // any write to its key before it, so the first keys are where a lost write has
            // no excuse.
            _ if roll < 6 && t != KeyType::Counter && key.ends_with('1') => Op::Del { key },
            KeyType::Set if roll < 40 => match self.known_member(&key) {
                Some(member) => Op::Srem { key, member },
                None => Op::Sadd {
                    member: self.shared.unique("m"),
                    key,
                },
            },
            KeyType::Set => {
                let member = self.shared.unique("m");
                self.shared
                    .members
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key.clone())
                    .or_default()
                    .push(member.clone());
                Op::Sadd { key, member }
            }
            KeyType::Counter => Op::Incrby {
                key,
                by: self.rng.range(1, 9) as i64,
            },
            KeyType::Register => Op::Set {
                key,
                value: self.shared.unique("v"),
            },
            KeyType::Hash => {
                let field = HASH_FIELDS[self.rng.below(HASH_FIELDS.len() as u64) as usize];
                if roll < 30 {
                    Op::Hdel {
                        key,
                        field: field.to_string(),
                    }
                } else if roll < 50 {
                    Op::Hincrby {
                        key,
                        field: COUNTER_FIELD.to_string(),
                        by: self.rng.range(1, 9) as i64,
                    }
                } else {
                    Op::Hset {
                        key,
                        field: field.to_string(),
                        value: self.shared.unique("v"),
                    }
                }
            }
            KeyType::MvRegister => Op::MvSet {
                key,
                value: self.shared.unique("v"),
            },
        };
        (self.leader, op)
    }

    /// One of the last members given to `key`.
    fn known_member(&mut self, key: &str) -> Option<String> {
        let members = self
            .shared
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let list = members.get(key)?;
        let recent = &list[list.len().saturating_sub(8)..];
        self.rng.pick(recent).cloned()
    }

    /// Half the reads at the client's own datacenter, half anywhere.
    fn read_node(&mut self) -> usize {
        let dc = self.members[self.leader].dc;
        let local: Vec<usize> = self
            .members
            .iter()
            .filter(|m| m.dc == dc)
            .map(|m| m.index)
            .collect();
        if self.rng.chance(500_000) {
            *self.rng.pick(&local).expect("the leader is local")
        } else {
            self.rng.below(self.members.len() as u64) as usize
        }
    }

    async fn connection(&mut self, node: usize) -> Option<MultiplexedConnection> {
        let addr = self.addresses.get(node)?;
        if let Some((a, c)) = self.connections.get(&node) {
            if *a == addr {
                return Some(c.clone());
            }
        }
        let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
        let con = tokio::time::timeout(REQUEST_TIMEOUT, client.get_multiplexed_async_connection())
            .await
            .ok()?
            .ok()?;
        self.connections.insert(node, (addr, con.clone()));
        Some(con)
    }

    async fn request(&mut self, node: usize, op: Op) {
        let Some(mut con) = self.connection(node).await else {
            self.shared.not_sent.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
            return;
        };
        let start = self.shared.now();
        let answer = tokio::time::timeout(REQUEST_TIMEOUT, send(&mut con, &op)).await;
        let end = self.shared.now();
        let outcome = match answer {
            Err(_) => Outcome::Unknown("timeout".into()),
            Ok(Ok(o)) => o,
            Ok(Err(e)) => classify(&e),
        };
        if matches!(outcome, Outcome::Unknown(_)) {
            // Its connection may still deliver the late answer: never reuse it.
            self.connections.remove(&node);
        }
        self.shared
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Record {
                id: 0,
                client: self.id,
                node,
                op,
                start,
                end,
                outcome,
            });
    }
}

/// Sends `op` and reads the answer in the shape the checkers want.
async fn send(con: &mut MultiplexedConnection, op: &Op) -> redis::RedisResult<Outcome> {
    let cmd = match op {
        Op::Sadd { key, member } => redis::cmd("SADD").arg(key).arg(member).clone(),
        Op::Srem { key, member } => redis::cmd("SREM").arg(key).arg(member).clone(),
        Op::Incrby { key, by } => redis::cmd("INCRBY").arg(key).arg(by).clone(),
        Op::Set { key, value } => redis::cmd("SET").arg(key).arg(value).clone(),
        Op::Hset { key, field, value } => redis::cmd("HSET").arg(key).arg(field).arg(value).clone(),
        Op::Hdel { key, field } => redis::cmd("HDEL").arg(key).arg(field).clone(),
        Op::Hincrby { key, field, by } => redis::cmd("HINCRBY").arg(key).arg(field).arg(by).clone(),
        Op::MvSet { key, value } => redis::cmd("CONFLUO.MVSET").arg(key).arg(value).clone(),
        Op::Del { key } => redis::cmd("DEL").arg(key).clone(),
        Op::Read { key } => return read(con, key).await.map(Outcome::Read),
    };
    let v: redis::Value = cmd.query_async(con).await?;
    Ok(Outcome::Ok(match v {
        redis::Value::Int(n) => Some(n),
        _ => None,
    }))
}

/// Every key's value at the node at `addr` (`None` if it does not answer them all).
pub async fn read_all(addr: SocketAddr) -> Option<BTreeMap<String, Observed>> {
    let client = redis::Client::open(format!("redis://{addr}/")).ok()?;
    let mut con = client.get_multiplexed_async_connection().await.ok()?;
    let mut out = BTreeMap::new();
    for key in keys() {
        out.insert(key.clone(), read(&mut con, &key).await.ok()?);
    }
    Some(out)
}

/// Reads `key` with its type's read command.
pub async fn read(con: &mut MultiplexedConnection, key: &str) -> redis::RedisResult<Observed> {
    Ok(match KeyType::of(key) {
        Some(KeyType::Set) => {
            let m: BTreeSet<String> = redis::cmd("SMEMBERS").arg(key).query_async(con).await?;
            Observed::Members(m)
        }
        Some(KeyType::Hash) => {
            let m: BTreeMap<String, String> =
                redis::cmd("HGETALL").arg(key).query_async(con).await?;
            Observed::Fields(m)
        }
        Some(KeyType::MvRegister) => {
            let mut s: Vec<String> = redis::cmd("CONFLUO.MVGET")
                .arg(key)
                .query_async(con)
                .await?;
            s.sort();
            Observed::Siblings(s)
        }
        Some(KeyType::Counter | KeyType::Register) | None => {
            let t: Option<String> = redis::cmd("GET").arg(key).query_async(con).await?;
            Observed::Text(t)
        }
    })
}

/// Error replies that mean the server did nothing; anything else may have taken effect.
fn classify(e: &redis::RedisError) -> Outcome {
    const NOTHING_DONE: [&str; 5] = ["READONLY", "LOADING", "WRONGTYPE", "ERR", "NOPROTO"];
    let text = e.to_string();
    match e.code() {
        // "ERR the node has stopped; this write may not be durable": it may be there.
        Some(_) if text.contains("may not be durable") => Outcome::Unknown(text),
        Some(code) if NOTHING_DONE.contains(&code) => Outcome::Fail(text),
        _ => Outcome::Unknown(text),
    }
}
