//! The guard's state machine, free of I/O so it can be tested with a fake clock and actuator.
//!
//! States: `idle` (no lease: at start and after `release`), `armed` (a deadline is set;
//! registrations are accepted), `fenced` (the deadline passed or the daemon's pipe closed:
//! everything registered was killed/deleted; registrations are refused until an `extend` with
//! a deadline still ahead arms the guard again).
//!
//! Memory: registrations live in fixed arrays ([`GROUPS_MAX`], [`ADDRESSES_MAX`]); nothing here
//! allocates, so a fence cannot fail on memory.

use std::fmt::{self, Write};
use std::time::Duration;

use crate::clock::BootTime;
use crate::protocol::{Address, ParseError, Request};

/// Most process groups one guard holds.
pub const GROUPS_MAX: usize = 256;
/// Most relocatable addresses one guard holds.
pub const ADDRESSES_MAX: usize = 64;

/// What a SIGKILL to one process group did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillOutcome {
    Killed,
    /// No process was left in the group (ESRCH).
    Gone,
    /// The errno of the failure (EPERM: not ours to kill).
    Failed(i32),
}

/// What deleting one address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    /// Already gone (EADDRNOTAVAIL), or its interface is (ENODEV).
    Absent,
    /// The errno of the failure.
    Failed(i32),
}

/// The guard's hands, replaced by a recording fake in the unit tests.
pub trait Actuator {
    fn kill_group(&mut self, pgid: i32) -> KillOutcome;
    fn delete_address(&mut self, address: &Address) -> DeleteOutcome;
    /// Whether addresses can be deleted at all (a netlink socket could be opened).
    fn addresses_supported(&self) -> bool {
        true
    }
    fn now(&self) -> BootTime {
        BootTime::now()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    Armed { deadline: BootTime },
    Fenced,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceReason {
    /// The deadline (minus the lead) passed without an extension.
    Expired,
    /// The daemon's end of the pipe closed: it died.
    Eof,
}

impl FenceReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FenceReason::Expired => "expired",
            FenceReason::Eof => "eof",
        }
    }
}

/// What one fence did; the per-item outcomes are in [`Guard::last_fence`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceReport {
    pub reason: FenceReason,
    pub deadline: BootTime,
    /// When the guard meant to act: `deadline - lead` (or the EOF's time).
    pub fire_at: BootTime,
    pub started: BootTime,
    pub finished: BootTime,
    pub groups_killed: u32,
    pub groups_gone: u32,
    pub groups_failed: u32,
    pub addresses_deleted: u32,
    pub addresses_absent: u32,
    pub addresses_failed: u32,
}

impl FenceReport {
    pub fn failures(&self) -> u32 {
        self.groups_failed + self.addresses_failed
    }

    /// How late the fence started after the time it was planned for.
    pub fn late(&self) -> Duration {
        self.started.duration_since(self.fire_at)
    }
}

impl fmt::Display for FenceReport {
    /// The `event fenced` line's fields.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reason={} deadline={} fire_at={} started={} finished={} late_ns={} groups_killed={} groups_gone={} groups_failed={} addresses_deleted={} addresses_absent={} addresses_failed={}",
            self.reason.as_str(),
            self.deadline,
            self.fire_at,
            self.started,
            self.finished,
            self.late().as_nanos(),
            self.groups_killed,
            self.groups_gone,
            self.groups_failed,
            self.addresses_deleted,
            self.addresses_absent,
            self.addresses_failed,
        )
    }
}

/// Per-item outcomes of a fence: (process groups, addresses).
pub type FenceDetails<'a> = (&'a [(i32, KillOutcome)], &'a [(Address, DeleteOutcome)]);

const NO_ADDRESS: Address = Address {
    interface_index: 0,
    address: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
    prefix_length: 0,
};

/// The lease guard's state and registrations.
pub struct Guard<A: Actuator> {
    actuator: A,
    lead: Duration,
    own_pgid: i32,
    state: State,
    groups: [i32; GROUPS_MAX],
    group_count: usize,
    addresses: [Address; ADDRESSES_MAX],
    address_count: usize,
    fenced_groups: [(i32, KillOutcome); GROUPS_MAX],
    fenced_group_count: usize,
    fenced_addresses: [(Address, DeleteOutcome); ADDRESSES_MAX],
    fenced_address_count: usize,
    fences: u64,
}

impl<A: Actuator> Guard<A> {
    /// A guard that fences `lead` before each deadline; `own_pgid` (the guard's own process
    /// group) can never be registered.
    pub fn new(actuator: A, lead: Duration, own_pgid: i32) -> Guard<A> {
        Guard {
            actuator,
            lead,
            own_pgid,
            state: State::Idle,
            groups: [0; GROUPS_MAX],
            group_count: 0,
            addresses: [NO_ADDRESS; ADDRESSES_MAX],
            address_count: 0,
            fenced_groups: [(0, KillOutcome::Gone); GROUPS_MAX],
            fenced_group_count: 0,
            fenced_addresses: [(NO_ADDRESS, DeleteOutcome::Absent); ADDRESSES_MAX],
            fenced_address_count: 0,
            fences: 0,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn groups(&self) -> &[i32] {
        &self.groups[..self.group_count]
    }

    pub fn addresses(&self) -> &[Address] {
        &self.addresses[..self.address_count]
    }

    pub fn fences(&self) -> u64 {
        self.fences
    }

    pub fn actuator(&self) -> &A {
        &self.actuator
    }

    /// When the guard fences if no extension comes: `deadline - lead`.
    pub fn fire_at(&self) -> Option<BootTime> {
        match self.state {
            State::Armed { deadline } => Some(deadline.saturating_sub(self.lead)),
            _ => None,
        }
    }

    /// Fences if armed and `now` has reached [`Guard::fire_at`]. Called before every request
    /// is applied and on every wake-up, so a guard resumed after a pause of its own fences
    /// before it reads any extension that queued up meanwhile.
    pub fn check(&mut self, now: BootTime) -> Option<FenceReport> {
        let fire_at = self.fire_at()?;
        if now < fire_at {
            return None;
        }
        Some(self.fence(FenceReason::Expired, fire_at))
    }

    /// The daemon's end of the pipe closed: fence at once if armed (nothing can be registered
    /// otherwise).
    pub fn on_eof(&mut self, now: BootTime) -> Option<FenceReport> {
        match self.state {
            State::Armed { .. } => Some(self.fence(FenceReason::Eof, now)),
            State::Idle | State::Fenced => None,
        }
    }

    /// Per-item outcomes of the last fence: (process groups, addresses).
    pub fn last_fence(&self) -> FenceDetails<'_> {
        (
            &self.fenced_groups[..self.fenced_group_count],
            &self.fenced_addresses[..self.fenced_address_count],
        )
    }

    fn fence(&mut self, reason: FenceReason, fire_at: BootTime) -> FenceReport {
        let deadline = match self.state {
            State::Armed { deadline } => deadline,
            _ => fire_at,
        };
        let started = self.actuator.now();
        // Kill first: one syscall per group stops every process of the package from running
        // again; then the addresses, one netlink round trip each.
        for index in 0..self.group_count {
            let pgid = self.groups[index];
            self.fenced_groups[index] = (pgid, self.actuator.kill_group(pgid));
        }
        for index in 0..self.address_count {
            let address = self.addresses[index];
            self.fenced_addresses[index] = (address, self.actuator.delete_address(&address));
        }
        let finished = self.actuator.now();
        self.fenced_group_count = self.group_count;
        self.fenced_address_count = self.address_count;
        self.group_count = 0;
        self.address_count = 0;
        self.state = State::Fenced;
        self.fences += 1;
        let mut report = FenceReport {
            reason,
            deadline,
            fire_at,
            started,
            finished,
            groups_killed: 0,
            groups_gone: 0,
            groups_failed: 0,
            addresses_deleted: 0,
            addresses_absent: 0,
            addresses_failed: 0,
        };
        for (_, outcome) in &self.fenced_groups[..self.fenced_group_count] {
            match outcome {
                KillOutcome::Killed => report.groups_killed += 1,
                KillOutcome::Gone => report.groups_gone += 1,
                KillOutcome::Failed(_) => report.groups_failed += 1,
            }
        }
        for (_, outcome) in &self.fenced_addresses[..self.fenced_address_count] {
            match outcome {
                DeleteOutcome::Deleted => report.addresses_deleted += 1,
                DeleteOutcome::Absent => report.addresses_absent += 1,
                DeleteOutcome::Failed(_) => report.addresses_failed += 1,
            }
        }
        report
    }

    /// Parses and applies one request line at `now`, writing its reply line (with `\n`) to
    /// `out`. The caller runs [`Guard::check`] first.
    pub fn handle_line(&mut self, line: &[u8], now: BootTime, out: &mut impl Write) -> fmt::Result {
        match Request::parse(line) {
            Ok(request) => self.apply(request, now, out),
            Err(error) => reply_parse_error(&error, out),
        }
    }

    /// Applies one request at `now`, writing its reply line (with `\n`) to `out`.
    pub fn apply(&mut self, request: Request, now: BootTime, out: &mut impl Write) -> fmt::Result {
        match request {
            Request::Extend(deadline) => {
                let fire_at = deadline.saturating_sub(self.lead);
                if fire_at <= now {
                    return writeln!(
                        out,
                        "err expired extend: deadline {deadline} minus the lead {} ns is not after now ({now})",
                        self.lead.as_nanos()
                    );
                }
                let effective = match self.state {
                    State::Armed { deadline: current } => current.max(deadline),
                    State::Idle | State::Fenced => deadline,
                };
                self.state = State::Armed {
                    deadline: effective,
                };
                writeln!(out, "ok extend {effective}")
            }
            Request::RegisterGroup(pgid) => {
                if let Some(refusal) = self.refusal() {
                    return writeln!(out, "{refusal} register_group {pgid}");
                }
                if pgid == self.own_pgid {
                    return writeln!(
                        out,
                        "err forbidden register_group {pgid}: the guard's own process group"
                    );
                }
                if !self.groups().contains(&pgid) {
                    if self.group_count == GROUPS_MAX {
                        return writeln!(
                            out,
                            "err full register_group {pgid}: already {GROUPS_MAX} process groups"
                        );
                    }
                    self.groups[self.group_count] = pgid;
                    self.group_count += 1;
                }
                writeln!(out, "ok register_group {pgid}")
            }
            Request::UnregisterGroup(pgid) => {
                let found = self.groups().iter().position(|&g| g == pgid);
                if let Some(index) = found {
                    self.groups[index] = self.groups[self.group_count - 1];
                    self.group_count -= 1;
                }
                writeln!(
                    out,
                    "ok unregister_group {pgid} {}",
                    if found.is_some() { "removed" } else { "absent" }
                )
            }
            Request::RegisterAddress(address) => {
                if let Some(refusal) = self.refusal() {
                    return writeln!(out, "{refusal} register_address {address}");
                }
                if !self.actuator.addresses_supported() {
                    return writeln!(
                        out,
                        "err unavailable register_address {address}: the guard has no netlink socket"
                    );
                }
                if !self.addresses().contains(&address) {
                    if self.address_count == ADDRESSES_MAX {
                        return writeln!(
                            out,
                            "err full register_address {address}: already {ADDRESSES_MAX} addresses"
                        );
                    }
                    self.addresses[self.address_count] = address;
                    self.address_count += 1;
                }
                writeln!(out, "ok register_address {address}")
            }
            Request::UnregisterAddress(address) => {
                let found = self.addresses().iter().position(|a| *a == address);
                if let Some(index) = found {
                    self.addresses[index] = self.addresses[self.address_count - 1];
                    self.address_count -= 1;
                }
                writeln!(
                    out,
                    "ok unregister_address {address} {}",
                    if found.is_some() { "removed" } else { "absent" }
                )
            }
            Request::Release => {
                let (groups, addresses) = (self.group_count, self.address_count);
                self.group_count = 0;
                self.address_count = 0;
                self.state = State::Idle;
                writeln!(out, "ok release groups={groups} addresses={addresses}")
            }
            Request::Status => {
                let (state, deadline) = match self.state {
                    State::Idle => ("idle", 0),
                    State::Armed { deadline } => ("armed", deadline.as_nanos()),
                    State::Fenced => ("fenced", 0),
                };
                writeln!(
                    out,
                    "ok status state={state} deadline={deadline} now={now} lead_ns={} groups={} addresses={} fences={}",
                    self.lead.as_nanos(),
                    self.group_count,
                    self.address_count,
                    self.fences
                )
            }
        }
    }

    /// Why a registration is refused in the current state (the reply's first words).
    fn refusal(&self) -> Option<&'static str> {
        match self.state {
            State::Armed { .. } => None,
            State::Idle => Some("err not_armed"),
            State::Fenced => Some("err fenced"),
        }
    }
}

fn reply_parse_error(error: &ParseError<'_>, out: &mut impl Write) -> fmt::Result {
    writeln!(out, "err parse {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;
    use std::net::{IpAddr, Ipv4Addr};

    #[derive(Default)]
    struct Fake {
        killed: Vec<i32>,
        deleted: Vec<Address>,
        gone: Vec<i32>,
        now: Cell<u64>,
    }

    impl Actuator for Fake {
        fn kill_group(&mut self, pgid: i32) -> KillOutcome {
            self.killed.push(pgid);
            if self.gone.contains(&pgid) {
                KillOutcome::Gone
            } else {
                KillOutcome::Killed
            }
        }
        fn delete_address(&mut self, address: &Address) -> DeleteOutcome {
            self.deleted.push(*address);
            DeleteOutcome::Deleted
        }
        fn now(&self) -> BootTime {
            BootTime::from_nanos(self.now.get())
        }
    }

    const MS: u64 = 1_000_000;

    fn t(ms: u64) -> BootTime {
        BootTime::from_nanos(1_000 * MS + ms * MS)
    }

    fn guard() -> Guard<Fake> {
        Guard::new(Fake::default(), Duration::from_millis(20), 999)
    }

    fn send(guard: &mut Guard<Fake>, line: &str, now: BootTime) -> String {
        assert!(guard.check(now).is_none(), "unexpected fence before {line}");
        let mut reply = String::new();
        guard.handle_line(line.as_bytes(), now, &mut reply).unwrap();
        assert!(reply.ends_with('\n') && reply.matches('\n').count() == 1);
        reply.trim_end().to_string()
    }

    fn address() -> Address {
        Address {
            interface_index: 4,
            address: IpAddr::V4(Ipv4Addr::new(198, 18, 5, 10)),
            prefix_length: 24,
        }
    }

    #[test]
    fn fences_at_deadline_minus_lead_and_not_before() {
        let mut g = guard();
        assert_eq!(
            send(&mut g, &format!("extend {}", t(300)), t(0)),
            format!("ok extend {}", t(300))
        );
        assert_eq!(
            send(&mut g, "register_group 100", t(1)),
            "ok register_group 100"
        );
        assert_eq!(
            send(&mut g, "register_group 101", t(1)),
            "ok register_group 101"
        );
        assert_eq!(
            send(&mut g, "register_address 4 198.18.5.10/24", t(2)),
            "ok register_address 4 198.18.5.10/24"
        );
        assert_eq!(g.fire_at(), Some(t(280)));
        assert!(g.check(t(279)).is_none());
        g.actuator.now.set(t(281).as_nanos());
        let report = g.check(t(281)).expect("fence");
        assert_eq!(report.reason, FenceReason::Expired);
        assert_eq!(report.deadline, t(300));
        assert_eq!(report.fire_at, t(280));
        assert_eq!(report.late(), Duration::from_millis(1));
        assert_eq!(
            (
                report.groups_killed,
                report.addresses_deleted,
                report.failures()
            ),
            (2, 1, 0)
        );
        assert_eq!(g.actuator.killed, vec![100, 101]);
        assert_eq!(g.actuator.deleted, vec![address()]);
        assert_eq!(g.state(), State::Fenced);
        assert_eq!(
            g.last_fence().0,
            &[(100, KillOutcome::Killed), (101, KillOutcome::Killed)]
        );
        // Fenced once: a later check does nothing.
        assert!(g.check(t(400)).is_none());
        assert!(report.to_string().starts_with("reason=expired deadline="));
    }

    #[test]
    fn extensions_postpone_and_never_shorten() {
        let mut g = guard();
        send(&mut g, &format!("extend {}", t(300)), t(0));
        send(&mut g, "register_group 100", t(0));
        for step in 1..=10 {
            let now = t(step * 100);
            assert_eq!(
                send(&mut g, &format!("extend {}", t(step * 100 + 300)), now),
                format!("ok extend {}", t(step * 100 + 300))
            );
        }
        // An older, shorter grant does not move the deadline back.
        assert_eq!(
            send(&mut g, &format!("extend {}", t(1100)), t(1050)),
            format!("ok extend {}", t(1300))
        );
        assert!(g.actuator.killed.is_empty());
        assert!(g.check(t(1281)).is_some());
        assert_eq!(g.actuator.killed, vec![100]);
    }

    #[test]
    fn a_deadline_already_passed_is_refused() {
        let mut g = guard();
        let reply = send(&mut g, &format!("extend {}", t(10)), t(0));
        assert!(reply.starts_with("err expired extend: deadline"), "{reply}");
        assert_eq!(g.state(), State::Idle);
    }

    #[test]
    fn registrations_need_an_armed_guard() {
        let mut g = guard();
        assert_eq!(
            send(&mut g, "register_group 100", t(0)),
            "err not_armed register_group 100"
        );
        assert_eq!(
            send(&mut g, "register_address 4 198.18.5.10/24", t(0)),
            "err not_armed register_address 4 198.18.5.10/24"
        );
        send(&mut g, &format!("extend {}", t(100)), t(0));
        send(&mut g, "register_group 100", t(0));
        assert!(g.check(t(90)).is_some());
        assert_eq!(
            send(&mut g, "register_group 100", t(91)),
            "err fenced register_group 100"
        );
        assert_eq!(
            send(&mut g, "status", t(92)).split(' ').nth(2),
            Some("state=fenced")
        );
        // A new extension arms it again, with nothing registered.
        send(&mut g, &format!("extend {}", t(500)), t(100));
        assert!(g.groups().is_empty());
        assert_eq!(
            send(&mut g, "register_group 100", t(101)),
            "ok register_group 100"
        );
        assert_eq!(
            send(&mut g, "register_group 999", t(101)),
            "err forbidden register_group 999: the guard's own process group"
        );
    }

    #[test]
    fn unregistered_groups_are_not_touched_and_release_disarms() {
        let mut g = guard();
        send(&mut g, &format!("extend {}", t(100)), t(0));
        send(&mut g, "register_group 100", t(0));
        send(&mut g, "register_group 101", t(0));
        assert_eq!(
            send(&mut g, "register_group 101", t(0)),
            "ok register_group 101"
        );
        assert_eq!(g.groups(), &[100, 101]);
        assert_eq!(
            send(&mut g, "unregister_group 100", t(1)),
            "ok unregister_group 100 removed"
        );
        assert_eq!(
            send(&mut g, "unregister_group 100", t(1)),
            "ok unregister_group 100 absent"
        );
        assert!(g.check(t(80)).is_some());
        assert_eq!(g.actuator.killed, vec![101]);

        let mut g = guard();
        send(&mut g, &format!("extend {}", t(100)), t(0));
        send(&mut g, "register_group 100", t(0));
        send(&mut g, "register_address 4 198.18.5.10/24", t(0));
        assert_eq!(
            send(&mut g, "release", t(10)),
            "ok release groups=1 addresses=1"
        );
        assert_eq!(g.state(), State::Idle);
        assert!(g.check(t(1000)).is_none());
        assert!(g.on_eof(t(1000)).is_none());
        assert!(g.actuator.killed.is_empty() && g.actuator.deleted.is_empty());
    }

    #[test]
    fn eof_fences_at_once_when_armed() {
        let mut g = guard();
        send(&mut g, &format!("extend {}", t(10_000)), t(0));
        send(&mut g, "register_group 100", t(0));
        g.actuator.gone.push(100);
        let report = g.on_eof(t(5)).expect("fence");
        assert_eq!(report.reason, FenceReason::Eof);
        assert_eq!(report.groups_gone, 1);
        assert_eq!(g.actuator.killed, vec![100]);
    }

    #[test]
    fn capacity_is_bounded_and_parse_errors_are_replies() {
        let mut g = guard();
        send(&mut g, &format!("extend {}", t(10_000)), t(0));
        for pgid in 0..GROUPS_MAX as i32 {
            send(&mut g, &format!("register_group {}", 1000 + pgid), t(0));
        }
        assert_eq!(
            send(&mut g, "register_group 5", t(0)),
            "err full register_group 5: already 256 process groups"
        );
        assert_eq!(
            send(&mut g, "register_group x", t(0)),
            "err parse register_group: PGID \"x\" is not a decimal number"
        );
        let status = send(&mut g, "status", t(1));
        assert!(
            status.contains("state=armed") && status.contains("groups=256"),
            "{status}"
        );
    }
}
