//! Unit tests of placement: rendezvous spreads keys evenly, moves few when
//! nodes come and go, answers the same whatever the node order.

use super::*;

fn nodes(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("storage-{i}")).collect()
}

fn keys() -> Vec<Vec<u8>> {
    (0..10_000)
        .map(|i| format!("key-{i}").into_bytes())
        .collect()
}

fn placed(rendezvous: &Rendezvous, keys: &[Vec<u8>]) -> Vec<String> {
    keys.iter()
        .map(|key| rendezvous.nodes[rendezvous.node("alice", key)].clone())
        .collect()
}

#[test]
fn every_node_gets_its_share() {
    for n in [2, 3, 5] {
        let rendezvous = Rendezvous::new(nodes(n));
        let mut counts = HashMap::new();
        for node in placed(&rendezvous, &keys()) {
            *counts.entry(node).or_insert(0usize) += 1;
        }
        assert_eq!(counts.len(), n);
        // 10,000 keys over n nodes: the standard deviation of one node's
        // count is under 50, so 4 of them either side is far out.
        let fair = 10_000 / n;
        for (node, count) in counts {
            assert!(
                count.abs_diff(fair) < 200,
                "{node} got {count} of 10000 keys over {n} nodes"
            );
        }
    }
}

#[test]
fn adding_a_node_moves_about_one_in_n_keys_and_only_to_it() {
    let keys = keys();
    for n in [3, 4, 8] {
        let before = placed(&Rendezvous::new(nodes(n)), &keys);
        let after = placed(&Rendezvous::new(nodes(n + 1)), &keys);
        let new_node = format!("storage-{n}");
        let mut moved = 0usize;
        for (old, new) in before.iter().zip(&after) {
            if old != new {
                assert_eq!(new, &new_node, "a key moved between two old nodes");
                moved += 1;
            }
        }
        // Expected 10000 / (n + 1) moves; binomial standard deviation < 50.
        let expected = 10_000 / (n + 1);
        println!(
            "{n} -> {} nodes: {moved} of 10000 keys moved, ~{expected} expected",
            n + 1
        );
        assert!(
            moved.abs_diff(expected) < 200,
            "adding node {} of {} moved {moved} of 10000 keys, expected ~{expected}",
            n + 1,
            n + 1
        );
    }
}

#[test]
fn removing_a_node_moves_only_its_keys() {
    let keys = keys();
    let before = placed(&Rendezvous::new(nodes(4)), &keys);
    let mut fewer = nodes(4);
    fewer.remove(1);
    let after = placed(&Rendezvous::new(fewer), &keys);
    for (old, new) in before.iter().zip(&after) {
        if old != "storage-1" {
            assert_eq!(old, new);
        }
    }
}

#[test]
fn answers_are_stable_and_independent_of_node_order() {
    let keys = keys();
    let mut reversed = nodes(5);
    reversed.reverse();
    assert_eq!(
        placed(&Rendezvous::new(nodes(5)), &keys),
        placed(&Rendezvous::new(reversed), &keys)
    );
    // Pinned answers: a change to the hash would move every object.
    let rendezvous = Rendezvous::new(nodes(3));
    let pinned: Vec<usize> = ["a", "b", "c", "d", "e", "f"]
        .iter()
        .map(|key| rendezvous.node("alice", key.as_bytes()))
        .collect();
    assert_eq!(pinned, PINNED);
}

/// `Rendezvous::node` for keys a..f of alice over storage-0..2.
const PINNED: [usize; 6] = [1, 0, 0, 2, 1, 2];

#[test]
fn users_are_part_of_the_hash() {
    let rendezvous = Rendezvous::new(nodes(8));
    let differ = keys()
        .iter()
        .filter(|key| rendezvous.node("alice", key) != rendezvous.node("bob", key))
        .count();
    // Independent answers agree 1 time in 8.
    assert!(
        differ > 8_000,
        "alice and bob differ on only {differ} of 10000 keys"
    );
}

#[test]
fn bad_node_lists_are_refused() {
    for bad in [
        vec![],
        vec![String::new()],
        vec!["a".to_string(), "a".to_string()],
    ] {
        assert!(matches!(
            Placement::rendezvous(bad),
            Err(StorageError::PlacementConfig { .. })
        ));
    }
}

#[test]
fn local_placement_answers_rendezvous_without_an_executor() -> Result<(), StorageError> {
    let placement = Placement::rendezvous(nodes(3))?;
    let local = placement.local();
    let location = futures_lite::future::block_on(local.locate("alice", b"k"))?;
    assert!(placement.nodes().iter().any(|n| n == location.node));
    assert_eq!(location.ceph, None);
    Ok(())
}
