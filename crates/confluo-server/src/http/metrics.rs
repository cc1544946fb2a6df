//! `/metrics`: an [`Observation`] in the Prometheus text format (0.0.4), through a
//! `prometheus-client` registry made for the one scrape. The registry holds a
//! [`Collector`] over the observation, so nothing is registered, kept or updated between
//! scrapes: the figures are read where they live (the node, group commit, the transport,
//! the session counters) when someone asks.
//!
//! Names follow Prometheus's conventions: a `confluo_` prefix, counters end in `_total`
//! (the encoder adds it), units are in the name (`_seconds`, `_bytes`), and each figure of
//! a link has a `peer` label holding the peer's name in the config. States are one gauge
//! per state, 1 for the state the peer is in and 0 for the others, so that
//! `confluo_peer_sync_state{state="in_sync"} == 0` is an alert rule.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use prometheus_client::registry::Unit;

use crate::cmd::COMMANDS;
use crate::db::SYNC_BUCKETS_US;
use crate::observe::{Observation, PeerView, SyncState, connection_name};
use crate::shared::Shared;
use crate::shutdown::Phase;
use confluo_transport::ConnectionState;

/// The `Content-Type` of the text format.
pub(crate) const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The text of one scrape.
pub(crate) fn render(shared: Arc<Shared>, obs: Observation) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Scrape { shared, obs }));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct Scrape {
    shared: Arc<Shared>,
    obs: Observation,
}

type Result = std::result::Result<(), std::fmt::Error>;

/// Writes one metric family: a descriptor and one sample per label set.
fn family<L, M>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, M)>,
) -> Result
where
    L: EncodeLabelSet,
    M: EncodeMetric,
{
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut metric = enc.encode_descriptor(name, help, None::<&Unit>, kind)?;
    for (labels, value) in samples {
        value.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge<V: EncodeGaugeValue + std::fmt::Debug>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: V,
) -> Result {
    let g = ConstGauge::new(value);
    g.encode(enc.encode_descriptor(name, help, None::<&Unit>, g.metric_type())?)
}

fn counter<V: EncodeCounterValue + std::fmt::Debug>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: V,
) -> Result {
    let c = ConstCounter::new(value);
    c.encode(enc.encode_descriptor(name, help, None::<&Unit>, c.metric_type())?)
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> Result {
        self.peers(&mut enc)?;
        self.replication(&mut enc)?;
        self.storage(&mut enc)?;
        self.clients(&mut enc)?;
        self.process(&mut enc)
    }
}

impl Scrape {
    /// The links this node replicates over (those with an outbound link).
    fn linked(&self) -> impl Iterator<Item = (&PeerView, &crate::db::PeerMetrics)> + '_ {
        self.obs
            .peers
            .iter()
            .filter_map(|p| p.link.as_ref().map(|l| (p, l)))
    }

    fn peers(&self, enc: &mut DescriptorEncoder<'_>) -> Result {
        let peer = |p: &PeerView| [("peer", p.member.name.clone())];
        family(
            enc,
            "confluo_peer_info",
            "Every other member of the cluster, as the config lists it (value 1).",
            MetricType::Gauge,
            self.obs.peers.iter().map(|p| {
                (
                    [
                        ("peer", p.member.name.clone()),
                        ("datacenter", p.member.datacenter.clone()),
                        ("role", p.role().to_string()),
                        ("id", p.member.id.to_string()),
                    ],
                    ConstGauge::new(1i64),
                )
            }),
        )?;
        family(
            enc,
            "confluo_peer_lag_updates",
            "Updates (log entries) of this node the peer has not acknowledged.",
            MetricType::Gauge,
            self.linked()
                .map(|(p, l)| (peer(p), ConstGauge::new(l.lag_ops))),
        )?;
        family(
            enc,
            "confluo_peer_lag_seconds",
            "Age of the oldest update of this node the peer has not acknowledged (0 when none).",
            MetricType::Gauge,
            self.linked()
                .map(|(p, l)| (peer(p), ConstGauge::new(seconds(l.lag_ms)))),
        )?;
        family(
            enc,
            "confluo_peer_last_contact_seconds",
            "Time since the peer's last acknowledgement (absent before the first).",
            MetricType::Gauge,
            self.linked().filter_map(|(p, l)| {
                l.last_ack_age_ms
                    .map(|ms| (peer(p), ConstGauge::new(seconds(ms))))
            }),
        )?;
        family(
            enc,
            "confluo_peer_acked_position",
            "Position in this node's log the peer acknowledged (applied and durable there).",
            MetricType::Gauge,
            self.linked()
                .map(|(p, l)| (peer(p), ConstGauge::new(l.acked))),
        )?;
        family(
            enc,
            "confluo_peer_sync_state",
            "Replication to the peer: 1 for the state it is in (in_sync, catching_up, state_transfer, disconnected), 0 for the others.",
            MetricType::Gauge,
            self.linked().flat_map(|(p, _)| {
                let now = p.sync();
                SyncState::ALL.into_iter().map(move |s| {
                    (
                        [
                            ("peer", p.member.name.clone()),
                            ("state", s.name().to_string()),
                        ],
                        ConstGauge::new(i64::from(now == Some(s))),
                    )
                })
            }),
        )?;
        family(
            enc,
            "confluo_peer_updates_sent",
            "Updates sent to the peer in batches.",
            MetricType::Counter,
            self.linked()
                .map(|(p, l)| (peer(p), ConstCounter::new(l.updates_sent))),
        )?;
        family(
            enc,
            "confluo_peer_state_transfers_sent",
            "State transfers sent to the peer.",
            MetricType::Counter,
            self.linked()
                .map(|(p, l)| (peer(p), ConstCounter::new(l.state_transfers))),
        )?;
        self.connections(enc)
    }

    fn connections(&self, enc: &mut DescriptorEncoder<'_>) -> Result {
        let with_transport = || {
            self.obs
                .peers
                .iter()
                .filter_map(|p| p.transport.as_ref().map(|t| (p, t)))
        };
        let peer = |p: &PeerView| [("peer", p.member.name.clone())];
        family(
            enc,
            "confluo_peer_connection_state",
            "The transport's connection to the peer: 1 for its state (connected, connecting, backing_off, disconnected), 0 for the others.",
            MetricType::Gauge,
            with_transport().flat_map(|(p, t)| {
                [
                    ConnectionState::Connected,
                    ConnectionState::Connecting,
                    ConnectionState::BackingOff,
                    ConnectionState::Disconnected,
                ]
                .into_iter()
                .map(move |s| {
                    (
                        [
                            ("peer", p.member.name.clone()),
                            ("state", connection_name(s).to_string()),
                        ],
                        ConstGauge::new(i64::from(t.state == s)),
                    )
                })
            }),
        )?;
        family(
            enc,
            "confluo_peer_reconnects",
            "Connections to the peer established after the first (recoveries from a lost connection).",
            MetricType::Counter,
            with_transport().map(|(p, t)| (peer(p), ConstCounter::new(t.reconnects))),
        )?;
        family(
            enc,
            "confluo_peer_queued_bytes",
            "Bytes of encoded frames waiting in the outbound queue to the peer.",
            MetricType::Gauge,
            with_transport().map(|(p, t)| (peer(p), ConstGauge::new(t.queued_bytes as u64))),
        )?;
        family(
            enc,
            "confluo_peer_sent_bytes",
            "Bytes written to the peer (frames, headers included).",
            MetricType::Counter,
            with_transport().map(|(p, t)| (peer(p), ConstCounter::new(t.bytes_sent))),
        )?;
        family(
            enc,
            "confluo_peer_received_bytes",
            "Bytes of frames received from the peer.",
            MetricType::Counter,
            with_transport().map(|(p, t)| (peer(p), ConstCounter::new(t.bytes_received))),
        )?;
        family(
            enc,
            "confluo_peer_sent_messages",
            "Messages written to the peer.",
            MetricType::Counter,
            with_transport().map(|(p, t)| (peer(p), ConstCounter::new(t.messages_sent))),
        )?;
        family(
            enc,
            "confluo_peer_received_messages",
            "Messages received from the peer.",
            MetricType::Counter,
            with_transport().map(|(p, t)| (peer(p), ConstCounter::new(t.messages_received))),
        )?;
        let Some(transport) = &self.shared.transport else {
            return Ok(());
        };
        family(
            enc,
            "confluo_handshake_refusals",
            "Peer connections refused by the handshake, by cause and direction.",
            MetricType::Counter,
            transport.refusals().into_iter().flat_map(|r| {
                [("inbound", r.inbound), ("outbound", r.outbound)]
                    .into_iter()
                    .map(move |(direction, n)| {
                        (
                            [
                                ("cause", r.cause.as_str().to_string()),
                                ("direction", direction.to_string()),
                            ],
                            ConstCounter::new(n),
                        )
                    })
            }),
        )?;
        // The expiry of every certificate in use, the peers' and the client port's (empty
        // without TLS), as the reload last loaded them.
        family(
            enc,
            "confluo_tls_certificate_expiry_timestamp_seconds",
            "End of validity (not_after) of each loaded TLS certificate, in Unix seconds.",
            MetricType::Gauge,
            self.shared.security.certificates().into_iter().map(|c| {
                (
                    [
                        ("usage", c.usage.as_str().to_string()),
                        ("subject", c.subject),
                    ],
                    ConstGauge::new(c.not_after),
                )
            }),
        )?;
        counter(
            enc,
            "confluo_client_auth_failures",
            "Client AUTH and HELLO AUTH attempts refused (wrong password or unknown user).",
            self.shared.security.auth_failures(),
        )
    }

    fn replication(&self, enc: &mut DescriptorEncoder<'_>) -> Result {
        let m = &self.obs.node.metrics;
        counter(
            enc,
            "confluo_updates_received",
            "Updates from peers applied here.",
            m.updates_applied,
        )?;
        counter(
            enc,
            "confluo_state_transfers_received",
            "State transfers received and applied.",
            m.states_received,
        )?;
        counter(
            enc,
            "confluo_state_transfers_refused",
            "State transfers refused (cut for an earlier incarnation of this node).",
            m.states_refused,
        )?;
        gauge(
            enc,
            "confluo_held_updates",
            "Updates held back until the updates they depend on arrive (the causal buffer).",
            m.held_updates as u64,
        )?;
        counter(
            enc,
            "confluo_held_refused",
            "Batches refused because the causal buffer was full (resent later).",
            m.held_refused,
        )?;
        counter(
            enc,
            "confluo_invalid_messages",
            "Peer messages refused as undecodable or invalid.",
            m.invalid_messages,
        )?;
        counter(
            enc,
            "confluo_gaps",
            "Batches dropped because they did not follow what was received (resent later).",
            m.gaps,
        )?;
        counter(
            enc,
            "confluo_replica_reuse_alerts",
            "Times a peer was caught writing with a replica id already used (a restored backup or a copied data directory).",
            m.replica_reuse,
        )?;
        counter(
            enc,
            "confluo_keys_collected",
            "Deleted keys whose entries were dropped once every node held the delete.",
            m.keys_collected,
        )?;
        gauge(
            enc,
            "confluo_deleted_entries",
            "Deleted keys whose entries wait for every node to hold the delete.",
            m.deleted_entries as u64,
        )?;
        gauge(
            enc,
            "confluo_log_head",
            "Last position of this node's log.",
            m.log_head,
        )?;
        gauge(
            enc,
            "confluo_log_entries",
            "Entries in the delta log (updates kept until every peer acknowledged them).",
            m.log_entries as u64,
        )?;
        gauge(
            enc,
            "confluo_log_bytes",
            "Bytes of the delta log.",
            m.log_bytes as u64,
        )?;
        gauge(
            enc,
            "confluo_joining",
            "1 while the node asks its peers which replica ids it used before (writes get LOADING).",
            i64::from(self.obs.node.joining),
        )
    }

    fn storage(&self, enc: &mut DescriptorEncoder<'_>) -> Result {
        let c = &self.obs.commit;
        gauge(
            enc,
            "confluo_keys",
            "Keys holding a value.",
            self.obs.node.metrics.keys as u64,
        )?;
        gauge(
            enc,
            "confluo_key_entries",
            "Key entries held in memory, deleted keys awaiting collection included.",
            self.obs.node.entries as u64,
        )?;
        gauge(
            enc,
            "confluo_store_size_bytes",
            "Bytes of the files in the data directory.",
            self.obs.store_bytes,
        )?;
        let mut buckets: Vec<(f64, u64)> = SYNC_BUCKETS_US
            .iter()
            .map(|&us| us as f64 / 1e6)
            .zip(c.sync_buckets.iter().copied())
            .collect();
        buckets.push((f64::INFINITY, c.sync_buckets[SYNC_BUCKETS_US.len()]));
        let mut m = enc.encode_descriptor(
            "confluo_fsync_duration_seconds",
            "Duration of each group commit (append and fsync).",
            None::<&Unit>,
            MetricType::Histogram,
        )?;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            c.sync_micros as f64 / 1e6,
            c.syncs,
            &buckets,
            None,
        )?;
        counter(
            enc,
            "confluo_group_commits",
            "Group commits (one fsync each).",
            c.syncs,
        )?;
        counter(
            enc,
            "confluo_group_commit_records",
            "Records made durable by group commits (records / commits = the mean batch size).",
            c.records,
        )?;
        gauge(
            enc,
            "confluo_group_commit_max_batch_records",
            "Largest batch synced by one group commit, in records.",
            c.max_batch,
        )?;
        counter(
            enc,
            "confluo_disk_full_retries",
            "Commits that found the disk full (each retried).",
            c.full,
        )?;
        gauge(
            enc,
            "confluo_writes_stalled",
            "1 while writes are refused because the disk is full.",
            i64::from(c.stalled),
        )
    }

    fn clients(&self, enc: &mut DescriptorEncoder<'_>) -> Result {
        let s = &self.shared.stats;
        gauge(
            enc,
            "confluo_client_connections",
            "Clients connected now.",
            s.connected.load(Ordering::Relaxed) as u64,
        )?;
        counter(
            enc,
            "confluo_client_connections_accepted",
            "Clients accepted.",
            s.accepted.load(Ordering::Relaxed),
        )?;
        counter(
            enc,
            "confluo_client_connections_rejected",
            "Clients refused because max_clients were connected.",
            s.rejected.load(Ordering::Relaxed),
        )?;
        counter(
            enc,
            "confluo_client_disconnects_protocol_error",
            "Clients disconnected for a protocol error.",
            s.protocol_errors.load(Ordering::Relaxed),
        )?;
        counter(
            enc,
            "confluo_client_disconnects_buffer_limit",
            "Clients disconnected for reaching a buffer cap.",
            s.buffer_disconnects.load(Ordering::Relaxed),
        )?;
        gauge(
            enc,
            "confluo_blocked_clients",
            "Clients in WAIT now.",
            s.blocked.load(Ordering::Relaxed) as u64,
        )?;
        // Reads and writes per command family: the table's group, and its `write` or
        // `readonly` flag (`other` for neither: PING, CLIENT, INFO, ...).
        let mut by_family: Vec<((&str, &str), u64)> = Vec::new();
        for (i, spec) in COMMANDS.iter().enumerate() {
            let access = if spec.flags.contains(&"write") {
                "write"
            } else if spec.flags.contains(&"readonly") {
                "read"
            } else {
                "other"
            };
            let calls = s.calls.get(i);
            match by_family
                .iter_mut()
                .find(|(k, _)| *k == (spec.group, access))
            {
                Some((_, n)) => *n += calls,
                None => by_family.push(((spec.group, access), calls)),
            }
        }
        family(
            enc,
            "confluo_client_commands",
            "Client commands run, by command family and access (read, write, other).",
            MetricType::Counter,
            by_family.into_iter().map(|((family, access), n)| {
                (
                    [
                        ("family", family.to_string()),
                        ("access", access.to_string()),
                    ],
                    ConstCounter::new(n),
                )
            }),
        )
    }

    fn process(&self, enc: &mut DescriptorEncoder<'_>) -> Result {
        if let Some(rss) = crate::cmd::info::resident_bytes() {
            gauge(
                enc,
                "confluo_process_resident_memory_bytes",
                "Resident memory of the process.",
                rss,
            )?;
        }
        gauge(
            enc,
            "confluo_uptime_seconds",
            "Time since the server started serving.",
            self.shared.started.elapsed().as_secs_f64(),
        )?;
        gauge(
            enc,
            "confluo_recovery_seconds",
            "How long the start took to open the store and restore the node.",
            self.shared.recovery.took.as_secs_f64(),
        )?;
        gauge(
            enc,
            "confluo_draining",
            "1 once shutdown began (writes refused while the peers catch up).",
            i64::from(self.obs.phase != Phase::Running),
        )
    }
}
