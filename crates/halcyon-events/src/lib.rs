//! Halcyon's event engine, its pure part: recovery programs in the seeds' line format
//! ([`program`]), the native rules file ([`rules`]), the default programs of the
//! built-in events ([`builtin`]), the execution of a program across nodes as a state
//! machine with barriers, failures and coordinator takeover ([`run`]), the
//! environment given to commands ([`env`]), the HACMP `rules.hacmprd` importer
//! ([`import`]), and what a user-defined event's monitor samples ([`resource`]).
//!
//! Invariants: no I/O except reading rules and `.rp` files (`load_rules`,
//! `import_hacmp`), no clock (time is an input), no async, no threads. A
//! [`run::Progress`] checks its invariants after every change (`validate`) and never
//! runs a command before its last completed barrier again.

pub mod builtin;
pub mod env;
pub mod import;
pub mod program;
pub mod resource;
pub mod rules;
pub mod run;

pub use builtin::{BUILTIN_EVENTS, BUILTIN_PREFIX, Builtin, default_program, default_program_text};
pub use env::{EventContext, Sample, environment};
pub use import::{Imported, import_hacmp, import_hacmp_text};
pub use program::{CommandLine, Expected, Line, NodeSet, Program};
pub use rules::{
    Customisation, MonitorDefinition, Resolved, Rule, RuleProgram, Rules, default_rules,
    default_rules_text, is_rules_file, load_cluster_rules, load_rules, parse_rules,
};
pub use run::{
    CommandState, EventState, Failure, Invocation, Launch, LaunchKind, NotifyPhase, Options,
    Outcome, Progress, ProgressError, Recovery, Segment, expand, next_too_long_after, output_tail,
    render_segments, too_long_warnings_due,
};
