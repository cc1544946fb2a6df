//! INFO and CONFIG GET.
//!
//! INFO is a list of sections, each a function that writes `name:value` lines under a
//! `# Section` header, CRLF-terminated, as redis-cli users read them. `INFO` and `INFO
//! default` print the default sections, `INFO all` and `INFO everything` add
//! `commandstats`, and `INFO a b …` prints the sections named (in any case; unknown names
//! print nothing), as Redis 7 does. INFO runs in the session, not on the node's task alone:
//! it reads the transport and group commit too ([`observe`](crate::observe)).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::args::{Args, is};
use super::connection::REDIS_VERSION;
use super::glob;
use super::replication::Peers;
use super::{COMMANDS, Command, SessionCommand};
use crate::config::MemberRole;
use crate::observe::{Observation, connection_name};
use crate::reply::{Reply, RespError};
use crate::shared::Shared;

/// What a section reads.
struct Snapshot<'a> {
    shared: &'a Shared,
    obs: &'a Observation,
}

type Section = fn(&Snapshot<'_>, &mut String);

/// The sections, in the order INFO prints them, and whether the default set has them.
static SECTIONS: &[(&str, bool, Section)] = &[
    ("server", true, server),
    ("clients", true, clients),
    ("memory", true, memory),
    ("persistence", true, persistence),
    ("stats", true, stats),
    ("replication", true, replication),
    ("commandstats", false, commandstats),
    ("keyspace", true, keyspace),
    ("confluo", true, confluo),
];

/// Commands that read the whole server ([`Observation`]): they run in the session.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Report {
    /// INFO [section …].
    Info(Info),
    /// CONFLUO.PEERS.
    Peers(Peers),
}

impl Report {
    /// Whether the report shows the state's digest (which costs an encoding of the whole
    /// state, so it is taken only when shown).
    pub(crate) fn wants_digest(&self) -> bool {
        match self {
            Report::Info(i) => i.wants("confluo"),
            Report::Peers(_) => false,
        }
    }

    /// The reply, from an observation taken for it.
    pub(crate) fn execute(self, shared: &Shared, obs: &Observation) -> Reply {
        match self {
            Report::Info(i) => i.execute(shared, obs),
            Report::Peers(p) => p.execute(obs),
        }
    }
}

/// INFO [section …].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Info {
    sections: Vec<Bytes>,
}

pub(super) fn parse_info(a: &mut Args) -> Result<Command, RespError> {
    Ok(Command::Session(SessionCommand::Report(Report::Info(
        Info { sections: a.rest() },
    ))))
}

impl Info {
    /// Whether the section `name` is printed.
    fn wants(&self, name: &str) -> bool {
        let default = SECTIONS
            .iter()
            .any(|(n, in_default, _)| *n == name && *in_default);
        if self.sections.is_empty() {
            return default;
        }
        self.sections.iter().any(|s| {
            is(s, name) || (default && is(s, "default")) || is(s, "all") || is(s, "everything")
        })
    }

    fn execute(self, shared: &Shared, obs: &Observation) -> Reply {
        let snapshot = Snapshot { shared, obs };
        let mut text = String::new();
        for (name, _, write) in SECTIONS {
            if self.wants(name) {
                if !text.is_empty() {
                    text.push_str("\r\n");
                }
                let title = name[..1].to_ascii_uppercase() + &name[1..];
                let _ = write!(text, "# {title}\r\n");
                write(&snapshot, &mut text);
            }
        }
        Reply::bulk(text)
    }
}

macro_rules! line {
    ($out:expr, $($arg:tt)*) => {{
        let _ = write!($out, $($arg)*);
        $out.push_str("\r\n");
    }};
}

fn server(s: &Snapshot<'_>, out: &mut String) {
    let uptime = s.shared.started.elapsed().as_secs();
    line!(out, "redis_version:{REDIS_VERSION}");
    line!(out, "confluo_version:{}", env!("CARGO_PKG_VERSION"));
    line!(out, "redis_mode:standalone");
    line!(
        out,
        "os:{} {}",
        std::env::consts::OS,
        std::env::consts::ARCH
    );
    line!(out, "process_id:{}", std::process::id());
    line!(out, "tcp_port:{}", s.shared.client_addr.port());
    line!(out, "uptime_in_seconds:{uptime}");
    line!(out, "uptime_in_days:{}", uptime / 86_400);
}

fn clients(s: &Snapshot<'_>, out: &mut String) {
    let stats = &s.shared.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    line!(
        out,
        "connected_clients:{}",
        stats.connected.load(Ordering::Relaxed)
    );
    line!(out, "maxclients:{}", s.shared.config.limits.max_clients);
    line!(
        out,
        "blocked_clients:{}",
        stats.blocked.load(Ordering::Relaxed)
    );
    line!(out, "total_connections_received:{}", load(&stats.accepted));
    line!(out, "rejected_connections:{}", load(&stats.rejected));
    line!(
        out,
        "client_protocol_errors:{}",
        load(&stats.protocol_errors)
    );
    line!(
        out,
        "client_buffer_disconnects:{}",
        load(&stats.buffer_disconnects)
    );
}

fn memory(s: &Snapshot<'_>, out: &mut String) {
    let rss = resident_bytes().unwrap_or(0);
    line!(out, "used_memory_rss:{rss}");
    line!(
        out,
        "used_memory_rss_human:{:.2}M",
        rss as f64 / 1_048_576.0
    );
    line!(out, "maxmemory:0");
    line!(out, "maxmemory_policy:noeviction");
    line!(out, "confluo_log_bytes:{}", s.obs.node.metrics.log_bytes);
    line!(
        out,
        "confluo_log_entries:{}",
        s.obs.node.metrics.log_entries
    );
    line!(out, "confluo_key_entries:{}", s.obs.node.entries);
}

/// The process's resident set, from `/proc/self/status` (Linux; `None` elsewhere).
pub(crate) fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn persistence(s: &Snapshot<'_>, out: &mut String) {
    let c = &s.obs.commit;
    let r = &s.shared.recovery;
    line!(out, "loading:{}", u8::from(s.obs.node.joining));
    line!(out, "aof_enabled:1");
    line!(out, "appendfsync:always");
    line!(out, "confluo_store_bytes:{}", s.obs.store_bytes);
    line!(out, "confluo_fsyncs:{}", c.syncs);
    line!(out, "confluo_fsync_records:{}", c.records);
    line!(
        out,
        "confluo_fsync_avg_us:{}",
        c.sync_micros.checked_div(c.syncs).unwrap_or(0)
    );
    line!(out, "confluo_group_commit_max_records:{}", c.max_batch);
    line!(out, "confluo_disk_full_retries:{}", c.full);
    line!(out, "confluo_writes_stalled:{}", u8::from(c.stalled));
    line!(out, "confluo_recovery_ms:{}", r.took.as_millis());
    line!(out, "confluo_recovered_keys:{}", r.keys);
    line!(
        out,
        "confluo_incarnation:{}",
        confluo_node::identity::generation_of(confluo_node::ReplicaId(s.obs.node.replica))
    );
}

fn stats(s: &Snapshot<'_>, out: &mut String) {
    let stats = &s.shared.stats;
    let m = &s.obs.node.metrics;
    let (sent, received) = s
        .obs
        .peers
        .iter()
        .filter_map(|p| p.transport.as_ref())
        .fold((0, 0), |(a, b), t| (a + t.bytes_sent, b + t.bytes_received));
    line!(
        out,
        "total_connections_received:{}",
        stats.accepted.load(Ordering::Relaxed)
    );
    line!(
        out,
        "total_commands_processed:{}",
        stats.commands.load(Ordering::Relaxed)
    );
    line!(
        out,
        "rejected_connections:{}",
        stats.rejected.load(Ordering::Relaxed)
    );
    line!(out, "total_net_repl_input_bytes:{received}");
    line!(out, "total_net_repl_output_bytes:{sent}");
    line!(out, "confluo_updates_applied:{}", m.updates_applied);
    line!(out, "confluo_states_received:{}", m.states_received);
    line!(out, "confluo_states_refused:{}", m.states_refused);
    line!(out, "confluo_invalid_messages:{}", m.invalid_messages);
    line!(out, "confluo_held_refused:{}", m.held_refused);
    line!(out, "confluo_keys_collected:{}", m.keys_collected);
    line!(out, "confluo_replica_reuse:{}", m.replica_reuse);
}

fn replication(s: &Snapshot<'_>, out: &mut String) {
    let config = &s.shared.config;
    match &config.node.role {
        MemberRole::Leader => {
            line!(out, "role:master");
            line!(out, "confluo_role:leader");
        }
        MemberRole::Follower { leader } => {
            line!(out, "role:slave");
            line!(out, "confluo_role:follower");
            if let Some(m) = config.member(leader) {
                let up = s
                    .obs
                    .peers
                    .iter()
                    .any(|p| p.member.id == m.id && p.connected());
                line!(out, "master_host:{}", m.client_addr.ip());
                line!(out, "master_port:{}", m.client_addr.port());
                line!(out, "master_link_status:{}", if up { "up" } else { "down" });
                line!(out, "confluo_leader:{}", m.name);
            }
        }
    }
    line!(out, "master_repl_offset:{}", s.obs.node.metrics.log_head);
    let linked: Vec<_> = s.obs.peers.iter().filter(|p| p.link.is_some()).collect();
    line!(out, "peers:{}", linked.len());
    line!(
        out,
        "peers_in_sync:{}",
        linked
            .iter()
            .filter(|p| p.sync() == Some(crate::observe::SyncState::InSync))
            .count()
    );
    for (i, p) in linked.iter().enumerate() {
        let Some(link) = &p.link else { continue };
        let state = p.sync().map_or("none", |s| s.name());
        let conn = p
            .transport
            .as_ref()
            .map_or("none", |t| connection_name(t.state));
        let contact = link
            .last_ack_age_ms
            .map_or_else(|| "-1".to_string(), |ms| ms.to_string());
        line!(
            out,
            "peer{i}:name={},id={},datacenter={},role={},state={state},link={conn},lag_ops={},lag_ms={},last_contact_ms={contact},acked={}",
            p.member.name,
            p.member.id,
            p.member.datacenter,
            p.role(),
            link.lag_ops,
            link.lag_ms,
            link.acked,
        );
    }
}

fn commandstats(s: &Snapshot<'_>, out: &mut String) {
    for (i, spec) in COMMANDS.iter().enumerate() {
        let calls = s.shared.stats.calls.get(i);
        if calls > 0 {
            line!(
                out,
                "cmdstat_{}:calls={calls}",
                spec.name.to_ascii_lowercase()
            );
        }
    }
}

fn keyspace(s: &Snapshot<'_>, out: &mut String) {
    let keys = s.obs.node.metrics.keys;
    if keys > 0 {
        line!(out, "db0:keys={keys},expires=0,avg_ttl=0");
    }
}

fn confluo(s: &Snapshot<'_>, out: &mut String) {
    let node = &s.shared.config.node;
    let m = &s.obs.node.metrics;
    line!(out, "node_id:{}", node.id);
    line!(out, "node_name:{}", node.name);
    line!(out, "datacenter:{}", node.datacenter);
    line!(out, "cluster_id:{:#x}", s.shared.config.cluster_id);
    line!(out, "peer_addr:{}", s.shared.peer_addr);
    line!(out, "replica_id:{}", s.obs.node.replica);
    if let Some(d) = s.obs.node.digest {
        line!(out, "digest:{d:016x}");
    }
    line!(out, "log_entries:{}", m.log_entries);
    line!(out, "held_updates:{}", m.held_updates);
    line!(out, "updates_applied:{}", m.updates_applied);
}

/// CONFIG GET pattern [pattern …].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ConfigGet {
    patterns: Vec<Bytes>,
}

pub(super) fn parse_config(a: &mut Args) -> Result<Command, RespError> {
    let sub = a.next_bytes()?;
    if is(&sub, "GET") {
        if a.remaining() == 0 {
            return Err(a.sub_arity("get"));
        }
        return Ok(Command::Session(SessionCommand::Config(ConfigGet {
            patterns: a.rest(),
        })));
    }
    if is(&sub, "SET") {
        return Err(RespError::ConfigSet);
    }
    if is(&sub, "RESETSTAT") {
        return Ok(Command::Ready(Reply::Ok));
    }
    Err(RespError::unknown_subcommand("CONFIG", &sub))
}

impl ConfigGet {
    /// The matching parameters, as Redis names them (redis-benchmark asks for `save` and
    /// `appendonly` before it starts).
    pub(crate) fn execute(self, shared: &Shared) -> Reply {
        let l = &shared.config.limits;
        let params: [(&str, String); 8] = [
            ("appendfsync", "always".into()),
            ("appendonly", "yes".into()),
            ("client-query-buffer-limit", l.max_query_buffer.to_string()),
            ("databases", "1".into()),
            ("maxclients", l.max_clients.to_string()),
            ("port", shared.client_addr.port().to_string()),
            ("proto-max-bulk-len", l.max_bulk_len.to_string()),
            ("save", String::new()),
        ];
        Reply::Map(
            params
                .into_iter()
                .filter(|(name, _)| {
                    self.patterns
                        .iter()
                        .any(|p| glob::matches(&p.to_ascii_lowercase(), name.as_bytes()))
                })
                .map(|(name, value)| (Reply::bulk(name), Reply::bulk(value)))
                .collect(),
        )
    }
}
