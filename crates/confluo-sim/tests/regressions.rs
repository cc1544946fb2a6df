//! Seeds that failed while the simulator was being built, replayed by `cargo test`.
//!
//! A seed names one run of this simulator: its fault settings and every draw after them. Each
//! entry pins the start of the settings it must draw, so a change to the simulator that
//! re-maps seeds fails here loudly instead of silently testing something else. (When that
//! happens on purpose, re-find the seeds with `confluo sim` and update the list.)

use confluo_sim::{FaultKinds, SimConfig, run_seed};

struct Regression {
    seed: u64,
    /// Fault kinds switched off (the `--disable` list of `confluo sim`).
    disable: &'static [&'static str],
    /// The start of the settings' description: the proof that the seed still replays.
    settings: &'static str,
    /// What it found.
    found: &'static str,
}

fn config(disable: &[&str]) -> SimConfig {
    SimConfig {
        faults: FaultKinds::all_but(disable.iter().copied()).expect("known fault kinds"),
        ..SimConfig::default()
    }
}

fn replay(list: &[Regression]) {
    for r in list {
        let report = run_seed(r.seed, &config(r.disable));
        let settings = report.settings.to_string();
        assert!(
            settings.starts_with(r.settings),
            "seed {} no longer draws the run it was recorded with: {settings}",
            r.seed
        );
        assert!(
            report.passed(),
            "regression ({}) is back:\n{}",
            r.found,
            report.explain(60)
        );
    }
}

/// Found against confluo-node before its anti-entropy (commit 6b8f711 fixed them). The
/// simulator has since learnt clock steps at restarts and the node has changed, so these
/// seeds now drive different schedules with the same fault settings; they stay as broad
/// regressions of the paths they once broke.
const FIXED: &[Regression] = &[
    Regression {
        seed: 105,
        disable: &["topology", "promotion", "disk-loss"],
        settings: "drop 13.6%, duplicate 9.0%",
        found: "a lost state transfer was taken as delivered because batches reached the same \
                log position; the follower held 296 updates forever",
    },
    Regression {
        seed: 6,
        disable: &[
            "duplicate",
            "reorder",
            "partition",
            "crash",
            "disk-loss",
            "clock-skew",
            "long-outage",
            "promotion",
        ],
        settings: "drop 23.0%, duplicate 0.0%",
        found: "all-to-all -> star: entries the new hub had logged but not relayed were never \
                sent again; a leader held 421 updates forever",
    },
    Regression {
        seed: 19,
        disable: &["topology"],
        settings: "drop 23.3%, duplicate 4.8%",
        found: "a leader lost its disk; only its follower kept writes it had acknowledged",
    },
    Regression {
        seed: 12,
        disable: &[],
        settings: "drop 9.3%, duplicate 8.1%",
        found: "star topology after promotion: a leaf never got updates the hub had by state",
    },
];

/// Found with every fault on and fixed in confluo-node: followers link back to their
/// leaders (a leader that lost its disk gets back what only its follower had), a node's
/// replica ids are ordered (a late message from an earlier incarnation changes nothing), a
/// state transfer names the version vector it was cut against (a later incarnation refuses
/// one cut for an earlier), and duplicates logged from a waiting batch become shippable.
/// The node has changed since, so most now drive different schedules with the same
/// settings; they stay as regressions of the paths they once broke.
const FOUND_WITH_EVERY_FAULT: &[Regression] = &[
    Regression {
        seed: 11,
        disable: &[],
        settings: "drop 6.7%, duplicate 0.9%",
        found: "n1 loses its disk (back as a new replica); r1:200.. only at its follower n2",
    },
    Regression {
        seed: 95,
        disable: &[],
        settings: "drop 15.0%, duplicate 6.0%",
        found: "leader disk loss: r5:183.. only at its follower n6",
    },
    Regression {
        seed: 158,
        disable: &[],
        settings: "drop 27.4%, duplicate 8.6%",
        found: "leader disk loss: r7:8.. only at its follower n6",
    },
    Regression {
        seed: 203,
        disable: &[],
        settings: "drop 14.1%, duplicate 0.8%",
        found: "n1 loses its disk at 6853 ms (back as r9); r1:160 only at its follower n2",
    },
    Regression {
        seed: 8230,
        disable: &[],
        settings: "drop 27.4%, duplicate 4.1%",
        found: "n5 loses its disk; a state its follower cut for the old incarnation reaches the \
                new one, whose context then claims r5:1..35 without their values; its later \
                state transfers remove them elsewhere (lost acknowledged add, counters short)",
    },
    Regression {
        seed: 3381,
        disable: &[],
        settings: "drop 12.3%, duplicate 5.1%",
        found: "n3 restarts while its follower n4 is promoted (r4 -> r7); a late ack from r4 \
                retires r7 at n3, which then ignores n4's acks and says hello every 100 ms \
                for ever (never idle, though every replica has the same state)",
    },
    Regression {
        seed: 269,
        disable: &[],
        settings: "drop 23.0%, duplicate 4.3%",
        found: "n1 loses its disk; r1:202 only at its follower n2",
    },
    Regression {
        seed: 6159,
        disable: &[],
        settings: "drop 2.2%, duplicate 1.5%",
        found: "as 3381: a late message from a promoted follower's old replica id made its \
                peer retire the new one",
    },
    Regression {
        seed: 3419,
        disable: &[],
        settings: "drop 16.3%, duplicate 9.6%",
        found: "a follower logged duplicates from a batch still waiting on other updates; \
                the entries never became shippable, so its back link never went idle",
    },
    Regression {
        seed: 5258,
        disable: &[],
        settings: "drop 24.7%, duplicate 2.6%",
        found: "as 3419: a follower's back link stalled behind duplicates logged from a \
                waiting batch",
    },
    Regression {
        seed: 2500,
        disable: &[],
        settings: "drop 8.0%, duplicate 6.0%",
        found: "a deleted counter held until every node held events that a lost disk's row \
                claimed and that died with it",
    },
    Regression {
        seed: 739,
        disable: &[],
        settings: "drop 27.6%, duplicate 2.9%",
        found: "as 2500, at followers that never link with the new incarnation: rows merged \
                by node kept the lost disk's claims until rows were kept per incarnation",
    },
    Regression {
        seed: 8724,
        disable: &[],
        settings: "drop 22.3%, duplicate 9.4%",
        found: "as 739, with a long outage",
    },
    Regression {
        seed: 6486,
        disable: &[],
        settings: "drop 10.7%, duplicate 4.5%",
        found: "a follower promoted while cut off lost its disk; no peer had seen its new id, \
                so it took that id again and two acknowledged writes carried one dot",
    },
    Regression {
        seed: 5967,
        disable: &[],
        settings: "drop 2.3%, duplicate 7.0%",
        found: "a follower that lost its disk kept its id: only its leader, which had lost its \
                own disk, links with it, and no version vector names a follower; the stale \
                row of its old incarnation then held a deleted counter everywhere",
    },
    Regression {
        seed: 1277,
        disable: &[],
        settings: "drop 1.3%, duplicate 3.7%",
        found: "a follower's clock-floor id was seen by nobody before its disk was lost (its \
                leader was joining, holding its hellos), so it took generation 0 again; the \
                leader then read the held hellos and ignored the live node for good, until \
                a peer that ignores an older id tells the node the newest it has seen",
    },
];

#[test]
fn fixed_regressions_stay_fixed() {
    replay(FIXED);
}

#[test]
fn regressions_found_with_every_fault_stay_fixed() {
    replay(FOUND_WITH_EVERY_FAULT);
}
