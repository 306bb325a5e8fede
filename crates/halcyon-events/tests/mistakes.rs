//! Malformed recovery programs and rules files, each with the exact messages an
//! administrator reads. One `check` helper per kind of input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use halcyon_events::{Program, parse_rules};

/// Parses `input` as a recovery program; `expected` is every message, one a line
/// ("ok" when it parses).
fn check_program(input: &str, expected: &str) {
    let got = match Program::parse(Path::new("t.rp"), input) {
        Ok(_) => "ok\n".to_owned(),
        Err(d) => d.to_string(),
    };
    assert_eq!(got, expected, "program:\n{input}");
}

#[test]
fn program_mistakes() {
    let cases: &[(&str, &str)] = &[
        (
            "alll \"/bin/x\" 0\n",
            "t.rp:1:1: node set: \"alll\" is not a node set; expected all, event, other, or barrier; hint: did you mean \"all\"?\n",
        ),
        (
            "# comment\n  other \"/bin/x 0\n",
            "t.rp:2:9: command: unterminated quote; expected a closing \" before the end of the line; hint: write \\\" for a quote inside the command\n",
        ),
        (
            "all \"/bin/x\"\n",
            "t.rp:1:13: expected status: missing after the command; expected an exit status from 0 to 255, or X to ignore it\n",
        ),
        (
            "event \"/bin/x\" zero\n",
            "t.rp:1:16: expected status: \"zero\" is not an exit status; expected an exit status from 0 to 255, or X to ignore it\n",
        ),
        (
            "event \"/bin/x\" 256\n",
            "t.rp:1:16: expected status: 256 is out of range; expected an exit status from 0 to 255, or X to ignore it\n",
        ),
        (
            "all /bin/x 0\n",
            "t.rp:1:5: command: /bin/x is not quoted; expected a command in double quotes, such as \"/usr/local/bin/notify\"; hint: write \"/bin/x\"\n",
        ),
        (
            "all\n",
            "t.rp:1:4: command: missing; expected a quoted command after the node set, such as \"/usr/local/bin/notify\"\n",
        ),
        (
            "all \"\" 0\n",
            "t.rp:1:5: command: is empty; expected a command to run, such as \"/usr/local/bin/notify\"\n",
        ),
        (
            "all \"/bin/x\" 0 NULL extra\n",
            "t.rp:1:21: program: unexpected \"extra\" after NULL; expected the end of the line\n",
        ),
        (
            "all \"/bin/x\" -a 0\n",
            "t.rp:1:14: expected status: \"-a\" is not an exit status; expected an exit status from 0 to 255, or X to ignore it\n",
        ),
        (
            "all \"/bin/x\" 0 -v\n",
            "t.rp:1:16: program: unexpected \"-v\" after the expected status; expected the end of the line (or the legacy word NULL); hint: quote the whole command, arguments included\n",
        ),
        (
            "all \"/bin/x\" 0\nNULL\nbarrier\n# fine\nall \"/bin/y\" 0\n",
            "t.rp:3:1: program: content after the NULL line 2 that ends the program; expected only comments or blank lines after NULL; hint: remove the NULL line or this one\n\
             t.rp:5:1: program: content after the NULL line 2 that ends the program; expected only comments or blank lines after NULL; hint: remove the NULL line or this one\n",
        ),
        (
            "barrier now\n",
            "t.rp:1:9: barrier: unexpected \"now\" after barrier; expected the end of the line: a barrier takes no arguments\n",
        ),
        (
            "all \"/bin/x\"0\n",
            "t.rp:1:13: command: unexpected \"0\" right after the closing quote; expected a blank between the command and the expected status\n",
        ),
        // Every mistake, not just the first.
        (
            "evnt \"/bin/a\" 0\nall \"/bin/b\" Y\nother \"/bin/c\n",
            "t.rp:1:1: node set: \"evnt\" is not a node set; expected all, event, other, or barrier; hint: did you mean \"event\"?\n\
             t.rp:2:14: expected status: \"Y\" is not an exit status; expected an exit status from 0 to 255, or X to ignore it\n\
             t.rp:3:7: command: unterminated quote; expected a closing \" before the end of the line; hint: write \\\" for a quote inside the command\n",
        ),
        // Accepted: two barriers in a row, NULL at the end of lines and alone at the
        // end, escaped quotes, comments after a line, any case for keywords.
        (
            "barrier\nbarrier\nALL \"/bin/say \\\"hi\\\"\" x NULL # legacy\nNULL\n\n# end\n",
            "ok\n",
        ),
    ];
    for (input, expected) in cases {
        check_program(input, expected);
    }
}

/// Parses a rules file `rules.toml` with `.rp` files from `files`.
fn check_rules(input: &str, files: &[(&str, &str)], expected: &str) {
    let files: BTreeMap<PathBuf, String> = files
        .iter()
        .map(|(p, t)| (PathBuf::from(p), (*t).to_owned()))
        .collect();
    let mut read = |p: &Path| {
        files.get(p).cloned().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory")
        })
    };
    let got = match parse_rules(Path::new("etc/rules.toml"), input, &mut read) {
        Ok(_) => "ok\n".to_owned(),
        Err(d) => d.to_string(),
    };
    assert_eq!(got, expected, "rules:\n{input}");
}

/// (rules file, .rp files as (path, text), expected messages).
type RulesCase<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

#[test]
fn rules_mistakes() {
    let cases: &[RulesCase] = &[
        (
            "[[event]]\nname = \"node_upp\"\nprogram = 'all \"/bin/x\" 0'\n",
            &[],
            "etc/rules.toml:2:8: event[1].name: \"node_upp\" is not a built-in event; expected a built-in event name, or a user-defined event with resource_variable and predicate; hint: did you mean \"node_up\"?\n",
        ),
        (
            "[[event]]\nname = \"node_up\"\nprogram = '''\nall \"/bin/x\" 0\nbarrier\nall \"halcyon:acquire\" 0\n'''\n",
            &[],
            "etc/rules.toml:3:11: event[1].program: does not keep the built-in lines of node_up (found: all \"halcyon:acquire\" 0); expected its built-in lines: all \"halcyon:release\" 0, barrier, all \"halcyon:acquire\" 0; hint: add your own lines around them, or use before/after\n",
        ),
        (
            // A mistake inside an inline program is located in the rules file.
            "[[event]]\nname = \"node_up\"\nbefore = '''\nall \"/bin/log\" 0\nall \"/bin/x 0\n'''\n",
            &[],
            "etc/rules.toml:5:5: command: unterminated quote; expected a closing \" before the end of the line; hint: write \\\" for a quote inside the command\n",
        ),
        (
            "[[event]]\nname = \"node_down\"\nstate = \"gracefull\"\n",
            &[],
            "etc/rules.toml:3:9: event[1].state: \"gracefull\" is not a state of node_down; expected one of failure, graceful, graceful_takeover, forced; hint: did you mean \"graceful\"?\n",
        ),
        (
            "[[event]]\nname = \"UE_DISK\"\nprogram_file = \"disk.rp\"\nresource_variable = \"cmd:/bin/fs-used\"\n",
            &[("etc/disk.rp", "all \"/bin/x\" 0\n")],
            "etc/rules.toml:1:1: event[1].predicate: missing in [[event]]; expected predicate with the other fields of a user-defined event's monitor\n",
        ),
        (
            // Predicates are checked where they are written, with the column of the mistake.
            "[[event]]\nname = \"UE_RWHO\"\nprogram = 'all \"/bin/x\" 0'\n\
             resource_variable = \"IBM.PSSP.Prog.xpcount\"\ninstance_vector = \"ProgName=rwhod\"\n\
             predicate = \"X@0==0&&\"\nrearm_predicate = \"X@0 >> 0\"\n",
            &[],
            "etc/rules.toml:6:22: event[1].predicate: unexpected end of expression; expected a number, X, \"(\", \"!\" or \"-\"\n\
             etc/rules.toml:7:25: event[1].rearm_predicate: unexpected \">\"; expected a number, X, \"(\", \"!\" or \"-\"\n",
        ),
        (
            // A resource variable Halcyon cannot sample is reported, not silently ignored.
            "[[event]]\nname = \"UE_TMP\"\nprogram = 'all \"/bin/x\" 0'\n\
             resource_variable = \"IBM.PSSP.aixos.FS.%totused\"\ninstance_vector = \"NodeNum=6\"\n\
             predicate = \"X>90\"\nrearm_predicate = \"X<80\"\n",
            &[],
            "etc/rules.toml:4:22: event[1].resource_variable: \"IBM.PSSP.aixos.FS.%totused\" is not a resource variable Halcyon can sample; expected IBM.PSSP.Prog.pcount or IBM.PSSP.Prog.xpcount (with ProgName=NAME in the instance vector), or cmd:COMMAND printing a number or a record; hint: other PSSP resource variables have no equivalent here: sample them with cmd:COMMAND\n",
        ),
        (
            "[[event]]\nname = \"UE_RWHO\"\nprogram = 'all \"/bin/x\" 0'\n\
             resource_variable = \"IBM.PSSP.Prog.xpcnt\"\n\
             instance_vector = \"NodeNum=*;ProgName=rwhod\"\npredicate = \"X@0==0\"\n",
            &[],
            "etc/rules.toml:4:22: event[1].resource_variable: \"IBM.PSSP.Prog.xpcnt\" is not a resource variable Halcyon can sample; expected IBM.PSSP.Prog.pcount or IBM.PSSP.Prog.xpcount (with ProgName=NAME in the instance vector), or cmd:COMMAND printing a number or a record; hint: did you mean \"IBM.PSSP.Prog.xpcount\"?\n",
        ),
        (
            // Instance vector mistakes are located at their element.
            "[[event]]\nname = \"UE_RWHO\"\nprogram = 'all \"/bin/x\" 0'\n\
             resource_variable = \"IBM.PSSP.Prog.xpcount\"\n\
             instance_vector = \"NodeNum=two;ProgNam=rwhod\"\npredicate = \"X@0==0\"\n",
            &[],
            "etc/rules.toml:5:20: event[1].instance_vector: IBM.PSSP.Prog.xpcount needs ProgName, the program to count; expected an instance vector such as \"NodeNum=*;ProgName=rwhod;UserName=root\"\n\
             etc/rules.toml:5:20: event[1].instance_vector: NodeNum=two: not a node number; expected NodeNum=* (every node) or a node's number such as NodeNum=2\n\
             etc/rules.toml:5:32: event[1].instance_vector: unknown element \"ProgNam\"; expected NodeNum, ProgName, UserName; hint: did you mean \"ProgName\"?\n",
        ),
        (
            "[[event]]\nname = \"UE_DISK\"\nprogram_file = \"disk.rp\"\n",
            &[],
            "etc/rules.toml:3:16: event[1].program_file: cannot read etc/disk.rp: No such file or directory; expected a recovery program file, relative to the rules file\n",
        ),
        (
            // A mistake in a .rp file is located in that file.
            "[[event]]\nname = \"UE_DISK\"\nprogram_file = \"disk.rp\"\n",
            &[("etc/disk.rp", "# disk\nal \"/bin/x\" 0\n")],
            "etc/disk.rp:2:1: node set: \"al\" is not a node set; expected all, event, other, or barrier; hint: did you mean \"all\"?\n",
        ),
        (
            "[[event]]\nname = \"node_up\"\nretry = 2\nmax_duration = \"ten minutes\"\nnotfy = \"/bin/page\"\n",
            &[],
            "etc/rules.toml:3:9: event[1].retry: given without a recovery command; expected recovery = \"...\" next to retry\n\
             etc/rules.toml:4:16: event[1].max_duration: \"ten minutes\" is not a duration (expected number at 0); expected a duration such as \"90s\" or \"10m\"\n\
             etc/rules.toml:5:1: event[1].notfy: unknown field; hint: did you mean \"notify\"?\n",
        ),
        (
            "[[event]]\nname = \"node_up\"\nmax_duration = \"2d\"\n",
            &[],
            "etc/rules.toml:3:16: event[1].max_duration: \"2d\" is longer than a day; expected at most 24h (a running event is warned about after this long, and again after every further period)\n",
        ),
        (
            "[[event]]\nname = \"node_up\"\n\n[[event]]\nname = \"node_up\"\nnotify = \"/bin/page\"\n",
            &[],
            "etc/rules.toml:5:8: event[2].name: event \"node_up\" is defined twice (first at line 2); expected one [[event]] per event name and state\n",
        ),
        (
            "[[event]]\nname = \"network_up\"\npredicate = \"X>1\"\nbefore = 'all \"/bin/x\" 0'\nprogram = 'all \"halcyon:release\" 0'\n",
            &[],
            "etc/rules.toml:3:13: event[1].predicate: only for user-defined events; network_up is built in\n\
             etc/rules.toml:4:10: event[1].before: given together with a replacing program; expected before/after to wrap the default program, or program/program_file to replace it; hint: write these lines into the program\n\
             etc/rules.toml:5:11: event[1].program: does not keep the built-in lines of network_up (found: all \"halcyon:release\" 0); expected its built-in lines: all \"halcyon:release\" 0, barrier, all \"halcyon:acquire\" 0; hint: add your own lines around them, or use before/after\n",
        ),
        (
            "[[event]]\nname = \"UE_X\"\n\n[[events]]\nname = \"y\"\n",
            &[],
            "etc/rules.toml:2:8: event[1].program: user-defined event \"UE_X\" has no recovery program; expected program or program_file\n\
             etc/rules.toml:4:3: events: unknown table; expected [[event]] tables; hint: did you mean \"event\"?\n",
        ),
        (
            "[[event]]\nname = \"swap_adapter\"\nrecovery = \"/bin/fix\"\nretry = 1000\n",
            &[],
            "etc/rules.toml:4:9: event[1].retry: 1000 is out of range; expected an integer from 0 to 100\n",
        ),
        (
            "[[event]\nname = \"x\"\n",
            &[],
            "etc/rules.toml:1:9: toml: syntax error: unclosed array table, expected `]`; expected valid TOML\n",
        ),
    ];
    for (input, files, expected) in cases {
        check_rules(input, files, expected);
    }
}
