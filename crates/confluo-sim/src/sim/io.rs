//! Carrying out a node's outputs and feeding it its inputs: storage, network, ticks.

use super::*;

impl Simulation {
    // ----- outputs ------------------------------------------------------------------------

    /// Handles everything node `i` asks for. `just_wrote`: the client write submitted right
    /// before, which a local update in these outputs belongs to.
    pub(super) fn drain(&mut self, i: usize, mut just_wrote: Option<usize>) -> Option<usize> {
        let mut outputs = Vec::new();
        let mut alerts = Vec::new();
        let replica = {
            let Some(node) = self.nodes[i].node.as_mut() else {
                return just_wrote;
            };
            while let Some(o) = node.poll_output() {
                outputs.push(o);
            }
            while let Some(a) = node.poll_alert() {
                alerts.push(a);
            }
            node.replica()
        };
        for a in alerts {
            self.alert(i, a);
        }
        for o in outputs {
            match o {
                Output::Send { to, message } => self.send(i, to, message),
                Output::Persist { token, write } => {
                    self.persist(i, replica, token, write, &mut just_wrote);
                }
                Output::WriteDone { write, result } => self.write_done(i, write, result),
            }
        }
        just_wrote
    }

    /// An alert from node `i`. No fault here reuses a replica id or rolls a disk back, so
    /// one of those is the node's mistake; a join that timed out is a partition's doing.
    fn alert(&mut self, i: usize, alert: confluo_node::Alert) {
        let id = self.nodes[i].id;
        match alert {
            confluo_node::Alert::JoinedWithout { .. } => self.faults.joins_timed_out += 1,
            confluo_node::Alert::Overtaken { .. } => self.faults.overtaken += 1,
            other => self.violation(
                Checker::Protocol,
                format!("node {id} reported {other:?}, yet no fault reuses a replica id"),
                vec![id],
            ),
        }
    }

    pub(super) fn persist(
        &mut self,
        i: usize,
        replica: ReplicaId,
        token: PersistToken,
        write: StorageWrite,
        just_wrote: &mut Option<usize>,
    ) {
        // A state transfer stands for every event of its context: once synced, this node
        // holds all of them.
        if let StorageWrite::State { chunk, .. } = &write {
            let vv = chunk.ctx.version_vector().clone();
            self.nodes[i].unsynced_covers.push(vv);
        }
        if let StorageWrite::Updates { updates, links } = &write {
            for u in updates {
                self.history.seen(u, self.queue.now() - START);
                self.nodes[i].unsynced.push((u.origin, u.counter));
            }
            let local = match updates.as_slice() {
                [u] if links.is_empty()
                    && u.origin == replica
                    && matches!(*u.change, Change::Write { .. }) =>
                {
                    Some(confluo_crdt::Dot::new(u.origin, u.counter))
                }
                _ => None,
            };
            if let Some(dot) = local {
                let target = just_wrote.take();
                match target {
                    Some(w) => self.history.writes[w].dot = Some(dot),
                    None => {
                        let id = self.nodes[i].id;
                        self.violation(
                            Checker::Protocol,
                            format!(
                                "node {id} made a local write no client asked for: dot {dot:?}"
                            ),
                            vec![id],
                        );
                    }
                }
            }
        }
        let sn = &mut self.nodes[i];
        // MemoryStorage cannot fail.
        let _ = sn.storage.append(write);
        sn.appended = token.0;
        if !sn.sync_scheduled {
            sn.sync_scheduled = true;
            let inc = sn.incarnation;
            let at = self.now() + self.rng.range(0, self.settings.sync_max_ms);
            self.queue.push(at, Event::Sync(i, inc));
        }
    }

    pub(super) fn write_done(
        &mut self,
        i: usize,
        write: WriteId,
        result: Result<Option<confluo_crdt::Dot>, WriteError>,
    ) {
        let id = self.nodes[i].id;
        let Some(w) = self.nodes[i].pending.remove(&write) else {
            self.violation(
                Checker::Protocol,
                format!("node {id} finished write {write:?} that no client is waiting for"),
                vec![id],
            );
            return;
        };
        match result {
            Ok(dot) => {
                if dot != self.history.writes[w].dot {
                    let bound = self.history.writes[w].dot;
                    self.violation(
                        Checker::Protocol,
                        format!(
                            "node {id} acknowledged write #{w} with dot {dot:?}, but its update used {bound:?}"
                        ),
                        vec![id],
                    );
                }
                self.history.writes[w].acked = true;
                if let Some(d) = dot {
                    self.record(Kind::Ack, id.0, d.replica.0, d.counter);
                }
            }
            Err(WriteError::CounterOverflow) => {}
            Err(e) => {
                self.violation(
                    Checker::Protocol,
                    format!("node {id} refused write #{w} after accepting it: {e}"),
                    vec![id],
                );
            }
        }
    }

    pub(super) fn send(&mut self, i: usize, to: NodeId, message: Message) {
        self.messages += 1;
        let from = self.nodes[i].id;
        let kind = message_kind(&message);
        let Some(j) = self.nodes.iter().position(|n| n.id == to) else {
            self.violation(
                Checker::Protocol,
                format!("node {from} sent to unknown node {to}"),
                vec![from],
            );
            return;
        };
        self.record(Kind::Send, from.0, to.0, kind);
        let now = self.now();
        let route = self.net.route(&mut self.rng, now, from, to);
        match route {
            Route::Dropped => {
                self.faults.dropped += 1;
                self.record(Kind::Drop, from.0, to.0, kind);
            }
            Route::Cut => {
                self.faults.cut += 1;
                self.record(Kind::Cut, from.0, to.0, kind);
            }
            Route::Deliver(times) => {
                if times.len() > 1 {
                    self.faults.duplicated += 1;
                    self.record(Kind::Duplicate, from.0, to.0, kind);
                }
                let last = times.len() - 1;
                let mut message = Some(message);
                for (k, at) in times.into_iter().enumerate() {
                    let m = if k == last {
                        message.take()
                    } else {
                        message.clone()
                    };
                    if let Some(message) = m {
                        self.queue.push(
                            at,
                            Event::Deliver {
                                from,
                                to: j,
                                message,
                            },
                        );
                    }
                }
            }
        }
    }

    pub(super) fn deliver(&mut self, from: NodeId, to: usize, message: Message) {
        let kind = message_kind(&message);
        let to_id = self.nodes[to].id;
        let Some(node) = self.nodes[to].node.as_mut() else {
            return;
        };
        self.trace.push(Record {
            at: self.queue.now() - START,
            kind: Kind::Deliver,
            a: from.0,
            b: to_id.0,
            c: kind,
        });
        self.delivered += 1;
        // One message in ROUND_TRIP_EVERY goes through the wire encoding, so the simulation
        // also covers what only bytes can get wrong; the rest skip it for speed.
        let result = if self.delivered % ROUND_TRIP_EVERY == 0 {
            node.handle_bytes(from, &message.encode())
        } else {
            node.handle(from, message)
        };
        if let Err(e) = result {
            self.record(Kind::Refused, to_id.0, from.0, 0);
            self.violation(
                Checker::Protocol,
                format!("node {to_id} refused a message from honest node {from}: {e}"),
                vec![to_id, from],
            );
        }
        self.drain(to, None);
    }

    pub(super) fn tick(&mut self, i: usize, inc: u64) {
        if self.nodes[i].incarnation != inc || self.nodes[i].node.is_none() {
            return;
        }
        let now = self.local_time(i);
        if let Some(node) = self.nodes[i].node.as_mut() {
            node.tick(now);
        }
        self.drain(i, None);
        self.check_bounds(i);
        let at = self.now() + self.cfg.tick_ms;
        self.queue.push(at, Event::Tick(i, inc));
    }

    pub(super) fn check_bounds(&mut self, i: usize) {
        let Some(node) = self.nodes[i].node.as_ref() else {
            return;
        };
        let m = node.metrics();
        let l = &self.cfg.limits;
        let id = self.nodes[i].id;
        let mut over = Vec::new();
        if m.log_entries > l.max_log_entries {
            over.push(format!(
                "delta buffer {} entries > {}",
                m.log_entries, l.max_log_entries
            ));
        }
        if m.log_bytes > l.max_log_bytes {
            over.push(format!(
                "delta buffer {} bytes > {}",
                m.log_bytes, l.max_log_bytes
            ));
        }
        if m.held_updates > l.max_held_updates {
            over.push(format!(
                "causal buffer {} updates > {}",
                m.held_updates, l.max_held_updates
            ));
        }
        for o in over {
            self.violation(Checker::Resources, format!("node {id}: {o}"), vec![id]);
        }
    }

    pub(super) fn sync(&mut self, i: usize, inc: u64) {
        if self.nodes[i].incarnation != inc {
            return;
        }
        let sn = &mut self.nodes[i];
        sn.sync_scheduled = false;
        let _ = sn.storage.sync();
        let keys = std::mem::take(&mut sn.unsynced);
        let covers = std::mem::take(&mut sn.unsynced_covers);
        let token = sn.appended;
        let id = sn.id;
        self.history.synced(id, &keys);
        for vv in &covers {
            self.history.synced_upto(id, vv);
        }
        self.record(Kind::Sync, id.0, 0, token);
        if let Some(node) = self.nodes[i].node.as_mut() {
            node.persisted(PersistToken(token));
        }
        self.drain(i, None);
    }
}

/// A message's kind, for the trace.
fn message_kind(message: &Message) -> u64 {
    match message {
        Message::Hello(_) => 0,
        Message::Batch(_) => 1,
        Message::State(_) => 2,
        Message::Ack(_) => 3,
        Message::WhoAmI(_) => 4,
        Message::YouAre(_) => 5,
    }
}
