//! One look at the whole server, taken when someone asks (a scrape of /metrics, INFO,
//! CONFLUO.PEERS, /readyz): the node's metrics read on its task, group commit's figures, the
//! transport's view of every peer, the store's size on disk. Nothing is sampled in the
//! background, so a server nobody watches does no work for watchers.

use std::path::Path;
use std::sync::Arc;

use confluo_transport::{ConnectionState, PeerStats};

use crate::config::{Member, MemberRole};
use crate::db::{CommitStats, DbHandle, NodeMetrics, PeerMetrics, PeerSync};
use crate::reply::RespError;
use crate::shared::Shared;
use crate::shutdown::Phase;

/// Where replication to one peer stands, as operators read it: the node's view of the
/// link, overruled by the transport when the peer is not connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SyncState {
    /// The peer acknowledged every update.
    InSync,
    /// Deltas are on their way (or the peer's position is being asked for).
    CatchingUp,
    /// A state transfer was sent and is not acknowledged yet.
    StateTransfer,
    /// No connection to the peer.
    Disconnected,
}

impl SyncState {
    /// Every state, in the order metrics list them.
    pub(crate) const ALL: [SyncState; 4] = [
        SyncState::InSync,
        SyncState::CatchingUp,
        SyncState::StateTransfer,
        SyncState::Disconnected,
    ];

    /// The label value and INFO word.
    pub(crate) fn name(self) -> &'static str {
        match self {
            SyncState::InSync => "in_sync",
            SyncState::CatchingUp => "catching_up",
            SyncState::StateTransfer => "state_transfer",
            SyncState::Disconnected => "disconnected",
        }
    }
}

/// The name of a transport connection state.
pub(crate) fn connection_name(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::Connected => "connected",
        ConnectionState::Connecting => "connecting",
        ConnectionState::BackingOff => "backing_off",
        ConnectionState::Disconnected => "disconnected",
    }
}

/// One other member of the cluster.
#[derive(Clone, Debug)]
pub(crate) struct PeerView {
    /// As the config lists it.
    pub(crate) member: Member,
    /// The outbound link's figures, if this node replicates to the member.
    pub(crate) link: Option<PeerMetrics>,
    /// The transport's figures for the member.
    pub(crate) transport: Option<PeerStats>,
}

impl PeerView {
    /// Whether the transport has a connection to the member now.
    pub(crate) fn connected(&self) -> bool {
        self.transport
            .as_ref()
            .is_some_and(|t| t.state == ConnectionState::Connected)
    }

    /// The sync state of the outbound link (`None` without one).
    pub(crate) fn sync(&self) -> Option<SyncState> {
        let link = self.link.as_ref()?;
        if self.transport.is_some() && !self.connected() {
            return Some(SyncState::Disconnected);
        }
        Some(match link.sync {
            PeerSync::InSync => SyncState::InSync,
            PeerSync::StateTransfer => SyncState::StateTransfer,
            _ => SyncState::CatchingUp,
        })
    }

    /// `leader` or `follower`.
    pub(crate) fn role(&self) -> &'static str {
        role_name(&self.member.role)
    }
}

/// `leader` or `follower`.
pub(crate) fn role_name(role: &MemberRole) -> &'static str {
    match role {
        MemberRole::Leader => "leader",
        MemberRole::Follower { .. } => "follower",
    }
}

/// What the node's task reports (taken in one round trip).
#[derive(Clone, Debug)]
pub(crate) struct NodeReport {
    /// Its metrics.
    pub(crate) metrics: NodeMetrics,
    /// Whether it still asks its peers which replica ids it used (writes get LOADING).
    pub(crate) joining: bool,
    /// Its replica id now.
    pub(crate) replica: u64,
    /// Key entries held, deleted keys awaiting collection included.
    pub(crate) entries: usize,
    /// The digest of its state, if asked for (it encodes the whole state: INFO and
    /// CONFLUO.PEERS ask, scrapes do not).
    pub(crate) digest: Option<u64>,
}

/// The whole server at one moment.
#[derive(Clone, Debug)]
pub(crate) struct Observation {
    /// The node.
    pub(crate) node: NodeReport,
    /// Group commit.
    pub(crate) commit: CommitStats,
    /// Every other member, in config order.
    pub(crate) peers: Vec<PeerView>,
    /// Bytes of the files in the data directory.
    pub(crate) store_bytes: u64,
    /// The server's phase.
    pub(crate) phase: Phase,
}

/// Takes an observation; `digest` asks for the state's digest too.
pub(crate) async fn observe(db: &DbHandle, digest: bool) -> Result<Observation, RespError> {
    let shared: &Arc<Shared> = db.shared();
    let node = db.report(digest).await?;
    let commit = db.commit_stats().await?;
    let peers = shared
        .config
        .peers
        .iter()
        .map(|m| PeerView {
            member: m.clone(),
            link: node
                .metrics
                .peers
                .iter()
                .find(|p| p.peer.0 == m.id)
                .cloned(),
            transport: shared
                .transport
                .as_ref()
                .and_then(|t| t.peer(confluo_transport::NodeId(m.id))),
        })
        .collect();
    Ok(Observation {
        node,
        commit,
        peers,
        store_bytes: dir_bytes(&shared.config.data_dir),
        phase: shared.phase.now(),
    })
}

/// Bytes of the files under `dir` (the store is one redb file today; counting the whole
/// directory keeps this true if it grows more).
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_bytes(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}
