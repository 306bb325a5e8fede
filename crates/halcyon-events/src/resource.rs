//! What a user-defined event's monitor samples: its resource variable and instance
//! vector (HACMP Event Management's fields 6 and 7 of a `rules.hacmprd` record) mapped
//! to something a Halcyon node can observe by itself.
//!
//! | resource variable        | instance vector                      | sample (record)                      |
//! | ------------------------ | ------------------------------------ | ------------------------------------ |
//! | `IBM.PSSP.Prog.pcount`   | `ProgName=NAME` [`;UserName=USER`]   | `X@0`: processes named NAME now       |
//! | `IBM.PSSP.Prog.xpcount`  | `ProgName=NAME` [`;UserName=USER`]   | `X@0`: processes now, `X@1`: at the previous sample |
//! | `cmd:COMMAND`            | —                                    | what COMMAND prints: a number or a record |
//!
//! Every instance vector may also hold `NodeNum=*` (every node runs the monitor, the
//! default) or `NodeNum=N` (only the node numbered N). A process is "named NAME" when its
//! `comm` or its `argv[0]`'s base name is NAME, as the `builtin:process_count` sampler
//! counts them; `UserName` counts only the processes whose real user is USER. PSSP's
//! `xpcount` also has `X@2`, the list of process ids: not provided (a predicate naming it
//! fails to evaluate and is logged).
//!
//! Why the `xpcount` record: the seeds' rwho example fires on `X@0==0&&X@1!=0` ("was
//! running at the previous sample, none now") and rearms on `X@0>0`. The previous count is
//! the node's own previous observation; at the first sample it is the current count (no
//! change seen yet), so a program not running when the node starts does not fire.
//!
//! Anything else is a mistake `halcyon check` reports ([`check`]), not a monitor that
//! silently never fires.

use halcyon_config::diagnostic::did_you_mean;

/// The resource variables with a built-in meaning, for messages.
pub const PROGRAM_VARIABLES: [&str; 2] = ["IBM.PSSP.Prog.pcount", "IBM.PSSP.Prog.xpcount"];
/// The prefix of a resource variable that is a command.
pub const COMMAND_PREFIX: &str = "cmd:";

/// Where a rule's monitor takes its samples.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// Processes named `program` (of `user`, if given): `[count]`, or with `previous`
    /// (`xpcount`) `[count, previous count]`.
    ProgramCount {
        program: String,
        user: Option<String>,
        previous: bool,
    },
    /// A command printing a number or a record.
    Command(String),
}

/// Which nodes run a rule's monitor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nodes {
    /// `NodeNum=*`, or no `NodeNum`.
    All,
    /// `NodeNum=N`.
    Number(u32),
}

impl Nodes {
    pub fn includes(self, number: u32) -> bool {
        match self {
            Nodes::All => true,
            Nodes::Number(n) => n == number,
        }
    }
}

/// A monitor definition, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    pub source: Source,
    pub nodes: Nodes,
}

/// A mistake in a resource variable or an instance vector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mistake {
    /// `resource_variable` or `instance_vector`.
    pub field: &'static str,
    /// Byte offset in the field's text where the mistake is.
    pub at: usize,
    pub problem: String,
    pub expected: Option<String>,
    pub hint: Option<String>,
}

const NODE_NUM: &str = "NodeNum";
const PROG_NAME: &str = "ProgName";
const USER_NAME: &str = "UserName";

/// Decodes a resource variable and its instance vector; every mistake is returned.
pub fn check(
    resource_variable: &str,
    instance_vector: Option<&str>,
) -> Result<Decoded, Vec<Mistake>> {
    let mut mistakes = Vec::new();
    let variable = resource_variable.trim();
    let lead = resource_variable.len() - resource_variable.trim_start().len();
    let (kind, keys): (Option<Kind>, &[&str]) = if let Some(command) =
        variable.strip_prefix(COMMAND_PREFIX)
    {
        if command.trim().is_empty() {
            mistakes.push(Mistake {
                field: "resource_variable",
                at: lead,
                problem: "cmd: names no command".to_owned(),
                expected: Some(
                    "cmd: followed by a command printing a number or a record, such as \"cmd:/usr/local/bin/queue-depth\""
                        .to_owned(),
                ),
                hint: None,
            });
            (None, &[NODE_NUM])
        } else {
            (Some(Kind::Command(command.trim().to_owned())), &[NODE_NUM])
        }
    } else if variable == PROGRAM_VARIABLES[0] || variable == PROGRAM_VARIABLES[1] {
        (
            Some(Kind::Program {
                previous: variable == PROGRAM_VARIABLES[1],
            }),
            &[NODE_NUM, PROG_NAME, USER_NAME],
        )
    } else {
        mistakes.push(Mistake {
            field: "resource_variable",
            at: lead,
            problem: format!("\"{variable}\" is not a resource variable Halcyon can sample"),
            expected: Some(format!(
                "{} or {} (with ProgName=NAME in the instance vector), or cmd:COMMAND printing a number or a record",
                PROGRAM_VARIABLES[0], PROGRAM_VARIABLES[1]
            )),
            hint: did_you_mean(variable, PROGRAM_VARIABLES).or_else(|| {
                variable.starts_with("IBM.PSSP.").then(|| {
                    "other PSSP resource variables have no equivalent here: sample them with cmd:COMMAND"
                        .to_owned()
                })
            }),
        });
        (None, &[NODE_NUM, PROG_NAME, USER_NAME])
    };

    let mut nodes = Nodes::All;
    let mut program: Option<String> = None;
    let mut user: Option<String> = None;
    let mut seen: Vec<&str> = Vec::new();
    let vector = instance_vector.unwrap_or("");
    let mut offset = 0;
    for element in vector.split(';') {
        let at = offset + (element.len() - element.trim_start().len());
        offset += element.len() + 1;
        let element = element.trim();
        if element.is_empty() {
            continue;
        }
        let mistake = |problem: String, expected: Option<String>, hint: Option<String>| Mistake {
            field: "instance_vector",
            at,
            problem,
            expected,
            hint,
        };
        let Some((key, value)) = element.split_once('=') else {
            mistakes.push(mistake(
                format!("\"{element}\" is not a Key=Value element"),
                Some(
                    "Key=Value elements separated by ;, such as NodeNum=*;ProgName=rwhod"
                        .to_owned(),
                ),
                None,
            ));
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if !keys.contains(&key) {
            let expected = if keys.len() == 1 {
                "NodeNum (a cmd: resource variable takes no other element)".to_owned()
            } else {
                keys.join(", ")
            };
            mistakes.push(mistake(
                format!("unknown element \"{key}\""),
                Some(expected),
                did_you_mean(key, keys.iter().copied()),
            ));
            continue;
        }
        if seen.contains(&key) {
            mistakes.push(mistake(format!("{key} is given twice"), None, None));
            continue;
        }
        seen.push(key);
        if value.is_empty() {
            mistakes.push(mistake(format!("{key} has no value"), None, None));
            continue;
        }
        match key {
            NODE_NUM if value == "*" => nodes = Nodes::All,
            NODE_NUM => match value.parse::<u32>() {
                Ok(n) if n > 0 => nodes = Nodes::Number(n),
                _ => mistakes.push(mistake(
                    format!("NodeNum={value}: not a node number"),
                    Some("NodeNum=* (every node) or a node's number such as NodeNum=2".to_owned()),
                    None,
                )),
            },
            PROG_NAME if value.contains('/') || value.contains(char::is_whitespace) => mistakes
                .push(mistake(
                    format!("ProgName={value}: a program name has no / or blank"),
                    Some("the program's name as ps shows it, such as ProgName=rwhod".to_owned()),
                    None,
                )),
            PROG_NAME => program = Some(value.to_owned()),
            _ => user = Some(value.to_owned()),
        }
    }
    let source = match kind {
        Some(Kind::Command(command)) => Some(Source::Command(command)),
        Some(Kind::Program { previous }) => match program {
            Some(program) => Some(Source::ProgramCount {
                program,
                user,
                previous,
            }),
            None => {
                mistakes.push(Mistake {
                    field: "instance_vector",
                    at: 0,
                    problem: format!("{variable} needs ProgName, the program to count"),
                    expected: Some(
                        "an instance vector such as \"NodeNum=*;ProgName=rwhod;UserName=root\""
                            .to_owned(),
                    ),
                    hint: None,
                });
                None
            }
        },
        None => None,
    };
    match source {
        Some(source) if mistakes.is_empty() => Ok(Decoded { source, nodes }),
        _ => Err(mistakes),
    }
}

enum Kind {
    Program { previous: bool },
    Command(String),
}

impl crate::rules::MonitorDefinition {
    /// What the monitor samples and where it runs (the rules loader has checked it: an
    /// error here means the definition did not come from a checked rules file).
    pub fn decode(&self) -> Result<Decoded, Vec<Mistake>> {
        check(&self.resource_variable, self.instance_vector.as_deref())
    }

    /// The instance vector as recorded with a sample (empty when none is given).
    pub fn instance_vector_text(&self) -> &str {
        self.instance_vector.as_deref().unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeds_rwho_record() {
        let d = check(
            "IBM.PSSP.Prog.xpcount",
            Some("NodeNum=*;ProgName=rwhod;UserName=root"),
        )
        .unwrap();
        assert_eq!(
            d,
            Decoded {
                source: Source::ProgramCount {
                    program: "rwhod".into(),
                    user: Some("root".into()),
                    previous: true
                },
                nodes: Nodes::All
            }
        );
        let d = check("IBM.PSSP.Prog.pcount", Some("NodeNum=6;ProgName=upr6")).unwrap();
        assert_eq!(d.nodes, Nodes::Number(6));
        assert!(d.nodes.includes(6) && !d.nodes.includes(5));
        let d = check("cmd: /bin/echo 3", None).unwrap();
        assert_eq!(d.source, Source::Command("/bin/echo 3".into()));
    }

    #[test]
    fn mistakes_are_located() {
        let m = check("IBM.PSSP.Prog.xpcount", Some("NodeNum=*; ProgNam=rwhod")).unwrap_err();
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!((m[0].field, m[0].at), ("instance_vector", 11));
        assert_eq!(m[0].hint.as_deref(), Some("did you mean \"ProgName\"?"));
        assert!(m[1].problem.contains("needs ProgName"), "{m:?}");
        let m = check("cmd:x", Some("NodeNum=two")).unwrap_err();
        assert_eq!(m[0].at, 0);
        assert_eq!(m[0].problem, "NodeNum=two: not a node number");
    }
}
