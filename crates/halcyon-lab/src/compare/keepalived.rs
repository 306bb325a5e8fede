//! keepalived in the comparison: VRRP for the service address only (keepalived manages no
//! service). Every host runs `keepalived -n -l -D -G -P` in its own mount namespace with a tmpfs
//! `/run` (`unshare -m -u --propagation private`), all instances `state BACKUP` with `nopreempt`
//! and priorities 100/90/80, adverts sent unicast to the other hosts' lab addresses. The HTTP
//! service (`halcyon-lab serve-name`) runs on every host all the time, bound with IP_FREEBIND to
//! the service address, so it answers on whichever host holds the address: the probe measures
//! the address move.

use std::fmt::Write as _;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::{CompareOptions, HOSTS, Row, SERVICE_ADDRESS, SERVICE_PORT, System, build_lab};
use crate::names::{self, CLIENT};
use crate::{HostProcess, Lab, host_label};

pub const SYSTEM: &str = "keepalived";
pub const NOTE: &str = "keepalived moves the address only (no quorum, no service management); the HTTP service runs on every host";
/// The virtual router id of the service address.
const ROUTER_ID: u8 = 51;

/// The missing program, if any.
pub fn missing_packages() -> Option<String> {
    (!super::pacemaker::on_path("keepalived")).then(|| "keepalived".to_string())
}

/// The keepalived configuration of `host`.
pub fn configuration(host: usize, hosts: usize, advert_seconds: f64) -> String {
    let version_3 = advert_seconds < 1.0;
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Written by halcyon-lab compare for {}",
        host_label(host)
    );
    let _ = writeln!(text, "global_defs {{\n  router_id {}", host_label(host));
    if version_3 {
        let _ = writeln!(text, "  vrrp_version 3");
    }
    let _ = writeln!(text, "}}\n");
    let _ = writeln!(
        text,
        "vrrp_instance web {{\n  state BACKUP\n  nopreempt\n  interface {}\n  virtual_router_id {ROUTER_ID}\n  priority {}\n  advert_int {}\n  unicast_src_ip {}\n  unicast_peer {{",
        names::interface(1),
        110 - 10 * host.min(10),
        format_advert(advert_seconds),
        names::host_address(host, 1)
    );
    for peer in (1..=hosts).filter(|&peer| peer != host) {
        let _ = writeln!(text, "    {}", names::host_address(peer, 1));
    }
    let _ = writeln!(
        text,
        "  }}\n  virtual_ipaddress {{\n    {SERVICE_ADDRESS}/{} dev {}\n  }}\n}}",
        names::NETWORK_PREFIX_LENGTH,
        names::interface(1)
    );
    text
}

fn format_advert(seconds: f64) -> String {
    if seconds.fract() == 0.0 {
        format!("{}", seconds as u64)
    } else {
        format!("{seconds}")
    }
}

/// The init of a host: private /run, hostname, keepalived in the foreground (exec: keepalived
/// itself is the init, so nothing of the lab's is left in the host's footprint).
fn init_script(host: usize, configuration: &std::path::Path) -> String {
    format!(
        "set -e\nmount -t tmpfs -o mode=0755 tmpfs /run\necho {} > /proc/sys/kernel/hostname\n\
         exec keepalived -n -l -D -G -P -f '{}' -p /run/keepalived.pid -r /run/keepalived_vrrp.pid\n",
        host_label(host),
        configuration.display()
    )
}

struct Keepalived {
    lab: Lab,
    lab_binary: PathBuf,
    advert: Duration,
    inits: Vec<Option<HostProcess>>,
    started_at: Vec<Instant>,
}

impl Keepalived {
    fn start_host(&mut self, host: usize) -> Result<()> {
        let configuration = self.lab.host_directory(host).join("keepalived.conf");
        let script = init_script(host, &configuration);
        let init = self.lab.spawn(
            host,
            "unshare",
            &["-m", "-u", "--propagation", "private", "sh", "-c", &script],
            &[],
        )?;
        self.inits[host] = Some(init);
        let bind = format!("{SERVICE_ADDRESS}:{SERVICE_PORT}");
        let name = host_label(host);
        let binary = self.lab_binary.display().to_string();
        self.lab.spawn(
            host,
            &binary,
            &[
                "serve-name",
                "--bind",
                &bind,
                "--name",
                &name,
                "--lifetime-seconds",
                "86400",
            ],
            &[],
        )?;
        self.started_at[host] = Instant::now();
        Ok(())
    }

    /// keepalived's own master down interval: 3 x advert_int plus the skew time.
    fn master_down_interval(&self) -> Duration {
        self.advert * 3 + self.advert.mul_f64(0.5)
    }
}

impl System for Keepalived {
    fn lab(&self) -> &Lab {
        &self.lab
    }

    fn power_on(&mut self, host: usize) -> Result<()> {
        crate::fault::power_on(&self.lab, host)?;
        self.start_host(host)
    }

    fn wait_stable(&mut self, deadline: Instant) -> Result<usize> {
        let settle = self.master_down_interval() + Duration::from_secs(1);
        loop {
            let gap = (|| -> Result<usize, String> {
                for host in self.lab.hosts() {
                    let init = self.inits[host].ok_or(format!("h{host} never started"))?;
                    if !self.lab.is_running(&init) {
                        return Err(format!("keepalived on h{host} has exited (see its log)"));
                    }
                    if self.started_at[host].elapsed() < settle {
                        return Err(format!("h{host} started less than {settle:?} ago"));
                    }
                }
                let holders: Vec<usize> = self
                    .lab
                    .hosts()
                    .filter(|&host| {
                        self.lab
                            .addresses(host)
                            .is_ok_and(|addresses| addresses.contains(&SERVICE_ADDRESS))
                    })
                    .collect();
                if holders.len() != 1 {
                    return Err(format!("the address is on hosts {holders:?}"));
                }
                let answer = self
                    .lab
                    .http_get(
                        CLIENT,
                        std::net::SocketAddrV4::new(SERVICE_ADDRESS, SERVICE_PORT),
                        Duration::from_millis(300),
                    )
                    .map_err(|error| error.to_string())?;
                if super::host_of_answer(&answer) != Some(holders[0]) {
                    return Err(format!("h{} holds it, {answer} answers", holders[0]));
                }
                Ok(holders[0])
            })();
            match gap {
                Ok(holder) => return Ok(holder),
                Err(missing) if Instant::now() >= deadline => {
                    bail!("keepalived not stable: {missing}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }
}

pub(super) fn measure(
    options: &CompareOptions,
    advert_seconds: f64,
    progress: &mut dyn Write,
    stop: &AtomicBool,
) -> Row {
    let settings = format!(
        "advert_int {} s (VRRP v{}), unicast, nopreempt, priorities 100/90/80; address only",
        format_advert(advert_seconds),
        if advert_seconds < 1.0 { 3 } else { 2 }
    );
    let mut row = Row::new(SYSTEM, settings, options.runs);
    let _ = writeln!(progress, "{SYSTEM}: starting on 3 hosts ({})", row.settings);
    let started = (|| -> Result<Keepalived> {
        if !(0.01..=255.0).contains(&advert_seconds) {
            bail!("advert_int {advert_seconds} is out of range");
        }
        let lab = build_lab(options.keep_directory)?;
        for host in lab.hosts() {
            std::fs::write(
                lab.host_directory(host).join("keepalived.conf"),
                configuration(host, HOSTS, advert_seconds),
            )
            .context("writing keepalived.conf")?;
        }
        let mut system = Keepalived {
            lab,
            lab_binary: options.lab_binary.clone(),
            advert: Duration::from_secs_f64(advert_seconds),
            inits: vec![None; HOSTS + 1],
            started_at: vec![Instant::now(); HOSTS + 1],
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
    super::finish_row(&mut row, Some(&system.lab), result);
    row
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_is_unicast_backup_nopreempt() {
        let text = configuration(2, 3, 0.1);
        assert!(text.contains("vrrp_version 3"));
        assert!(text.contains("state BACKUP\n  nopreempt"));
        assert!(text.contains("priority 90"));
        assert!(text.contains("advert_int 0.1"));
        assert!(text.contains("unicast_src_ip 198.18.1.2"));
        assert!(text.contains("    198.18.1.1\n    198.18.1.3\n"));
        assert!(text.contains("198.18.1.200/24 dev eth1"));
        let default = configuration(1, 3, 1.0);
        assert!(!default.contains("vrrp_version"));
        assert!(default.contains("advert_int 1\n"));
        assert!(default.contains("priority 100"));
    }
}
