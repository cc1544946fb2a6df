//! `/healthz` and `/readyz`.
//!
//! Alive is "the process answers". Ready is what a load balancer or an orchestrator needs
//! before it sends clients: the store is recovered, the node knows its replica id (it is
//! not joining, so writes are not answered LOADING), every peer is connected or the
//! configured grace period (`[health] peer_grace_ms`) has passed since serving began, and
//! the server is not draining. After the grace period, a node cut off from its peers is
//! ready: a multi-leader site serves its clients through a partition, and `/metrics` is
//! where the partition shows.

use std::time::Instant;

use serde_json::{Value, json};

use crate::db::DbHandle;
use crate::observe::observe;
use crate::shutdown::Phase;

fn phase_name(phase: Phase) -> &'static str {
    match phase {
        Phase::Running => "running",
        Phase::Draining => "draining",
        Phase::Stopped => "stopped",
    }
}

/// `/healthz`'s body (always 200 while the process answers).
pub(super) fn alive(bound: Instant, db: Option<&DbHandle>) -> Value {
    let phase = db.map_or("recovering", |db| phase_name(db.shared().phase.now()));
    json!({
        "status": "alive",
        "phase": phase,
        "uptime_seconds": bound.elapsed().as_secs(),
    })
}

/// Whether the server is ready, and `/readyz`'s body saying why (or why not).
pub(super) async fn readiness(bound: Instant, db: Option<&DbHandle>) -> (bool, Value) {
    let Some(db) = db else {
        return (
            false,
            json!({
                "ready": false,
                "recovered": false,
                "recovering_seconds": bound.elapsed().as_secs_f64(),
            }),
        );
    };
    let shared = db.shared();
    let obs = match observe(db, false).await {
        Ok(obs) => obs,
        Err(e) => {
            return (
                false,
                json!({ "ready": false, "recovered": true, "error": e.to_string() }),
            );
        }
    };
    let waiting: Vec<&str> = obs
        .peers
        .iter()
        .filter(|p| !p.connected())
        .map(|p| p.member.name.as_str())
        .collect();
    let grace = shared.config.peer_grace;
    let grace_passed = shared.started.elapsed() >= grace;
    let peers_ok = waiting.is_empty() || grace_passed;
    let draining = obs.phase != Phase::Running;
    let ready = !obs.node.joining && peers_ok && !draining;
    (
        ready,
        json!({
            "ready": ready,
            "recovered": true,
            "recovery_seconds": shared.recovery.took.as_secs_f64(),
            "joining": obs.node.joining,
            "phase": phase_name(obs.phase),
            "draining": draining,
            "peers": obs.peers.len(),
            "peers_connected": obs.peers.len() - waiting.len(),
            "peers_not_connected": waiting,
            "peer_grace_ms": u64::try_from(grace.as_millis()).unwrap_or(u64::MAX),
            "peer_grace_passed": grace_passed,
        }),
    )
}
