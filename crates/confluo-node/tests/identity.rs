//! Replica ids a node takes by itself, and what happens when one is reused anyway: an empty
//! restart, a restored backup, a data directory copied to a second node.

mod common;

use common::Net;
use confluo_node::identity::{generation_of, incarnation_replica};
use confluo_node::{
    Alert, Config, DurableState, Identity, Link, NodeId, Op, ReplicaId, Role, Storage, Topology,
    WriteError,
};

const IDS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

fn automatic(id: NodeId) -> Config {
    Config::automatic_leader(id).with_links(Topology::AllToAll.links(&IDS, id))
}

/// Three leaders with automatic identity, joined and idle.
fn cluster() -> Net {
    let mut net = Net::new();
    for id in IDS {
        net.add(automatic(id));
    }
    assert!(net.settle(50), "a new cluster settles");
    net
}

fn alerts(net: &mut Net, id: u64) -> Vec<Alert> {
    let mut out = Vec::new();
    while let Some(a) = net.node(id).poll_alert() {
        out.push(a);
    }
    out
}

fn write_counter(net: &mut Net, id: u64, times: usize) {
    for _ in 0..times {
        net.write(id, b"visits", Op::counter_add(1));
    }
}

fn visits(net: &mut Net, id: u64) -> i64 {
    net.node(id).get(b"visits").map_or(0, |v| v.counter())
}

#[test]
fn a_new_cluster_takes_the_node_ids_as_replica_ids() {
    let mut net = cluster();
    for id in IDS {
        let node = net.node(id.0);
        assert!(!node.is_joining());
        assert_eq!(node.replica(), incarnation_replica(id, 0));
        assert_eq!(node.replica(), ReplicaId(id.0));
    }
    write_counter(&mut net, 1, 3);
    assert!(net.settle(50));
    assert!(net.converged());
    assert!(alerts(&mut net, 1).is_empty());
}

#[test]
fn a_starting_node_takes_no_writes_until_its_id_is_settled() {
    let mut net = Net::new();
    net.add(automatic(NodeId(1)));
    assert!(net.node(1).is_joining());
    assert_eq!(
        net.node(1).write(b"k", Op::counter_add(1)),
        Err(WriteError::Joining)
    );
}

/// The finding: an empty restart that kept its replica id diverged forever. With
/// automatic identity the restarted node takes the next generation, and nothing is lost.
#[test]
fn an_empty_restart_takes_a_new_generation_and_nothing_diverges() {
    let mut net = cluster();
    write_counter(&mut net, 2, 100);
    assert!(net.settle(50));
    net.crash(2, true);
    net.storage[&NodeId(2)].lose_everything();
    net.restart(2, automatic(NodeId(2)));
    assert!(net.settle(100));
    let replica = net.node(2).replica();
    assert_eq!(generation_of(replica), 1, "{replica:?}");
    write_counter(&mut net, 2, 50);
    assert!(net.settle(100));
    assert!(net.converged());
    for id in 1..=3 {
        assert_eq!(visits(&mut net, id), 150, "node {id}");
    }
    assert!(
        alerts(&mut net, 1).is_empty(),
        "a new generation is no reuse"
    );
}

/// A backup restored under a running cluster: the peers hold writes the backup lacks,
/// under dots the node would use again. It takes a new generation instead.
#[test]
fn a_restored_backup_moves_to_a_new_generation_and_keeps_the_later_writes() {
    let mut net = cluster();
    write_counter(&mut net, 2, 10);
    assert!(net.settle(50));
    let backup = net.storage[&NodeId(2)].fork();
    write_counter(&mut net, 2, 20);
    assert!(net.settle(50));
    net.crash(2, true);
    net.storage.insert(NodeId(2), backup);
    net.restart(2, automatic(NodeId(2)));
    assert!(net.settle(100));
    let rolled_back = alerts(&mut net, 2);
    assert!(
        matches!(
            rolled_back.as_slice(),
            [Alert::RolledBack {
                had: 10,
                peers_hold: 30,
                ..
            }]
        ),
        "{rolled_back:?}"
    );
    assert!(generation_of(net.node(2).replica()) >= 1);
    write_counter(&mut net, 2, 5);
    assert!(net.settle(100));
    assert!(net.converged());
    assert_eq!(
        visits(&mut net, 3),
        35,
        "the 20 writes after the backup are kept"
    );
}

/// With a fixed identity the operator restarts a node on an empty disk under its old id.
/// The node sees from its peers' acks that they hold more of its id than it does, and
/// takes no more writes; the others go on replicating with each other.
#[test]
fn an_empty_restart_under_a_fixed_id_stops_taking_writes() {
    let mut net = Net::leaders(3, Topology::AllToAll);
    assert!(net.settle(50));
    write_counter(&mut net, 2, 100);
    assert!(net.settle(50));
    net.crash(2, true);
    net.storage[&NodeId(2)].lose_everything();
    net.restart(2, fixed(2));
    let mut refused = None;
    for _ in 0..100 {
        net.round();
        if let Err(e) = net.node(2).write(b"visits", Op::counter_add(1)) {
            refused = Some(e);
            break;
        }
    }
    assert_eq!(
        refused,
        Some(WriteError::ReplicaReused {
            replica: ReplicaId(2)
        })
    );
    let seen = alerts(&mut net, 2);
    assert!(
        seen.iter().any(|a| matches!(
            a,
            Alert::ReplicaReused {
                peer: NodeId(2),
                replica: ReplicaId(2),
                claimed: 100,
                ..
            }
        )),
        "{seen:?}"
    );
    assert!(net.node(2).metrics().replica_reuse >= 1);
    still_replicating_without(&mut net, 2);
}

/// The same, after the node had restarted once on its disk (its stream's session is past
/// 1): its peers see messages of an older session under its id keep coming, far longer
/// than any message is late, and refuse them.
#[test]
fn peers_refuse_an_older_stream_that_keeps_coming() {
    let mut net = Net::leaders(3, Topology::AllToAll);
    assert!(net.settle(50));
    write_counter(&mut net, 2, 100);
    assert!(net.settle(50));
    net.crash(2, false);
    net.restart(2, fixed(2));
    assert!(net.settle(50));
    assert_eq!(net.node(2).session(), 2);
    net.crash(2, true);
    net.storage[&NodeId(2)].lose_everything();
    net.restart(2, fixed(2));
    net.tolerate_refusals = true;
    // Longer than any message can be late (Limits::stale_stream_ms, 10 s).
    for _ in 0..300 {
        net.round();
    }
    let seen = alerts(&mut net, 1);
    assert!(
        seen.iter().any(|a| matches!(
            a,
            Alert::ReplicaReused {
                peer: NodeId(2),
                replica: ReplicaId(2),
                ..
            }
        )),
        "{seen:?}"
    );
    assert!(
        net.refusals.iter().any(|(at, e)| *at == NodeId(1)
            && matches!(e, confluo_node::HandleError::ReplicaReused { .. })),
        "its messages are refused with a typed error"
    );
    assert!(net.node(1).metrics().replica_reuse >= 1);
    still_replicating_without(&mut net, 2);
}

fn fixed(id: u64) -> Config {
    Config::leader(NodeId(id), ReplicaId(id)).with_links(Topology::AllToAll.links(&IDS, NodeId(id)))
}

/// The nodes other than `reused` replicate with each other, and keep every write of the
/// reused id's first history.
fn still_replicating_without(net: &mut Net, reused: u64) {
    let (a, b) = if reused == 1 { (2, 3) } else { (1, 3) };
    net.write(b, b"other", Op::counter_add(7));
    for _ in 0..20 {
        net.round();
    }
    assert_eq!(net.node(a).get(b"other").map(|v| v.counter()), Some(7));
    assert_eq!(visits(net, a), 100);
    assert_eq!(visits(net, b), 100);
}

/// A data directory copied to another node: opening it under the other node's id is an
/// error, not a silent second copy of the first node.
#[test]
fn a_copied_data_directory_is_refused_at_restore() {
    let mut net = cluster();
    write_counter(&mut net, 1, 5);
    assert!(net.settle(50));
    let copy = net.storage[&NodeId(1)].fork().load().expect("load");
    let err = confluo_node::Node::restore(automatic(NodeId(3)), copy).unwrap_err();
    assert_eq!(
        err,
        confluo_node::RestoreError::WrongNode {
            expected: NodeId(3),
            found: NodeId(1)
        }
    );
}

/// The copy started anyway, as the original node, next to it (the operator edited the
/// identity): both write under one replica id, and someone notices a dot written twice.
#[test]
fn a_copy_running_beside_the_original_is_reported() {
    let ids = [NodeId(1), NodeId(2), NodeId(3), NodeId(4)];
    let mut net = Net::new();
    for &id in &ids[..3] {
        net.add(
            Config::leader(id, ReplicaId(id.0)).with_links(Topology::AllToAll.links(&ids[..3], id)),
        );
    }
    assert!(net.settle(50));
    write_counter(&mut net, 1, 5);
    assert!(net.settle(50));
    // Node 4 starts from a copy of node 1's directory, made to look like its own.
    let mut copy: DurableState = net.storage[&NodeId(1)].fork().load().expect("load");
    copy.identity = Some(Identity {
        node: NodeId(4),
        replica: ReplicaId(1),
        session: 9,
        role: Role::Leader,
    });
    let config = Config::leader(NodeId(4), ReplicaId(1)).with_links(vec![confluo_node::Link {
        peer: NodeId(3),
        relay: false,
    }]);
    let mut node4 = confluo_node::Node::restore(config, copy).expect("restore");
    // Both write under the same next dots of replica 1, to different keys.
    net.write(1, b"from-original", Op::counter_add(1));
    for _ in 0..3 {
        node4
            .write(b"from-copy", Op::counter_add(1))
            .expect("write");
    }
    net.nodes.insert(NodeId(4), node4);
    net.storage
        .insert(NodeId(4), confluo_node::MemoryStorage::new());
    for _ in 0..60 {
        net.round();
    }
    let seen: Vec<Alert> = (1..=4).flat_map(|id| alerts(&mut net, id)).collect();
    assert!(
        seen.iter().any(|a| matches!(
            a,
            Alert::ReplicaReused {
                replica: ReplicaId(1),
                ..
            }
        )),
        "{seen:?}"
    );
    let counted: u64 = (1..=4).map(|id| net.node(id).metrics().replica_reuse).sum();
    assert!(counted >= 1);
}

/// Per-peer state exists only for members: a stranger claiming 2,000 node ids leaves
/// nothing behind.
#[test]
fn strangers_claiming_many_node_ids_leave_no_per_peer_state() {
    let mut net = Net::new();
    for id in IDS {
        net.add(automatic(id).with_members(IDS.to_vec()));
    }
    assert!(net.settle(50));
    let before = net.node(1).metrics();
    for fake in 1_000..3_000u64 {
        let hello = confluo_node::Message::Hello(confluo_node::Stream {
            replica: ReplicaId(fake),
            session: 1,
        });
        let refused = net.node(1).handle(NodeId(fake), hello);
        assert_eq!(
            refused,
            Err(confluo_node::HandleError::NotAMember { from: NodeId(fake) })
        );
    }
    let after = net.node(1).metrics();
    assert_eq!(after.inbound_links, before.inbound_links);
    assert_eq!(after.peers.len(), before.peers.len());
    assert!(after.invalid_messages >= 2_000);
    net.write(1, b"k", Op::counter_add(1));
    assert!(net.settle(50));
    assert!(net.converged(), "members go on replicating");
}

/// Leaders 1 to 3 with automatic identity, `leader` also sending to `follower` (not yet
/// added), all four members, at a wall clock where the clock floor is a large generation.
fn three_leaders_and_a_follower(leader: NodeId, follower: NodeId) -> (Net, Vec<NodeId>) {
    let members: Vec<NodeId> = IDS.iter().copied().chain([follower]).collect();
    let mut net = Net::new();
    net.now = 1_800_000_000_000;
    for id in IDS {
        let mut config = automatic(id).with_members(members.clone());
        if id == leader {
            config.links.push(Link {
                peer: follower,
                relay: true,
            });
        }
        net.add(config);
    }
    (net, members)
}

/// A promoted follower cut off from everyone acknowledges writes under an id no peer ever
/// hears of, then loses its disk. The peers' newest sighting of it is its follower id, so
/// "the generation after the newest seen" would hand it the promoted id again, and two
/// acknowledged writes would carry one dot. A node the peers have seen before therefore
/// takes at least the clock floor on an empty disk (see the `identity` module).
#[test]
fn an_empty_restart_never_takes_an_id_a_lost_unseen_incarnation_used() {
    let (leader, follower) = (NodeId(1), NodeId(4));
    let (mut net, members) = three_leaders_and_a_follower(leader, follower);
    net.add(
        Config::automatic_follower(follower, leader)
            .with_links(vec![Link::back_to_leader(leader)])
            .with_members(members.clone()),
    );
    assert!(net.settle(100));
    write_counter(&mut net, 1, 10);
    assert!(net.settle(100));
    // Promoted while everything it sends is held: no peer hears of its new id.
    for peer in IDS {
        net.held.insert((follower, peer));
    }
    let all_to_all = Topology::AllToAll.links(&members, follower);
    net.set_links(follower.0, &all_to_all);
    let promoted = net
        .node(follower.0)
        .promote_automatic()
        .expect("a follower");
    for _ in 0..3 {
        net.round();
    }
    write_counter(&mut net, follower.0, 5);
    for _ in 0..5 {
        net.round();
    }
    net.crash(follower.0, true);
    net.held.clear();
    net.storage[&follower].lose_everything();
    net.restart(
        follower.0,
        automatic(follower)
            .with_links(all_to_all)
            .with_members(members.clone()),
    );
    assert!(net.settle(100));
    let fresh = net.node(follower.0).replica();
    assert!(fresh > promoted, "{fresh:?} after {promoted:?}");
    write_counter(&mut net, follower.0, 7);
    assert!(net.settle(100));
    assert!(net.converged());
    let dots: Vec<_> = net
        .done
        .iter()
        .filter(|((n, _, _), _)| *n == follower)
        .filter_map(|(_, r)| r.clone().ok().flatten())
        .collect();
    assert_eq!(dots.len(), 12, "5 writes before the disk was lost, 7 after");
    let distinct: std::collections::BTreeSet<_> = dots.iter().collect();
    assert_eq!(
        distinct.len(),
        dots.len(),
        "a dot acknowledged twice: {dots:?}"
    );
    for id in [1, 2, 3, 4] {
        assert_eq!(
            visits(&mut net, id),
            17,
            "node {id}: the 5 died with the disk"
        );
        let reuse = alerts(&mut net, id)
            .into_iter()
            .filter(|a| matches!(a, Alert::ReplicaReused { .. }))
            .count();
        assert_eq!(reuse, 0, "node {id}");
    }
}

/// The gap a join cannot close alone: an incarnation that took the clock floor was seen by
/// no member before its disk was lost, so the next one takes generation 0; a message of
/// the first then arrives late. The peer that reads it must not ignore the live node for
/// good: it tells it the newest id it has seen, and the node moves past it.
#[test]
fn a_node_overtaken_by_a_late_message_of_its_lost_incarnation_moves_past_it() {
    let (leader, follower) = (NodeId(1), NodeId(4));
    let (mut net, members) = three_leaders_and_a_follower(leader, follower);
    let follower_config = || {
        Config::automatic_follower(follower, leader)
            .with_links(vec![Link::back_to_leader(leader)])
            .with_members(members.clone())
    };
    // Nothing the follower says arrives anywhere (and node 3 is cut off), so its join
    // times out: the clock floor.
    for peer in IDS {
        net.held.insert((follower, peer));
    }
    net.cut.insert((NodeId(3), follower));
    net.add(follower_config());
    let mut rounds = 0;
    while net.node(follower.0).is_joining() {
        net.round();
        rounds += 1;
        assert!(rounds < 1_000, "the join times out");
    }
    let lost = net.node(follower.0).replica();
    assert!(generation_of(lost) > 0, "took the clock floor: {lost:?}");
    // Nothing it says under that id arrives before its disk is lost either.
    for _ in 0..5 {
        net.round();
    }
    let late: Vec<_> = net
        .wire
        .iter()
        .filter(|m| m.0 == follower)
        .cloned()
        .collect();
    assert!(!late.is_empty(), "it says hello under its new id");
    net.held.clear();
    net.crash(follower.0, true);
    net.storage[&follower].lose_everything();
    net.cut.clear();
    net.restart(follower.0, follower_config());
    assert!(net.settle(100));
    let second = net.node(follower.0).replica();
    assert!(second < lost, "no member had seen {lost:?}, so {second:?}");
    // Now the late messages arrive.
    net.wire.extend(late);
    write_counter(&mut net, leader.0, 3);
    assert!(net.settle(200));
    let now = net.node(follower.0).replica();
    assert!(
        now > lost,
        "moved past the id its peer saw: {now:?} after {lost:?}"
    );
    assert_eq!(visits(&mut net, follower.0), 3, "and replicates again");
    assert!(net.converged());
    let seen = alerts(&mut net, follower.0);
    assert!(
        seen.iter()
            .any(|a| matches!(a, Alert::Overtaken { old, .. } if *old == second)),
        "{seen:?}"
    );
}
