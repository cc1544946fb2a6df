//! The config file of each node. Generated in one function, so that TLS (certificates per
//! node, a CA) is added in one place.

use std::net::SocketAddr;
use std::path::Path;

use crate::shape::{Member, Shape, Topology};

/// The cluster id every generated config carries.
pub const CLUSTER_ID: u64 = 0xC4A05;

/// The TOML config of node `me`: it listens on free ports (port 0; the harness reads the
/// ports it took from its log), and reaches every other node at `via(me, other)`, the
/// address of the proxy the harness owns for that link.
pub fn node_config(
    shape: &Shape,
    members: &[Member],
    me: usize,
    data_dir: &Path,
    via: impl Fn(usize, usize) -> SocketAddr,
) -> String {
    let entry = |m: &Member, peer: &str| {
        let role = match m.leader {
            None => "role = \"leader\"".to_string(),
            Some(l) => format!("role = \"follower\"\nleader = \"{}\"", members[l].name),
        };
        // A peer's client address is only named in a follower's READONLY error; port 0
        // says "unknown" without clashing with anything.
        format!(
            "name = \"{}\"\nid = {}\ndatacenter = \"dc{}\"\n{role}\nclient_addr = \"127.0.0.1:0\"\npeer_addr = \"{peer}\"\n",
            m.name,
            m.id,
            m.dc + 1
        )
    };
    let topology = match shape.topology {
        Topology::AllToAll => "topology = \"all-to-all\"\n".to_string(),
        Topology::Ring => "topology = \"ring\"\n".to_string(),
        Topology::Star => format!("topology = \"star\"\nhub = \"{}\"\n", members[0].name),
    };
    let mut text = format!(
        "cluster_id = {CLUSTER_ID}\n{topology}[shutdown]\ndrain_timeout_ms = 2000\n\n[node]\n{}data_dir = {:?}\n",
        entry(&members[me], "127.0.0.1:0"),
        data_dir.display().to_string()
    );
    for other in members.iter().filter(|m| m.index != me) {
        text.push_str(&format!(
            "\n[[peers]]\n{}",
            entry(other, &via(me, other.index).to_string())
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use confluo_server::ServerConfig;

    #[test]
    fn every_generated_config_is_valid_and_lists_peers_at_their_proxies() {
        for topology in [Topology::AllToAll, Topology::Ring, Topology::Star] {
            let shape = Shape {
                topology,
                ..Shape::default()
            };
            let members = shape.members();
            for me in 0..members.len() {
                let via = |a: usize, b: usize| -> SocketAddr {
                    format!("127.0.0.1:{}", 40_000 + a * 100 + b)
                        .parse()
                        .unwrap()
                };
                let text = node_config(&shape, &members, me, Path::new("/tmp/x"), via);
                let config =
                    ServerConfig::parse(&text, None).unwrap_or_else(|e| panic!("{e}\n{text}"));
                assert_eq!(config.peers.len(), members.len() - 1);
                for p in &config.peers {
                    assert_eq!(p.peer_addr, via(me, p.id as usize - 1));
                }
            }
        }
    }
}
