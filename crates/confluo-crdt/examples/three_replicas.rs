//! Three replicas of a small store write concurrently, exchange deltas, and converge.
//!
//! Run with `cargo run --release -p confluo-crdt --example three_replicas`.

use confluo_crdt::{Crdt, Hlc, MapCounter, MapLww, MvRegister, OrMap, OrSet, ReplicaId};

/// One replica's state: a few named values of different types.
#[derive(Clone)]
struct Replica {
    id: ReplicaId,
    clock: Hlc,
    likes: OrMap<&'static str, MapCounter>,
    tags: OrMap<&'static str, OrSet<&'static str>>,
    title: OrMap<&'static str, MapLww<&'static str>>,
    owner: OrMap<&'static str, MvRegister<&'static str>>,
}

/// A delta of any of the replica's values.
#[derive(Clone)]
enum Delta {
    Likes(OrMap<&'static str, MapCounter>),
    Tags(OrMap<&'static str, OrSet<&'static str>>),
    Title(OrMap<&'static str, MapLww<&'static str>>),
    Owner(OrMap<&'static str, MvRegister<&'static str>>),
}

impl Replica {
    fn new(id: u64) -> Self {
        let id = ReplicaId(id);
        Replica {
            id,
            clock: Hlc::new(id),
            likes: OrMap::new(),
            tags: OrMap::new(),
            title: OrMap::new(),
            owner: OrMap::new(),
        }
    }

    // Fresh replicas are far from any counter limit: the mutators cannot fail here.
    fn like(&mut self, by: i64) -> Delta {
        let r = self.id;
        Delta::Likes(
            self.likes
                .update("post", |c| c.add(r, by))
                .expect("small counts"),
        )
    }

    fn tag(&mut self, tag: &'static str) -> Delta {
        let r = self.id;
        Delta::Tags(
            self.tags
                .update("post", |s| s.add(r, tag))
                .expect("dots left"),
        )
    }

    fn untag(&mut self, tag: &'static str) -> Delta {
        let r = self.id;
        Delta::Tags(
            self.tags
                .update("post", |s| s.remove(r, &tag))
                .expect("dots left"),
        )
    }

    fn retitle(&mut self, title: &'static str, wall_ms: u64) -> Delta {
        let (r, ts) = (self.id, self.clock.now(wall_ms));
        Delta::Title(
            self.title
                .update("post", |c| c.write(r, ts, title))
                .expect("dots left"),
        )
    }

    fn set_owner(&mut self, owner: &'static str) -> Delta {
        let r = self.id;
        Delta::Owner(
            self.owner
                .update("post", |m| m.write(r, owner))
                .expect("dots left"),
        )
    }

    fn receive(&mut self, delta: Delta) {
        match delta {
            Delta::Likes(d) => self.likes.merge(d),
            Delta::Tags(d) => self.tags.merge(d),
            Delta::Title(d) => {
                // The clock observes every timestamp merged in, so a later local write
                // carries a larger one whatever the wall clocks say.
                for c in d.iter().map(|(_, c)| c) {
                    if let Some(ts) = c.timestamp() {
                        self.clock.observe(ts);
                    }
                }
                self.title.merge(d)
            }
            Delta::Owner(d) => self.owner.merge(d),
        }
    }

    fn show(&self) -> String {
        let likes = self.likes.get("post").map_or(0, |c| c.value());
        let mut tags: Vec<_> = self
            .tags
            .get("post")
            .map_or(Vec::new(), |s| s.iter().copied().collect());
        tags.sort_unstable();
        let title = self
            .title
            .get("post")
            .and_then(|c| c.read().copied())
            .unwrap_or("-");
        let owners: Vec<_> = self
            .owner
            .get("post")
            .map_or(Vec::new(), |m| m.values().copied().collect());
        format!("likes={likes:<3} tags={tags:?} title={title:?} owner={owners:?}")
    }

    fn same_as(&self, other: &Replica) -> bool {
        self.likes == other.likes
            && self.tags == other.tags
            && self.title == other.title
            && self.owner == other.owner
    }
}

fn main() {
    let mut replicas = [Replica::new(1), Replica::new(2), Replica::new(3)];
    let mut outbox: Vec<(usize, Delta)> = Vec::new();

    // Replica 0 creates the post; everyone sees it.
    outbox.push((0, replicas[0].tag("rust")));
    outbox.push((0, replicas[0].retitle("Hello", 1_000)));
    outbox.push((0, replicas[0].set_owner("ada")));
    deliver(&mut replicas, &mut outbox);

    // Concurrent writes at all three, with skewed wall clocks (replica 2's runs 5 s ahead).
    outbox.push((0, replicas[0].like(3)));
    outbox.push((0, replicas[0].untag("rust")));
    outbox.push((0, replicas[0].set_owner("grace")));
    outbox.push((1, replicas[1].like(2)));
    outbox.push((1, replicas[1].tag("rust")));
    outbox.push((1, replicas[1].retitle("Hello, world", 2_000)));
    outbox.push((2, replicas[2].like(-1)));
    outbox.push((2, replicas[2].tag("crdt")));
    outbox.push((2, replicas[2].set_owner("linus")));
    outbox.push((2, replicas[2].retitle("Hi", 7_000)));

    println!("before exchanging deltas:");
    for (i, r) in replicas.iter().enumerate() {
        println!("  replica {i}: {}", r.show());
    }
    // Deliver in reverse order, everything twice.
    let twice: Vec<_> = outbox.iter().rev().chain(outbox.iter()).cloned().collect();
    outbox = twice;
    deliver(&mut replicas, &mut outbox);

    println!("after:");
    for (i, r) in replicas.iter().enumerate() {
        println!("  replica {i}: {}", r.show());
    }
    let converged = replicas.iter().all(|r| r.same_as(&replicas[0]));
    println!(
        "converged: {converged} (the re-tag of \"rust\" won over the concurrent untag; \
         the owners are concurrent siblings; the title with the greatest HLC timestamp won)"
    );
    if !converged {
        std::process::exit(1);
    }
}

/// Sends every delta in the outbox to every other replica.
fn deliver(replicas: &mut [Replica], outbox: &mut Vec<(usize, Delta)>) {
    for (from, delta) in outbox.drain(..) {
        for (i, r) in replicas.iter_mut().enumerate() {
            if i != from {
                r.receive(delta.clone());
            }
        }
    }
}
