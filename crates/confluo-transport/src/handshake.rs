//! The connection handshake, sans-IO: who speaks when, what is checked, and nothing else.
//!
//! The shell ([`crate::TcpTransport`]) moves bytes; this module decides. A [`Handshake`] is a
//! state machine driven with three calls, in a loop, until [`Step::Done`]:
//!
//! 1. send whatever [`Handshake::poll_transmit`] returns;
//! 2. look at [`Handshake::step`]: read that many bytes and hand them to
//!    [`Handshake::handle_input`], or, on [`Step::Admit`], decide whether the claimed node may
//!    connect and call [`Handshake::admit`];
//! 3. on any error, close the connection **without sending anything**.
//!
//! The rule the protocol is built around: **the acceptor reveals nothing about the cluster
//! (cluster id, node ids) before the dialer has authenticated**. A stranger who connects and
//! sends anything at all learns, at most, 32 random bytes (the challenge in shared-secret mode)
//! and then sees the connection close. On every refusal the acceptor closes without a word, so
//! a refused dialer cannot tell a wrong cluster from a wrong secret, an unknown node id or a
//! version it does not speak.
//!
//! ```text
//! Preamble (6 bytes, dialer -> acceptor, first on every connection)
//! offset  size  field
//! 0       4     magic    ASCII "CNFL"
//! 4       1     version  handshake version, currently 2
//! 5       1     auth     0 none, 1 shared secret, 2 TLS (inside a TLS session)
//!
//! Hello (16 bytes, dialer first, acceptor only after admitting the dialer)
//! 0       8     cluster_id  u64 little-endian
//! 8       8     node_id     u64 little-endian
//!
//! Shared secret only, between the preamble and the hellos:
//! dialer   -> acceptor  nonce_d (32 random bytes, right after the preamble)
//! acceptor -> dialer    nonce_a (32 random bytes)
//! dialer   -> acceptor  proof_d = HMAC-SHA256(secret, "confluo/2 dialer"   | preamble | nonce_d | nonce_a)
//! acceptor -> dialer    proof_a = HMAC-SHA256(secret, "confluo/2 acceptor" | preamble | nonce_d | nonce_a)
//!
//! Decision (1 byte, after both hellos, sent by the side with the lower node id)
//! 0x01 accept: this connection carries frames from now on
//! 0x00 duplicate: the lower node already has (or is dialing) a connection for this pair
//! ```
//!
//! The proofs are over both nonces, so a proof recorded on one connection is worthless on the
//! next (the other side's nonce is fresh), and the two directions use different labels, so an
//! acceptor's proof cannot be reflected back at it as a dialer's. The acceptor sends its proof
//! only after checking the dialer's, so it is no oracle for strangers.

use std::io;
use std::time::Duration;

use ring::hmac;
use thiserror::Error;

use crate::NodeId;

/// The four bytes every connection starts with.
pub const MAGIC: [u8; 4] = *b"CNFL";
/// The handshake version this crate speaks. Version 1 (an unauthenticated 21-byte hello that
/// the acceptor answered before checking anything) is refused.
pub const HANDSHAKE_VERSION: u8 = 2;
/// Size of the preamble: magic, version, auth mode.
pub const PREAMBLE_LEN: usize = 6;
/// Size of each side's random nonce in shared-secret mode.
pub const NONCE_LEN: usize = 32;
/// Size of each side's HMAC-SHA256 proof in shared-secret mode.
pub const PROOF_LEN: usize = 32;
/// Size of an encoded [`Hello`].
pub const HELLO_LEN: usize = 16;
/// Shortest shared secret accepted, in bytes: shorter ones can be guessed offline from one
/// recorded handshake.
pub const MIN_SECRET_LEN: usize = 16;

/// Decision byte: the connection is accepted.
pub const DECISION_ACCEPT: u8 = 0x01;
/// Decision byte: the connection is refused as a duplicate of another one for the same pair.
pub const DECISION_DUPLICATE: u8 = 0x00;

const DIALER_LABEL: &[u8] = b"confluo/2 dialer";
const ACCEPTOR_LABEL: &[u8] = b"confluo/2 acceptor";

/// How the two ends of a connection authenticate each other. Both ends must use the same mode;
/// a mismatch is refused like any other failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMode {
    /// No authentication: anyone who knows the cluster id and a configured node id can join.
    None,
    /// A shared secret, proven by challenge-response without revealing it.
    SharedSecret,
    /// Mutual TLS: the handshake runs inside a TLS session whose certificates were checked.
    Tls,
}

impl AuthMode {
    const fn to_byte(self) -> u8 {
        match self {
            Self::None => 0,
            Self::SharedSecret => 1,
            Self::Tls => 2,
        }
    }

    const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Self::None),
            1 => Some(Self::SharedSecret),
            2 => Some(Self::Tls),
            _ => None,
        }
    }
}

/// A secret shared by every node of a cluster, for [`AuthMode::SharedSecret`].
///
/// Cheap to clone; its `Debug` output never shows the secret.
#[derive(Clone)]
pub struct SharedSecret {
    key: hmac::Key,
}

impl SharedSecret {
    /// A secret from raw bytes: at least [`MIN_SECRET_LEN`] of them, e.g. 32 random bytes
    /// (`openssl rand -hex 32`).
    pub fn new(secret: &[u8]) -> Result<Self, SecretTooShort> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(SecretTooShort { len: secret.len() });
        }
        Ok(Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }
}

impl std::fmt::Debug for SharedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedSecret(<redacted>)")
    }
}

/// A shared secret shorter than [`MIN_SECRET_LEN`] bytes was given.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("shared secret is {len} bytes; at least {MIN_SECRET_LEN} are required")]
pub struct SecretTooShort {
    /// Length of the secret that was given.
    pub len: usize,
}

/// Why a handshake failed. The connection is closed, nothing the peer sent is delivered, and
/// (on the acceptor's side) nothing was sent to the peer after the failure.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// Reading or writing the socket failed, or the peer closed it mid-handshake. A dialer
    /// refused by an acceptor sees this: acceptors close without explaining.
    #[error("I/O error during handshake: {0}")]
    Io(#[from] io::Error),
    /// The handshake did not complete within the configured timeout (e.g. a silent client).
    #[error("handshake not completed within {0:?}")]
    Timeout(Duration),
    /// The connection was closed to make room for newer ones while too many handshakes were
    /// pending (a flood of silent connections).
    #[error("pending handshake evicted: too many connections waiting to authenticate")]
    Evicted,
    /// The first four bytes were not the protocol magic: not a confluo peer.
    #[error("bad magic {0:02x?}: not a confluo peer")]
    BadMagic([u8; 4]),
    /// The peer speaks another handshake version.
    #[error("incompatible handshake version: ours {ours}, theirs {theirs}")]
    UnsupportedVersion {
        /// Our handshake version.
        ours: u8,
        /// The version the peer announced.
        theirs: u8,
    },
    /// The peer uses another authentication mode (or an unknown one, shown as `None`).
    #[error("authentication mode mismatch: ours {ours:?}, theirs {theirs:?}")]
    AuthModeMismatch {
        /// Our mode.
        ours: AuthMode,
        /// The peer's mode, if it is one we know.
        theirs: Option<AuthMode>,
    },
    /// The peer's shared-secret proof is wrong: it does not know the secret, or it replayed a
    /// proof made for another connection.
    #[error("shared-secret proof rejected: wrong secret or replayed response")]
    BadProof,
    /// The peer belongs to another cluster.
    #[error("wrong cluster id: ours {ours}, theirs {theirs}")]
    WrongCluster {
        /// Our cluster id.
        ours: u64,
        /// The cluster id the peer announced.
        theirs: u64,
    },
    /// The peer announced our own node id (we dialed ourselves, or two nodes share an id).
    #[error("peer announced our own node id {0}")]
    SelfConnection(NodeId),
    /// The peer claims a node id that is not configured here.
    #[error("node {0} is not a configured peer")]
    UnknownPeer(NodeId),
    /// We dialed the address configured for one node and another node answered.
    #[error("dialed node {expected} but node {found} answered")]
    UnexpectedPeer {
        /// The node we meant to reach.
        expected: NodeId,
        /// The node that answered.
        found: NodeId,
    },
    /// Plaintext arrived at a listener that requires TLS.
    #[error("plaintext connection on a TLS port (first byte {first_byte:#04x})")]
    PlaintextOnTlsPort {
        /// The first byte received (0x43, `C`, for a plaintext confluo dialer).
        first_byte: u8,
    },
    /// The TLS handshake failed: no certificate, a certificate that does not chain to the
    /// cluster CA, an expired one, a server certificate for another name, or a protocol error.
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    /// The peer's certificate is valid but not for the name configured for the node it claims.
    #[error("certificate is not valid for node {node}'s name {name:?}")]
    NameMismatch {
        /// The node id the peer claimed.
        node: NodeId,
        /// The name configured for that node.
        name: String,
    },
    /// TLS is configured but no TLS name is configured for this peer, so it cannot be checked.
    #[error("no TLS name configured for node {0}")]
    NoPeerName(NodeId),
    /// The system's random number generator failed; no nonce could be drawn.
    #[error("random number generator failed")]
    Random,
    /// The connection duplicates another one for the same pair of nodes; the node with the lower
    /// id keeps the other one.
    #[error("duplicate connection with node {0}: the other connection is kept")]
    Duplicate(NodeId),
    /// The decision byte was neither accept nor duplicate.
    #[error("invalid handshake decision byte {0:#04x}")]
    InvalidDecision(u8),
}

/// The identity message, sent by each side once the other may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// Cluster the sender belongs to.
    pub cluster_id: u64,
    /// The sender's node id.
    pub node_id: NodeId,
}

impl Hello {
    /// A hello for `node_id` in `cluster_id`.
    pub const fn new(cluster_id: u64, node_id: NodeId) -> Self {
        Self {
            cluster_id,
            node_id,
        }
    }

    /// The 16 wire bytes of this hello.
    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut out = [0u8; HELLO_LEN];
        let (cluster, node) = out.split_at_mut(8);
        cluster.copy_from_slice(&self.cluster_id.to_le_bytes());
        node.copy_from_slice(&self.node_id.0.to_le_bytes());
        out
    }

    /// Parses a hello (every 16 bytes are a hello; the checks are in [`Handshake`]).
    pub fn decode(bytes: &[u8; HELLO_LEN]) -> Self {
        let (cluster, node) = bytes.split_at(8);
        let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
        Self {
            cluster_id: word(cluster),
            node_id: NodeId(word(node)),
        }
    }
}

/// The 6 bytes that open a connection in `mode`.
pub fn preamble(mode: AuthMode) -> [u8; PREAMBLE_LEN] {
    let [m0, m1, m2, m3] = MAGIC;
    [m0, m1, m2, m3, HANDSHAKE_VERSION, mode.to_byte()]
}

/// Checks a preamble received by an acceptor in `ours` mode.
pub fn check_preamble(bytes: &[u8; PREAMBLE_LEN], ours: AuthMode) -> Result<(), HandshakeError> {
    let [m0, m1, m2, m3, version, mode] = *bytes;
    if [m0, m1, m2, m3] != MAGIC {
        return Err(HandshakeError::BadMagic([m0, m1, m2, m3]));
    }
    if version != HANDSHAKE_VERSION {
        return Err(HandshakeError::UnsupportedVersion {
            ours: HANDSHAKE_VERSION,
            theirs: version,
        });
    }
    let theirs = AuthMode::from_byte(mode);
    if theirs != Some(ours) {
        return Err(HandshakeError::AuthModeMismatch { ours, theirs });
    }
    Ok(())
}

/// Interprets a decision byte received from the lower-id peer.
pub fn parse_decision(byte: u8, peer: NodeId) -> Result<(), HandshakeError> {
    match byte {
        DECISION_ACCEPT => Ok(()),
        DECISION_DUPLICATE => Err(HandshakeError::Duplicate(peer)),
        other => Err(HandshakeError::InvalidDecision(other)),
    }
}

/// How this end proves itself, and what it expects of the other.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Credentials {
    /// No proof ([`AuthMode::None`]).
    None,
    /// Challenge-response with this secret ([`AuthMode::SharedSecret`]).
    SharedSecret(SharedSecret),
    /// The session is already mutually authenticated by TLS ([`AuthMode::Tls`]); the shell
    /// checks the certificate's name when the dialer's hello arrives ([`Step::Admit`]).
    Tls,
}

impl Credentials {
    /// The mode these credentials speak.
    pub const fn mode(&self) -> AuthMode {
        match self {
            Self::None => AuthMode::None,
            Self::SharedSecret(_) => AuthMode::SharedSecret,
            Self::Tls => AuthMode::Tls,
        }
    }
}

/// What the handshake waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// More bytes from the peer: feed at least this many to [`Handshake::handle_input`].
    Read(usize),
    /// The dialer claims to be this node: the shell decides whether it may connect (configured,
    /// certificate name matches) and calls [`Handshake::admit`]. Acceptor only.
    Admit(NodeId),
    /// Authenticated; the peer is this node. Send what [`Handshake::poll_transmit`] still holds.
    Done(NodeId),
    /// A call returned an error; the connection must be closed.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Dialer { expected: NodeId },
    Acceptor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Acceptor: the preamble.
    Preamble,
    /// Acceptor: the dialer's nonce (shared secret).
    DialerNonce,
    /// Dialer: the acceptor's nonce (shared secret).
    Challenge,
    /// The other side's proof (shared secret).
    Proof,
    /// The other side's hello.
    Hello,
    /// Acceptor: waiting for the shell's verdict on the claimed node.
    Admit(NodeId),
    Done(NodeId),
    Failed,
}

/// The handshake of one connection, for either side. See the [module docs](self).
#[derive(Debug)]
pub struct Handshake {
    role: Role,
    local: Hello,
    credentials: Credentials,
    state: State,
    /// Our nonce; the peer's arrives into `peer_nonce`.
    nonce: [u8; NONCE_LEN],
    peer_nonce: [u8; NONCE_LEN],
    input: [u8; 64],
    filled: usize,
    out: Vec<u8>,
}

impl Handshake {
    /// The dialer's side of a connection to `expected`. `nonce` must be fresh random bytes
    /// (only used with a shared secret).
    pub fn dialer(
        local: Hello,
        expected: NodeId,
        credentials: Credentials,
        nonce: [u8; NONCE_LEN],
    ) -> Self {
        let mut hs = Self::new(Role::Dialer { expected }, local, credentials, nonce);
        hs.out.extend_from_slice(&preamble(hs.credentials.mode()));
        if matches!(hs.credentials, Credentials::SharedSecret(_)) {
            hs.out.extend_from_slice(&nonce);
            hs.state = State::Challenge;
        } else {
            // Without a secret there is nothing to prove first: the dialer's hello is its
            // claim, checked by the acceptor (and with TLS, bound to its certificate).
            hs.out.extend_from_slice(&local.encode());
            hs.state = State::Hello;
        }
        hs
    }

    /// The acceptor's side of an inbound connection. `nonce` must be fresh random bytes (only
    /// used with a shared secret).
    pub fn acceptor(local: Hello, credentials: Credentials, nonce: [u8; NONCE_LEN]) -> Self {
        Self::new(Role::Acceptor, local, credentials, nonce)
    }

    fn new(role: Role, local: Hello, credentials: Credentials, nonce: [u8; NONCE_LEN]) -> Self {
        Self {
            role,
            local,
            credentials,
            state: State::Preamble,
            nonce,
            peer_nonce: [0; NONCE_LEN],
            input: [0; 64],
            filled: 0,
            out: Vec::new(),
        }
    }

    /// Bytes to send to the peer now, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        (!self.out.is_empty()).then(|| std::mem::take(&mut self.out))
    }

    /// What the handshake waits for.
    pub fn step(&self) -> Step {
        match self.state {
            State::Admit(node) => Step::Admit(node),
            State::Done(node) => Step::Done(node),
            State::Failed => Step::Failed,
            other => Step::Read(Self::needed(other).saturating_sub(self.filled)),
        }
    }

    const fn needed(state: State) -> usize {
        match state {
            State::Preamble => PREAMBLE_LEN,
            State::DialerNonce | State::Challenge => NONCE_LEN,
            State::Proof => PROOF_LEN,
            State::Hello => HELLO_LEN,
            State::Admit(_) | State::Done(_) | State::Failed => 0,
        }
    }

    /// Feeds bytes received from the peer. Consumes at most what the current [`Step::Read`]
    /// asks for and returns how many bytes it took; the rest belongs to a later step (or, once
    /// done, to the frames). On error the handshake is [`Step::Failed`].
    pub fn handle_input(&mut self, bytes: &[u8]) -> Result<usize, HandshakeError> {
        let Step::Read(want) = self.step() else {
            return Ok(0);
        };
        let take = want.min(bytes.len());
        let start = self.filled;
        let (src, dst) = (bytes.get(..take), self.input.get_mut(start..start + take));
        if let (Some(src), Some(dst)) = (src, dst) {
            dst.copy_from_slice(src);
            self.filled += take;
        }
        if take == want {
            let message = self.input.get(..self.filled).unwrap_or(&[]).to_vec();
            self.filled = 0;
            if let Err(error) = self.on_message(&message) {
                self.state = State::Failed;
                return Err(error);
            }
        }
        Ok(take)
    }

    /// The shell's verdict on the node the dialer claims ([`Step::Admit`]): `Ok` lets it in
    /// and queues our hello; an error fails the handshake and is returned.
    pub fn admit(&mut self, verdict: Result<(), HandshakeError>) -> Result<(), HandshakeError> {
        let State::Admit(node) = self.state else {
            return Ok(());
        };
        match verdict {
            Ok(()) => {
                self.out.extend_from_slice(&self.local.encode());
                self.state = State::Done(node);
                Ok(())
            }
            Err(error) => {
                self.state = State::Failed;
                Err(error)
            }
        }
    }

    fn on_message(&mut self, message: &[u8]) -> Result<(), HandshakeError> {
        match self.state {
            State::Preamble => {
                let bytes = fixed::<PREAMBLE_LEN>(message);
                check_preamble(&bytes, self.credentials.mode())?;
                self.state = match self.credentials {
                    Credentials::SharedSecret(_) => State::DialerNonce,
                    Credentials::None | Credentials::Tls => State::Hello,
                };
            }
            State::DialerNonce => {
                self.peer_nonce = fixed(message);
                self.out.extend_from_slice(&self.nonce);
                self.state = State::Proof;
            }
            State::Challenge => {
                self.peer_nonce = fixed(message);
                let proof = self.proof(DIALER_LABEL)?;
                self.out.extend_from_slice(proof.as_ref());
                self.state = State::Proof;
            }
            State::Proof => self.on_proof(message)?,
            State::Hello => self.on_hello(&Hello::decode(&fixed(message)))?,
            State::Admit(_) | State::Done(_) | State::Failed => {}
        }
        Ok(())
    }

    fn on_proof(&mut self, proof: &[u8]) -> Result<(), HandshakeError> {
        let (theirs, ours) = match self.role {
            Role::Acceptor => (DIALER_LABEL, ACCEPTOR_LABEL),
            Role::Dialer { .. } => (ACCEPTOR_LABEL, DIALER_LABEL),
        };
        let Credentials::SharedSecret(secret) = &self.credentials else {
            return Err(HandshakeError::BadProof);
        };
        // Constant time: the comparison does not tell an attacker how many bytes were right.
        hmac::verify(&secret.key, &self.transcript(theirs), proof)
            .map_err(|_| HandshakeError::BadProof)?;
        match self.role {
            Role::Acceptor => {
                let proof = self.proof(ours)?;
                self.out.extend_from_slice(proof.as_ref());
                self.state = State::Hello;
            }
            Role::Dialer { .. } => {
                // The acceptor proved it knows the secret: now it may see who we are.
                self.out.extend_from_slice(&self.local.encode());
                self.state = State::Hello;
            }
        }
        Ok(())
    }

    fn on_hello(&mut self, theirs: &Hello) -> Result<(), HandshakeError> {
        if theirs.cluster_id != self.local.cluster_id {
            return Err(HandshakeError::WrongCluster {
                ours: self.local.cluster_id,
                theirs: theirs.cluster_id,
            });
        }
        if theirs.node_id == self.local.node_id {
            return Err(HandshakeError::SelfConnection(theirs.node_id));
        }
        self.state = match self.role {
            Role::Acceptor => State::Admit(theirs.node_id),
            Role::Dialer { expected } if expected != theirs.node_id => {
                return Err(HandshakeError::UnexpectedPeer {
                    expected,
                    found: theirs.node_id,
                });
            }
            Role::Dialer { .. } => State::Done(theirs.node_id),
        };
        Ok(())
    }

    /// `label | preamble | nonce_d | nonce_a`, the bytes each side's proof is computed over.
    fn transcript(&self, label: &[u8]) -> Vec<u8> {
        let (dialer, acceptor) = match self.role {
            Role::Dialer { .. } => (&self.nonce, &self.peer_nonce),
            Role::Acceptor => (&self.peer_nonce, &self.nonce),
        };
        let mut t = Vec::with_capacity(label.len() + PREAMBLE_LEN + 2 * NONCE_LEN);
        t.extend_from_slice(label);
        t.extend_from_slice(&preamble(AuthMode::SharedSecret));
        t.extend_from_slice(dialer);
        t.extend_from_slice(acceptor);
        t
    }

    fn proof(&self, label: &[u8]) -> Result<hmac::Tag, HandshakeError> {
        let Credentials::SharedSecret(secret) = &self.credentials else {
            return Err(HandshakeError::BadProof);
        };
        Ok(hmac::sign(&secret.key, &self.transcript(label)))
    }
}

/// The first `N` bytes of `bytes`, zero-padded (callers pass exactly `N`).
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0u8; N];
    for (o, b) in out.iter_mut().zip(bytes) {
        *o = *b;
    }
    out
}

/// Draws a fresh nonce from the operating system's generator.
pub fn random_nonce() -> Result<[u8; NONCE_LEN], HandshakeError> {
    use ring::rand::SecureRandom;
    let mut nonce = [0u8; NONCE_LEN];
    ring::rand::SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| HandshakeError::Random)?;
    Ok(nonce)
}

/// Runs a dialer and an acceptor against each other in memory, the acceptor admitting whatever
/// `admit` says; returns each side's result. Every byte either side sends is passed through
/// `tamper` first (as `(from_dialer, bytes)`), so tests and fuzzers can play the network.
pub fn run_pair(
    dialer: &mut Handshake,
    acceptor: &mut Handshake,
    mut admit: impl FnMut(NodeId) -> Result<(), HandshakeError>,
    mut tamper: impl FnMut(bool, &mut Vec<u8>),
) -> (
    Result<NodeId, HandshakeError>,
    Result<NodeId, HandshakeError>,
) {
    let mut to_acceptor: Vec<u8> = Vec::new();
    let mut to_dialer: Vec<u8> = Vec::new();
    let mut results: [Option<Result<NodeId, HandshakeError>>; 2] = [None, None];
    // Every step moves at least one message or ends a side, so this bound is never reached by
    // a correct machine; it keeps a broken one from spinning.
    for _ in 0..32 {
        for (index, side) in [&mut *dialer, &mut *acceptor].into_iter().enumerate() {
            let from_dialer = index == 0;
            if let Some(mut bytes) = side.poll_transmit() {
                tamper(from_dialer, &mut bytes);
                if from_dialer {
                    &mut to_acceptor
                } else {
                    &mut to_dialer
                }
                .extend(bytes);
            }
            let Some(slot) = results.get_mut(index) else {
                continue;
            };
            if slot.is_some() {
                continue;
            }
            let inbox = if from_dialer {
                &mut to_dialer
            } else {
                &mut to_acceptor
            };
            match side.step() {
                Step::Read(_) if inbox.is_empty() => {}
                Step::Read(_) => match side.handle_input(inbox) {
                    Ok(used) => drop(inbox.drain(..used)),
                    Err(error) => *slot = Some(Err(error)),
                },
                Step::Admit(node) => {
                    if let Err(error) = side.admit(admit(node)) {
                        *slot = Some(Err(error));
                    }
                }
                Step::Done(node) if side.out.is_empty() => *slot = Some(Ok(node)),
                Step::Done(_) | Step::Failed => {}
            }
        }
        if results.iter().all(Option::is_some) {
            break;
        }
        // A side that failed closes the connection: the other one sees the end of the stream.
        if results.iter().any(|r| matches!(r, Some(Err(_)))) {
            break;
        }
    }
    let closed = || Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into()));
    let [d, a] = results;
    (d.unwrap_or_else(closed), a.unwrap_or_else(closed))
}

#[cfg(test)]
mod tests;
