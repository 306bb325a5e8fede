//! `halcyon demo`: a 3-node cluster on 127.0.0.1-3 in child processes, no root needed.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use halcyon_api::StatusResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Failure;

/// Where the demo tells `halcyon status` how to reach it.
pub fn demo_file() -> PathBuf {
    let dir = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    dir.join(format!("halcyon-demo-{uid}.json"))
}

/// The demo's configuration: three nodes, one failover package whose service answers HTTP
/// with the node's name on that node's address, port `port + 80`.
pub fn demo_config(port: u16, exe: &Path) -> (String, String) {
    let mut cluster = format!(
        "[cluster]\nname = \"demo\"\nid = 1\nport = {port}\n\n[heartbeat]\ninterval = \"100ms\"\nsensitivity = 4\n\n\
         [[network]]\nname = \"lo\"\nkind = \"ip\"\nsubnets = [\"127.0.0.0/8\"]\n"
    );
    for i in 1..=3 {
        cluster.push_str(&format!(
            "\n[[node]]\nname = \"node{i}\"\nnumber = {i}\n[[node.interface]]\nnetwork = \"lo\"\naddress = \"127.0.0.{i}\"\n"
        ));
    }
    let http_port = port + 80;
    let command = format!(
        "case $HALCYON_NODE in node1) A=127.0.0.1;; node2) A=127.0.0.2;; *) A=127.0.0.3;; esac; exec '{}' demo-http --bind $A:{http_port} --name $HALCYON_NODE",
        exe.display()
    );
    let package = format!(
        "[package]\nname = \"hello\"\ntype = \"failover\"\nnodes = [\"node1\", \"node2\", \"node3\"]\nauto_run = true\n\
         failover_policy = \"configured_node\"\nfailback_policy = \"manual\"\n\n\
         [[resource]]\nkind = \"service\"\nname = \"http\"\ncommand = \"{}\"\nrestart = 2\nhalt_timeout = \"2s\"\n",
        command.replace('\\', "\\\\").replace('"', "\\\"")
    );
    (cluster, package)
}

struct Children {
    children: Vec<(String, Child)>,
    state_dirs: Vec<PathBuf>,
}

impl Drop for Children {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            // SAFETY: kill(2) on our own child's pid.
            unsafe {
                libc::kill(child.id() as i32, libc::SIGTERM);
            }
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        for (_, child) in &mut self.children {
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        // Services of daemons that were killed with SIGKILL still run: kill their groups.
        for dir in &self.state_dirs {
            if let Ok(entries) = std::fs::read_dir(dir.join("run")) {
                for e in entries.flatten() {
                    if let Some(pgid) = std::fs::read_to_string(e.path())
                        .ok()
                        .and_then(|s| s.trim().parse::<i32>().ok())
                        && pgid > 1
                    {
                        halcyon_resources::signal_group(pgid, libc::SIGKILL);
                    }
                }
            }
        }
        let _ = std::fs::remove_file(demo_file());
    }
}

pub async fn run_demo(port: u16) -> Result<(), Failure> {
    demo(port)
        .await
        .map_err(|e| Failure::Failed(format!("error: {e:#}")))
}

async fn demo(port: u16) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let dir = tempfile::Builder::new().prefix("halcyon-demo-").tempdir()?;
    let config_dir = dir.path().join("config");
    std::fs::create_dir_all(&config_dir)?;
    let (cluster, package) = demo_config(port, &exe);
    std::fs::write(config_dir.join("cluster.toml"), cluster)?;
    std::fs::write(config_dir.join("hello.toml"), package)?;
    let mut children = Children {
        children: Vec::new(),
        state_dirs: Vec::new(),
    };
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs)?;
    for i in 1..=3 {
        let name = format!("node{i}");
        let state_dir = dir.path().join("state").join(&name);
        let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
        let child = std::process::Command::new(&exe)
            .arg("daemon")
            .arg("--config")
            .arg(&config_dir)
            .arg("--node")
            .arg(&name)
            .arg("--state-dir")
            .arg(&state_dir)
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?;
        println!("started {name} (pid {})", child.id());
        children.children.push((name, child));
        children.state_dirs.push(state_dir);
    }
    let api: Vec<String> = (1..=3)
        .map(|i| format!("127.0.0.{i}:{}", port + 2))
        .collect();
    std::fs::write(
        demo_file(),
        serde_json::json!({ "api": api, "config": config_dir, "logs": logs }).to_string(),
    )?;
    println!("waiting for the cluster to form and start package \"hello\"...");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let mut answer = None;
        for a in &api {
            let Ok(addr) = a.parse::<SocketAddr>() else {
                continue;
            };
            if let Ok(r) = halcyon_daemon::client::request(
                addr,
                "GET",
                "/v1/status",
                None,
                Duration::from_secs(2),
            )
            .await
                && let Ok(v) = serde_json::from_str::<StatusResponse>(&r.body)
            {
                answer = Some(v);
                break;
            }
        }
        if let Some(v) = answer
            && v.packages.first().is_some_and(|p| p.status == "up")
        {
            println!();
            print!("{}", super::render::status(&v));
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            println!(
                "the cluster did not start the package within 30 s; logs in {}",
                logs.display()
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let pids: Vec<String> = children
        .children
        .iter()
        .map(|(n, c)| format!("{n}={}", c.id()))
        .collect();
    println!(
        "\nWhat to try (in another terminal):\n\
         \x20 halcyon status                       # finds this demo cluster\n\
         \x20 curl http://127.0.0.1:{hp}/          # the service answers with its node's name (node2: 127.0.0.2, node3: 127.0.0.3)\n\
         \x20 halcyon package move hello -n node2  # move it\n\
         \x20 kill -9 <pid of the node running it> # daemons: {pids}; the package moves to the next node\n\
         \x20 halcyon explain hello\n\
         Logs: {logs}\nCtrl-C stops everything.",
        hp = port + 80,
        pids = pids.join(" "),
        logs = logs.display()
    );
    tokio::signal::ctrl_c().await?;
    println!("\nstopping the demo cluster...");
    drop(children);
    Ok(())
}

/// The demo service: answers every HTTP request with "hello from NODE".
pub async fn serve_http(bind: SocketAddr, name: String) -> Result<(), Failure> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| Failure::Failed(format!("error: cannot listen on {bind}: {e}")))?;
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let name = name.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
            let body = format!("hello from {name}\n");
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
        });
    }
}
