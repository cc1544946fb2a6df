//! The fault model: which faults a run may inject, and the rates one seed draws.

use std::fmt;

use crate::rng::SimRng;

/// Which kinds of fault the simulator may inject (all on by default). A kind switched off
/// is drawn as zero, so every seed still draws the same number of values and a seed's other
/// settings do not shift when a kind is toggled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultKinds {
    /// Message loss.
    pub drop: bool,
    /// Message duplication.
    pub duplicate: bool,
    /// Extra random delay that reorders messages on a link.
    pub reorder: bool,
    /// Partitions, two-way and one-way, of any split.
    pub partition: bool,
    /// Crash and restart, storage kept or losing what was not synced.
    pub crash: bool,
    /// A crash that loses the whole disk (the node comes back as a new incarnation).
    pub disk_loss: bool,
    /// Wall-clock skew between nodes.
    pub clock_skew: bool,
    /// A node cut off from everyone for a long time (longer than its peers' delta buffers).
    pub long_outage: bool,
    /// The leaders' replication graph changed at runtime.
    pub topology_change: bool,
    /// A leader fails and its follower is promoted.
    pub promotion: bool,
    /// Keys created and deleted all along (session keys, queues): their deletes' metadata
    /// must be collected once every node holds them.
    pub churn: bool,
}

impl FaultKinds {
    /// Every kind enabled.
    pub const ALL: FaultKinds = FaultKinds {
        drop: true,
        duplicate: true,
        reorder: true,
        partition: true,
        crash: true,
        disk_loss: true,
        clock_skew: true,
        long_outage: true,
        topology_change: true,
        promotion: true,
        churn: true,
    };

    /// No fault at all: a perfect network and nodes that never fail.
    pub const NONE: FaultKinds = FaultKinds {
        drop: false,
        duplicate: false,
        reorder: false,
        partition: false,
        crash: false,
        disk_loss: false,
        clock_skew: false,
        long_outage: false,
        topology_change: false,
        promotion: false,
        churn: false,
    };

    /// Every fault kind except those named (the `--disable` list of `confluo sim`: drop,
    /// duplicate, reorder, partition, crash, disk-loss, clock-skew, long-outage, topology,
    /// promotion, churn; "all" for none). Errs with the first unknown name.
    pub fn all_but<'a>(disable: impl IntoIterator<Item = &'a str>) -> Result<FaultKinds, String> {
        let mut k = FaultKinds::ALL;
        for d in disable {
            match d {
                "all" => k = FaultKinds::NONE,
                "drop" => k.drop = false,
                "duplicate" => k.duplicate = false,
                "reorder" => k.reorder = false,
                "partition" => k.partition = false,
                "crash" => k.crash = false,
                "disk-loss" => k.disk_loss = false,
                "clock-skew" => k.clock_skew = false,
                "long-outage" => k.long_outage = false,
                "topology" => k.topology_change = false,
                "promotion" => k.promotion = false,
                "churn" => k.churn = false,
                other => return Err(format!("unknown fault kind {other:?}")),
            }
        }
        Ok(k)
    }
}

impl Default for FaultKinds {
    fn default() -> Self {
        FaultKinds::ALL
    }
}

/// The fault rates of one seed. Probabilities are per million; times in virtual milliseconds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSettings {
    /// Probability that a message is lost (0 to 30%).
    pub drop_ppm: u32,
    /// Probability that a message is delivered twice.
    pub duplicate_ppm: u32,
    /// Base one-way latency of every link.
    pub latency_ms: u64,
    /// Extra uniform delay on top of the latency (0: FIFO links).
    pub jitter_ms: u64,
    /// Probability that a message is held back by up to `reorder_delay_ms` more.
    pub reorder_ppm: u32,
    /// The longest hold-back of a reordered message.
    pub reorder_delay_ms: u64,
    /// Mean time between partitions (0: none).
    pub partition_every_ms: u64,
    /// Longest partition.
    pub partition_max_ms: u64,
    /// Probability that a partition is one-way.
    pub one_way_ppm: u32,
    /// Mean time between crashes (0: none).
    pub crash_every_ms: u64,
    /// Longest downtime after a crash.
    pub downtime_max_ms: u64,
    /// Probability that a crash keeps even unsynced writes (else they are lost).
    pub crash_keeps_unsynced_ppm: u32,
    /// Probability that a crash loses the whole disk.
    pub disk_loss_ppm: u32,
    /// Greatest wall-clock offset of a node from virtual time, either way.
    pub max_skew_ms: u64,
    /// Whether one node is cut off for a long outage, and for how long.
    pub long_outage_ms: u64,
    /// Mean time between topology changes (0: none).
    pub topology_every_ms: u64,
    /// Whether a leader fails and its follower is promoted during the run.
    pub promotion: bool,
    /// Storage sync latency, at most.
    pub sync_max_ms: u64,
    /// Whether clients create and delete keys all along (see [`FaultKinds::churn`]).
    pub churn: bool,
}

impl FaultSettings {
    /// Draws the settings of one seed within `kinds`.
    pub fn draw(rng: &mut SimRng, kinds: FaultKinds) -> FaultSettings {
        // Every value is drawn whatever `kinds` says, then masked: toggling a kind changes
        // only that kind's settings.
        let on = |b: bool, v| if b { v } else { 0 };
        let drop_ppm = rng.below(300_001) as u32;
        let duplicate_ppm = rng.below(100_001) as u32;
        let latency_ms = rng.range(1, 30);
        let jitter_ms = rng.range(0, 20);
        let reorder_ppm = rng.below(200_001) as u32;
        let reorder_delay_ms = rng.range(5, 200);
        let partition_every_ms = rng.range(500, 4_000);
        let partition_max_ms = rng.range(100, 3_000);
        let one_way_ppm = rng.below(500_001) as u32;
        let crash_every_ms = rng.range(1_000, 6_000);
        let downtime_max_ms = rng.range(10, 2_000);
        let crash_keeps_unsynced_ppm = rng.below(500_001) as u32;
        let disk_loss_ppm = rng.below(100_001) as u32;
        let max_skew_ms = rng.range(0, 10_000);
        let long_outage = rng.chance(300_000);
        let long_outage_ms = rng.range(3_000, 8_000);
        let topology_every_ms = rng.range(1_000, 8_000);
        let promotion = rng.chance(300_000);
        let sync_max_ms = rng.range(0, 5);
        let churn = rng.chance(500_000);
        FaultSettings {
            drop_ppm: on(kinds.drop, drop_ppm),
            duplicate_ppm: on(kinds.duplicate, duplicate_ppm),
            latency_ms,
            jitter_ms: if kinds.reorder { jitter_ms } else { 0 },
            reorder_ppm: on(kinds.reorder, reorder_ppm),
            reorder_delay_ms,
            partition_every_ms: if kinds.partition {
                partition_every_ms
            } else {
                0
            },
            partition_max_ms,
            one_way_ppm,
            crash_every_ms: if kinds.crash { crash_every_ms } else { 0 },
            downtime_max_ms,
            crash_keeps_unsynced_ppm,
            disk_loss_ppm: on(kinds.disk_loss && kinds.crash, disk_loss_ppm),
            max_skew_ms: if kinds.clock_skew { max_skew_ms } else { 0 },
            long_outage_ms: if kinds.long_outage && long_outage {
                long_outage_ms
            } else {
                0
            },
            topology_every_ms: if kinds.topology_change {
                topology_every_ms
            } else {
                0
            },
            promotion: kinds.promotion && promotion,
            sync_max_ms,
            churn: kinds.churn && churn,
        }
    }

    /// No faults: a perfect network with a 1 ms latency.
    pub fn none() -> FaultSettings {
        FaultSettings {
            latency_ms: 1,
            sync_max_ms: 1,
            ..FaultSettings::draw(&mut SimRng::new(0), FaultKinds::NONE)
        }
    }
}

impl fmt::Display for FaultSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pct = |ppm: u32| f64::from(ppm) / 10_000.0;
        write!(
            f,
            "drop {:.1}%, duplicate {:.1}%, latency {} ms + jitter {} ms, reorder {:.1}% by <= {} ms, \
             partition every ~{} ms for <= {} ms ({:.0}% one-way), crash every ~{} ms down <= {} ms \
             (keeps unsynced {:.0}%, disk loss {:.1}%), clock skew <= {} ms, long outage {} ms, \
             topology change every ~{} ms, promotion {}, sync <= {} ms, churn {}",
            pct(self.drop_ppm),
            pct(self.duplicate_ppm),
            self.latency_ms,
            self.jitter_ms,
            pct(self.reorder_ppm),
            self.reorder_delay_ms,
            self.partition_every_ms,
            self.partition_max_ms,
            pct(self.one_way_ppm),
            self.crash_every_ms,
            self.downtime_max_ms,
            pct(self.crash_keeps_unsynced_ppm),
            pct(self.disk_loss_ppm),
            self.max_skew_ms,
            self.long_outage_ms,
            self.topology_every_ms,
            if self.promotion { "yes" } else { "no" },
            self.sync_max_ms,
            if self.churn { "yes" } else { "no" },
        )
    }
}
