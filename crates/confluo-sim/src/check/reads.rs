//! Causal consistency of reads.

use super::*;

/// Every read saw a causally closed set of writes, and a sample of reads saw exactly the
/// value those writes make.
pub(super) fn check_reads(history: &History, replayed_reads: usize, v: &mut Vec<Violation>) {
    for (i, read) in history.reads.iter().enumerate() {
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
        .filter(|(_, r)| r.value.is_some())
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
