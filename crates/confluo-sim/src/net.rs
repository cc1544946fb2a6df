//! The simulated network: per-link latency, loss, duplication, reordering and partitions.

use std::collections::BTreeMap;

use confluo_transport::NodeId;

use crate::faults::FaultSettings;
use crate::queue::Millis;
use crate::rng::SimRng;

/// What the network does with one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    /// Lost at random.
    Dropped,
    /// Lost because the link is cut.
    Cut,
    /// Delivered at each of these times (two for a duplicate).
    Deliver(Vec<Millis>),
}

/// Directed links between nodes, cut by partitions, with the seed's loss and delay rates.
#[derive(Clone, Debug)]
pub struct SimNetwork {
    settings: FaultSettings,
    /// Directed link to the number of active partitions cutting it.
    cuts: BTreeMap<(NodeId, NodeId), u32>,
    /// Whether faults apply (off during the heal phase).
    faulty: bool,
}

impl SimNetwork {
    /// A network with the seed's `settings`.
    pub fn new(settings: FaultSettings) -> Self {
        SimNetwork {
            settings,
            cuts: BTreeMap::new(),
            faulty: true,
        }
    }

    /// Routes a message sent at `now` from `from` to `to`.
    pub fn route(&self, rng: &mut SimRng, now: Millis, from: NodeId, to: NodeId) -> Route {
        if self.is_cut(from, to) {
            return Route::Cut;
        }
        let s = &self.settings;
        // Draw everything even when faults are off, so healing does not depend on how many
        // faults were drawn before; the masking is below.
        let dropped = rng.chance(s.drop_ppm);
        let duplicated = rng.chance(s.duplicate_ppm);
        let reordered = rng.chance(s.reorder_ppm);
        let mut delay = || {
            let mut d = s.latency_ms + rng.range(0, s.jitter_ms);
            if reordered {
                d += rng.range(0, s.reorder_delay_ms);
            }
            d
        };
        let first = now + delay();
        let second = now + delay();
        if !self.faulty {
            return Route::Deliver(vec![now + s.latency_ms]);
        }
        if dropped {
            return Route::Dropped;
        }
        if duplicated {
            Route::Deliver(vec![first, second])
        } else {
            Route::Deliver(vec![first])
        }
    }

    /// Whether the directed link `from -> to` is cut.
    pub fn is_cut(&self, from: NodeId, to: NodeId) -> bool {
        self.cuts.get(&(from, to)).is_some_and(|&n| n > 0)
    }

    /// Cuts every directed link in `links` (one partition; undo with [`SimNetwork::restore`]).
    pub fn cut(&mut self, links: &[(NodeId, NodeId)]) {
        for l in links {
            *self.cuts.entry(*l).or_insert(0) += 1;
        }
    }

    /// Ends one partition made by [`SimNetwork::cut`] with the same links.
    pub fn restore(&mut self, links: &[(NodeId, NodeId)]) {
        for l in links {
            if let Some(n) = self.cuts.get_mut(l) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.cuts.remove(l);
                }
            }
        }
    }

    /// Heals everything: every link up, no more loss, duplication or reordering.
    pub fn heal(&mut self) {
        self.cuts.clear();
        self.faulty = false;
    }

    /// The links cut between `side` and everyone else in `all` (`one_way`: only from `side`
    /// outwards is cut, replies still get through in the other direction).
    pub fn split(all: &[NodeId], side: &[NodeId], one_way: bool) -> Vec<(NodeId, NodeId)> {
        let mut links = Vec::new();
        for &a in side {
            for &b in all.iter().filter(|b| !side.contains(b)) {
                links.push((a, b));
                if !one_way {
                    links.push((b, a));
                }
            }
        }
        links
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_nest_and_heal_clears() {
        let all = [NodeId(1), NodeId(2), NodeId(3)];
        let mut net = SimNetwork::new(FaultSettings::none());
        let p1 = SimNetwork::split(&all, &[NodeId(1)], false);
        let p2 = SimNetwork::split(&all, &[NodeId(1)], true);
        net.cut(&p1);
        net.cut(&p2);
        assert!(net.is_cut(NodeId(1), NodeId(2)) && net.is_cut(NodeId(2), NodeId(1)));
        net.restore(&p1);
        assert!(net.is_cut(NodeId(1), NodeId(2)), "the one-way cut remains");
        assert!(!net.is_cut(NodeId(2), NodeId(1)));
        assert!(!net.is_cut(NodeId(2), NodeId(3)));
        let mut rng = SimRng::new(1);
        assert_eq!(net.route(&mut rng, 0, NodeId(1), NodeId(3)), Route::Cut);
        net.heal();
        assert_eq!(
            net.route(&mut rng, 0, NodeId(1), NodeId(3)),
            Route::Deliver(vec![1])
        );
    }

    #[test]
    fn lossy_network_drops_about_the_configured_share() {
        let mut settings = FaultSettings::none();
        settings.drop_ppm = 200_000;
        let net = SimNetwork::new(settings);
        let mut rng = SimRng::new(3);
        let dropped = (0..10_000)
            .filter(|_| net.route(&mut rng, 0, NodeId(1), NodeId(2)) == Route::Dropped)
            .count();
        assert!((1_700..2_300).contains(&dropped), "{dropped}");
    }
}
