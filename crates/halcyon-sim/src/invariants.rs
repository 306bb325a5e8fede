//! Invariants checked on every state transition a replica applies (the daemon's platform
//! observer calls [`Transitions::applied`] after each applied log entry), besides the ones the
//! [`World`](crate::world::World) checks itself (one activity per failover package, the same
//! command at each log index everywhere).
//!
//! - Events are processed one at a time: a new execution starts only after the previous one
//!   finished.
//! - In priority order: no event that was pending before an execution started, and still is
//!   after, has a lower priority key (`halcyon_policy::priority_key`) than the started one.
//! - Restart counters never go backwards: a counter only grows (a package halt starts its
//!   counters again, as Serviceguard's), except that a failure counted
//!   after its window restarts it at 1 (and then its last failure time advances).

use std::collections::{BTreeMap, BTreeSet};

use halcyon_policy::event::priority_key;
use halcyon_state::State;
use jiff::Timestamp;

use crate::world::World;

type CounterKey = (String, String, String);

/// What a replica's previous state looked like, for comparing with the next.
#[derive(Default)]
struct Seen {
    pending: Vec<(u64, halcyon_policy::Event)>,
    execution: Option<u64>,
    /// The cluster had no members (it is being formed).
    forming: bool,
    counters: BTreeMap<CounterKey, (u32, Option<Timestamp>)>,
}

/// Per-node memory of the last state seen.
#[derive(Default)]
pub struct Transitions {
    seen: BTreeMap<u32, Seen>,
    /// Exclusions of nodes for not completing their work (`State::stuck`) already noted: the
    /// node and when (a replica that replays its log after a restart sees them again).
    exclusions: BTreeSet<(String, Timestamp)>,
}

impl Transitions {
    /// A node booted again: its replica starts over from its own storage.
    pub fn forget(&mut self, node: u32) {
        self.seen.remove(&node);
    }

    pub fn applied(&mut self, world: &World, node: u32, index: u64, state: &State) {
        let seen = self.seen.entry(node).or_default();
        let execution = state.execution().map(|x| x.id);
        if let Some(id) = execution
            && seen.execution != Some(id)
        {
            if let Some(previous) = seen.execution {
                let finished = state
                    .log()
                    .iter()
                    .any(|r| r.id == previous && r.finished_at.is_some());
                if !finished {
                    world.violation(format!(
                        "n{node} (entry {index}): execution {id} started while execution {previous} had not finished"
                    ));
                }
            }
            started(world, node, index, state, id, &seen.pending, seen.forming);
            // A package halt (or the cluster's) starts its restart counters again.
            match state.execution().map(|x| &x.plan.event) {
                Some(halcyon_policy::Event::PackageHalt { package, node }) => {
                    seen.counters.retain(|(p, n, _), _| {
                        p != package.as_str()
                            || node.as_ref().is_some_and(|node| n != node.as_str())
                    });
                }
                Some(halcyon_policy::Event::ClusterHalt) => seen.counters.clear(),
                _ => {}
            }
        }
        // A node or a package `halcyon apply` removed takes its counters with it
        // (`State::forget_removed`).
        if let Some(config) = state.config() {
            seen.counters
                .retain(|(p, n, _), _| config.package(p).is_some() && config.node(n).is_some());
        }
        for (package, nodes) in state.restarts() {
            for (holder, services) in nodes {
                for (service, counter) in services {
                    let key = (package.to_string(), holder.to_string(), service.clone());
                    if let Some((count, last)) = seen.counters.get(&key)
                        && counter.count < *count
                        && !(counter.count == 1 && counter.last > *last)
                    {
                        world.violation(format!(
                            "n{node} (entry {index}): the restart counter of {service} of {package} on {holder} went back from {count} to {}",
                            counter.count
                        ));
                    }
                    seen.counters.insert(key, (counter.count, counter.last));
                }
            }
        }
        if seen.counters.len()
            > state
                .restarts()
                .values()
                .flat_map(|n| n.values())
                .map(|s| s.len())
                .sum::<usize>()
        {
            world.violation(format!(
                "n{node} (entry {index}): a restart counter disappeared"
            ));
        }
        for (excluded, stuck) in state.stuck() {
            if self.exclusions.insert((excluded.to_string(), stuck.at)) {
                world.note(format!("{excluded} excluded: {}", stuck.why));
            }
        }
        seen.execution = execution;
        seen.forming = state.cluster().members.is_empty();
        seen.pending = state
            .pending()
            .iter()
            .map(|p| (p.sequence, p.event.clone()))
            .collect();
    }
}

/// Execution `id` just started: its event must come first among what was pending.
fn started(
    world: &World,
    node: u32,
    index: u64,
    state: &State,
    id: u64,
    before: &[(u64, halcyon_policy::Event)],
    forming: bool,
) {
    let Some(config) = state.config() else {
        return;
    };
    let Some(record) = state.log().iter().find(|r| r.id == id) else {
        return;
    };
    // Formation (SPEC: the first cluster start takes every node waiting to join at once)
    // comes before the joins it absorbs.
    if forming && record.event == halcyon_policy::Event::ClusterStart {
        note_start(world, node, index, record);
        return;
    }
    let key = priority_key(config, &record.event, record.sequence);
    for (sequence, event) in before {
        // An event the same entry consumed (merged or discarded) is not passed over.
        if *sequence == record.sequence || !state.pending().iter().any(|p| p.sequence == *sequence)
        {
            continue;
        }
        let other = priority_key(config, event, *sequence);
        if other < key {
            world.violation(format!(
                "n{node} (entry {index}): event #{} ({:?}) started before #{sequence} ({event:?}), which comes first",
                record.sequence, record.event
            ));
        }
    }
    note_start(world, node, index, record);
}

fn note_start(world: &World, node: u32, index: u64, record: &halcyon_state::EventRecord) {
    if node == first_reporter(world, index) {
        world.note(format!(
            "event #{} started: {:?}",
            record.sequence, record.event
        ));
    }
}

/// Notes each event once: by the node whose replica applied the entry first.
fn first_reporter(world: &World, index: u64) -> u32 {
    world.first_to_apply(index).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A state whose one counter (p0 on n1) has `count` restarts, the last at
    /// `last_second`: counted through the state machine (no configuration, so no window).
    fn with_counter(count: u32, last_second: i64) -> State {
        let mut state = State::new();
        let at = Timestamp::from_second(last_second).unwrap();
        for index in 1..=u64::from(count) {
            state.apply(
                index,
                halcyon_state::Command::RestartCounted {
                    package: "p0".into(),
                    node: "n1".into(),
                    service: "service srv".into(),
                    detail: None,
                    at,
                },
            );
        }
        assert_eq!(state.restart_count("p0", "n1", "service srv"), count);
        state
    }

    #[test]
    fn a_restart_counter_going_back_is_a_violation_unless_its_window_restarted_it() {
        let world = World::new(BTreeMap::new());
        let mut transitions = Transitions::default();
        transitions.applied(&world, 1, 1, &with_counter(1, 100));
        transitions.applied(&world, 1, 2, &with_counter(2, 101));
        assert!(world.violations().is_empty());
        // A new failure after the window: back to 1, later.
        transitions.applied(&world, 1, 3, &with_counter(1, 500));
        assert!(world.violations().is_empty());
        transitions.applied(&world, 1, 4, &with_counter(3, 501));
        // Back to 2 with no new failure: a violation.
        transitions.applied(&world, 1, 5, &with_counter(2, 501));
        assert_eq!(world.violations().len(), 1, "{:?}", world.violations());
        // A counter that disappears is one too.
        transitions.applied(&world, 1, 6, &State::new());
        assert_eq!(world.violations().len(), 2, "{:?}", world.violations());
        // Another node's replica is judged on its own; a reboot starts over.
        transitions.forget(1);
        transitions.applied(&world, 1, 7, &with_counter(1, 100));
        assert_eq!(world.violations().len(), 2);
    }
}
