//! Live heap bytes per member of an OR-set of `u64` (100,000 and 1,000,000 members), confluo
//! and `crdts`, measured with a counting global allocator. Not a criterion suite: it measures
//! bytes, not time, and one build per size is exact.

use cap::Cap;
use confluo_benches::footprint;

#[global_allocator]
static ALLOCATOR: Cap<std::alloc::System> = Cap::new(std::alloc::System, usize::MAX);

fn live_bytes() -> usize {
    ALLOCATOR.allocated()
}

fn main() {
    let test_mode = std::env::args().any(|a| a == "--test");
    let sizes: &[usize] = if test_mode {
        &[1_000]
    } else {
        &[100_000, 1_000_000]
    };
    for &n in sizes {
        let (mine, theirs) = footprint::or_set_heap_per_member(&live_bytes, n);
        println!(
            "or_set heap bytes per member, n={n}: confluo {mine:.2}, crdts {theirs:.2} ({:.2}x)",
            mine / theirs
        );
    }
}
