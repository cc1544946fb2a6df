//! The clients: writes at leaders, reads anywhere, the odd write to a follower.

use super::*;

impl Simulation {
    pub(super) fn client(&mut self) {
        if self.writes_left == 0 || self.healed_at.is_some() {
            return;
        }
        self.writes_left -= 1;
        let interval = (self.cfg.chaos_ms / self.cfg.writes.max(1) as u64).max(1);
        let at = self.now() + interval;
        self.queue.push(at, Event::Client);
        self.unique += 1;
        let (key, op) = workload::draw_write(&mut self.rng, self.unique);
        let up_leaders: Vec<usize> = self
            .leaders
            .iter()
            .copied()
            .filter(|&l| self.nodes[l].node.is_some())
            .collect();
        if let Some(&l) = self.rng.pick(&up_leaders) {
            self.write(l, key, op);
        }
        if self.settings.churn {
            self.churn(&up_leaders);
        }
        if self.rng.chance(self.cfg.read_ppm) {
            let up: Vec<usize> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].node.is_some())
                .collect();
            if let Some(&r) = self.rng.pick(&up) {
                let key = self.rng.below(workload::KEYS as u64) as usize;
                self.read(r, key);
            }
        }
        // Now and then a client writes to a follower by mistake: it must be told who leads.
        if self.rng.chance(20_000) {
            self.write_to_follower();
        }
    }

    pub(super) fn write(&mut self, i: usize, key: usize, op: confluo_node::Op) {
        let id = self.nodes[i].id;
        let code = workload::op_code(&op);
        self.record(Kind::Write, id.0, key as u64, code);
        let w = self.history.writes.len();
        self.history.writes.push(WriteRecord {
            node: id,
            key,
            op: op.clone(),
            at: self.now() - START,
            dot: None,
            acked: false,
            lost_with_disk: false,
        });
        let Some(node) = self.nodes[i].node.as_mut() else {
            return;
        };
        match node.write(&workload::key(key), op) {
            Ok(wid) => {
                self.nodes[i].pending.insert(wid, w);
            }
            // Starting: it settles its replica id first; the client tries elsewhere later.
            Err(WriteError::Joining) => return,
            Err(e) => {
                self.violation(
                    Checker::Protocol,
                    format!("leader {id} refused a write: {e}"),
                    vec![id],
                );
                return;
            }
        }
        self.drain(i, Some(w));
    }

    /// A key of its own created, and the one before deleted (at a leader drawn each time):
    /// a stream of keys that live briefly, like sessions or queue entries.
    fn churn(&mut self, up_leaders: &[usize]) {
        let created = workload::KEYS + self.unique as usize;
        if let Some(&l) = self.rng.pick(up_leaders) {
            self.write(l, created, confluo_node::Op::set_insert(b"live".to_vec()));
        }
        if let Some(previous) = self.churned.replace(created) {
            if let Some(&l) = self.rng.pick(up_leaders) {
                self.write(l, previous, confluo_node::Op::Delete);
            }
        }
    }

    pub(super) fn write_to_follower(&mut self) {
        let followers: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].leader.is_some() && self.nodes[i].node.is_some())
            .collect();
        let Some(&f) = self.rng.pick(&followers) else {
            return;
        };
        let expected = self.nodes[f].leader.map(|l| self.nodes[l].id);
        let id = self.nodes[f].id;
        let Some(node) = self.nodes[f].node.as_mut() else {
            return;
        };
        match node.write(b"k0", confluo_node::Op::counter_add(1)) {
            Err(WriteError::NotLeader { leader }) if Some(leader) == expected => {}
            Err(WriteError::Joining) => {}
            other => {
                let detail = format!(
                    "follower {id} answered a write with {other:?}, expected NotLeader naming {expected:?}"
                );
                self.violation(Checker::Protocol, detail, vec![id]);
            }
        }
    }

    pub(super) fn read(&mut self, i: usize, key: usize) {
        let id = self.nodes[i].id;
        self.record(Kind::Read, id.0, key as u64, 0);
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        let keep = self.history.reads.len() % READ_VALUE_EVERY == 0;
        let value = keep.then(|| node.get(&workload::key(key)).cloned());
        self.history.reads.push(ReadRecord {
            node: id,
            key,
            at: self.queue.now() - START,
            vv: node.version_vector().clone(),
            value,
        });
    }
}
