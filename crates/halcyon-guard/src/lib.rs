//! # The lease guard
//!
//! SPEC 6 lets a node run failover packages only while it holds a lease, and the daemon halts
//! its packages before the lease expires (`halcyon-daemon/src/lease.rs`). That promise fails
//! exactly when it matters: a SIGSTOPped, deadlocked or swapped-out daemon runs no code, while
//! its services (other processes) keep serving and its relocatable addresses stay configured.
//! Once the lease has expired the majority starts the package elsewhere: double activation
//! (SAFETY-NOTES.md measured 10-12 s of it for Pacemaker and keepalived under a 15 s pause).
//!
//! The guard is a small separate process that holds the *enforcement* of the lease outside
//! the daemon's threads. The daemon tells it the lease deadline, the process groups of its
//! failover services and scripts, and its relocatable addresses. When the deadline passes
//! without an extension, or the daemon's pipe closes, the guard SIGKILLs every registered
//! process group and deletes every registered address (RTM_DELADDR on its own netlink
//! socket, `halcyon-netlink`'s allocation-free `Socket`), reports what it did on its stdout
//! (`event fenced ...`) and stderr, and keeps running, refusing registrations until the next
//! `extend`: a daemon that wakes up learns that its packages were fenced.
//!
//! ## Why a separate process (and not a thread, a watchdog or a cgroup)
//! - A thread of the daemon stops with the daemon (SIGSTOP stops every thread; a deadlock
//!   or a page-in stall of the allocator can block it too).
//! - `/dev/watchdog` counts whole seconds (at least 1 s) and resets the whole machine; it
//!   stays the right last resort for a hung *kernel*, not for a lease of a few hundred ms.
//! - The guard is another process in its own process group: a `kill -STOP` of the daemon,
//!   of the daemon's group or a terminal's ^Z does not reach it. It runs at SCHED_FIFO
//!   priority (ahead of every ordinary process, so a busy machine does not delay it), with
//!   its memory locked (a fence never waits for a page-in), an OOM score of -1000, and a
//!   main loop that allocates nothing: fixed buffers for input, output and logs, fixed
//!   arrays for the registrations ([`GROUPS_MAX`], [`ADDRESSES_MAX`]), the netlink socket
//!   and timer opened before the first request. When real-time priority or locking is
//!   refused (no privilege) it says so on stderr and in `event ready`.
//!
//! ## Protocol
//! See [`protocol`]: one request line per `\n` on the guard's stdin (`extend DEADLINE`,
//! `register_group PGID`, `unregister_group PGID`, `register_address IFINDEX ADDR/PREFIX`,
//! `unregister_address ...`, `release`, `status`), exactly one reply line per request on its
//! stdout (`ok ...` / `err CODE message`), plus `event ready ...` at start and
//! `event fenced ...` after each fence. Malformed lines get `err parse <precise message>` and
//! change nothing.
//!
//! ## Clock and timing argument
//! The deadline is absolute CLOCK_BOOTTIME. BOOTTIME runs at the rate of CLOCK_MONOTONIC (the
//! `Instant` of lease.rs, so the same 1 % drift bound applies), never jumps back, and keeps
//! counting while the machine is suspended: a machine frozen with a lease sees it expired on
//! waking. The guard sleeps in `ppoll` on the daemon's pipe and a BOOTTIME timerfd armed
//! absolutely at `fire_at = deadline - lead` (it fires at once after a resume if that time
//! has passed), with a `tick` (default 40 ms) as a backstop timeout while armed. Before every
//! request it applies and on every wake-up it compares the clock with `fire_at` first, so a
//! guard that was paused itself fences before it reads extensions queued meanwhile.
//!
//! How this fits lease.rs: the daemon takes `t_boot = BootTime::now()` *before* its
//! `Instant` `t_send` and, on a grant, sends `extend t_boot + lease`
//! ([`BootTime::lease_deadline`]). BOOTTIME advances at least as fast as MONOTONIC, so this
//! deadline is reached no later in real time than the daemon's own `t_send + lease`. The
//! guard starts fencing at `deadline - lead` and, with the default `lead` (20 ms) covering its
//! wake-up latency at real-time priority and the kills (microseconds) and netlink deletions
//! (well under a millisecond each), is done by the deadline: *the guard acts no later than
//! the daemon would have had to*, whether or not the daemon runs. The coordinator's wait
//! `last_grant + lease x (1 + drift) + margin` is unchanged: it already outlasts
//! `t_send + lease` on the holder's clock, and the 50 ms margin additionally absorbs a guard
//! that is up to the margin late (a fence start later than `deadline + margin` would break
//! the argument; the `late_ns` field of `event fenced` measures it). The daemon's own
//! `fence_lead` (graceful halting: lease/4, or what a renewal interval leaves after the
//! coordinator's wait for a Raft heartbeat, 67 ms at the defaults) should stay larger than
//! the guard's `lead`, so a healthy daemon stops its packages gracefully, sends `release`,
//! and the guard never fires (with the fast profile the two are equal, 20 ms: the guard's
//! kill comes as the daemon's halt begins); the guard's SIGKILL is the backstop and overrides a halt script
//! that is still running at `deadline - lead`.
//!
//! ## What the daemon must do (integration)
//! 1. Spawn the guard at start ([`GuardHandle::spawn_program`], e.g. `halcyon guard ...`);
//!    no failover package may start before `event ready` (spawn waits for it).
//! 2. On every lease grant: `extend(BootTime::lease_deadline(t_boot, lease))`. Extend before
//!    registering anything: an unarmed guard refuses registrations (`err not_armed`).
//! 3. Register *before* a package can act: an address before adding it; a service or script
//!    right after spawning it in its own process group, waiting for the `ok` before it may do
//!    anything visible (a start gate, e.g. the child blocks reading a pipe the daemon writes
//!    after the `ok`; a pause between the spawn and the registration would otherwise leave
//!    an unguarded service). Any `err` (`fenced`, `not_armed`, `full`) means: stop that
//!    process or address yourself, the lease is lost.
//! 4. Unregister what it stops; `release` when it halted everything (lease given up or
//!    expired by its own halting).
//! 5. Poll [`GuardHandle::health`] with every lease check: `Dead`, `Stalled` and `Fenced`
//!    are a lost lease (halt everything, start nothing; respawn a dead guard before holding
//!    a lease again). [`GuardHandle::take_fences`] after handling a fence.
//! 6. On clean shutdown: halt packages, then [`GuardHandle::shutdown`].
//!
//! ## Limits (what the guard does not cover)
//! - A process that leaves its registered process group (`setsid`, `setpgid`) escapes
//!   the kill: services must not daemonize (run them in the foreground), or a follow-up puts
//!   each package in a cgroup v2 and has the guard write `cgroup.kill`.
//! - A group ID is only killed if registered; after all its processes exit the number could
//!   be reused by an unrelated group: unregister a group when the daemon has reaped it.
//! - Deleting the *primary* IPv4 address of a subnet also deletes the secondaries of that
//!   subnet unless `net.ipv4.conf.IF.promote_secondaries` is 1: a relocatable address must be
//!   a secondary (added after the node's own address of that subnet), or the daemon sets
//!   promote_secondaries on the interfaces that carry relocatable addresses.
//! - A process in uninterruptible sleep (D state, e.g. a hung NFS write) dies only when
//!   that I/O completes; addresses are deleted regardless.
//! - A whole-machine freeze stops the guard too: on resume the BOOTTIME timer fires at once
//!   and, at real-time priority, the guard runs before the ordinary-priority services, but a
//!   service on another CPU may run for the guard's wake-up latency. A hung kernel needs the
//!   hardware watchdog or fencing (SPEC 6).

/// A digest of this crate's sources (`build.rs`): the guard says it in its `event ready`
/// line, and [`GuardHandle::spawn`] refuses a guard built from other sources (a stale
/// `halcyon-guard` beside a newer daemon) before a request is sent.
pub const BUILD: &str = env!("HALCYON_GUARD_BUILD");

pub mod clock;
pub mod config;
pub mod guard;
pub mod handle;
pub mod protocol;
mod runtime;

pub use clock::BootTime;
pub use config::{ConfigError, GuardConfig};
pub use guard::{ADDRESSES_MAX, GROUPS_MAX};
pub use handle::{FenceSummary, GuardError, GuardHandle, GuardMonitor, Health, ReadyInfo, Ticket};
pub use protocol::{Address, ParseError, Request};
pub use runtime::{guard_main, guard_main_stdio};
