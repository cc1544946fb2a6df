//! Faults: crashes and restarts, partitions, outages, topology changes, promotion; heal.

use super::*;

impl Simulation {
    // ----- faults -------------------------------------------------------------------------

    pub(super) fn crash(&mut self, i: usize) {
        if self.nodes[i].node.is_none() {
            return;
        }
        let keep = self.rng.chance(self.settings.crash_keeps_unsynced_ppm);
        let disk = self.rng.chance(self.settings.disk_loss_ppm);
        let mode = if disk {
            CrashMode::LoseDisk
        } else if keep {
            CrashMode::KeepUnsynced
        } else {
            CrashMode::LoseUnsynced
        };
        let down = self.rng.range(1, self.settings.downtime_max_ms);
        self.crash_with(i, mode);
        let at = self.now() + down;
        self.queue.push(at, Event::Restart(i));
    }

    pub(super) fn crash_with(&mut self, i: usize, mode: CrashMode) {
        let id = self.nodes[i].id;
        self.faults.crashes += 1;
        let code = match mode {
            CrashMode::LoseUnsynced => 0,
            CrashMode::KeepUnsynced => 1,
            CrashMode::LoseDisk => 2,
        };
        self.record(Kind::Crash, id.0, 0, code);
        let sn = &mut self.nodes[i];
        sn.node = None;
        sn.incarnation += 1;
        sn.sync_scheduled = false;
        sn.pending.clear();
        match mode {
            CrashMode::LoseUnsynced => {
                sn.storage.lose_unsynced();
                sn.unsynced.clear();
                sn.unsynced_covers.clear();
                self.history.lost_unsynced(id);
            }
            CrashMode::KeepUnsynced => {
                let _ = sn.storage.sync();
                let keys = std::mem::take(&mut sn.unsynced);
                let covers = std::mem::take(&mut sn.unsynced_covers);
                self.history.synced(id, &keys);
                for vv in &covers {
                    self.history.synced_upto(id, vv);
                }
            }
            CrashMode::LoseDisk => {
                sn.storage.lose_everything();
                sn.unsynced.clear();
                sn.unsynced_covers.clear();
                self.faults.disks_lost += 1;
                self.history.disk_lost(id);
            }
        }
    }

    pub(super) fn restart(&mut self, i: usize) {
        if self.nodes[i].node.is_some() {
            return;
        }
        // A node whose disk is empty takes a new replica id by itself (DESIGN pitfalls 4 and
        // 10); otherwise it keeps the one its storage names, unless its peers hold more of
        // it than its storage does.
        let durable = self.nodes[i].storage.load().unwrap_or_default();
        let config = self.config_for(i);
        let id = self.nodes[i].id;
        let max = self.settings.max_skew_ms;
        if max > 0 {
            // A machine that reboots may come back with its clock stepped either way (behind
            // what its own last timestamps said, too): the hybrid logical clock must cope.
            self.nodes[i].skew = self.clock_rng.range(0, 2 * max) as i64 - max as i64;
            self.faults.clock_steps += 1;
        }
        match Node::restore(config, durable) {
            Ok(node) => {
                self.record(Kind::Restart, id.0, 0, node.replica().0);
                let role = node.role();
                self.nodes[i].node = Some(node);
                let inc = self.nodes[i].incarnation;
                self.queue.push(self.now(), Event::Tick(i, inc));
                self.drain(i, None);
                if let Role::Follower { leader } = role {
                    if self.nodes[i].leader.is_none() {
                        self.promotion_lost(i, leader);
                    }
                }
            }
            Err(e) => {
                self.violation(
                    Checker::Protocol,
                    format!("node {id} could not restore from its own storage: {e}"),
                    vec![id],
                );
            }
        }
    }

    /// A promoted follower crashed before its new identity was durable and came back as
    /// the follower it was: like an unacknowledged write, the promotion did not happen.
    pub(super) fn promotion_lost(&mut self, i: usize, leader: NodeId) {
        let Some(l) = self.nodes.iter().position(|n| n.id == leader) else {
            return;
        };
        let id = self.nodes[i].id;
        self.record(Kind::Demoted, id.0, leader.0, 0);
        self.nodes[i].leader = Some(l);
        self.leaders.retain(|&x| x != i);
        if let Graph::Ring(order) = &mut self.graph {
            order.retain(|&x| x != id);
        }
        if let Graph::Star(hub) = self.graph {
            if hub == id {
                self.graph = Graph::AllToAll;
            }
        }
        self.relink();
    }

    pub(super) fn all_ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    pub(super) fn partition(&mut self) {
        let n = self.nodes.len();
        let mask = self.rng.range(1, (1u64 << n) - 2);
        let side: Vec<NodeId> = (0..n)
            .filter(|i| mask & (1 << i) != 0)
            .map(|i| self.nodes[i].id)
            .collect();
        let one_way = self.rng.chance(self.settings.one_way_ppm);
        let links = SimNetwork::split(&self.all_ids(), &side, one_way);
        self.net.cut(&links);
        self.faults.partitions += 1;
        self.record(Kind::Partition, mask, 0, u64::from(one_way));
        let at = self.now() + self.rng.range(1, self.settings.partition_max_ms);
        self.queue.push(at, Event::PartitionEnd(links, mask));
    }

    pub(super) fn long_outage(&mut self) {
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        let side = [self.nodes[i].id];
        let links = SimNetwork::split(&self.all_ids(), &side, false);
        self.net.cut(&links);
        self.faults.long_outages += 1;
        let mask = 1u64 << i;
        self.record(Kind::Partition, mask, 0, 0);
        let at = self.now() + self.settings.long_outage_ms;
        self.queue.push(at, Event::PartitionEnd(links, mask));
    }

    pub(super) fn change_topology(&mut self) {
        let ids = self.leader_ids();
        let (graph, code, hub) = match self.rng.below(3) {
            0 => (Graph::AllToAll, 0, 0),
            1 => {
                let hub = *self.rng.pick(&ids).unwrap_or(&NodeId(1));
                (Graph::Star(hub), 1, hub.0)
            }
            _ => {
                let mut order = ids;
                for k in (1..order.len()).rev() {
                    let j = self.rng.below(k as u64 + 1) as usize;
                    order.swap(k, j);
                }
                (Graph::Ring(order), 2, 0)
            }
        };
        self.graph = graph;
        self.faults.topology_changes += 1;
        self.record(Kind::Topology, hub, 0, code);
        self.relink();
    }

    pub(super) fn relink(&mut self) {
        for i in 0..self.nodes.len() {
            let links = self.links_for(i);
            if let Some(node) = self.nodes[i].node.as_mut() {
                node.set_links(&links);
            }
            self.drain(i, None);
        }
    }

    /// A leader fails; one of its followers becomes a leader with a fresh replica id. The
    /// old leader comes back later as one more leader (its storage says it leads), so what
    /// it acknowledged is not lost either.
    pub(super) fn promote(&mut self) {
        let candidates: Vec<usize> = (0..self.nodes.len())
            .filter(|&f| {
                self.nodes[f].node.is_some()
                    && self.nodes[f]
                        .leader
                        .is_some_and(|l| self.leaders.contains(&l))
            })
            .collect();
        let Some(&f) = self.rng.pick(&candidates) else {
            return;
        };
        let Some(l) = self.nodes[f].leader else {
            return;
        };
        if self.nodes[l].node.is_some() {
            self.crash_with(l, CrashMode::LoseUnsynced);
            let at = self.now() + self.rng.range(1, 3 * self.settings.downtime_max_ms.max(1));
            self.queue.push(at, Event::Restart(l));
        }
        let id = self.nodes[f].id;
        let result = match self.nodes[f].node.as_mut() {
            Some(node) => node.promote_automatic(),
            None => return,
        };
        let replica = match result {
            Ok(replica) => replica,
            Err(e) => {
                self.violation(
                    Checker::Protocol,
                    format!("follower {id} could not be promoted: {e}"),
                    vec![id],
                );
                return;
            }
        };
        self.faults.promotions += 1;
        self.record(Kind::Promote, id.0, 0, replica.0);
        self.nodes[f].leader = None;
        self.leaders.push(f);
        if let Graph::Ring(order) = &mut self.graph {
            order.push(id);
        }
        self.relink();
    }

    pub(super) fn heal(&mut self) {
        self.healed_at = Some(self.now());
        self.record(Kind::Heal, 0, 0, 0);
        self.net.heal();
        for i in 0..self.nodes.len() {
            self.restart(i);
        }
        self.queue
            .push(self.now() + CONVERGENCE_POLL_MS, Event::Poll);
    }

    pub(super) fn poll_convergence(&mut self) {
        let mut digest = None;
        let mut done = true;
        for sn in &self.nodes {
            let Some(node) = sn.node.as_ref() else {
                done = false;
                break;
            };
            let d = node.digest();
            if digest.is_some_and(|x| x != d) || !node.is_idle() {
                done = false;
                break;
            }
            digest = Some(d);
        }
        if done {
            self.converged_at = Some(self.now());
        } else {
            self.queue
                .push(self.now() + CONVERGENCE_POLL_MS, Event::Poll);
        }
    }
}
