//! The cluster under test: how many datacenters, how many followers each, which topology
//! between the leaders, and the members that makes.

use std::fmt;
use std::str::FromStr;

use crate::error::ChaosError;

/// The topology between the leaders, as the server's config names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Every leader sends to every other.
    AllToAll,
    /// Each leader sends to the next.
    Ring,
    /// Every leader sends to the first datacenter's leader, which forwards.
    Star,
}

impl FromStr for Topology {
    type Err = ChaosError;
    fn from_str(s: &str) -> Result<Self, ChaosError> {
        match s {
            "all-to-all" => Ok(Topology::AllToAll),
            "ring" => Ok(Topology::Ring),
            "star" => Ok(Topology::Star),
            other => Err(ChaosError::Usage(format!(
                "unknown topology {other:?} (all-to-all, ring or star)"
            ))),
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Topology::AllToAll => "all-to-all",
            Topology::Ring => "ring",
            Topology::Star => "star",
        })
    }
}

/// Datacenters of one leader and some followers each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// How many datacenters (each has one leader).
    pub datacenters: usize,
    /// How many followers each datacenter has.
    pub followers: usize,
    /// The topology between leaders.
    pub topology: Topology,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            datacenters: 3,
            followers: 1,
            topology: Topology::AllToAll,
        }
    }
}

impl Shape {
    /// Parses `DxN`: D datacenters of N nodes (a leader and N-1 followers).
    pub fn parse(text: &str, topology: Topology) -> Result<Shape, ChaosError> {
        let bad =
            || ChaosError::Usage(format!("shape {text:?} is not DATACENTERSxNODES, e.g. 3x2"));
        let (d, n) = text.split_once('x').ok_or_else(bad)?;
        let datacenters: usize = d.parse().map_err(|_| bad())?;
        let nodes: usize = n.parse().map_err(|_| bad())?;
        if datacenters == 0 || nodes == 0 || datacenters * nodes > 32 {
            return Err(ChaosError::Usage(format!(
                "shape {text:?}: between 1 and 32 nodes, at least one per datacenter"
            )));
        }
        Ok(Shape {
            datacenters,
            followers: nodes - 1,
            topology,
        })
    }

    /// Every node, leaders first in each datacenter: index, name, id, datacenter, role.
    pub fn members(&self) -> Vec<Member> {
        let per_dc = self.followers + 1;
        (0..self.datacenters * per_dc)
            .map(|index| {
                let dc = index / per_dc;
                let leader_index = dc * per_dc;
                let leader = (index != leader_index).then_some(leader_index);
                let name = match leader {
                    None => format!("dc{}-leader", dc + 1),
                    Some(_) => format!("dc{}-follower{}", dc + 1, index - leader_index),
                };
                Member {
                    index,
                    name,
                    id: index as u64 + 1,
                    dc,
                    leader,
                }
            })
            .collect()
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} datacenters x {} nodes, {}",
            self.datacenters,
            self.followers + 1,
            self.topology
        )
    }
}

/// A node of the cluster under test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// Its position in [`Shape::members`].
    pub index: usize,
    /// Its name in the configs.
    pub name: String,
    /// Its node id.
    pub id: u64,
    /// Its datacenter (0-based).
    pub dc: usize,
    /// Its leader's index, for a follower.
    pub leader: Option<usize>,
}

impl Member {
    /// Whether it takes writes.
    pub fn is_leader(&self) -> bool {
        self.leader.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_shape_is_three_datacenters_of_a_leader_and_a_follower() {
        let m = Shape::default().members();
        assert_eq!(m.len(), 6);
        assert_eq!(m[0].name, "dc1-leader");
        assert_eq!(m[1].leader, Some(0));
        assert_eq!(m[5].dc, 2);
        assert_eq!(m.iter().filter(|m| m.is_leader()).count(), 3);
    }

    #[test]
    fn a_shape_is_datacenters_by_nodes() {
        let s = Shape::parse("2x3", Topology::Ring).unwrap();
        assert_eq!((s.datacenters, s.followers), (2, 2));
        assert!(Shape::parse("0x1", Topology::Ring).is_err());
        assert!(Shape::parse("three", Topology::Ring).is_err());
    }
}
