//! The checks: the protocol holds every property, and each planted bug breaks the one it
//! should, with its counterexample printed step by step (`cargo test -p txgate lease_model --
//! --nocapture`).

use std::collections::BTreeSet;

use stateright::{Checker, HasDiscoveries, Model, Path};

use super::*;

/// G0 with a lease of 2 ticks, G1 of 5, and the saga of `owner`.
fn fleet(owner: u8, bug: Option<Bug>) -> LeaseModel {
    LeaseModel {
        leases: [2, 5],
        owner,
        bug,
    }
}

/// The path, one line per step, with the time and the saga's row after it.
fn narrate(path: Path<State, Action>) -> String {
    let (mut out, mut now) = (String::new(), 0);
    for pair in path.into_vec().windows(2) {
        let (Some(action), after) = (pair[0].1, &pair[1].0) else {
            continue;
        };
        now += u8::from(action == Action::Tick);
        let row = format!("saga row: G{}@e{}", after.owner, after.epoch);
        out += &format!("t={now:<2} {action:?}   [{row}]\n");
    }
    out
}

/// Checks until `property` has a counterexample (breadth first: the shortest); tells its path.
fn counterexample(owner: u8, bug: Bug, property: &'static str) -> String {
    let only = HasDiscoveries::AnyOf(BTreeSet::from([property]));
    let checker = fleet(owner, Some(bug)).checker().finish_when(only);
    let checker = checker.spawn_bfs().join();
    let states = checker.unique_state_count();
    let Some(path) = checker.discovery(property) else {
        panic!("{bug:?}: no counterexample to `{property}` in {states} states");
    };
    let story = narrate(path);
    println!("{bug:?} breaks `{property}` ({states} states explored):\n{story}");
    story
}

fn check_protocol(owner: u8) {
    let checker = fleet(owner, None).checker().spawn_bfs().join();
    let states = checker.unique_state_count();
    println!("the protocol, saga of G{owner}: {states} states explored");
    checker.assert_properties();
}

#[test]
fn the_protocol_holds_for_the_saga_of_the_shorter_lease() {
    check_protocol(0);
}

#[test]
fn the_protocol_holds_for_the_saga_of_the_longer_lease() {
    check_protocol(1);
}

#[test]
fn without_the_socket_fence_a_paused_gateway_calls_after_a_takeover() {
    let story = counterexample(0, Bug::NoSocketFence, NO_CALL_AFTER_TAKEOVER);
    assert!(story.contains("DELIVERED"));
}

/// The other planted bugs, each with the saga's owner and the property it breaks.
#[test]
fn each_planted_bug_breaks_its_property() {
    let planted = [
        (1, Bug::TakerLease, NO_CALL_AFTER_TAKEOVER),
        (0, Bug::NoSaveEpoch, STALE_SAVE_REFUSED),
        (0, Bug::NoSaveEpoch, SAVES_IN_ORDER),
        (0, Bug::CheckedById, NO_CALL_AFTER_TAKEOVER),
        (1, Bug::LapseAtSend, NO_CALL_AFTER_TAKEOVER),
    ];
    for (owner, bug, property) in planted {
        counterexample(owner, bug, property);
    }
}
