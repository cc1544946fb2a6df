//! Causal consistency of reads.

use super::*;
use crate::history::ReadRecord;

/// Every read saw a causally closed set of writes, and a sample of reads saw exactly the
/// value those writes make.
pub(super) fn check_reads(history: &History, replayed_reads: usize, v: &mut Vec<Violation>) {
    for (i, read) in history.reads.iter().enumerate() {
        if saw_superseded(history, read) {
            continue; // it saw updates lost with a disk, whose dots were used again
        }
        for (r, n) in read.vv.iter() {
            let Some(rec) = history.latest_upto(r, n) else {
                continue;
            };
            if !rec.update.deps.is_covered_by(&read.vv) {
                v.push(Violation {
                    checker: Checker::Causal,
                    detail: format!(
                        "read #{i} of k{} at node {} saw r{}:{} but not all of its causal past {:?} (it had {:?})",
                        read.key, read.node, r.0, rec.update.counter, rec.update.deps, read.vv
                    ),
                    nodes: vec![read.node],
                    key: Some(read.key),
                });
                return;
            }
        }
    }
    let sampled: Vec<_> = history
        .reads
        .iter()
        .enumerate()
        .filter(|(_, r)| r.value.is_some() && !saw_superseded(history, r))
        .collect();
    let step = (sampled.len() / replayed_reads.max(1)).max(1);
    for (i, read) in sampled.into_iter().step_by(step).take(replayed_reads) {
        let Some(seen) = &read.value else { continue };
        let replayed = replay(history, &read.vv);
        let expect = replayed.get(&workload::key(read.key));
        if expect != seen.as_ref() {
            v.push(Violation {
                checker: Checker::Causal,
                detail: format!(
                    "read #{i} of k{} at node {} returned {:?}, but the writes it had seen make {:?}",
                    read.key,
                    read.node,
                    seen.as_ref().map(describe),
                    expect.map(describe)
                ),
                nodes: vec![read.node],
                key: Some(read.key),
            });
        }
    }
}

/// Whether `read` saw an update that was later replaced under its dot (see
/// `UpdateRecord::superseded_at`): the history no longer holds what it saw.
fn saw_superseded(history: &History, read: &ReadRecord) -> bool {
    read.vv.iter().any(|(r, n)| {
        history
            .updates
            .range((r, 0)..=(r, n))
            .any(|(_, rec)| rec.superseded_at.is_some_and(|t| read.at < t))
    })
}
