//! INFO and CONFIG GET.
//!
//! INFO is a list of sections, each a function that writes `key:value` lines; a new section
//! (the operability issue adds `persistence`, `stats`, per-peer lag in detail) is one more
//! entry in [`SECTIONS`].

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::args::{Args, is};
use super::connection::REDIS_VERSION;
use super::glob;
use super::{Command, SessionCommand, node};
use crate::config::MemberRole;
use crate::db::{Db, NodeMetrics};
use crate::reply::{Reply, RespError};
use crate::shared::Shared;

/// What the sections read: taken on the node's task, formatted there.
pub(crate) struct Snapshot<'a> {
    shared: &'a Shared,
    metrics: NodeMetrics,
    keys: usize,
    digest: u64,
}

type Section = fn(&Snapshot<'_>, &mut String);

/// The sections, in the order INFO prints them; all are in the default set.
static SECTIONS: &[(&str, Section)] = &[
    ("server", server),
    ("clients", clients),
    ("replication", replication),
    ("keyspace", keyspace),
    ("confluo", confluo),
];

/// INFO [section …].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Info {
    sections: Vec<Bytes>,
}

pub(super) fn parse_info(a: &mut Args) -> Result<Command, RespError> {
    node(Info { sections: a.rest() })
}

impl Info {
    pub(super) fn execute(self, db: &mut Db<'_, '_>) -> Result<Reply, RespError> {
        let snapshot = Snapshot {
            shared: db.shared(),
            metrics: db.metrics(),
            keys: db.len(),
            digest: db.digest(),
        };
        let all = self.sections.is_empty()
            || self
                .sections
                .iter()
                .any(|s| ["all", "default", "everything"].iter().any(|a| is(s, a)));
        let mut text = String::new();
        for (name, write) in SECTIONS {
            if all || self.sections.iter().any(|s| is(s, name)) {
                if !text.is_empty() {
                    text.push_str("\r\n");
                }
                let title = name[..1].to_ascii_uppercase() + &name[1..];
                let _ = write!(text, "# {title}\r\n");
                write(&snapshot, &mut text);
            }
        }
        Ok(Reply::bulk(text))
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
    line!(
        out,
        "total_connections_received:{}",
        stats.accepted.load(Ordering::Relaxed)
    );
    line!(
        out,
        "rejected_connections:{}",
        stats.rejected.load(Ordering::Relaxed)
    );
    line!(
        out,
        "client_protocol_errors:{}",
        stats.protocol_errors.load(Ordering::Relaxed)
    );
    line!(
        out,
        "client_buffer_disconnects:{}",
        stats.buffer_disconnects.load(Ordering::Relaxed)
    );
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
                line!(out, "master_host:{}", m.client_addr.ip());
                line!(out, "master_port:{}", m.client_addr.port());
                let up = s.metrics.peers.iter().any(|p| p.peer.0 == m.id && p.known);
                line!(out, "master_link_status:{}", if up { "up" } else { "down" });
            }
        }
    }
    line!(out, "master_repl_offset:{}", s.metrics.log_head);
    line!(out, "peers:{}", s.metrics.peers.len());
    for (i, p) in s.metrics.peers.iter().enumerate() {
        let member = config.members().find(|m| m.id == p.peer.0);
        let (name, dc) = member.map_or(("?", "?"), |m| (m.name.as_str(), m.datacenter.as_str()));
        line!(
            out,
            "peer{i}:id={},name={name},datacenter={dc},known={},acked={},lag_ops={},lag_ms={},bytes_sent={}",
            p.peer,
            u8::from(p.known),
            p.acked,
            p.lag_ops,
            p.lag_ms,
            p.bytes_sent
        );
    }
}

fn keyspace(s: &Snapshot<'_>, out: &mut String) {
    if s.keys > 0 {
        line!(out, "db0:keys={},expires=0,avg_ttl=0", s.keys);
    }
}

fn confluo(s: &Snapshot<'_>, out: &mut String) {
    let node = &s.shared.config.node;
    line!(out, "node_id:{}", node.id);
    line!(out, "node_name:{}", node.name);
    line!(out, "datacenter:{}", node.datacenter);
    line!(out, "cluster_id:{:#x}", s.shared.config.cluster_id);
    line!(out, "peer_addr:{}", s.shared.peer_addr);
    line!(out, "digest:{:016x}", s.digest);
    line!(out, "log_entries:{}", s.metrics.log_entries);
    line!(out, "held_updates:{}", s.metrics.held_updates);
    line!(out, "updates_applied:{}", s.metrics.updates_applied);
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
