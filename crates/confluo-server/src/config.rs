//! The one file an operator writes: [`ServerConfig`], loaded from TOML and checked as a whole
//! (what `confluo check-config` runs), with every problem reported at its line.
//!
//! ```toml
//! cluster_id = 0xC0F1          # peers announcing another cluster are refused
//! topology = "all-to-all"      # between leaders: "all-to-all", "ring" or "star"
//! # hub = "dc2-leader"         # star only: the leader the others send to
//!
//! [node]                       # this node
//! name = "dc1-leader"
//! id = 1                       # unique in the cluster, never reused
//! datacenter = "dc1"
//! role = "leader"              # or "follower", with leader = "<name of its leader>"
//! client_addr = "127.0.0.1:7001"   # RESP clients (redis-cli, client libraries)
//! peer_addr = "127.0.0.1:7101"     # replication
//! http_addr = "127.0.0.1:7201"     # metrics and health (optional)
//! data_dir = "data/dc1-leader"
//!
//! [[peers]]                    # every other node this one replicates with
//! name = "dc1-follower"
//! id = 2
//! datacenter = "dc1"
//! role = "follower"
//! leader = "dc1-leader"
//! client_addr = "127.0.0.1:7002"
//! peer_addr = "127.0.0.1:7102"
//!
//! [limits]                     # optional: ClientLimits, Redis-like defaults
//! max_clients = 10000
//!
//! [shutdown]                   # optional
//! drain_timeout_ms = 10000     # how long SIGTERM waits for peers to hold every write
//! ```
//!
//! Sections are closed (`deny_unknown_fields`): a misspelt key is an error, not a default.
//! New sections (TLS, auth) slot in as further optional tables.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::error::{ConfigError, Problem};
use crate::limits::ClientLimits;

/// A node's role, as the config names it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum MemberRole {
    /// Takes writes; replicates with the other leaders and to its followers.
    Leader,
    /// Serves reads; replicates from its leader (named).
    Follower {
        /// The leader's name.
        leader: String,
    },
}

/// A node of the cluster, as the config lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// Its name (unique; used in logs, `INFO` and to name a follower's leader).
    pub name: String,
    /// Its node id (unique).
    pub id: u64,
    /// Its datacenter.
    pub datacenter: String,
    /// Leader or follower.
    pub role: MemberRole,
    /// Where its clients connect (for this node: where it listens).
    pub client_addr: SocketAddr,
    /// Where its peers connect (for this node: where it listens).
    pub peer_addr: SocketAddr,
}

/// Topology between the leaders.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TopologyName {
    /// Every leader sends its own writes to every other.
    AllToAll,
    /// Each leader sends to the next by id, forwarding what it received.
    Ring,
    /// Leaves send to the hub, which forwards to every leaf.
    Star {
        /// The hub's name.
        hub: String,
    },
}

/// A checked configuration: everything `Server` needs to start.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The cluster id.
    pub cluster_id: u64,
    /// Topology between leaders.
    pub topology: TopologyName,
    /// This node.
    pub node: Member,
    /// Where it listens for HTTP (metrics, health), if anywhere.
    pub http_addr: Option<SocketAddr>,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// The other nodes.
    pub peers: Vec<Member>,
    /// Per-client caps.
    pub limits: ClientLimits,
    /// How long a shutdown waits for the peers to hold every acknowledged write.
    pub drain_timeout: Duration,
}

impl ServerConfig {
    /// Reads and checks a config file. Relative data directories are relative to the
    /// file's directory, so a config works from wherever the server is started.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        ServerConfig::parse(&text, path.parent())
    }

    /// Parses and checks a config. A relative data directory is taken relative to `base`
    /// (`None`: the working directory).
    pub fn parse(text: &str, base: Option<&Path>) -> Result<ServerConfig, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            problems: vec![problem(
                text,
                e.span().unwrap_or(0..0),
                e.message().to_string(),
            )],
        })?;
        let mut check = Check {
            text,
            problems: Vec::new(),
        };
        let config = check.config(raw, base);
        if check.problems.is_empty() {
            if let Some(config) = config {
                return Ok(config);
            }
        }
        check.problems.sort_by_key(|p| (p.line, p.column));
        Err(ConfigError::Invalid {
            problems: check.problems,
        })
    }

    /// The member named `name` (this node or a peer).
    pub fn member(&self, name: &str) -> Option<&Member> {
        std::iter::once(&self.node)
            .chain(&self.peers)
            .find(|m| m.name == name)
    }

    /// Every node, this one first.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        std::iter::once(&self.node).chain(&self.peers)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster_id: u64,
    #[serde(default)]
    topology: Option<Spanned<RawTopology>>,
    #[serde(default)]
    hub: Option<Spanned<String>>,
    node: Spanned<RawMember>,
    #[serde(default)]
    peers: Vec<Spanned<RawMember>>,
    #[serde(default)]
    limits: Option<Spanned<ClientLimits>>,
    #[serde(default)]
    shutdown: RawShutdown,
}

#[derive(Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RawTopology {
    AllToAll,
    Ring,
    Star,
}

#[derive(Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RawRole {
    Leader,
    Follower,
}

/// `[node]` and each `[[peers]]`: the same keys, except that only `[node]` may (and must)
/// have `data_dir`, and only `[node]` may have `http_addr`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    name: Spanned<String>,
    id: Spanned<u64>,
    datacenter: String,
    role: Spanned<RawRole>,
    #[serde(default)]
    leader: Option<Spanned<String>>,
    client_addr: Spanned<SocketAddr>,
    peer_addr: Spanned<SocketAddr>,
    #[serde(default)]
    http_addr: Option<Spanned<SocketAddr>>,
    #[serde(default)]
    data_dir: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShutdown {
    #[serde(default = "default_drain_ms")]
    drain_timeout_ms: Spanned<u64>,
}

impl Default for RawShutdown {
    fn default() -> Self {
        RawShutdown {
            drain_timeout_ms: Spanned::new(0..0, default_drain_ms().into_inner()),
        }
    }
}

fn default_drain_ms() -> Spanned<u64> {
    Spanned::new(0..0, 10_000)
}

/// A problem at byte range `span` of `text`.
fn problem(text: &str, span: Range<usize>, message: String) -> Problem {
    let mut at = span.start.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Problem {
        line,
        column,
        message,
    }
}

/// Collects the problems of one file.
struct Check<'t> {
    text: &'t str,
    problems: Vec<Problem>,
}

impl Check<'_> {
    fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.problems.push(problem(self.text, span, message.into()));
    }

    fn config(&mut self, raw: RawConfig, base: Option<&Path>) -> Option<ServerConfig> {
        let node_span = raw.node.span();
        let raw_node = raw.node.into_inner();
        let http_addr = raw_node.http_addr.as_ref().map(|a| *a.get_ref());
        let data_dir = self.data_dir(&raw_node, node_span, base);
        for p in &raw.peers {
            for (key, present) in [
                ("data_dir", p.get_ref().data_dir.is_some()),
                ("http_addr", p.get_ref().http_addr.is_some()),
            ] {
                if present {
                    self.at(
                        p.span(),
                        format!("{key} belongs in [node], not in [[peers]]"),
                    );
                }
            }
        }
        let mut raws: Vec<&RawMember> = vec![&raw_node];
        raws.extend(raw.peers.iter().map(Spanned::get_ref));
        self.unique(&raws);
        let members: Vec<Member> = raws.iter().filter_map(|m| self.member(m, &raws)).collect();
        let topology = self.topology(raw.topology, raw.hub, &raws);
        let limits = match raw.limits {
            Some(l) => {
                if let Some(why) = l.get_ref().problem() {
                    self.at(l.span(), why);
                }
                l.into_inner()
            }
            None => ClientLimits::default(),
        };
        let drain = raw.shutdown.drain_timeout_ms;
        if *drain.get_ref() == 0 {
            self.at(drain.span(), "drain_timeout_ms must be at least 1");
        }
        if members.len() != raws.len() {
            return None;
        }
        let mut members = members.into_iter();
        Some(ServerConfig {
            cluster_id: raw.cluster_id,
            topology: topology?,
            node: members.next()?,
            http_addr,
            data_dir: data_dir?,
            peers: members.collect(),
            limits,
            drain_timeout: Duration::from_millis(drain.into_inner()),
        })
    }

    fn data_dir(
        &mut self,
        node: &RawMember,
        node_span: Range<usize>,
        base: Option<&Path>,
    ) -> Option<PathBuf> {
        let Some(dir) = &node.data_dir else {
            self.at(node_span, "[node] needs data_dir");
            return None;
        };
        let path = dir.get_ref();
        let full = match base {
            Some(b) if path.is_relative() => b.join(path),
            _ => path.clone(),
        };
        if let Err(why) = usable_dir(&full) {
            self.at(dir.span(), format!("data_dir {}: {why}", full.display()));
        }
        Some(full)
    }

    /// Ids, names and addresses must be unique, and ids fit the replica ids nodes take
    /// (see `confluo_node::identity`).
    fn unique(&mut self, raws: &[&RawMember]) {
        let max = (1u64 << confluo_node::identity::NODE_BITS) - 1;
        for m in raws {
            let id = *m.id.get_ref();
            if id == 0 || id > max {
                self.at(
                    m.id.span(),
                    format!("node id {id} must be between 1 and {max}"),
                );
            }
        }
        for (i, m) in raws.iter().enumerate() {
            for earlier in &raws[..i] {
                if earlier.id.get_ref() == m.id.get_ref() {
                    let first = problem(self.text, earlier.id.span(), String::new()).line;
                    self.at(
                        m.id.span(),
                        format!(
                            "duplicate node id {} (also at line {first})",
                            m.id.get_ref()
                        ),
                    );
                }
                if earlier.name.get_ref() == m.name.get_ref() {
                    let first = problem(self.text, earlier.name.span(), String::new()).line;
                    self.at(
                        m.name.span(),
                        format!(
                            "duplicate node name {:?} (also at line {first})",
                            m.name.get_ref()
                        ),
                    );
                }
                for (a, b) in [
                    (&earlier.client_addr, &m.client_addr),
                    (&earlier.peer_addr, &m.peer_addr),
                    (&earlier.client_addr, &m.peer_addr),
                    (&earlier.peer_addr, &m.client_addr),
                ] {
                    if a.get_ref() == b.get_ref() && a.get_ref().port() != 0 {
                        self.at(b.span(), format!("address {} is used twice", b.get_ref()));
                    }
                }
            }
        }
    }

    /// One member, its role checked against the others.
    fn member(&mut self, m: &RawMember, all: &[&RawMember]) -> Option<Member> {
        let role = match (m.role.get_ref(), &m.leader) {
            (RawRole::Leader, None) => Some(MemberRole::Leader),
            (RawRole::Leader, Some(l)) => {
                self.at(
                    l.span(),
                    "a leader has no leader (remove `leader`, or make it a follower)",
                );
                None
            }
            (RawRole::Follower, None) => {
                self.at(
                    m.role.span(),
                    format!(
                        "follower {:?} needs `leader = \"<name of its leader>\"`",
                        m.name.get_ref()
                    ),
                );
                None
            }
            (RawRole::Follower, Some(l)) => {
                match all.iter().find(|o| o.name.get_ref() == l.get_ref()) {
                    None => {
                        self.at(
                            l.span(),
                            format!(
                                "leader {:?} is not listed in [node] or [[peers]]",
                                l.get_ref()
                            ),
                        );
                        None
                    }
                    Some(o) if *o.role.get_ref() != RawRole::Leader => {
                        self.at(l.span(), format!("{:?} is not a leader", l.get_ref()));
                        None
                    }
                    Some(_) => Some(MemberRole::Follower {
                        leader: l.get_ref().clone(),
                    }),
                }
            }
        };
        Some(Member {
            name: m.name.get_ref().clone(),
            id: *m.id.get_ref(),
            datacenter: m.datacenter.clone(),
            role: role?,
            client_addr: *m.client_addr.get_ref(),
            peer_addr: *m.peer_addr.get_ref(),
        })
    }

    fn topology(
        &mut self,
        topology: Option<Spanned<RawTopology>>,
        hub: Option<Spanned<String>>,
        all: &[&RawMember],
    ) -> Option<TopologyName> {
        let kind = topology
            .as_ref()
            .map_or(RawTopology::AllToAll, |t| *t.get_ref());
        match (kind, hub) {
            (RawTopology::Star, None) => {
                let span = topology.map_or(0..0, |t| t.span());
                self.at(span, "a star topology needs `hub = \"<name of a leader>\"`");
                None
            }
            (RawTopology::Star, Some(hub)) => {
                let leader = all.iter().find(|m| m.name.get_ref() == hub.get_ref());
                match leader {
                    Some(m) if *m.role.get_ref() == RawRole::Leader => Some(TopologyName::Star {
                        hub: hub.into_inner(),
                    }),
                    Some(_) => {
                        self.at(
                            hub.span(),
                            format!("hub {:?} is not a leader", hub.get_ref()),
                        );
                        None
                    }
                    None => {
                        self.at(hub.span(), format!("hub {:?} is not listed", hub.get_ref()));
                        None
                    }
                }
            }
            (_, Some(hub)) => {
                self.at(hub.span(), "`hub` is only for topology = \"star\"");
                None
            }
            (RawTopology::Ring, None) => Some(TopologyName::Ring),
            (RawTopology::AllToAll, None) => Some(TopologyName::AllToAll),
        }
    }
}

/// Whether `dir` is a directory the server can use: an existing, readable directory, or a
/// path whose nearest existing ancestor is a directory (the server creates the rest).
fn usable_dir(dir: &Path) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => Err("exists and is not a directory".into()),
        Ok(_) => std::fs::read_dir(dir)
            .map(|_| ())
            .map_err(|e| format!("cannot be read: {e}")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            match dir
                .ancestors()
                .skip(1)
                .find(|a| a.as_os_str().is_empty() || a.exists())
            {
                Some(a) if a.as_os_str().is_empty() || a.is_dir() => Ok(()),
                _ => Err("cannot be created: an ancestor is not a directory".into()),
            }
        }
        Err(e) => Err(format!("cannot be read: {e}")),
    }
}

#[cfg(test)]
mod tests;
