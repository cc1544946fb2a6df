//! One client: read a batch of requests, parse each into a command, run the node's commands
//! of the batch in one round trip to the node's task, wait until the writes among them are
//! durable, then encode every reply in order. Per-client state (protocol version, name, the
//! dot of its last write for WAIT) lives in [`ClientState`].
//!
//! A pipeline is one batch: the replies of a batch are sent together, after its last write
//! is durable, so a reply never announces a write that a crash could still lose. Commands
//! that change the session (HELLO, CLIENT SETNAME, QUIT) or block (WAIT) split the batch:
//! what came before them runs first.

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::auth::{Access, DEFAULT_USER};
use crate::cmd::{self, Command, NodeCommand, SessionCommand, Spec, connection, replication::Wait};
use crate::connection::{Connection, Ended};
use crate::db::{DbHandle, Dot, Durable};
use crate::frame::{self, Proto, Request};
use crate::observe::observe;
use crate::reply::{Reply, RespError};
use crate::shared::Shared;

/// Requests taken from the input at once, at most (bounds one round trip's work).
const MAX_BATCH: usize = 1024;
/// How long a closing connection may take to flush its last replies.
const CLOSE_FLUSH: Duration = Duration::from_secs(2);

/// What a client has set up on its connection.
#[derive(Debug)]
pub(crate) struct ClientState {
    /// `CLIENT ID`.
    pub(crate) id: u64,
    /// Its address, if it has one.
    pub(crate) addr: Option<SocketAddr>,
    /// `CLIENT SETNAME`.
    pub(crate) name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-NAME`.
    pub(crate) lib_name: Option<Bytes>,
    /// `CLIENT SETINFO LIB-VER`.
    pub(crate) lib_ver: Option<Bytes>,
    /// RESP2 until `HELLO 3`.
    pub(crate) proto: Proto,
    /// The dot of its last write that changed something: WAIT waits for it.
    pub(crate) last_dot: Option<Dot>,
    /// QUIT was sent: close once the reply is out.
    pub(crate) quit: bool,
    /// The user it is authenticated as, and what it may do; `None` before AUTH while the
    /// config requires it.
    pub(crate) user: Option<(String, Access)>,
}

impl ClientState {
    pub(crate) fn new(id: u64, addr: Option<SocketAddr>) -> Self {
        ClientState {
            id,
            addr,
            name: None,
            lib_name: None,
            lib_ver: None,
            proto: Proto::Resp2,
            last_dot: None,
            quit: false,
            user: Some((DEFAULT_USER.to_string(), Access::ReadWrite)),
        }
    }

    /// Whether this client may run the command of `spec` (Redis: NOAUTH before AUTH but for
    /// the commands flagged `no-auth`; a read-only user may not run those flagged `write`).
    fn permit(&self, spec: &Spec) -> Result<(), RespError> {
        match &self.user {
            None if !spec.flags.contains(&"no-auth") => Err(RespError::NoAuth),
            Some((user, Access::ReadOnly)) if spec.flags.contains(&"write") => {
                Err(RespError::NoPerm {
                    user: user.clone(),
                    command: spec.name.to_ascii_lowercase(),
                })
            }
            _ => Ok(()),
        }
    }

    /// The `CLIENT INFO` line.
    pub(crate) fn describe(&self) -> String {
        let text = |b: &Option<Bytes>| {
            b.as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .unwrap_or_default()
        };
        format!(
            "id={} addr={} name={} db=0 lib-name={} lib-ver={} resp={}\n",
            self.id,
            self.addr.map_or_else(String::new, |a| a.to_string()),
            text(&self.name),
            text(&self.lib_name),
            text(&self.lib_ver),
            if self.proto == Proto::Resp3 { 3 } else { 2 },
        )
    }

    /// RESET: back to a fresh connection's settings (the writes made stay this client's).
    pub(crate) fn reset(&mut self) {
        self.name = None;
        self.proto = Proto::Resp2;
    }
}

/// An item of a batch on its way to the node: a command to run there, or a reply known
/// already (kept in place so that replies stay in order).
#[derive(Debug)]
enum Item {
    Node(NodeCommand),
    Ready(Reply),
}

/// A client connection being served.
pub(crate) struct Session<S> {
    conn: Connection<S>,
    client: ClientState,
    db: DbHandle,
    shared: Arc<Shared>,
    batch: Vec<Request>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    pub(crate) fn new(
        stream: S,
        addr: Option<SocketAddr>,
        db: DbHandle,
        shared: Arc<Shared>,
    ) -> Self {
        let id = shared.stats.next_client_id();
        let mut client = ClientState::new(id, addr);
        if shared.config.auth.required() {
            client.user = None;
        }
        Session {
            conn: Connection::new(stream, &shared.config.limits),
            client,
            db,
            shared,
            batch: Vec::new(),
        }
    }

    /// Serves the client until it leaves, breaks a rule, or the server stops.
    pub(crate) async fn run(mut self) {
        let ended = self.serve().await;
        let stats = &self.shared.stats;
        match &ended {
            Err(Ended::Protocol) => {
                stats.protocol_errors.fetch_add(1, Ordering::Relaxed);
            }
            Err(Ended::QueryBuffer | Ended::OutputBuffer) => {
                stats.buffer_disconnects.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
        // A client that does not read gets nothing more; the others get their last replies,
        // a client that only closed its sending side (`nc -N`, a pipe) included.
        if !matches!(ended, Err(Ended::OutputBuffer | Ended::Io(_))) {
            let _ = tokio::time::timeout(CLOSE_FLUSH, self.conn.close()).await;
        }
        if let Err(e) = ended {
            // A client can make this happen at will: debug, not warn.
            tracing::debug!(client = self.client.id, reason = %e, "client connection ended");
        }
    }

    async fn serve(&mut self) -> Result<(), Ended> {
        let mut phase = self.shared.phase.clone();
        loop {
            tokio::select! {
                biased;
                read = self.conn.read_requests(&mut self.batch, MAX_BATCH) => read?,
                () = phase.stopped() => return Ok(()),
            }
            self.run_batch().await?;
            if self.client.quit {
                return Ok(());
            }
        }
    }

    /// Runs the batch of requests read, in order.
    async fn run_batch(&mut self) -> Result<(), Ended> {
        let mut batch = std::mem::take(&mut self.batch);
        self.shared
            .stats
            .commands
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let mut group = Vec::with_capacity(batch.len());
        // Counted per batch, so that a pipeline touches the shared counters once per
        // command name rather than once per command.
        let mut calls: Vec<(usize, u64)> = Vec::new();
        for request in batch.drain(..) {
            let (index, parsed) = cmd::parse_indexed(request, |spec| self.client.permit(spec));
            if let Some(i) = index {
                match calls.iter_mut().find(|(c, _)| *c == i) {
                    Some((_, n)) => *n += 1,
                    None => calls.push((i, 1)),
                }
            }
            match parsed {
                Ok(Command::Node(c)) => group.push(Item::Node(c)),
                Ok(Command::Ready(r)) => group.push(Item::Ready(r)),
                Err(e) => group.push(Item::Ready(Reply::Error(e))),
                Ok(Command::Session(c)) => {
                    self.run_group(&mut group).await?;
                    let reply = self.run_session(c).await?;
                    self.send(&reply)?;
                    if self.client.quit {
                        // Redis closes after QUIT's reply; what followed is not run.
                        break;
                    }
                }
            }
        }
        for (i, n) in calls {
            self.shared.stats.calls.add(i, n);
        }
        self.run_group(&mut group).await?;
        // Keep the allocation for the next batch.
        self.batch = batch;
        self.batch.clear();
        Ok(())
    }

    /// Runs a group of node commands in one round trip, awaits their writes, sends the
    /// replies.
    async fn run_group(&mut self, group: &mut Vec<Item>) -> Result<(), Ended> {
        if group.iter().all(|i| matches!(i, Item::Ready(_))) {
            for item in group.drain(..) {
                if let Item::Ready(r) = item {
                    self.send(&r)?;
                }
            }
            return Ok(());
        }
        let items = std::mem::take(group);
        let count = items.len();
        let outcome = self
            .db
            .run(move |db| {
                let mut replies = Vec::with_capacity(items.len());
                for item in items {
                    let reply = match item {
                        Item::Ready(r) => r,
                        Item::Node(c) => c.execute(db).into(),
                    };
                    replies.push((reply, db.writes()));
                }
                replies
            })
            .await;
        match outcome {
            Ok((replies, durables)) => self.send_when_durable(replies, durables).await,
            Err(e) => {
                for _ in 0..count {
                    self.send(&Reply::Error(e.clone()))?;
                }
                Ok(())
            }
        }
    }

    /// Sends each reply once every write made before it is durable (the writes of one
    /// replica become durable in order, so once the last is, the awaits return at once).
    async fn send_when_durable(
        &mut self,
        replies: Vec<(Reply, usize)>,
        durables: Vec<Durable>,
    ) -> Result<(), Ended> {
        let mut durables = durables.into_iter();
        let mut awaited = 0;
        let mut failed: Option<RespError> = None;
        for (reply, writes) in replies {
            while awaited < writes {
                awaited += 1;
                let Some(durable) = durables.next() else {
                    break;
                };
                match durable.await {
                    Ok(Some(dot)) => self.client.last_dot = Some(dot),
                    Ok(None) => {}
                    Err(e) => {
                        failed.get_or_insert(RespError::from_driver(e, self.shared.leader_client));
                    }
                }
            }
            match &failed {
                // The node stopped: no later reply can be trusted to be durable.
                Some(e) => self.send(&Reply::Error(e.clone()))?,
                None => self.send(&reply)?,
            }
        }
        if failed.is_some() {
            self.client.quit = true;
        }
        Ok(())
    }

    /// Encodes a reply; fails once the client lets too much pile up.
    fn send(&mut self, reply: &Reply) -> Result<(), Ended> {
        frame::encode(reply, self.client.proto, self.conn.output());
        self.conn.check_output()
    }

    async fn run_session(&mut self, c: SessionCommand) -> Result<Reply, Ended> {
        Ok(match c {
            SessionCommand::Connection(connection::Session::Auth { user, pass }) => {
                match self.authenticate(user, pass).await {
                    Ok(()) => Reply::Ok,
                    Err(e) => Reply::Error(e),
                }
            }
            SessionCommand::Connection(connection::Session::Hello { proto, auth, name }) => {
                let checked = match auth {
                    Some((user, pass)) => self.authenticate(Some(user), pass).await,
                    None if self.client.user.is_none() => Err(RespError::HelloNoAuth),
                    None => Ok(()),
                };
                match checked {
                    Ok(()) => connection::Session::Hello {
                        proto,
                        auth: None,
                        name,
                    }
                    .execute(&mut self.client, &self.shared),
                    Err(e) => Reply::Error(e),
                }
            }
            SessionCommand::Connection(c) => c.execute(&mut self.client, &self.shared),
            SessionCommand::Config(c) => c.execute(&self.shared),
            SessionCommand::Wait(w) => self.wait(w).await?,
            SessionCommand::Report(r) => match observe(&self.db, r.wants_digest()).await {
                Ok(obs) => r.execute(&self.shared, &obs),
                Err(e) => Reply::Error(e),
            },
        })
    }

    /// AUTH: checks the password of `user` (`None`: the default user) off the runtime's
    /// threads (a derivation takes milliseconds by design); counts and logs failures.
    async fn authenticate(&mut self, user: Option<Bytes>, pass: Bytes) -> Result<(), RespError> {
        let auth = &self.shared.config.auth;
        let Some(any_user) = auth.users.first() else {
            // As Redis without requirepass: the default user is open, and no other exists.
            return match user.as_deref() {
                None => Err(RespError::NoPassword),
                Some(u) if u == DEFAULT_USER.as_bytes() => Ok(()),
                Some(_) => Err(RespError::WrongPass),
            };
        };
        let name = user.unwrap_or_else(|| Bytes::from_static(DEFAULT_USER.as_bytes()));
        // An unknown user costs a derivation too (against another user's hash, and always
        // refused), so that the time of a reply does not tell which names exist.
        let (found, known) = match auth.user(&name) {
            Some(u) => (u.clone(), true),
            None => (any_user.clone(), false),
        };
        let verified = tokio::task::spawn_blocking(move || {
            (found.password.verify(&pass) && known).then_some(found)
        })
        .await
        .ok()
        .flatten();
        match verified {
            Some(u) => {
                self.client.user = Some((u.name, u.access));
                Ok(())
            }
            None => {
                let shown = String::from_utf8_lossy(&name[..name.len().min(64)]).into_owned();
                self.shared
                    .security
                    .auth_failures
                    .record(&shown, self.client.addr);
                Err(RespError::WrongPass)
            }
        }
    }

    /// WAIT: blocks this client (not the others) until enough sites hold its last write,
    /// reading meanwhile so that a client that disconnects is noticed.
    async fn wait(&mut self, w: Wait) -> Result<Reply, Ended> {
        let Some(dot) = self.client.last_dot else {
            // No write to wait for: every site holds all of this client's writes.
            return Ok(Reply::Int(self.shared.leader_peers.len() as i64));
        };
        let db = self.db.clone();
        let stats = &self.shared.stats;
        stats.blocked.fetch_add(1, Ordering::Relaxed);
        let mut waiting = pin!(db.wait(dot, w.sites, w.timeout));
        let outcome = loop {
            tokio::select! {
                n = &mut waiting => break Ok(n),
                read = self.conn.fill() => if let Err(e) = read { break Err(e) },
            }
        };
        stats.blocked.fetch_sub(1, Ordering::Relaxed);
        Ok(Reply::Int(outcome? as i64))
    }
}
