//! Pacemaker + Corosync in the comparison (Debian's packages). Every host runs
//! `unshare -m -u --propagation private sh -c INIT` in its network namespace; the init
//! bind-mounts per-host directories (kept in the host's lab directory, its "disk") over
//! `/etc/corosync`, `/var/lib/corosync`, `/var/lib/pacemaker`, `/var/log/pacemaker` and
//! `/var/log/corosync`, mounts a fresh tmpfs on `/run` and `/dev/shm`, sets the hostname, starts
//! `corosync -f`, waits until `corosync-cfgtool -s` answers, starts `pacemakerd` and waits.
//! Commands run "on" a host through `nsenter -t INIT -n -m -u`.
//!
//! Corosync: knet transport, a nodelist of the lab addresses (unicast only), votequorum, Debian
//! defaults otherwise (token 3000 + 650 ms per node above 2). Pacemaker: `stonith-enabled=false`,
//! `resource-stickiness=100`, a group `web` of `ocf:heartbeat:IPaddr2` (198.18.1.200/24 on eth1)
//! and `ocf:heartbeat:anything` running `halcyon-lab serve-name` named after the host.
//! Killing the init and everything else in the namespace (what a power-off does, and what the
//! lab's Drop does) unmounts everything: a mount namespace disappears with its last process.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{CompareOptions, HOSTS, Row, SERVICE_ADDRESS, SERVICE_PORT, System, build_lab};
use crate::command::Invocation;
use crate::names::{self, CLIENT};
use crate::{HostProcess, Lab, host_label};

pub const SYSTEM: &str = "Pacemaker+Corosync";
pub const FENCING_NOTE: &str = "Pacemaker: fencing disabled for the measurement (stonith-enabled=false); Pacemaker gives no split-brain protection for a hung node without it";
/// Programs and agents the measurement needs, with their Debian package.
const NEEDED: [(&str, &str); 6] = [
    ("corosync", "corosync"),
    ("corosync-cfgtool", "corosync"),
    ("pacemakerd", "pacemaker"),
    ("crm_mon", "pacemaker-cli-utils"),
    ("cibadmin", "pacemaker-cli-utils"),
    ("crm_attribute", "pacemaker-cli-utils"),
];
const AGENTS: [&str; 2] = [
    "/usr/lib/ocf/resource.d/heartbeat/IPaddr2",
    "/usr/lib/ocf/resource.d/heartbeat/anything",
];
/// Longest time one command on a host may take.
const HOST_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// After the state looks stable, this long more (a rejoined node's resource probes).
const SETTLE: Duration = Duration::from_secs(2);

/// True when `program` is an executable file on PATH.
pub(super) fn on_path(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|directory| directory.join(program).is_file())
    })
}

/// What is missing, if anything (programs by package, resource agents by path).
pub fn missing_packages() -> Option<String> {
    let mut missing: Vec<String> = NEEDED
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(program, package)| format!("{program} ({package})"))
        .collect();
    missing.extend(
        AGENTS
            .iter()
            .filter(|agent| !Path::new(agent).is_file())
            .map(|agent| format!("{agent} (resource-agents)")),
    );
    (!missing.is_empty()).then(|| missing.join(", "))
}

/// corosync.conf for a lab of `hosts` hosts.
pub fn corosync_conf(hosts: usize) -> String {
    let mut text = String::from(
        "# Written by halcyon-lab compare. Debian defaults except the nodelist and logging.\n\
         totem {\n  version: 2\n  cluster_name: halcyonlab\n  transport: knet\n  crypto_cipher: none\n  crypto_hash: none\n}\n\n\
         logging {\n  fileline: off\n  to_stderr: no\n  to_logfile: yes\n  logfile: /var/log/corosync/corosync.log\n  to_syslog: no\n  timestamp: hires\n}\n\n\
         quorum {\n  provider: corosync_votequorum\n}\n\nnodelist {\n",
    );
    for host in 1..=hosts {
        let _ = writeln!(
            text,
            "  node {{\n    name: {}\n    nodeid: {host}\n    ring0_addr: {}\n  }}",
            host_label(host),
            names::host_address(host, 1)
        );
    }
    text.push_str("}\n");
    text
}

/// The resources: a group of the address and the HTTP service, as CIB XML.
fn resources_xml(serve_script: &Path) -> String {
    format!(
        "<group id=\"web\">\
<primitive id=\"web-ip\" class=\"ocf\" provider=\"heartbeat\" type=\"IPaddr2\">\
<instance_attributes id=\"web-ip-params\">\
<nvpair id=\"web-ip-ip\" name=\"ip\" value=\"{SERVICE_ADDRESS}\"/>\
<nvpair id=\"web-ip-cidr\" name=\"cidr_netmask\" value=\"{}\"/>\
<nvpair id=\"web-ip-nic\" name=\"nic\" value=\"{}\"/>\
</instance_attributes>\
<operations><op id=\"web-ip-monitor\" name=\"monitor\" interval=\"10s\"/></operations>\
</primitive>\
<primitive id=\"web-http\" class=\"ocf\" provider=\"heartbeat\" type=\"anything\">\
<instance_attributes id=\"web-http-params\">\
<nvpair id=\"web-http-binfile\" name=\"binfile\" value=\"{}\"/>\
</instance_attributes>\
<operations><op id=\"web-http-monitor\" name=\"monitor\" interval=\"10s\"/></operations>\
</primitive>\
</group>",
        names::NETWORK_PREFIX_LENGTH,
        names::interface(1),
        serve_script.display()
    )
}

/// The init of a host (see the module documentation). `$HALCYON_LAB_HOST_DIRECTORY` is the
/// host's disk.
fn init_script(host: usize) -> String {
    format!(
        r#"set -e
D="$HALCYON_LAB_HOST_DIRECTORY/pacemaker"
mkdir -p "$D/etc-corosync/uidgid.d" "$D/var-lib-corosync" "$D/var-log-corosync" "$D/var-log-pacemaker"
for sub in cib pengine blackbox cores; do
  mkdir -p "$D/var-lib-pacemaker/$sub"
  chown hacluster:haclient "$D/var-lib-pacemaker/$sub"
  chmod 750 "$D/var-lib-pacemaker/$sub"
done
chown hacluster:haclient "$D/var-log-pacemaker"
chmod 770 "$D/var-log-pacemaker"
mount --bind "$D/etc-corosync" /etc/corosync
mount --bind "$D/var-lib-corosync" /var/lib/corosync
mount --bind "$D/var-lib-pacemaker" /var/lib/pacemaker
mount --bind "$D/var-log-pacemaker" /var/log/pacemaker
mount --bind "$D/var-log-corosync" /var/log/corosync
mount -t tmpfs -o mode=0755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mkdir -p /run/lock /run/resource-agents
echo {name} > /proc/sys/kernel/hostname
corosync -f &
tries=0
until corosync-cfgtool -s >/dev/null 2>&1; do
  tries=$((tries + 1))
  if [ $tries -gt 300 ]; then echo "corosync did not answer" >&2; exit 1; fi
  sleep 0.1
done
PCMK_logfile=/var/log/pacemaker/pacemaker.log PCMK_logfacility=none pacemakerd &
wait
"#,
        name = host_label(host)
    )
}

/// Tags named `tag` in `xml`, each as its attributes (a minimal reader for crm_mon's output).
fn tags(xml: &str, tag: &str) -> Vec<HashMap<String, String>> {
    let opening = format!("<{tag} ");
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&opening) {
        let after = &rest[start + opening.len()..];
        let end = after.find('>').unwrap_or(after.len());
        let mut attributes = HashMap::new();
        let mut text = &after[..end];
        while let Some(equals) = text.find("=\"") {
            let name = text[..equals].trim().to_string();
            let value_start = equals + 2;
            let Some(length) = text[value_start..].find('"') else {
                break;
            };
            attributes.insert(name, text[value_start..value_start + length].to_string());
            text = &text[value_start + length + 1..];
        }
        found.push(attributes);
        rest = &after[end..];
    }
    found
}

/// From crm_mon's XML: Ok(host running the whole group) when every node is online, a DC exists
/// and both resources run on the same node; else what is missing.
fn placement(xml: &str, hosts: usize) -> Result<usize, String> {
    let dc = tags(xml, "current_dc");
    if dc
        .first()
        .and_then(|attributes| attributes.get("present"))
        .map(String::as_str)
        != Some("true")
    {
        return Err("no DC".into());
    }
    let nodes = tags(xml, "node");
    let online = nodes
        .iter()
        .filter(|node| node.get("online").map(String::as_str) == Some("true"))
        .filter_map(|node| node.get("name").cloned())
        .collect::<std::collections::BTreeSet<_>>();
    if online.len() < hosts {
        return Err(format!("online: {online:?}"));
    }
    // Resource entries are followed by the nodes they run on: `<resource id=.. role=..>
    // <node name=.. />`.
    let mut holders = Vec::new();
    for id in ["web-ip", "web-http"] {
        let marker = format!("<resource id=\"{id}\"");
        let start = xml
            .find(&marker)
            .ok_or_else(|| format!("{id} not in the status"))?;
        let section = &xml[start..];
        let end = section.find("</resource>").unwrap_or(section.len());
        let section = &section[..end];
        let resource = tags(section, "resource");
        let role = resource
            .first()
            .and_then(|attributes| attributes.get("role"))
            .cloned()
            .unwrap_or_default();
        if role != "Started" {
            return Err(format!("{id} is {role}"));
        }
        let on: Vec<String> = tags(section, "node")
            .into_iter()
            .filter_map(|node| node.get("name").cloned())
            .collect();
        if on.len() != 1 {
            return Err(format!("{id} runs on {on:?}"));
        }
        holders.push(on[0].clone());
    }
    if holders[0] != holders[1] {
        return Err(format!(
            "address on {}, service on {}",
            holders[0], holders[1]
        ));
    }
    holders[0]
        .strip_prefix('h')
        .and_then(|number| number.parse().ok())
        .ok_or_else(|| format!("unknown node {}", holders[0]))
}

struct Pacemaker {
    lab: Lab,
    inits: Vec<Option<HostProcess>>,
    serve_script: PathBuf,
    configured: bool,
    /// Corosync's token timeout as it runs (from corosync-cmapctl).
    token: Option<String>,
    /// The designated controller when the cluster was last seen stable.
    dc: Option<usize>,
}

impl Pacemaker {
    fn start_host(&mut self, host: usize) -> Result<()> {
        let directory = self.lab.host_directory(host).join("pacemaker");
        std::fs::create_dir_all(directory.join("etc-corosync"))
            .context("creating the host's corosync directory")?;
        std::fs::write(
            directory.join("etc-corosync").join("corosync.conf"),
            corosync_conf(HOSTS),
        )
        .context("writing corosync.conf")?;
        let script = init_script(host);
        let init = self.lab.spawn(
            host,
            "unshare",
            &["-m", "-u", "--propagation", "private", "sh", "-c", &script],
            &[],
        )?;
        self.inits[host] = Some(init);
        Ok(())
    }

    /// Runs `args` on `host` (its network, mount and UTS namespaces); the output, whatever the
    /// status.
    fn on_host(&self, host: usize, args: &[&str]) -> Result<std::process::Output> {
        let init = self.inits[host].with_context(|| format!("h{host} was never started"))?;
        let pid = init.pid.to_string();
        let mut full = vec!["-t", &pid, "-n", "-m", "-u", "--"];
        full.extend_from_slice(args);
        Ok(Invocation::new("nsenter", &full)
            .timeout(HOST_COMMAND_TIMEOUT)
            .output()?)
    }

    fn on_host_checked(&self, host: usize, args: &[&str]) -> Result<String> {
        let output = self.on_host(host, args)?;
        if !output.status.success() {
            bail!(
                "`{}` on h{host} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The first host whose init runs.
    fn any_live_host(&self) -> Option<usize> {
        self.lab
            .hosts()
            .find(|&host| self.inits[host].is_some_and(|init| self.lab.is_running(&init)))
    }

    fn configure(&mut self, host: usize) -> Result<()> {
        self.on_host_checked(
            host,
            &[
                "crm_attribute",
                "--type",
                "crm_config",
                "--name",
                "stonith-enabled",
                "--update",
                "false",
            ],
        )?;
        self.on_host_checked(
            host,
            &[
                "crm_attribute",
                "--type",
                "rsc_defaults",
                "--name",
                "resource-stickiness",
                "--update",
                "100",
            ],
        )?;
        let xml = resources_xml(&self.serve_script);
        self.on_host_checked(
            host,
            &[
                "cibadmin",
                "--create",
                "-o",
                "resources",
                "--xml-text",
                &xml,
            ],
        )?;
        self.configured = true;
        Ok(())
    }
}

impl System for Pacemaker {
    fn lab(&self) -> &Lab {
        &self.lab
    }

    fn power_on(&mut self, host: usize) -> Result<()> {
        crate::fault::power_on(&self.lab, host)?;
        self.start_host(host)
    }

    fn role(&self, host: usize) -> Option<&'static str> {
        (self.dc == Some(host)).then_some("DC")
    }

    fn role_host(&self) -> Option<usize> {
        self.dc
    }

    fn move_package(&mut self, host: usize) -> Result<()> {
        let on = self.any_live_host().context("no host runs")?;
        let node = host_label(host);
        self.on_host_checked(on, &["crm_resource", "--move", "-r", "web", "-N", &node])?;
        Ok(())
    }

    fn moved(&mut self) -> Result<()> {
        let on = self.any_live_host().context("no host runs")?;
        self.on_host_checked(on, &["crm_resource", "--clear", "-r", "web"])?;
        Ok(())
    }

    fn scaffolding(&self, host: usize) -> Vec<u32> {
        self.inits[host].map(|init| init.pid).into_iter().collect()
    }

    fn wait_stable(&mut self, deadline: Instant) -> Result<usize> {
        let mut stable_since: Option<(Instant, usize)> = None;
        let mut missing = String::from("nothing checked");
        loop {
            for host in self.lab.hosts() {
                let init = self.inits[host].with_context(|| format!("h{host} never started"))?;
                if !self.lab.is_running(&init) {
                    bail!(
                        "the init of h{host} has exited (see its log {})",
                        self.lab.log_path(host).display()
                    );
                }
            }
            let state = match self.any_live_host() {
                Some(host) => self
                    .on_host(host, &["crm_mon", "-1", "--output-as=xml"])
                    .map(|output| String::from_utf8_lossy(&output.stdout).into_owned()),
                None => bail!("no host runs"),
            };
            let outcome = match state {
                Ok(xml) if !self.configured => {
                    // A fresh cluster: configure it once every node is online under a DC.
                    match placement(&xml, HOSTS) {
                        Err(gap) if gap.ends_with("not in the status") => {
                            let host = self.any_live_host().unwrap_or(1);
                            self.configure(host)?;
                            Err("just configured".to_string())
                        }
                        other => other,
                    }
                }
                Ok(xml) => {
                    self.dc = tags(&xml, "current_dc")
                        .first()
                        .and_then(|attributes| attributes.get("name"))
                        .and_then(|name| name.strip_prefix('h')?.parse().ok());
                    placement(&xml, HOSTS)
                }
                Err(error) => Err(format!("crm_mon: {error:#}")),
            };
            let outcome = outcome.and_then(|holder| {
                let answer = self
                    .lab
                    .http_get(
                        CLIENT,
                        std::net::SocketAddrV4::new(SERVICE_ADDRESS, SERVICE_PORT),
                        Duration::from_millis(300),
                    )
                    .map_err(|error| format!("HTTP: {error}"))?;
                if super::host_of_answer(&answer) == Some(holder) {
                    Ok(holder)
                } else {
                    Err(format!("placed on h{holder}, {answer} answers"))
                }
            });
            match outcome {
                Ok(holder) => match stable_since {
                    Some((since, known)) if known == holder && since.elapsed() >= SETTLE => {
                        if self.token.is_none() {
                            self.token = self
                                .on_host(
                                    holder,
                                    &["corosync-cmapctl", "-g", "runtime.config.totem.token"],
                                )
                                .ok()
                                .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
                                .and_then(|text| {
                                    text.rsplit('=')
                                        .next()
                                        .map(|value| value.trim().to_string())
                                })
                                .filter(|value| !value.is_empty());
                        }
                        return Ok(holder);
                    }
                    Some((_, known)) if known == holder => {}
                    _ => stable_since = Some((Instant::now(), holder)),
                },
                Err(gap) => {
                    stable_since = None;
                    missing = gap;
                }
            }
            if Instant::now() >= deadline {
                bail!("Pacemaker not stable: {missing}");
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

pub(super) fn measure(
    options: &CompareOptions,
    progress: &mut dyn Write,
    stop: &AtomicBool,
) -> Row {
    let mut row = Row::new(SYSTEM, "Debian defaults, knet".to_string(), options.runs);
    let _ = writeln!(
        progress,
        "{SYSTEM}: starting on 3 hosts (the first start takes about 20 s)"
    );
    let started = (|| -> Result<Pacemaker> {
        let lab = build_lab(options.keep_directory)?;
        let serve_script = lab.directory().join("serve-http.sh");
        std::fs::write(
            &serve_script,
            format!(
                "#!/bin/sh\n# The package's HTTP service, named after the host it runs on.\nexec '{}' serve-name --bind {SERVICE_ADDRESS}:{SERVICE_PORT} --name \"$(cat /proc/sys/kernel/hostname)\" --lifetime-seconds 86400\n",
                options.lab_binary.display()
            ),
        )
        .context("writing the service script")?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&serve_script, std::fs::Permissions::from_mode(0o755))
            .context("making the service script executable")?;
        let mut system = Pacemaker {
            lab,
            inits: vec![None; HOSTS + 1],
            serve_script,
            configured: false,
            token: None,
            dc: None,
        };
        for host in 1..=HOSTS {
            system.start_host(host)?;
        }
        Ok(system)
    })();
    let mut system = match started {
        Ok(system) => system,
        Err(error) => {
            row.error = Some(format!("{error:#}"));
            return row;
        }
    };
    let result = super::measure_system(&mut system, &mut row, options, progress, stop);
    row.settings = format!(
        "Debian defaults, knet, token {} ms (runtime); stonith-enabled=false, resource-stickiness=100",
        system.token.as_deref().unwrap_or("?")
    );
    super::finish_row(&mut row, Some(&system.lab), result);
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corosync_conf_is_knet_with_lab_nodes() {
        let text = corosync_conf(3);
        assert!(text.contains("transport: knet"));
        assert!(text.contains("name: h3\n    nodeid: 3\n    ring0_addr: 198.18.1.3"));
        assert!(!text.contains("token:"), "Debian's default token");
        assert!(!text.contains("mcast"));
    }

    #[test]
    fn placement_reads_crm_mon_xml() {
        let xml = r#"<pacemaker-result api-version="2.25" request="crm_mon -1 --output-as=xml">
  <summary><current_dc present="true" version="2.1.5" name="h1" id="1" with_quorum="true"/></summary>
  <nodes>
    <node name="h1" id="1" online="true" standby="false"/>
    <node name="h2" id="2" online="true" standby="false"/>
    <node name="h3" id="3" online="true" standby="false"/>
  </nodes>
  <resources>
    <group id="web" number_resources="2" managed="true" disabled="false">
      <resource id="web-ip" resource_agent="ocf:heartbeat:IPaddr2" role="Started" active="true" nodes_running_on="1">
        <node name="h2" id="2" cached="true"/>
      </resource>
      <resource id="web-http" resource_agent="ocf:heartbeat:anything" role="Started" active="true" nodes_running_on="1">
        <node name="h2" id="2" cached="true"/>
      </resource>
    </group>
  </resources>
</pacemaker-result>"#;
        assert_eq!(placement(xml, 3), Ok(2));
        let offline = xml.replace(
            r#"name="h3" id="3" online="true""#,
            r#"name="h3" id="3" online="false""#,
        );
        assert!(placement(&offline, 3).is_err());
        let stopped = xml.replace(
            r#"id="web-http" resource_agent="ocf:heartbeat:anything" role="Started""#,
            r#"id="web-http" resource_agent="ocf:heartbeat:anything" role="Stopped""#,
        );
        assert!(placement(&stopped, 3).is_err());
        assert_eq!(placement("<x/>", 3), Err("no DC".into()));
    }
}
