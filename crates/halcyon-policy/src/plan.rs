//! A plan: what to stop and start where, in which order, and why; and the
//! node-by-node eligibility verdicts that `halcyon explain` prints.

use std::fmt::{self, Write as _};

use halcyon_config::{NetworkName, NodeName, PackageName};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::event::Event;
use crate::state::ClusterState;

/// The engine's answer to an event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub event: Event,
    pub now: Timestamp,
    /// Steps run one after the other; the actions within a step run in parallel.
    pub steps: Vec<Step>,
    /// The cluster state once every step has completed.
    pub state: ClusterState,
    /// Decisions that need no action but are worth telling (a package left down,
    /// a failback deferred, ...).
    pub notes: Vec<Note>,
    /// When the engine wants to be asked again (`Event::Timer`): the delayed
    /// fallback timer or a failure expiry.
    pub wake_at: Option<Timestamp>,
}

impl Plan {
    /// Every action of the plan, in order.
    pub fn actions(&self) -> impl Iterator<Item = &Action> {
        self.steps.iter().flat_map(|s| s.actions.iter())
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub actions: Vec<Action>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    /// `None` for actions about a node rather than a package (`AwaitRelease`).
    pub package: Option<PackageName>,
    pub node: NodeName,
    /// Why this action was chosen, in words an administrator reads.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Wait until the failed node's lease has certainly expired or a fencing
    /// agent confirmed it is off; only then may its failover packages start
    /// elsewhere (SPEC 6).
    AwaitRelease,
    /// Stop the package's resources on the node (reverse order).
    Halt,
    /// Stop at once, as for a failure (forced departure).
    HaltForced,
    /// Start the package's resources on the node (in order).
    Run,
    /// Move the package's addresses on `network` to the node's standby interface.
    SwapAdapter { network: NetworkName },
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActionKind::AwaitRelease => f.write_str("await release"),
            ActionKind::Halt => f.write_str("halt"),
            ActionKind::HaltForced => f.write_str("halt (forced)"),
            ActionKind::Run => f.write_str("run"),
            ActionKind::SwapAdapter { network } => write!(f, "swap adapter on {network}"),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    pub package: Option<PackageName>,
    pub text: String,
}

/// Why a node may not run a package (now).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Ineligible {
    NotInNodeList,
    NotMember,
    SwitchingDisabledOnNode,
    NetworkDown {
        network: NetworkName,
    },
    FailedHere {
        at: Timestamp,
        until: Option<Timestamp>,
    },
    HeldForNode {
        node: NodeName,
    },
    DependencyDown {
        package: PackageName,
    },
    DependencyElsewhere {
        package: PackageName,
    },
    DependencyHere {
        package: PackageName,
    },
    /// The event requires the package to leave this node.
    MustLeave {
        why: String,
    },
}

/// How a text shows a time: [`rfc3339`] (the scenario files, the texts the API sends), or as
/// the reader's clock shows it (the CLI: local `HH:MM:SS`).
pub type TimeText<'a> = &'a dyn Fn(Timestamp) -> String;

/// A time as RFC 3339 (UTC).
pub fn rfc3339(at: Timestamp) -> String {
    at.to_string()
}

/// `text` with every time [`rfc3339`] wrote into it written as `time` writes it.
///
/// The engine writes its reasons and notes as text when it plans (`Action::reason`,
/// `Note::text`, a refusal), and the event log keeps that text and the rendered plan as they
/// were written, with RFC 3339 times: entries written by any version read the same. A reader
/// shows them in its own clock at display time with this. Only what [`rfc3339`] writes is
/// taken for a time (`2026-01-05T12:00:00Z`, `2026-01-05T12:00:00.25Z`), and only standing
/// alone (not inside a word or a longer number); anything else is left as it is.
pub fn times_as(text: &str, time: TimeText<'_>) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        let alone = i == 0 || !bytes[i - 1].is_ascii_alphanumeric();
        if let Some(end) = alone.then(|| rfc3339_end(&bytes[i..])).flatten()
            && bytes
                .get(i + end)
                .is_none_or(|b| !b.is_ascii_alphanumeric())
            && let Ok(at) = text[i..i + end].parse::<Timestamp>()
            && rfc3339(at) == text[i..i + end]
        {
            out.push_str(&text[copied..i]);
            out.push_str(&time(at));
            i += end;
            copied = i;
        } else {
            i += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The length of the `YYYY-MM-DDTHH:MM:SS[.fraction]Z` that `text` starts with, if it does.
fn rfc3339_end(text: &[u8]) -> Option<usize> {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    if text.len() < SHAPE.len() {
        return None;
    }
    let fits = SHAPE.iter().zip(text).all(|(&shape, &b)| match shape {
        b'd' => b.is_ascii_digit(),
        literal => b == literal,
    });
    if !fits {
        return None;
    }
    let mut end = SHAPE.len();
    if text.get(end) == Some(&b'.') {
        let digits = text[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        end += 1 + digits;
    }
    (text.get(end) == Some(&b'Z')).then_some(end + 1)
}

impl fmt::Display for Ineligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text(&rfc3339))
    }
}

impl Ineligible {
    /// The reason in words, its times as `time` writes them.
    pub fn text(&self, time: TimeText<'_>) -> String {
        let mut out = String::new();
        let _ = self.write(&mut out, time);
        out
    }

    fn write(&self, f: &mut String, time: TimeText<'_>) -> fmt::Result {
        match self {
            Ineligible::NotInNodeList => f.write_str("not in the node list"),
            Ineligible::NotMember => f.write_str("not a member of the cluster"),
            Ineligible::SwitchingDisabledOnNode => {
                f.write_str("switching disabled for this package on this node")
            }
            Ineligible::NetworkDown { network } => write!(f, "network {network} down"),
            Ineligible::FailedHere {
                at,
                until: Some(until),
            } => {
                write!(
                    f,
                    "failed here at {}; excluded until {} (or `halcyon package clear`)",
                    time(*at),
                    time(*until)
                )
            }
            Ineligible::FailedHere { at, until: None } => {
                write!(
                    f,
                    "failed here at {}; excluded until `halcyon package clear`",
                    time(*at)
                )
            }
            Ineligible::HeldForNode { node } => {
                write!(
                    f,
                    "waiting for {node} (halted gracefully; `halcyon package run` to start elsewhere)"
                )
            }
            Ineligible::DependencyDown { package } => {
                write!(f, "depends on {package}, which is not up")
            }
            Ineligible::DependencyElsewhere { package } => {
                write!(
                    f,
                    "depends on {package} on the same node, which does not run here"
                )
            }
            Ineligible::DependencyHere { package } => {
                write!(
                    f,
                    "depends on {package} on a different node, which runs here"
                )
            }
            Ineligible::MustLeave { why } => f.write_str(why),
        }
    }
}

/// One node's verdict for one package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeVerdict {
    pub node: NodeName,
    /// Position in the node list (1 = primary), if listed.
    pub rank: Option<usize>,
    pub eligible: bool,
    pub reasons: Vec<Ineligible>,
    /// Facts that rank an eligible node: current node, (acting) primary, package count.
    pub notes: Vec<String>,
}

/// Why a package runs where it runs, or why it does not run.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Explanation {
    pub package: PackageName,
    pub status: crate::state::PackageStatus,
    pub nodes: Vec<NodeName>,
    pub summary: Vec<String>,
    pub verdicts: Vec<NodeVerdict>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.render(&rfc3339))
    }
}

impl Explanation {
    /// As an administrator reads it, its times as `time` writes them.
    pub fn render(&self, time: TimeText<'_>) -> String {
        let mut out = String::new();
        let _ = self.write(&mut out, time);
        out
    }

    fn write(&self, f: &mut String, time: TimeText<'_>) -> fmt::Result {
        write!(f, "package {}: {}", self.package, self.status)?;
        if !self.nodes.is_empty() {
            let nodes: Vec<&str> = self.nodes.iter().map(|n| n.as_str()).collect();
            write!(f, " on {}", nodes.join(", "))?;
        }
        writeln!(f)?;
        for line in &self.summary {
            writeln!(f, "  {}", times_as(line, time))?;
        }
        writeln!(f, "nodes:")?;
        let width = self
            .verdicts
            .iter()
            .map(|v| v.node.as_str().len())
            .max()
            .unwrap_or(0);
        for v in &self.verdicts {
            let rank = v.rank.map_or("-".to_owned(), |r| format!("#{r}"));
            let verdict = if v.eligible {
                "eligible"
            } else {
                "not eligible"
            };
            let mut detail: Vec<String> = v.reasons.iter().map(|r| r.text(time)).collect();
            detail.extend(v.notes.iter().map(|n| times_as(n, time)));
            write!(f, "  {:width$}  {rank:>3}  {verdict}", v.node.as_str())?;
            if !detail.is_empty() {
                write!(f, ": {}", detail.join("; "))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// A plan in the form an administrator reads at a glance (also the format of the
/// scenario files' expectations).
pub fn render(plan: &Plan) -> String {
    render_with(plan, &rfc3339)
}

/// [`render`] with the times as `time` writes them (the CLI: local `HH:MM:SS`), those in the
/// actions' reasons and the notes too (the engine's text, written when the plan was made:
/// [`times_as`]).
pub fn render_with(plan: &Plan, time: TimeText<'_>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "event: {} at {}", plan.event, time(plan.now));
    if plan.steps.is_empty() {
        let _ = writeln!(out, "no action");
    }
    for (i, step) in plan.steps.iter().enumerate() {
        let parallel = if step.actions.len() > 1 {
            " (in parallel)"
        } else {
            ""
        };
        let _ = writeln!(out, "step {}{parallel}:", i + 1);
        for a in &step.actions {
            let reason = times_as(&a.reason, time);
            match &a.package {
                Some(p) => {
                    let _ = writeln!(out, "  {} {p} on {}: {}", a.kind, a.node, reason);
                }
                None => {
                    let _ = writeln!(out, "  {} of {}: {}", a.kind, a.node, reason);
                }
            }
        }
    }
    let _ = writeln!(out, "result:");
    let width = plan
        .state
        .packages
        .keys()
        .map(|k| k.as_str().len())
        .max()
        .unwrap_or(0);
    for (name, p) in &plan.state.packages {
        let nodes: Vec<&str> = p.nodes.iter().map(|n| n.as_str()).collect();
        let mut line = format!("  {:width$}  {}", name.as_str(), p.status());
        if !nodes.is_empty() {
            let _ = write!(line, " on {}", nodes.join(", "));
        }
        if let Some(e) = &p.error {
            let _ = write!(line, " ({e})");
        }
        if p.switching == Some(false) {
            line.push_str(" [switching disabled]");
        }
        let _ = writeln!(out, "{line}");
    }
    if !plan.notes.is_empty() {
        let _ = writeln!(out, "notes:");
        for n in &plan.notes {
            let text = times_as(&n.text, time);
            match &n.package {
                Some(p) => {
                    let _ = writeln!(out, "  {p}: {text}");
                }
                None => {
                    let _ = writeln!(out, "  {text}");
                }
            }
        }
    }
    if let Some(t) = plan.wake_at {
        let _ = writeln!(out, "re-evaluate at: {}", time(t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_write_times_as_the_reader_asks_and_rfc3339_by_default() {
        let at: Timestamp = "2026-01-05T12:00:00Z".parse().unwrap();
        let until: Timestamp = "2026-01-05T12:10:00Z".parse().unwrap();
        let short = |t: Timestamp| t.strftime("%H:%M").to_string();
        let failed = Ineligible::FailedHere {
            at,
            until: Some(until),
        };
        assert_eq!(
            failed.to_string(),
            "failed here at 2026-01-05T12:00:00Z; excluded until 2026-01-05T12:10:00Z (or `halcyon package clear`)"
        );
        assert_eq!(
            failed.text(&short),
            "failed here at 12:00; excluded until 12:10 (or `halcyon package clear`)"
        );
        let explanation = Explanation {
            package: "db".into(),
            status: crate::state::PackageStatus::Down,
            nodes: Vec::new(),
            summary: Vec::new(),
            verdicts: vec![NodeVerdict {
                node: "node1".into(),
                rank: Some(1),
                eligible: false,
                reasons: vec![failed],
                notes: Vec::new(),
            }],
        };
        assert_eq!(
            explanation.render(&short),
            "package db: down\nnodes:\n  node1   #1  not eligible: failed here at 12:00; excluded until 12:10 (or `halcyon package clear`)\n"
        );
        assert!(
            explanation
                .to_string()
                .contains("failed here at 2026-01-05T12:00:00Z")
        );
    }

    #[test]
    fn times_written_in_texts_are_shown_as_the_reader_asks_and_nothing_else_is() {
        let short = |t: Timestamp| t.strftime("%H:%M:%S").to_string();
        let cases = [
            (
                "n1 failed here at 2026-01-05T12:00:00Z; excluded until 2026-01-05T12:10:00Z (or `halcyon package clear`)",
                "n1 failed here at 12:00:00; excluded until 12:10:00 (or `halcyon package clear`)",
            ),
            // Fractions of a second, at the start and the end of the text.
            (
                "2026-01-05T12:00:00.25Z to 2026-01-05T13:00:01.000000001Z",
                "12:00:00 to 13:00:01",
            ),
            // Not what rfc3339 writes: a date, a clock time, an offset, a longer number,
            // a time inside a word, an impossible date, a dot without digits.
            ("on 2026-01-05 at 12:00", "on 2026-01-05 at 12:00"),
            ("2026-01-05T12:00:00+01:00", "2026-01-05T12:00:00+01:00"),
            ("12026-01-05T12:00:00Z", "12026-01-05T12:00:00Z"),
            ("x2026-01-05T12:00:00Z", "x2026-01-05T12:00:00Z"),
            ("2026-01-05T12:00:00Zs", "2026-01-05T12:00:00Zs"),
            ("2026-02-30T12:00:00Z", "2026-02-30T12:00:00Z"),
            ("2026-01-05T12:00:00.Z", "2026-01-05T12:00:00.Z"),
            // Other scripts around a time are kept whole.
            ("à 2026-01-05T12:00:00Z, é", "à 12:00:00, é"),
            ("", ""),
        ];
        for (text, shown) in cases {
            assert_eq!(times_as(text, &short), shown, "{text}");
            assert_eq!(times_as(text, &rfc3339), text, "rfc3339 again: {text}");
        }
    }

    #[test]
    fn a_plan_rendered_for_a_reader_shows_the_times_in_its_reasons_and_notes_so_too() {
        let now: Timestamp = "2026-01-05T12:00:00Z".parse().unwrap();
        let plan = Plan {
            event: Event::Timer,
            now,
            steps: vec![Step {
                actions: vec![Action {
                    kind: ActionKind::Run,
                    package: Some("web".into()),
                    node: "n2".into(),
                    reason: format!(
                        "configured_node: n2 is the highest-priority eligible node (n1 {})",
                        Ineligible::FailedHere {
                            at: "2026-01-05T11:59:30Z".parse().unwrap(),
                            until: Some("2026-01-05T12:09:30Z".parse().unwrap()),
                        }
                    ),
                }],
            }],
            state: ClusterState::default(),
            notes: vec![Note {
                package: Some("web".into()),
                text: "failback to n1 deferred until 2026-01-05T18:00:00Z (delayed fallback timer)"
                    .into(),
            }],
            wake_at: Some("2026-01-05T18:00:00Z".parse().unwrap()),
        };
        let short = |t: Timestamp| t.strftime("%H:%M:%S").to_string();
        let text = render_with(&plan, &short);
        assert_eq!(
            text,
            "event: timer at 12:00:00\n\
             step 1:\n\
             \x20 run web on n2: configured_node: n2 is the highest-priority eligible node (n1 failed here at 11:59:30; excluded until 12:09:30 (or `halcyon package clear`))\n\
             result:\n\
             notes:\n\
             \x20 web: failback to n1 deferred until 18:00:00 (delayed fallback timer)\n\
             re-evaluate at: 18:00:00\n"
        );
        // The rendered text as the event log keeps it reads the same through `times_as`.
        assert_eq!(times_as(&render(&plan), &short), text);
    }
}
