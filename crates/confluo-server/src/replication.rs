//! Replication wiring: the config's members and topology become the node's links, the TCP
//! transport and the driver. All transport construction is here: peers' names (what their
//! certificates carry) and authentication plug in at one place.

use std::net::SocketAddr;
use std::sync::Arc;

use confluo_node::driver::{self, DriverOptions, DriverTask, NodeHandle};
use confluo_node::{Config, Link, Message, NodeId, Topology, Value};
use confluo_transport::{PeerConfig, TcpConfig, TcpTransport};

use crate::config::{Member, MemberRole, PeerSecurity, ServerConfig, TopologyName};
use crate::error::ServerError;
use crate::store::NodeStorage;

/// Who this node replicates with.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Its outbound links.
    pub(crate) links: Vec<Link>,
    /// The leaders among them (the sites WAIT counts).
    pub(crate) leader_peers: Vec<NodeId>,
    /// For a follower, its leader.
    pub(crate) leader: Option<NodeId>,
    /// Every node it exchanges messages with (every member: links out and in, and the
    /// identity questions of a start), with its peer address.
    pub(crate) transport_peers: Vec<(NodeId, SocketAddr)>,
}

/// The outbound links of `member`: leaders link to each other by the topology (in order
/// of node id) and to their followers; a follower links back to its leader.
fn links_of(config: &ServerConfig, member: &Member) -> Vec<Link> {
    let me = NodeId(member.id);
    let id_of = |name: &str| config.member(name).map(|m| NodeId(m.id));
    match &member.role {
        MemberRole::Follower { leader } => id_of(leader)
            .map(Link::back_to_leader)
            .into_iter()
            .collect(),
        MemberRole::Leader => {
            let mut leaders: Vec<NodeId> = config
                .members()
                .filter(|m| m.role == MemberRole::Leader)
                .map(|m| NodeId(m.id))
                .collect();
            leaders.sort();
            let topology = match &config.topology {
                TopologyName::AllToAll => Topology::AllToAll,
                TopologyName::Ring => Topology::Ring,
                TopologyName::Star { hub } => Topology::Star {
                    hub: id_of(hub).unwrap_or(me),
                },
            };
            let mut links = topology.links(&leaders, me);
            links.extend(
                config
                    .members()
                    .filter(|m| matches!(&m.role, MemberRole::Follower { leader } if *leader == member.name))
                    .map(|f| Link {
                        peer: NodeId(f.id),
                        relay: true,
                    }),
            );
            links
        }
    }
}

/// This node's plan.
pub(crate) fn plan(config: &ServerConfig) -> Plan {
    let links = links_of(config, &config.node);
    let is_leader = |id: NodeId| {
        config
            .members()
            .any(|m| m.id == id.0 && m.role == MemberRole::Leader)
    };
    let leader = match &config.node.role {
        MemberRole::Follower { leader } => config.member(leader).map(|m| NodeId(m.id)),
        MemberRole::Leader => None,
    };
    // A follower makes no writes, so there is nothing for WAIT to count.
    let leader_peers = match leader {
        Some(_) => Vec::new(),
        None => links
            .iter()
            .map(|l| l.peer)
            .filter(|&p| is_leader(p))
            .collect(),
    };
    // Every member: besides the links, a starting node asks each member which of its
    // replica ids it has seen (confluo_node::identity), in any topology.
    let transport_peers = config
        .peers
        .iter()
        .map(|p| (NodeId(p.id), p.peer_addr))
        .collect();
    Plan {
        links,
        leader_peers,
        leader,
        transport_peers,
    }
}

/// What [`start`] started.
pub(crate) struct Started {
    pub(crate) handle: NodeHandle<Value>,
    pub(crate) task: DriverTask<NodeStorage>,
    /// The transport (the driver holds it too): certificates reload through it.
    pub(crate) transport: Arc<TcpTransport<Message>>,
}

/// The transport's config: identity, peers with the names their certificates carry, and
/// how they authenticate. Checked (`TcpConfig::check_security`) before anything starts.
pub(crate) fn transport_config(
    config: &ServerConfig,
    plan: &Plan,
) -> Result<TcpConfig, ServerError> {
    let me = NodeId(config.node.id);
    let mut tcp = TcpConfig::new(me, config.cluster_id, config.node.peer_addr)
        .with_auth(crate::tls::peer_auth(config)?);
    tcp.name = Some(config.node.name.clone());
    tcp.insecure = matches!(config.peer_security, PeerSecurity::None { insecure: true });
    for &(id, addr) in &plan.transport_peers {
        let mut peer = PeerConfig::new(id, addr);
        if let Some(m) = config.members().find(|m| m.id == id.0) {
            peer = peer.with_name(m.name.clone());
        }
        tcp = tcp.with_peer_config(peer);
    }
    tcp.check_security()
        .map_err(crate::tls::SecurityError::from)?;
    Ok(tcp)
}

/// Binds the transport and starts the node on `storage` (restoring it from the storage on
/// a blocking thread, so that the HTTP endpoint answers meanwhile).
pub(crate) async fn start(
    config: &ServerConfig,
    plan: &Plan,
    tcp: TcpConfig,
    storage: NodeStorage,
) -> Result<Started, ServerError> {
    let me = NodeId(config.node.id);
    let transport = Arc::new(TcpTransport::<Message>::bind(tcp).await?);
    // The operator configures node ids only: the node takes its replica id, asking every
    // member which of its ids they have seen (confluo_node::identity).
    let node_config = match plan.leader {
        Some(leader) => Config::automatic_follower(me, leader),
        None => Config::automatic_leader(me).with_links(plan.links.clone()),
    }
    .with_members(config.members().map(|m| NodeId(m.id)).collect());
    let for_node = Arc::clone(&transport);
    let (handle, task) = tokio::task::spawn_blocking(move || {
        driver::start(node_config, for_node, storage, DriverOptions::default())
    })
    .await
    .map_err(|_| ServerError::Node(driver::DriverError::Stopped))??;
    Ok(Started {
        handle,
        task,
        transport,
    })
}

/// A lone leader over an in-memory transport and storage, syncing inline: what the fuzz
/// target's sessions run against.
#[cfg(feature = "fuzzing")]
pub(crate) fn start_in_memory(
    config: &ServerConfig,
) -> (NodeHandle<Value>, DriverTask<confluo_node::MemoryStorage>) {
    use confluo_transport::MemoryNetwork;
    let me = NodeId(config.node.id);
    let network: MemoryNetwork<Message> = MemoryNetwork::new();
    let transport = network
        .join(me)
        .expect("a fresh network has room for one node");
    let node = confluo_node::Node::new(Config::leader(me, confluo_node::ReplicaId(me.0)));
    let options = DriverOptions {
        sync: driver::SyncMode::Inline,
        ..DriverOptions::default()
    };
    driver::spawn(
        node,
        Arc::new(transport),
        confluo_node::MemoryStorage::new(),
        options,
    )
}
