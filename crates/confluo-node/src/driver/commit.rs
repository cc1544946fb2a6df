//! Group commit: batches of storage records synced once each, on a thread of their own or
//! inline, with one batch in flight at a time.

use std::sync::{Arc, Mutex};
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

/// Under [`SyncMode::Adaptive`], one sync in this many runs on the thread while syncs run
/// inline, to measure again whether the task has work to overlap with them.
pub const ADAPTIVE_PROBE: u32 = 16;

/// Under [`SyncMode::Adaptive`], a sync that took longer than this runs on the thread next
/// time whatever the task did meanwhile: blocking the task longer would hold up every
/// client's reads for a wake-up saving that is small against such a sync.
pub const ADAPTIVE_INLINE_MAX: Duration = Duration::from_micros(500);

fn carry_out<V, S: Storage<V>>(storage: &Mutex<S>, job: Job<V>) -> Result<(), StorageError> {
    // A panic on the storage thread poisons the lock; what it left is unknown, so nothing
    // more is synced.
    let mut storage = storage
        .lock()
        .map_err(|_| StorageError::Io(std::io::Error::other("the storage thread panicked")))?;
    if let Job::Commit(writes) = job {
        for w in writes {
            storage.append(w)?;
        }
    }
    storage.sync()
}

/// The storage thread: jobs in, outcomes out.
struct Thread<V> {
    jobs: std::sync::mpsc::Sender<(PersistToken, u64, Job<V>)>,
    handle: std::thread::JoinHandle<()>,
}

/// Where a job runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Place {
    Inline,
    Thread,
}

/// The storage side of the driver: at most one job in flight; results come back on
/// [`Committer::done`].
pub(super) struct Committer<V, S> {
    /// Shared with the thread, which holds the lock only while it runs a job: with one job
    /// in flight at a time, nobody ever waits for it.
    storage: Arc<Mutex<S>>,
    thread: Option<Thread<V>>,
    mode: SyncMode,
    done_tx: mpsc::UnboundedSender<Done>,
    pub(super) done: mpsc::UnboundedReceiver<Done>,
    /// Records waiting for the next job, and the token of the last.
    pending: Vec<StorageWrite<V>>,
    pending_token: Option<PersistToken>,
    /// The token of the job in flight, and where it runs.
    in_flight: Option<(PersistToken, Place)>,
    /// How long the task sat waiting for events while the threaded job in flight ran.
    idle: Duration,
    /// Adaptive: run the next jobs inline; and how many ran inline since the last probe.
    inline_next: bool,
    inline_run: u32,
    /// A job that found the disk full: its token, and when to retry.
    stalled: Option<(PersistToken, Instant, String)>,
    pub(super) stats: CommitStats,
}

impl<V: ReplicatedValue, S: Storage<V> + Send + 'static> Committer<V, S> {
    /// Fails only if the operating system refuses a thread (the storage is dropped).
    pub(super) fn new(storage: S, mode: SyncMode) -> Result<Self, StorageError> {
        let (done_tx, done) = mpsc::unbounded_channel();
        let storage = Arc::new(Mutex::new(storage));
        let thread = match mode {
            SyncMode::Inline => None,
            SyncMode::Thread | SyncMode::Adaptive => {
                let (jobs, rx) = std::sync::mpsc::channel::<(PersistToken, u64, Job<V>)>();
                let tx = done_tx.clone();
                let shared = Arc::clone(&storage);
                let handle = std::thread::Builder::new()
                    .name("confluo-storage".into())
                    .spawn(move || {
                        while let Ok((token, records, job)) = rx.recv() {
                            let started = Instant::now();
                            let result = carry_out(&shared, job);
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
                    })?;
                Some(Thread { jobs, handle })
            }
        };
        Ok(Committer {
            storage,
            thread,
            mode,
            done_tx,
            done,
            pending: Vec::new(),
            pending_token: None,
            in_flight: None,
            idle: Duration::ZERO,
            inline_next: false,
            inline_run: 0,
            stalled: None,
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
    pub(super) fn is_idle(&self) -> bool {
        self.pending.is_empty() && self.in_flight.is_none() && self.stalled.is_none()
    }

    /// The task waited `waited` for its next event: while a threaded job runs, that is
    /// time the job did not overlap with any work.
    pub(super) fn waited(&mut self, waited: Duration) {
        if matches!(self.in_flight, Some((_, Place::Thread))) {
            self.idle += waited;
        }
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

    /// Where the next job runs.
    fn place(&mut self) -> Place {
        match self.mode {
            SyncMode::Inline => Place::Inline,
            SyncMode::Thread => Place::Thread,
            SyncMode::Adaptive if self.inline_next && self.inline_run < ADAPTIVE_PROBE => {
                self.inline_run += 1;
                Place::Inline
            }
            SyncMode::Adaptive => {
                self.inline_run = 0;
                Place::Thread
            }
        }
    }

    fn run(&mut self, token: PersistToken, records: u64, job: Job<V>) {
        let place = self.place();
        self.in_flight = Some((token, place));
        self.idle = Duration::ZERO;
        let job = match (place, &self.thread) {
            (Place::Thread, Some(thread)) => match thread.jobs.send((token, records, job)) {
                Ok(()) => return,
                // The thread is gone (it panicked, poisoning the storage): what it would
                // report, reported here.
                Err(_) => {
                    let _ = self.done_tx.send(Done {
                        token,
                        records,
                        took: Duration::ZERO,
                        result: Err(StorageError::Io(std::io::Error::other(
                            "the storage thread stopped",
                        ))),
                    });
                    return;
                }
            },
            _ => job,
        };
        let started = Instant::now();
        let result = carry_out(&self.storage, job);
        let done = Done {
            token,
            records,
            took: started.elapsed(),
            result,
        };
        // The receiver lives in `self`: this cannot fail.
        let _ = self.done_tx.send(done);
    }

    /// Adaptive: after a job, where the next ones run. A threaded job during which the
    /// task waited for more than half of it overlapped with little: inline is cheaper.
    fn adapt(&mut self, place: Place, took: Duration) {
        if self.mode != SyncMode::Adaptive {
            return;
        }
        self.inline_next = match place {
            _ if took > ADAPTIVE_INLINE_MAX => false,
            Place::Thread => self.idle * 2 > took,
            Place::Inline => self.inline_next,
        };
    }

    /// Takes the outcome of the job in flight. `Ok(Some(token))`: durable up to `token`;
    /// `Ok(None)`: the disk is full, retried after `retry`; `Err`: storage is broken.
    pub(super) fn finish(
        &mut self,
        done: Done,
        now: Instant,
        retry: Duration,
    ) -> Result<Option<PersistToken>, StorageError> {
        if let Some((_, place)) = self.in_flight.take() {
            self.adapt(place, done.took);
        }
        match done.result {
            Ok(()) => {
                let was_stalled = self.stalled.take().is_some();
                // A retried job's records were counted when first appended.
                let records = if was_stalled { 0 } else { done.records };
                self.stats.record(records, done.took);
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
        let panicked = || StorageError::Io(std::io::Error::other("the storage thread panicked"));
        if let Some(Thread { jobs, handle }) = self.thread {
            drop(jobs);
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(panicked)?;
        }
        Arc::try_unwrap(self.storage)
            .ok()
            .and_then(|m| m.into_inner().ok())
            .ok_or_else(panicked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::MemoryStorage;
    use crate::value::Value;

    type TestCommitter = Committer<Value, MemoryStorage>;

    /// Queues a record and starts its job; returns where it runs.
    fn start(c: &mut TestCommitter, n: u64) -> Place {
        c.push(PersistToken(n), StorageWrite::Reserve(n));
        c.kick(Instant::now());
        c.in_flight.expect("a job is in flight").1
    }

    /// Finishes the job in flight as if it took `took`.
    async fn finish(c: &mut TestCommitter, took: Duration) {
        let mut done = c.done.recv().await.expect("the job reports");
        done.took = took;
        let token = c.finish(done, Instant::now(), Duration::ZERO).unwrap();
        assert!(token.is_some(), "the job succeeded");
    }

    #[tokio::test]
    async fn adaptive_syncs_inline_while_the_task_only_waits_and_probes_the_thread() {
        let mut c = TestCommitter::new(MemoryStorage::new(), SyncMode::Adaptive).unwrap();
        let sync = Duration::from_micros(400);
        // The first job runs on the thread; the task waits for most of it.
        assert_eq!(start(&mut c, 1), Place::Thread);
        c.waited(Duration::from_micros(300));
        finish(&mut c, sync).await;
        // So the next ones run inline, with one probe on the thread after ADAPTIVE_PROBE.
        for n in 0..ADAPTIVE_PROBE {
            assert_eq!(start(&mut c, 2 + u64::from(n)), Place::Inline, "job {n}");
            // Time the task spends waiting counts only while a threaded job runs.
            c.waited(Duration::from_secs(1));
            finish(&mut c, sync).await;
        }
        assert_eq!(start(&mut c, 100), Place::Thread, "the probe");
        // This time the task had work all along: back to the thread.
        c.waited(Duration::from_micros(50));
        finish(&mut c, sync).await;
        assert_eq!(start(&mut c, 101), Place::Thread);
        finish(&mut c, sync).await;
        assert_eq!(start(&mut c, 102), Place::Thread);
        c.close().await.unwrap();
    }

    #[tokio::test]
    async fn a_slow_sync_never_runs_inline() {
        let mut c = TestCommitter::new(MemoryStorage::new(), SyncMode::Adaptive).unwrap();
        let slow = ADAPTIVE_INLINE_MAX * 2;
        assert_eq!(start(&mut c, 1), Place::Thread);
        // The task waited through all of it, but blocking it that long is worse.
        c.waited(slow);
        finish(&mut c, slow).await;
        assert_eq!(start(&mut c, 2), Place::Thread);
        c.close().await.unwrap();
    }

    #[tokio::test]
    async fn fixed_modes_never_move() {
        for (mode, place) in [
            (SyncMode::Thread, Place::Thread),
            (SyncMode::Inline, Place::Inline),
        ] {
            let mut c = TestCommitter::new(MemoryStorage::new(), mode).unwrap();
            for n in 1..4 {
                assert_eq!(start(&mut c, n), place, "{mode:?}");
                c.waited(Duration::from_secs(1));
                finish(&mut c, Duration::from_micros(10)).await;
            }
            c.close().await.unwrap();
        }
    }
}
