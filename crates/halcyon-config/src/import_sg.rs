//! The Serviceguard importer: a legacy package ASCII file (`cmmakepkg` format,
//! `KEYWORD value` lines, upper- or lower-case keywords) and its package control
//! script (bash arrays `IP[0]=...`, `SERVICE_CMD[0]=...`, `VG[0]=...`, `LV/FS[...]`
//! and the `customer_defined_run_cmds` / `customer_defined_halt_cmds` functions)
//! become a native package file plus two scripts holding the customer commands.
//!
//! Pure: the caller reads the files and writes the result. Addresses and subnets
//! are matched to the cluster's networks, so the cluster configuration is an
//! input. Keywords Halcyon has no counterpart for are listed as notes, with their
//! line, and never silently dropped.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::model::Cluster;

/// What the importer produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceguardImport {
    pub package: String,
    /// (file name, text): the package file and the customer command scripts.
    pub files: Vec<(PathBuf, String)>,
    /// What was not imported, or imported with a change worth reading.
    pub notes: Vec<String>,
}

/// One `KEY value` line of the package file.
#[derive(Debug, Clone)]
struct Line {
    number: usize,
    key: String,
    value: String,
}

/// A control script's array entries and customer functions.
#[derive(Debug, Default)]
struct ControlScript {
    /// (array name, index) -> (value, line).
    arrays: Vec<(String, usize, String, usize)>,
    run_cmds: Option<String>,
    halt_cmds: Option<String>,
}

impl ControlScript {
    fn get(&self, name: &str, index: usize) -> Option<&str> {
        self.arrays
            .iter()
            .find(|(n, i, _, _)| n == name && *i == index)
            .map(|(_, _, v, _)| v.as_str())
    }

    fn indices(&self, name: &str) -> Vec<usize> {
        let mut out: Vec<usize> = self
            .arrays
            .iter()
            .filter(|(n, _, _, _)| n == name)
            .map(|(_, i, _, _)| *i)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

fn error(path: &Path, line: usize, field: &str, problem: impl Into<String>) -> Diagnostic {
    Diagnostic {
        file: path.to_owned(),
        line,
        column: if line > 0 { 1 } else { 0 },
        field: field.to_owned(),
        problem: problem.into(),
        expected: None,
        hint: None,
    }
}

fn parse_package_file(text: &str) -> Vec<Line> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(char::is_whitespace) {
            Some((k, v)) => (k, v.trim()),
            None => (line, ""),
        };
        let value = value.trim_matches('"').to_owned();
        out.push(Line {
            number: i + 1,
            key: key.to_ascii_uppercase(),
            value,
        });
    }
    out
}

/// Reads `NAME[INDEX]=VALUE` assignments and the two customer functions' bodies.
fn parse_control_script(text: &str) -> ControlScript {
    let mut script = ControlScript::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(name) = function_name(line) {
            // Collect the body between the function's braces.
            let mut depth = 0i32;
            let mut body = Vec::new();
            let mut started = false;
            while i < lines.len() {
                let l = lines[i];
                let opens = l.matches('{').count() as i32;
                let closes = l.matches('}').count() as i32;
                if started && !(depth + opens - closes <= 0 && l.trim() == "}") {
                    body.push(l);
                }
                if opens > 0 && !started {
                    started = true;
                    depth += opens - closes;
                    // Text after the opening brace on the same line is part of the body.
                    if let Some(rest) = l.split_once('{').map(|(_, r)| r.trim())
                        && !rest.is_empty()
                        && rest != "}"
                    {
                        body.push(rest);
                    }
                } else if started {
                    depth += opens - closes;
                }
                i += 1;
                if started && depth <= 0 {
                    break;
                }
            }
            let body = dedent(&body);
            match name {
                "customer_defined_run_cmds" => script.run_cmds = Some(body),
                "customer_defined_halt_cmds" => script.halt_cmds = Some(body),
                _ => {}
            }
            continue;
        }
        for statement in split_statements(line) {
            if let Some((lhs, rhs)) = statement.split_once('=')
                && let Some((name, index)) = lhs.trim().split_once('[')
                && let Some(index) = index.strip_suffix(']')
                && let Ok(index) = index.parse::<usize>()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit())
            {
                let value = rhs.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                // A later assignment replaces an earlier one, as in the shell.
                script
                    .arrays
                    .retain(|(n, j, _, _)| !(n == name && *j == index));
                script
                    .arrays
                    .push((name.to_owned(), index, value.to_owned(), i + 1));
            }
        }
        i += 1;
    }
    script
}

/// The `;`-separated statements of a line (quotes respected; a `#` outside quotes
/// starts a comment).
fn split_statements(line: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    for (i, c) in line.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, ';') => {
                out.push(line[start..i].trim());
                start = i + 1;
            }
            (None, '#') => {
                out.push(line[start..i].trim());
                return out;
            }
            _ => {}
        }
    }
    out.push(line[start..].trim());
    out
}

fn function_name(line: &str) -> Option<&str> {
    let line = line.trim();
    let name = if let Some(rest) = line.strip_prefix("function ") {
        rest.split(|c: char| c.is_whitespace() || c == '(' || c == '{')
            .next()?
    } else if let Some((name, _)) = line.split_once("()") {
        name.trim()
    } else {
        return None;
    };
    (!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .then_some(name)
}

fn dedent(lines: &[&str]) -> String {
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out: Vec<&str> = lines
        .iter()
        .map(|l| {
            if l.len() >= indent {
                &l[indent..]
            } else {
                l.trim()
            }
        })
        .collect();
    while out.first().is_some_and(|l| l.trim().is_empty()) {
        out.remove(0);
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    out.join("\n")
}

fn yes_no(value: &str) -> Option<bool> {
    match value.to_ascii_uppercase().as_str() {
        "YES" | "ENABLED" | "TRUE" => Some(true),
        "NO" | "DISABLED" | "FALSE" => Some(false),
        _ => None,
    }
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Serviceguard's `-r N` / `-R` restart option.
fn restarts(option: &str) -> Result<u32, String> {
    let words: Vec<&str> = option.split_whitespace().collect();
    match words.as_slice() {
        [] => Ok(0),
        ["-R"] => Ok(crate::model::limits::SERVICE_RESTART_MAX),
        ["-r", n] => n
            .parse()
            .map_err(|_| format!("\"{n}\" is not a restart count")),
        _ => Err(format!("\"{option}\" is not \"-r N\" or \"-R\"")),
    }
}

/// Imports a Serviceguard package (`package_path` with `package_text`) and, if
/// given, its control script, against the cluster's networks.
pub fn import_serviceguard(
    package_path: &Path,
    package_text: &str,
    control: Option<(&Path, &str)>,
    cluster: &Cluster,
) -> Result<ServiceguardImport, Diagnostics> {
    let lines = parse_package_file(package_text);
    let mut errors = Vec::new();
    let mut notes = Vec::new();
    let script = control
        .map(|(_, text)| parse_control_script(text))
        .unwrap_or_default();
    let script_path = control.map(|(p, _)| p.to_owned()).unwrap_or_default();

    let one = |key: &str| lines.iter().find(|l| l.key == key);
    let Some(name) = one("PACKAGE_NAME").map(|l| l.value.clone()) else {
        return Err(Diagnostics(vec![error(
            package_path,
            0,
            "PACKAGE_NAME",
            "missing",
        )]));
    };
    let mut toml = String::new();
    let _ = writeln!(
        toml,
        "# Imported from {} by `halcyon import serviceguard`.",
        package_path.display()
    );
    let _ = writeln!(toml, "[package]\nname = {}", quote(&name));

    let mut services: Vec<(String, Option<bool>, Option<String>, usize)> = Vec::new();
    let mut dependencies: Vec<(String, Option<String>, Option<String>)> = Vec::new();
    let mut nodes = Vec::new();
    let mut node_fail_fast = false;
    for l in &lines {
        let v = l.value.as_str();
        match l.key.as_str() {
            "PACKAGE_NAME" | "RUN_SCRIPT" | "HALT_SCRIPT" => {}
            "PACKAGE_TYPE" => match v.to_ascii_uppercase().as_str() {
                "FAILOVER" | "MULTI_NODE" | "SYSTEM_MULTI_NODE" => {
                    let _ = writeln!(toml, "type = {}", quote(&v.to_ascii_lowercase()));
                }
                _ => errors.push(error(
                    package_path,
                    l.number,
                    "PACKAGE_TYPE",
                    format!("\"{v}\" is not FAILOVER, MULTI_NODE or SYSTEM_MULTI_NODE"),
                )),
            },
            "NODE_NAME" => nodes.push(v.to_owned()),
            "AUTO_RUN" | "PKG_SWITCHING_ENABLED" => match yes_no(v) {
                Some(b) => {
                    let _ = writeln!(toml, "auto_run = {b}");
                }
                None => errors.push(error(
                    package_path,
                    l.number,
                    &l.key,
                    format!("\"{v}\" is not YES or NO"),
                )),
            },
            "LOCAL_LAN_FAILOVER_ALLOWED" | "NET_SWITCHING_ENABLED" => match yes_no(v) {
                Some(b) => {
                    let _ = writeln!(toml, "local_lan_failover_allowed = {b}");
                }
                None => errors.push(error(
                    package_path,
                    l.number,
                    &l.key,
                    format!("\"{v}\" is not YES or NO"),
                )),
            },
            "NODE_FAIL_FAST_ENABLED" => node_fail_fast = yes_no(v).unwrap_or(false),
            "FAILOVER_POLICY" | "FAILBACK_POLICY" => {
                let _ = writeln!(
                    toml,
                    "{} = {}",
                    l.key.to_ascii_lowercase(),
                    quote(&v.to_ascii_lowercase())
                );
            }
            "PRIORITY" => {
                if !v.eq_ignore_ascii_case("NO_PRIORITY") {
                    match v.parse::<u32>() {
                        Ok(n) => {
                            let _ = writeln!(toml, "priority = {n}");
                        }
                        Err(_) => errors.push(error(
                            package_path,
                            l.number,
                            "PRIORITY",
                            format!("\"{v}\" is not a number or NO_PRIORITY"),
                        )),
                    }
                }
            }
            "RUN_SCRIPT_TIMEOUT" | "HALT_SCRIPT_TIMEOUT" => {
                let field = if l.key == "RUN_SCRIPT_TIMEOUT" {
                    "run_timeout"
                } else {
                    "halt_timeout"
                };
                if v.eq_ignore_ascii_case("NO_TIMEOUT") {
                    notes.push(format!("{}:{}: {} NO_TIMEOUT: Halcyon bounds every command; the default ({}s) applies", package_path.display(), l.number, l.key, crate::model::DEFAULT_SCRIPT_TIMEOUT.as_secs()));
                } else {
                    match v.parse::<u64>() {
                        Ok(n) => {
                            let _ = writeln!(toml, "{field} = \"{n}s\"");
                        }
                        Err(_) => errors.push(error(
                            package_path,
                            l.number,
                            &l.key,
                            format!("\"{v}\" is not a number of seconds or NO_TIMEOUT"),
                        )),
                    }
                }
            }
            "SERVICE_NAME" => services.push((v.to_owned(), None, None, l.number)),
            "SERVICE_FAIL_FAST_ENABLED" => match services.last_mut() {
                Some(s) => s.1 = yes_no(v),
                None => errors.push(error(
                    package_path,
                    l.number,
                    &l.key,
                    "comes before any SERVICE_NAME",
                )),
            },
            "SERVICE_HALT_TIMEOUT" => match services.last_mut() {
                Some(s) => s.2 = Some(v.to_owned()),
                None => errors.push(error(
                    package_path,
                    l.number,
                    &l.key,
                    "comes before any SERVICE_NAME",
                )),
            },
            "DEPENDENCY_NAME" => dependencies.push((v.to_owned(), None, None)),
            "DEPENDENCY_CONDITION" => match dependencies.last_mut() {
                Some(d) => d.1 = Some(v.to_owned()),
                None => errors.push(error(
                    package_path,
                    l.number,
                    &l.key,
                    "comes before any DEPENDENCY_NAME",
                )),
            },
            "DEPENDENCY_LOCATION" => match dependencies.last_mut() {
                Some(d) => d.2 = Some(v.to_ascii_lowercase()),
                None => errors.push(error(
                    package_path,
                    l.number,
                    &l.key,
                    "comes before any DEPENDENCY_NAME",
                )),
            },
            "SUBNET" => {
                // Checked with the control script's IP/SUBNET arrays below.
                if let Ok(addr) = v.parse::<IpAddr>()
                    && !cluster
                        .networks
                        .iter()
                        .any(|n| n.subnets.iter().any(|s| s.contains(addr)))
                {
                    errors.push(error(
                        package_path,
                        l.number,
                        "SUBNET",
                        format!("{v} is in none of the cluster's networks"),
                    ));
                }
            }
            other => notes.push(format!(
                "{}:{}: {other} is not imported (Halcyon has no counterpart)",
                package_path.display(),
                l.number
            )),
        }
    }
    if nodes.is_empty() {
        errors.push(error(
            package_path,
            0,
            "NODE_NAME",
            "no NODE_NAME line: the package has no node list",
        ));
    }
    let nodes_toml: Vec<String> = nodes.iter().map(|n| quote(n)).collect();
    let _ = writeln!(toml, "nodes = [{}]", nodes_toml.join(", "));

    for (dep, condition, location) in &dependencies {
        let _ = writeln!(toml, "\n[[dependency]]\npackage = {}", quote(dep));
        if let Some(c) = condition {
            let up = c
                .split('=')
                .nth(1)
                .map(|s| s.trim().eq_ignore_ascii_case("up"))
                .unwrap_or(false);
            if !up {
                errors.push(error(
                    package_path,
                    0,
                    "DEPENDENCY_CONDITION",
                    format!("\"{c}\" is not \"PACKAGE = UP\""),
                ));
            }
        }
        if let Some(l) = location {
            let _ = writeln!(toml, "location = {}", quote(l));
        }
    }

    // Resources in Serviceguard's start order: volume groups, file systems,
    // addresses, the customer run commands, services.
    for i in script.indices("VG") {
        let vg = script.get("VG", i).unwrap_or_default();
        let _ = writeln!(
            toml,
            "\n[[resource]]\nkind = \"volume\"\nname = {}\nactivate = {}\ndeactivate = {}",
            quote(vg),
            quote(&format!("vgchange -a e {vg}")),
            quote(&format!("vgchange -a n {vg}"))
        );
    }
    for i in script.indices("LV") {
        let lv = script.get("LV", i).unwrap_or_default();
        let Some(fs) = script.get("FS", i) else {
            errors.push(error(
                &script_path,
                0,
                &format!("FS[{i}]"),
                format!("LV[{i}]={lv} has no FS[{i}] mount point"),
            ));
            continue;
        };
        let fstype = script.get("FS_TYPE", i).unwrap_or("ext4");
        let _ = write!(
            toml,
            "\n[[resource]]\nkind = \"filesystem\"\ndevice = {}\nmount_point = {}\nfstype = {}\n",
            quote(lv),
            quote(fs),
            quote(fstype)
        );
        if let Some(opts) = script
            .get("FS_MOUNT_OPT", i)
            .map(|o| o.trim_start_matches("-o").trim())
            .filter(|o| !o.is_empty())
        {
            let _ = writeln!(toml, "options = {}", quote(opts));
        }
    }
    for i in script.indices("IP") {
        let ip_text = script.get("IP", i).unwrap_or_default();
        let line = script
            .arrays
            .iter()
            .find(|(n, j, _, _)| n == "IP" && *j == i)
            .map_or(0, |a| a.3);
        let Ok(ip) = ip_text.parse::<IpAddr>() else {
            errors.push(error(
                &script_path,
                line,
                &format!("IP[{i}]"),
                format!("\"{ip_text}\" is not an IP address"),
            ));
            continue;
        };
        let found = cluster
            .networks
            .iter()
            .find_map(|n| n.subnets.iter().find(|s| s.contains(ip)).map(|s| (n, s)));
        match found {
            Some((network, subnet)) => {
                let _ = writeln!(
                    toml,
                    "\n[[resource]]\nkind = \"ip\"\nnetwork = {}\naddress = \"{ip}/{}\"",
                    quote(network.name.as_str()),
                    subnet.prefix
                );
            }
            None => errors.push(error(
                &script_path,
                line,
                &format!("IP[{i}]"),
                format!("{ip} is in none of the cluster's networks' subnets"),
            )),
        }
    }
    let mut files = Vec::new();
    if script.run_cmds.is_some() || script.halt_cmds.is_some() {
        let run_name = format!("{name}-run.sh");
        let halt_name = format!("{name}-halt.sh");
        let wrap = |which: &str, body: &Option<String>| {
            format!(
                "#!/bin/sh\n# {which} of package {name}, from {} (customer_defined_{which}_cmds).\n# Halcyon runs it again after a failover: it must cope with state left by a node that\n# panicked (stale locks, half-started daemons) and be safe to re-run.\n{}\n",
                script_path.display(),
                body.as_deref().unwrap_or(":")
            )
        };
        let run = wrap("run", &script.run_cmds);
        let halt = wrap("halt", &script.halt_cmds);
        if run.contains("test_return") || halt.contains("test_return") {
            notes.push("the customer commands call test_return, a Serviceguard control-script helper: replace it (a failing command should `exit 1`)".to_owned());
        }
        files.push((PathBuf::from(&run_name), run));
        files.push((PathBuf::from(&halt_name), halt));
        let _ = writeln!(
            toml,
            "\n[[resource]]\nkind = \"script\"\nname = \"customer_defined_cmds\"\nrun = {}\nhalt = {}",
            quote(&format!("sh /etc/halcyon/scripts/{run_name}")),
            quote(&format!("sh /etc/halcyon/scripts/{halt_name}"))
        );
        notes.push(format!("the customer commands are in {run_name} and {halt_name}; install them in /etc/halcyon/scripts/ on every node"));
    }
    for (service, fail_fast, halt_timeout, line) in &services {
        let index = script
            .indices("SERVICE_NAME")
            .into_iter()
            .find(|&i| script.get("SERVICE_NAME", i) == Some(service.as_str()));
        let Some(command) = index.and_then(|i| script.get("SERVICE_CMD", i)) else {
            errors.push(error(
                package_path,
                *line,
                "SERVICE_NAME",
                format!("service \"{service}\" has no SERVICE_CMD in the control script"),
            ));
            continue;
        };
        let restart = match index
            .and_then(|i| script.get("SERVICE_RESTART", i))
            .map(restarts)
        {
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                errors.push(error(&script_path, 0, "SERVICE_RESTART", e));
                0
            }
            None => 0,
        };
        let _ = write!(
            toml,
            "\n[[resource]]\nkind = \"service\"\nname = {}\ncommand = {}\nrestart = {restart}\n",
            quote(service),
            quote(command)
        );
        if fail_fast.unwrap_or(false) || node_fail_fast {
            let _ = writeln!(toml, "node_fail_fast = true");
        }
        if let Some(t) = halt_timeout
            .as_deref()
            .filter(|t| !t.eq_ignore_ascii_case("NO_TIMEOUT"))
        {
            match t.parse::<u64>() {
                Ok(n) => {
                    let _ = writeln!(toml, "halt_timeout = \"{n}s\"");
                }
                Err(_) => errors.push(error(
                    package_path,
                    *line,
                    "SERVICE_HALT_TIMEOUT",
                    format!("\"{t}\" is not a number of seconds"),
                )),
            }
        }
    }
    if node_fail_fast {
        notes.push(
            "NODE_FAIL_FAST_ENABLED YES: imported as node_fail_fast on every service".to_owned(),
        );
    }

    if !errors.is_empty() {
        let mut d = Diagnostics(errors);
        d.sort();
        return Err(d);
    }
    files.insert(0, (PathBuf::from(format!("{name}.toml")), toml));
    Ok(ServiceguardImport {
        package: name,
        files,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_script_arrays_and_functions() {
        let script = parse_control_script(
            "IP[0]=\"198.18.1.50\"\nSUBNET[0]=\"198.18.1.0\"\nSERVICE_NAME[0]=\"snad\"\nSERVICE_CMD[0]=\"/opt/sna/bin/snad -f\"\nfunction customer_defined_run_cmds\n{\n    snap stop\n    snap start\n}\nfunction customer_defined_halt_cmds\n{\nsnap stop\n}\n",
        );
        assert_eq!(script.get("IP", 0), Some("198.18.1.50"));
        assert_eq!(script.get("SERVICE_CMD", 0), Some("/opt/sna/bin/snad -f"));
        assert_eq!(script.run_cmds.as_deref(), Some("snap stop\nsnap start"));
        assert_eq!(script.halt_cmds.as_deref(), Some("snap stop"));
        let script =
            parse_control_script("LV[0]=\"/dev/a\"; FS[0]=\"/x;y\" # c\nLV[0]=\"/dev/b\"\n");
        assert_eq!(script.get("FS", 0), Some("/x;y"));
        assert_eq!(script.get("LV", 0), Some("/dev/b"));
    }

    #[test]
    fn restart_options() {
        assert_eq!(restarts("-r 2"), Ok(2));
        assert_eq!(restarts(""), Ok(0));
        assert!(restarts("-x").is_err());
    }
}
