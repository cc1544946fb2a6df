//! Group commit: batches of storage records synced once each, on a thread of their own or
//! inline, with one batch in flight at a time.

use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::SyncMode;
use crate::node::PersistToken;
use crate::replicated::ReplicatedValue;
use crate::storage::{Storage, StorageError, StorageWrite};

/// Upper bounds, in microseconds, of the buckets of [`CommitStats::sync_buckets`] (the last
/// bucket counts everything slower).
pub const SYNC_BUCKETS_US: [u64; 12] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 1_000_000,
];

/// What group commit has done so far.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CommitStats {
    /// Successful syncs.
    pub syncs: u64,
    /// Records made durable.
    pub records: u64,
    /// Syncs that failed because the disk was full (each retried).
    pub full: u64,
    /// Whether writes are refused now because the disk is full.
    pub stalled: bool,
    /// Total time spent in successful commits (append and sync), in microseconds.
    pub sync_micros: u64,
    /// Successful commits by duration: `sync_buckets[i]` counts those that took at most
    /// [`SYNC_BUCKETS_US`]`[i]` (and more than the bound before); the last entry counts the
    /// slower ones.
    pub sync_buckets: [u64; SYNC_BUCKETS_US.len() + 1],
    /// Largest batch synced, in records.
    pub max_batch: u64,
}

impl CommitStats {
    fn record(&mut self, records: u64, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.syncs += 1;
        self.records += records;
        self.sync_micros = self.sync_micros.saturating_add(micros);
        self.max_batch = self.max_batch.max(records);
        let bucket = SYNC_BUCKETS_US
            .iter()
            .position(|&b| micros <= b)
            .unwrap_or(SYNC_BUCKETS_US.len());
        self.sync_buckets[bucket] += 1;
    }
}

/// What the storage is asked to do.
enum Job<V> {
    /// Append these records and sync.
    Commit(Vec<StorageWrite<V>>),
    /// Sync again what was appended (the last sync found the disk full).
    Retry,
}

/// The outcome of a job.
pub(super) struct Done {
    pub(super) token: PersistToken,
    pub(super) records: u64,
    pub(super) took: Duration,
    pub(super) result: Result<(), StorageError>,
}

fn carry_out<V, S: Storage<V>>(storage: &mut S, job: Job<V>) -> Result<(), StorageError> {
    if let Job::Commit(writes) = job {
        for w in writes {
            storage.append(w)?;
        }
    }
    storage.sync()
}

enum Runner<V, S> {
    Inline(S),
    Thread {
        jobs: std::sync::mpsc::Sender<(PersistToken, u64, Job<V>)>,
        thread: std::thread::JoinHandle<S>,
    },
}

/// The storage side of the driver: at most one job in flight; results come back on
/// [`Committer::done`].
pub(super) struct Committer<V, S> {
    runner: Runner<V, S>,
    done_tx: mpsc::UnboundedSender<Done>,
    pub(super) done: mpsc::UnboundedReceiver<Done>,
    /// Records waiting for the next job, and the token of the last.
    pending: Vec<StorageWrite<V>>,
    pending_token: Option<PersistToken>,
    /// The token of the job in flight.
    in_flight: Option<PersistToken>,
    /// A job that found the disk full: its token, and when to retry.
    stalled: Option<(PersistToken, Instant, String)>,
    /// The records and the duration of the last successful job.
    last: (u64, Duration),
    pub(super) stats: CommitStats,
}

impl<V: ReplicatedValue, S: Storage<V> + Send + 'static> Committer<V, S> {
    /// Fails only if the operating system refuses a thread (the storage is dropped).
    pub(super) fn new(storage: S, mode: SyncMode) -> Result<Self, StorageError> {
        let (done_tx, done) = mpsc::unbounded_channel();
        let runner = match mode {
            SyncMode::Inline => Runner::Inline(storage),
            SyncMode::Thread => {
                let (jobs, rx) = std::sync::mpsc::channel::<(PersistToken, u64, Job<V>)>();
                let tx = done_tx.clone();
                let thread = std::thread::Builder::new()
                    .name("confluo-storage".into())
                    .spawn(move || {
                        let mut storage = storage;
                        while let Ok((token, records, job)) = rx.recv() {
                            let started = Instant::now();
                            let result = carry_out(&mut storage, job);
                            let took = started.elapsed();
                            let done = Done {
                                token,
                                records,
                                took,
                                result,
                            };
                            if tx.send(done).is_err() {
                                break;
                            }
                        }
                        storage
                    })?;
                Runner::Thread { jobs, thread }
            }
        };
        Ok(Committer {
            runner,
            done_tx,
            done,
            pending: Vec::new(),
            pending_token: None,
            in_flight: None,
            stalled: None,
            last: (0, Duration::ZERO),
            stats: CommitStats::default(),
        })
    }

    /// Queues a record for the next job.
    pub(super) fn push(&mut self, token: PersistToken, write: StorageWrite<V>) {
        self.pending.push(write);
        self.pending_token = Some(token);
    }

    /// Whether writes must be refused: the disk is full.
    pub(super) fn full(&self) -> Option<&str> {
        self.stalled.as_ref().map(|(_, _, why)| why.as_str())
    }

    /// Whether nothing is pending, in flight or stalled.
    /// Records waiting for the next job.
    pub(super) fn pending_records(&self) -> u64 {
        self.pending.len() as u64
    }

    /// The records and the duration of the last successful job.
    pub(super) fn last_job(&self) -> (u64, Duration) {
        self.last
    }

    pub(super) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_none() && self.stalled.is_none()
    }

    /// Starts the next job if none is in flight: the retry of a stalled one once due, or
    /// everything pending.
    pub(super) fn kick(&mut self, now: Instant) {
        if self.in_flight.is_some() {
            return;
        }
        if let Some((token, due, _)) = &self.stalled {
            if now >= *due {
                let token = *token;
                self.run(token, 0, Job::Retry);
            }
            return;
        }
        let Some(token) = self.pending_token.take() else {
            return;
        };
        let writes = std::mem::take(&mut self.pending);
        let records = writes.len() as u64;
        self.run(token, records, Job::Commit(writes));
    }

    fn run(&mut self, token: PersistToken, records: u64, job: Job<V>) {
        self.in_flight = Some(token);
        match &mut self.runner {
            Runner::Inline(storage) => {
                let started = Instant::now();
                let result = carry_out(storage, job);
                let done = Done {
                    token,
                    records,
                    took: started.elapsed(),
                    result,
                };
                // The receiver lives in `self`: this cannot fail.
                let _ = self.done_tx.send(done);
            }
            Runner::Thread { jobs, .. } => {
                if jobs.send((token, records, job)).is_err() {
                    let _ = self.done_tx.send(Done {
                        token,
                        records,
                        took: Duration::ZERO,
                        result: Err(StorageError::Io(std::io::Error::other(
                            "the storage thread stopped",
                        ))),
                    });
                }
            }
        }
    }

    /// Takes the outcome of the job in flight. `Ok(Some(token))`: durable up to `token`;
    /// `Ok(None)`: the disk is full, retried after `retry`; `Err`: storage is broken.
    pub(super) fn finish(
        &mut self,
        done: Done,
        now: Instant,
        retry: Duration,
    ) -> Result<Option<PersistToken>, StorageError> {
        self.in_flight = None;
        match done.result {
            Ok(()) => {
                let was_stalled = self.stalled.take().is_some();
                // A retried job's records were counted when first appended.
                let records = if was_stalled { 0 } else { done.records };
                self.stats.record(records, done.took);
                self.last = (records, done.took);
                self.stats.stalled = false;
                Ok(Some(done.token))
            }
            Err(e) if e.is_transient() => {
                if self.stalled.is_none() {
                    self.stats.records += done.records;
                }
                self.stats.full += 1;
                self.stats.stalled = true;
                self.stalled = Some((done.token, now + retry, e.to_string()));
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Stops the storage thread (after the job in flight) and gives the storage back.
    pub(super) async fn close(self) -> Result<S, StorageError> {
        match self.runner {
            Runner::Inline(storage) => Ok(storage),
            Runner::Thread { jobs, thread } => {
                drop(jobs);
                tokio::task::spawn_blocking(move || thread.join())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .ok_or_else(|| {
                        StorageError::Io(std::io::Error::other("the storage thread panicked"))
                    })
            }
        }
    }
}
