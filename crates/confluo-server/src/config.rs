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
//!
//! [health]                     # optional
//! peer_grace_ms = 10000        # /readyz waits this long for every peer's handshake
//!
//! [runtime]                    # optional
//! threads = 1                  # threads serving clients and peers (1: one event loop, as Redis)
//!
//! [storage]                    # optional
//! checkpoint_mb = 64           # the write-ahead log's size at which it is folded into the tables
//! cache_mb = 64                # the tables' page cache
//! ```
//!
//! Security (see `docs/security.md`), each optional; file paths are relative to the config:
//!
//! ```toml
//! # Top-level keys, before the first table. Peers authenticate with mutual TLS ([tls]) or
//! # a shared secret read from a file (never the secret itself in the config):
//! # shared_secret_file = "secret"
//! # Without either, peer addresses must be loopback unless this says so in so many words:
//! # insecure = true
//!
//! [tls]                        # mutual TLS between nodes; a peer's certificate carries its name
//! ca_file = "certs/ca.pem"
//! cert_file = "certs/dc1-leader.pem"
//! key_file = "certs/dc1-leader.key"
//!
//! [client_tls]                 # TLS on the client port (redis-cli --tls)
//! cert_file = "certs/dc1-leader.pem"
//! key_file = "certs/dc1-leader.key"
//! # ca_file = "certs/clients-ca.pem"   # set: clients must present a certificate it signed
//!
//! [auth]                       # clients must AUTH; hashes from `confluo hash-password`
//! # requirepass = "pbkdf2-sha256$..."  # the `default` user's password (read-write)
//! [[auth.users]]
//! name = "app"
//! password = "pbkdf2-sha256$100000$...$..."
//! access = "read-write"        # or "read-only"
//! ```
//!
//! Sections are closed (`deny_unknown_fields`): a misspelt key is an error, not a default.
//! Certificate and secret files are loaded by the check, so `check-config` finds a bad one.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::auth::{Access, ClientAuth, DEFAULT_USER, PasswordHash, User};
use crate::error::{ConfigError, Problem};
use crate::limits::ClientLimits;
use crate::tls;

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

/// How peers authenticate each other.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerSecurity {
    /// Mutual TLS (`[tls]`): each peer's certificate chains to the CA and carries the
    /// peer's configured `name`.
    Tls(TlsFiles),
    /// A secret shared by every node (`shared_secret_file`), proven by challenge-response.
    SharedSecret {
        /// The file holding it.
        file: PathBuf,
    },
    /// None: only on loopback addresses, unless `insecure` (`insecure = true`).
    None {
        /// Whether the config allows it on other addresses.
        insecure: bool,
    },
}

/// The files of `[tls]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// The cluster CA's certificate(s).
    pub ca_file: PathBuf,
    /// This node's certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// This node's private key.
    pub key_file: PathBuf,
}

/// The files of `[client_tls]`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientTlsFiles {
    /// The certificate chain presented to clients, leaf first.
    pub cert_file: PathBuf,
    /// Its private key.
    pub key_file: PathBuf,
    /// If set, clients must present a certificate signed by this CA.
    pub ca_file: Option<PathBuf>,
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
    /// How peers authenticate.
    pub peer_security: PeerSecurity,
    /// TLS on the client port, if configured.
    pub client_tls: Option<ClientTlsFiles>,
    /// Client users (empty: no AUTH required).
    pub auth: ClientAuth,
    /// How long after the start `/readyz` waits for every peer to be connected; after it,
    /// a node cut off from some peers is ready anyway (it takes writes either way, and a
    /// datacenter cut off from the others must still serve its own clients).
    pub peer_grace: Duration,
    /// Threads serving clients and peers: 1 (the default) runs every connection and the
    /// node on one event loop, as Redis does, which on a small machine beats spreading
    /// them (no wake-ups across threads on every request). Storage syncs run on a thread
    /// of their own either way.
    pub threads: usize,
    /// The store's settings.
    pub storage: StorageConfig,
}

/// `[storage]`: how the data directory's store runs (see `confluo_store::StoreOptions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageConfig {
    /// The write-ahead log's size, in bytes, past which the next sync checkpoints it into
    /// the tables first. Larger: fewer checkpoints (each an fsync of the tables), a longer
    /// replay at restart.
    pub checkpoint_bytes: u64,
    /// The tables' page cache, in bytes.
    pub cache_bytes: usize,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            checkpoint_bytes: confluo_store::DEFAULT_CHECKPOINT_BYTES,
            cache_bytes: confluo_store::DEFAULT_CACHE_BYTES,
        }
    }
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
    insecure: Option<Spanned<bool>>,
    #[serde(default)]
    shared_secret_file: Option<Spanned<PathBuf>>,
    #[serde(default)]
    tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    client_tls: Option<Spanned<RawClientTls>>,
    #[serde(default)]
    auth: Option<Spanned<RawAuth>>,
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
    #[serde(default)]
    health: RawHealth,
    #[serde(default)]
    runtime: RawRuntime,
    #[serde(default)]
    storage: RawStorage,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    ca_file: Spanned<PathBuf>,
    cert_file: Spanned<PathBuf>,
    key_file: Spanned<PathBuf>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClientTls {
    cert_file: Spanned<PathBuf>,
    key_file: Spanned<PathBuf>,
    #[serde(default)]
    ca_file: Option<Spanned<PathBuf>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    #[serde(default)]
    requirepass: Option<Spanned<String>>,
    #[serde(default)]
    users: Vec<Spanned<RawUser>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    name: Spanned<String>,
    password: Spanned<String>,
    access: RawAccess,
}

#[derive(Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum RawAccess {
    ReadOnly,
    ReadWrite,
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

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHealth {
    #[serde(default = "default_peer_grace_ms")]
    peer_grace_ms: u64,
}

impl Default for RawHealth {
    fn default() -> Self {
        RawHealth {
            peer_grace_ms: default_peer_grace_ms(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    #[serde(default = "default_threads")]
    threads: Spanned<u64>,
}

impl Default for RawRuntime {
    fn default() -> Self {
        RawRuntime {
            threads: default_threads(),
        }
    }
}

fn default_threads() -> Spanned<u64> {
    Spanned::new(0..0, 1)
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStorage {
    #[serde(default)]
    checkpoint_mb: Option<Spanned<u64>>,
    #[serde(default)]
    cache_mb: Option<Spanned<u64>>,
}

/// Megabytes of a `[storage]` size, at most: larger is a typo (a log that size would take
/// minutes to replay).
const MAX_STORAGE_MB: u64 = 1 << 16;

/// More threads than this is a typo, not a machine.
const MAX_THREADS: u64 = 1024;

fn default_peer_grace_ms() -> u64 {
    10_000
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
        let storage = self.storage(raw.storage);
        let threads = raw.runtime.threads;
        if !(1..=MAX_THREADS).contains(threads.get_ref()) {
            self.at(
                threads.span(),
                format!("threads must be between 1 and {MAX_THREADS}"),
            );
        }
        let base_dir = base.unwrap_or(Path::new(""));
        let peer_security = self.peer_security(
            raw.tls,
            raw.shared_secret_file,
            raw.insecure,
            base_dir,
            &raws,
        );
        let client_tls = raw.client_tls.and_then(|t| self.client_tls(t, base_dir));
        let auth = raw.auth.map(|a| self.auth(a)).unwrap_or_default();
        if members.len() != raws.len() {
            return None;
        }
        let mut members = members.into_iter();
        Some(ServerConfig {
            peer_security: peer_security?,
            client_tls,
            auth,
            cluster_id: raw.cluster_id,
            topology: topology?,
            node: members.next()?,
            http_addr,
            data_dir: data_dir?,
            peers: members.collect(),
            limits,
            drain_timeout: Duration::from_millis(drain.into_inner()),
            peer_grace: Duration::from_millis(raw.health.peer_grace_ms),
            threads: usize::try_from(threads.into_inner()).unwrap_or(1),
            storage,
        })
    }

    /// `[storage]`: each size from 1 MB to `MAX_STORAGE_MB`.
    fn storage(&mut self, raw: RawStorage) -> StorageConfig {
        let mut config = StorageConfig::default();
        let mut mb = |value: Option<Spanned<u64>>, name: &str| {
            let value = value?;
            let n = *value.get_ref();
            if (1..=MAX_STORAGE_MB).contains(&n) {
                Some(n << 20)
            } else {
                self.at(
                    value.span(),
                    format!("{name} must be between 1 and {MAX_STORAGE_MB}"),
                );
                None
            }
        };
        if let Some(bytes) = mb(raw.checkpoint_mb, "checkpoint_mb") {
            config.checkpoint_bytes = bytes;
        }
        if let Some(bytes) = mb(raw.cache_mb, "cache_mb") {
            config.cache_bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        }
        config
    }

    /// `[tls]`, `shared_secret_file` and `insecure`: the files load, and the result passes
    /// the transport's own check (`TcpConfig::check_security`), reported where it applies.
    fn peer_security(
        &mut self,
        tls: Option<Spanned<RawTls>>,
        secret: Option<Spanned<PathBuf>>,
        insecure: Option<Spanned<bool>>,
        base: &Path,
        raws: &[&RawMember],
    ) -> Option<PeerSecurity> {
        let security = match (tls, secret) {
            (Some(_), Some(s)) => {
                self.at(
                    s.span(),
                    "choose one: [tls] or shared_secret_file, not both",
                );
                return None;
            }
            (Some(t), None) => {
                let span = t.span();
                let t = t.into_inner();
                let files = TlsFiles {
                    ca_file: base.join(t.ca_file.get_ref()),
                    cert_file: base.join(t.cert_file.get_ref()),
                    key_file: base.join(t.key_file.get_ref()),
                };
                if let Err(e) = tls::check_peer_tls(&files, raws[0].name.get_ref(), &names(raws)) {
                    self.at(span, format!("[tls]: {e}"));
                }
                PeerSecurity::Tls(files)
            }
            (None, Some(s)) => {
                let file = base.join(s.get_ref());
                if let Err(e) = tls::load_secret(&file) {
                    self.at(s.span(), e.to_string());
                }
                PeerSecurity::SharedSecret { file }
            }
            (None, None) => PeerSecurity::None {
                insecure: insecure.as_ref().is_some_and(|i| *i.get_ref()),
            },
        };
        if let PeerSecurity::None { insecure: false } = security {
            let addrs: Vec<SocketAddr> = raws.iter().map(|m| *m.peer_addr.get_ref()).collect();
            if let Err(e) = tls::check_unauthenticated(&addrs) {
                let at = raws
                    .iter()
                    .find(|m| !m.peer_addr.get_ref().ip().is_loopback())
                    .map_or(0..0, |m| m.peer_addr.span());
                self.at(at, e.to_string());
                return None;
            }
        }
        Some(security)
    }

    fn client_tls(&mut self, t: Spanned<RawClientTls>, base: &Path) -> Option<ClientTlsFiles> {
        let span = t.span();
        let t = t.into_inner();
        let files = ClientTlsFiles {
            cert_file: base.join(t.cert_file.get_ref()),
            key_file: base.join(t.key_file.get_ref()),
            ca_file: t.ca_file.map(|c| base.join(c.get_ref())),
        };
        match tls::ClientTls::load(&files) {
            Ok(_) => Some(files),
            Err(e) => {
                self.at(span, format!("[client_tls]: {e}"));
                None
            }
        }
    }

    fn auth(&mut self, a: Spanned<RawAuth>) -> ClientAuth {
        let span = a.span();
        let a = a.into_inner();
        let mut users = Vec::new();
        let password =
            |check: &mut Self, p: &Spanned<String>| match PasswordHash::parse(p.get_ref()) {
                Ok(h) => Some(h),
                Err(e) => {
                    check.at(p.span(), e.to_string());
                    None
                }
            };
        if let Some(p) = &a.requirepass {
            if let Some(h) = password(self, p) {
                users.push(User {
                    name: DEFAULT_USER.to_string(),
                    password: h,
                    access: Access::ReadWrite,
                });
            }
        }
        for u in &a.users {
            let u = u.get_ref();
            if users.iter().any(|o: &User| o.name == *u.name.get_ref()) {
                let why = if u.name.get_ref() == DEFAULT_USER && a.requirepass.is_some() {
                    "user \"default\" is the one requirepass sets: give one or the other".into()
                } else {
                    format!("duplicate user {:?}", u.name.get_ref())
                };
                self.at(u.name.span(), why);
                continue;
            }
            if let Some(h) = password(self, &u.password) {
                users.push(User {
                    name: u.name.get_ref().clone(),
                    password: h,
                    access: match u.access {
                        RawAccess::ReadOnly => Access::ReadOnly,
                        RawAccess::ReadWrite => Access::ReadWrite,
                    },
                });
            }
        }
        if a.requirepass.is_none() && a.users.is_empty() {
            self.at(
                span,
                "[auth] needs requirepass or at least one [[auth.users]]",
            );
        }
        ClientAuth { users }
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

/// Every node's (id, name), this one first.
fn names(raws: &[&RawMember]) -> Vec<(u64, String)> {
    raws.iter()
        .map(|m| (*m.id.get_ref(), m.name.get_ref().clone()))
        .collect()
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
