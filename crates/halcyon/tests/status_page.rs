//! The status page (`GET /`) in a real browser: headless Chromium (Debian's `chromium`),
//! driven over the DevTools protocol, against a live loopback cluster. The page loads and
//! shows three nodes; a failover shows on it without a reload within a second of the node
//! serving it knowing, its plan's times in local time; a package's availability and explain;
//! an ERROR with its choices, as buttons only for an admin token; a failed package's node
//! with until when it is excluded; a node excluded for not completing its work (the page
//! from a file, handed `status` messages, no cluster); screenshots are saved under
//! the target directory (`target/test-artifacts/status-page.png` and others). The page's size
//! and load time are printed (`--no-capture`).
//!
//! Skipped, with a message, only when no `chromium` is installed outside CI; CI (`.ci/run`)
//! installs it, and there a missing browser fails the test.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The browser, if installed.
fn chromium() -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("chromium"))
            .find(|p| p.is_file())
    })
}

/// Chromium, or `None` (said on standard error) when it is not installed; in CI it must be
/// (`.ci/run` installs it).
fn chromium_or_skip() -> Option<PathBuf> {
    let binary = chromium();
    if binary.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium is not installed; CI must install it (.ci/run)"
        );
        eprintln!(
            "SKIPPED: no `chromium` on PATH (Debian: apt-get install chromium); the status page \
             was not tested in a browser"
        );
    }
    binary
}

/// A browser page showing node `i`'s status page with the cluster's read-only token.
fn read_only_page(browser: &Browser, c: &Cluster, i: usize) -> Cdp {
    let mut cdp = browser.page();
    cdp.call(
        "Page.navigate",
        json!({"url": format!(
            "https://{}/#token={}",
            c.api(i),
            c.tokens().expect("the test cluster has credentials").read_only
        )}),
    );
    cdp
}

/// Headless Chromium in a process group of its own (it starts helpers), killed with the group
/// on drop.
struct Browser {
    child: Child,
    _profile: tempfile::TempDir,
    devtools: SocketAddr,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SAFETY: kill(2) of the group our own child leads (not yet reaped: we wait below).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// The pins of the node certificates of `c` (its API is HTTPS with the cluster's own CA,
/// which the browser does not know): Chromium trusts exactly these certificates, nothing else.
fn node_pins(c: &Cluster) -> String {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    c.config()
        .nodes
        .iter()
        .map(|n| {
            let file = c
                .config_dir()
                .join("pki")
                .join("nodes")
                .join(&n.name)
                .join("node.crt");
            let der = CertificateDer::from_pem_file(&file).unwrap();
            halcyon_pki::public_key_pin(&der).unwrap()
        })
        .collect::<Vec<_>>()
        .join(",")
}

impl Browser {
    /// `pins`: the public keys (`node_pins`) whose certificates it accepts without their CA.
    fn start(binary: &std::path::Path, pins: Option<String>) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(binary)
            .args(pins.map(|p| format!("--ignore-certificate-errors-spki-list={p}")))
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-extensions",
                "--disable-background-networking",
                "--window-size=1280,1000",
                "--remote-debugging-address=127.0.0.1",
                // Port 0: the browser picks a free one and writes it to DevToolsActivePort.
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromium starts");
        let file = profile.path().join("DevToolsActivePort");
        let started = Instant::now();
        let port = loop {
            if let Some(port) = std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.lines().next()?.trim().parse::<u16>().ok())
            {
                break port;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "chromium wrote no DevToolsActivePort within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        Browser {
            child,
            _profile: profile,
            devtools: SocketAddr::from(([127, 0, 0, 1], port)),
        }
    }

    /// The DevTools websocket of the browser's first page.
    fn page(&self) -> Cdp {
        let r = halcyon_testkit::http::request(
            self.devtools,
            "GET",
            "/json/list",
            None,
            Duration::from_secs(10),
        )
        .unwrap();
        let targets: Value = serde_json::from_str(&r.body).unwrap();
        let url = targets
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["type"] == "page")
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .unwrap_or_else(|| panic!("no page target: {targets:#}"))
            .to_owned();
        Cdp::connect(&url)
    }
}

/// A DevTools protocol session over a websocket (RFC 6455, the client side only: text
/// frames, masked; the browser's frames unmasked, possibly fragmented).
struct Cdp {
    stream: TcpStream,
    next_id: u64,
}

impl Cdp {
    fn connect(url: &str) -> Cdp {
        let rest = url.strip_prefix("ws://").expect("a ws:// url");
        let (host, path) = rest.split_at(rest.find('/').unwrap());
        let mut stream = TcpStream::connect(host).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(
            status.contains(" 101 "),
            "websocket upgrade refused: {status}"
        );
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        assert!(reader.buffer().is_empty(), "no frame before a request");
        Cdp { stream, next_id: 1 }
    }

    fn send_frame(&mut self, payload: &[u8]) {
        let mut frame = vec![0x81u8];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n < 65536 => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        let mask = [0x37u8, 0xfa, 0x21, 0x3d];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.stream.write_all(&frame).unwrap();
    }

    fn read_message(&mut self) -> String {
        let mut message = Vec::new();
        loop {
            let mut head = [0u8; 2];
            self.stream.read_exact(&mut head).unwrap();
            let fin = head[0] & 0x80 != 0;
            let opcode = head[0] & 0x0f;
            let mut len = u64::from(head[1] & 0x7f);
            if len == 126 {
                let mut b = [0u8; 2];
                self.stream.read_exact(&mut b).unwrap();
                len = u64::from(u16::from_be_bytes(b));
            } else if len == 127 {
                let mut b = [0u8; 8];
                self.stream.read_exact(&mut b).unwrap();
                len = u64::from_be_bytes(b);
            }
            let mut payload = vec![0u8; usize::try_from(len).unwrap()];
            self.stream.read_exact(&mut payload).unwrap();
            match opcode {
                0x8 => panic!("the browser closed the DevTools connection"),
                0x9 | 0xA => continue, // ping, pong
                _ => message.extend_from_slice(&payload),
            }
            if fin {
                return String::from_utf8(message).unwrap();
            }
        }
    }

    /// Calls `method` and returns its `result` (events that come first are skipped).
    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params}).to_string();
        self.send_frame(request.as_bytes());
        loop {
            let answer: Value = serde_json::from_str(&self.read_message()).unwrap();
            if answer["id"] == id {
                assert!(answer["error"].is_null(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    /// Evaluates `expression` in the page; its value as JSON.
    fn eval(&mut self, expression: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true}),
        );
        assert!(r["exceptionDetails"].is_null(), "{expression}: {r:#}");
        r["result"]["value"].clone()
    }

    /// Waits until `expression` is true in the page (one that throws, e.g. on the page before
    /// the navigation, is not true yet).
    fn wait_true(&mut self, expression: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let r = self.call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true}),
            );
            if r["exceptionDetails"].is_null() && r["result"]["value"] == Value::Bool(true) {
                break;
            }
            assert!(
                started.elapsed() < limit,
                "not true in the page within {limit:?}: {expression}\nthe page shows:\n{}",
                self.eval("document.body.innerText")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        started.elapsed()
    }
}

/// Standard base64 (the screenshot comes so).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c) << (18 - 6 * i);
        }
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

/// Where test artifacts go: `target/test-artifacts` (next to `debug/`).
fn artifacts_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/status_page-HASH
    let target = exe.ancestors().nth(3).unwrap().to_path_buf();
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn the_status_page_shows_a_failover_live_in_a_real_browser() {
    let Some(binary) = chromium_or_skip() else {
        return;
    };
    let mut c = Cluster::start_with(Spec::new());
    c.wait_web_on(2, "n1", FORM_TIMEOUT);
    c.wait_all_members(2, FORM_TIMEOUT);
    // The page from n2, which survives n1.
    let url = format!(
        "https://{}/#token={}",
        c.api(2),
        c.admin_token().expect("the test cluster has credentials")
    );
    let page = halcyon_testkit::http::request_tls(
        c.tls(),
        c.api(2),
        "GET",
        "/",
        None,
        None,
        REQUEST_TIMEOUT,
    )
    .unwrap();
    assert_eq!(page.status, 200);
    let browser = Browser::start(&binary, Some(node_pins(&c)));
    let mut cdp = browser.page();
    cdp.call("Page.enable", json!({}));
    let asked = Instant::now();
    cdp.call("Page.navigate", json!({"url": url}));
    // Loaded: three nodes, the package on n1, the stream live, no error in the page.
    cdp.wait_true(
        "document.querySelectorAll('#nodes tr[data-node]').length === 3 \
         && document.querySelector('td.pkg-node[data-package=\"web\"]')?.textContent.startsWith('n1') \
         && document.getElementById('conn').className === 'live'",
        Duration::from_secs(10),
    );
    let shown = asked.elapsed();
    let load_ms = cdp.eval(
        "(() => { const n = performance.getEntriesByType('navigation')[0]; \
         return n.loadEventEnd - n.startTime; })()",
    );
    eprintln!(
        "status page: {} bytes; loaded in {:.1} ms (navigation to load event); cluster shown {} ms after navigating",
        page.body.len(),
        load_ms.as_f64().expect("a load time"),
        shown.as_millis()
    );
    assert!(
        cdp.eval("document.getElementById('coordinator-name').textContent") != "none",
        "a coordinator is shown"
    );
    // A mark that a reload would lose.
    cdp.eval("window.notReloaded = 42");

    c.kill(1);
    // The node serving the page knows of the move at `known`; the page shows it by `shown`.
    let killed = Instant::now();
    let known = loop {
        let s = c.status(2).unwrap();
        let web = package_of(&s, "web");
        if web["status"] == "up" && web["nodes"][0] != "n1" {
            break Instant::now();
        }
        assert!(killed.elapsed() < FAILOVER_TIMEOUT, "no failover: {s:#}");
        std::thread::sleep(Duration::from_millis(10));
    };
    cdp.wait_true(
        "(() => { const t = document.querySelector('td.pkg-node[data-package=\"web\"]')?.textContent || ''; \
         return t.startsWith('n2') || t.startsWith('n3'); })()",
        Duration::from_secs(5),
    );
    let lag = known.elapsed();
    eprintln!("failover on the page {lag:?} after the node serving it knew of it");
    assert!(
        lag < Duration::from_secs(1),
        "the page showed the failover {lag:?} late"
    );
    assert_eq!(
        cdp.eval("window.notReloaded"),
        json!(42),
        "the page was reloaded"
    );
    cdp.wait_true(
        "document.querySelector('tr[data-node=\"n1\"]').dataset.reachable === 'unreachable' \
         && !!document.querySelector('details[data-event=\"node_down n1 (failure)\"][data-outcome=\"done\"]')",
        Duration::from_secs(5),
    );
    // The failover's record, opened: its plan with the reasons, its actions.
    cdp.eval(
        "document.querySelector('details[data-event=\"node_down n1 (failure)\"]').open = true",
    );
    let text = cdp
        .eval("document.querySelector('details[data-event=\"node_down n1 (failure)\"]').innerText");
    let text = text.as_str().unwrap();
    for expected in ["plan (with the reason of every action)", "run", "web"] {
        assert!(
            text.contains(expected),
            "{expected:?} in the record: {text}"
        );
    }
    // Its times (the plan's, written into the log as RFC 3339) in the browser's local time.
    assert!(
        !has_rfc3339_time(text),
        "an RFC 3339 time in the record: {text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("event: node_down n1 (failure) at ")
                && l.ends_with(|c: char| c.is_ascii_digit())),
        "the plan's first line with its local time: {text}"
    );
    // Availability, from the package's button: web's outage while n1 failed, with its cause.
    cdp.eval(
        "[...document.querySelectorAll('tr[data-package=\"web\"] button')].find(b => b.textContent === 'availability').click()",
    );
    cdp.wait_true(
        "(document.getElementById('availability')?.textContent || '').includes('% available')",
        Duration::from_secs(5),
    );
    let availability = cdp.eval("document.getElementById('availability').textContent");
    eprintln!(
        "availability on the page:\n{}",
        availability.as_str().unwrap()
    );
    // explain, from the package's button: why web runs where it runs, node by node.
    cdp.eval(
        "[...document.querySelectorAll('tr[data-package=\"web\"] button')].find(b => b.textContent === 'explain').click()",
    );
    cdp.wait_true(
        "(document.querySelector('#explain pre')?.textContent || '').includes('n1')",
        Duration::from_secs(5),
    );
    let shot = cdp.call(
        "Page.captureScreenshot",
        json!({"format": "png", "captureBeyondViewport": true}),
    );
    let png = base64_decode(shot["data"].as_str().unwrap());
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = artifacts_dir().join("status-page.png");
    std::fs::write(&path, &png).unwrap();
    eprintln!("screenshot: {} ({} bytes)", path.display(), png.len());
    // A phone: the same page at 390 px wide.
    cdp.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    let overflow = cdp.eval("document.documentElement.scrollWidth <= window.innerWidth + 1");
    assert_eq!(
        overflow,
        json!(true),
        "the page scrolls sideways on a phone"
    );
    let wider = cdp.eval(
        "[...document.querySelectorAll('section')].filter(s => s.scrollWidth > s.clientWidth + 1).map(s => s.querySelector('h2')?.textContent)",
    );
    assert_eq!(wider, json!([]), "sections wider than the phone's screen");
    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"}));
    let path = artifacts_dir().join("status-page-phone.png");
    std::fs::write(&path, base64_decode(shot["data"].as_str().unwrap())).unwrap();
    eprintln!("screenshot: {}", path.display());
}

#[test]
fn an_event_in_error_shows_its_failure_and_choices_and_a_webhook_hears_of_it() {
    let Some(binary) = chromium_or_skip() else {
        return;
    };
    let (hook, bodies) = webhook_receiver();
    let mut spec = Spec::new();
    spec.rules(|dir| {
        format!(
            "[[event]]\nname = \"UE_CHECK\"\nprogram = '''\n\
             event \"echo checking; test -f {}\" 0\n'''\n",
            dir.join("ok").display()
        )
    });
    spec.edits_cluster(move |config| {
        config.webhooks = vec![halcyon_testkit::Webhook {
            url: format!("http://{hook}/"),
            events: vec!["error".into(), "user".into()],
            timeout: None,
            retries: None,
        }];
    });
    let c = Cluster::start_with(spec);
    c.wait_all_members(1, FORM_TIMEOUT);
    let tokens = c
        .tokens()
        .expect("the test cluster has credentials")
        .clone();
    let browser = Browser::start(&binary, Some(node_pins(&c)));
    let mut cdp = browser.page();
    // First with the read-only token: the ERROR and what an administrator may do, no buttons.
    cdp.call(
        "Page.navigate",
        json!({"url": format!("https://{}/#token={}", c.api(3), tokens.read_only)}),
    );
    cdp.wait_true(
        "document.getElementById('conn').className === 'live'",
        Duration::from_secs(10),
    );
    let (code, out) = cli(&c, 1, &["event", "raise", "UE_CHECK", "--node", "n2"]);
    assert_eq!(code, 0, "{out}");
    cdp.wait_true("!!document.getElementById('error-event')", FAILOVER_TIMEOUT);
    let text = cdp.eval("document.getElementById('error-event').innerText");
    let text = text.as_str().unwrap();
    assert_eq!(
        cdp.eval("document.querySelectorAll('#error-event button').length"),
        json!(0),
        "buttons for a read-only token: {text}"
    );
    for expected in [
        "stopped in ERROR",
        "halcyon event resume|retry|skip",
        "read-only",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} in the ERROR box: {text}"
        );
    }
    // Then with the admin token (another address: the page loads anew).
    cdp.call(
        "Page.navigate",
        json!({"url": format!("https://{}/?admin#token={}", c.api(3), tokens.admin)}),
    );
    // The page shows the ERROR: node, command, status, output and the three choices.
    cdp.wait_true(
        "document.querySelectorAll('#error-event button').length === 3",
        Duration::from_secs(10),
    );
    let text = cdp.eval("document.getElementById('error-event').innerText");
    let text = text.as_str().unwrap();
    for expected in [
        "stopped in ERROR",
        "n2",
        "test -f",
        "exited 1",
        "checking",
        "resume",
        "retry",
        "skip",
    ] {
        assert!(
            text.contains(expected),
            "{expected:?} in the ERROR box: {text}"
        );
    }
    let shot = cdp.call("Page.captureScreenshot", json!({"format": "png"}));
    let path = artifacts_dir().join("status-page-error.png");
    std::fs::write(&path, base64_decode(shot["data"].as_str().unwrap())).unwrap();
    eprintln!("screenshot: {}", path.display());
    // The webhook heard of the ERROR when it happened.
    let body = bodies
        .recv_timeout(Duration::from_secs(5))
        .expect("the ERROR is posted");
    assert_eq!(body["reason"], "error", "{body:#}");
    assert_eq!(body["record"]["event"], "UE_CHECK on n2");
    // `skip`, answered from the page (its confirmation accepted): the event ends skipped, the
    // ERROR box goes, and the webhook gets the finished record.
    cdp.eval("window.confirm = () => true");
    cdp.eval(
        "[...document.querySelectorAll('#error-event button')].find(b => b.textContent === 'skip').click()",
    );
    cdp.wait_true(
        "!document.getElementById('error-event') \
         && !!document.querySelector('details[data-event=\"UE_CHECK on n2\"][data-outcome=\"skipped\"]')",
        FAILOVER_TIMEOUT,
    );
    let body = bodies
        .recv_timeout(Duration::from_secs(5))
        .expect("the finished record is posted");
    assert_eq!(body["reason"], "finished", "{body:#}");
    assert_eq!(body["record"]["outcome"], "skipped");
}

#[test]
fn a_failed_package_shows_the_node_it_failed_on_and_until_when_that_node_is_excluded() {
    let Some(binary) = chromium_or_skip() else {
        return;
    };
    let spec = web_failing_on_n1();
    let c = Cluster::start_with(spec);
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_web_on(1, "n2", FAILOVER_TIMEOUT);
    let status = c.status(2).unwrap();
    let web = package_of(&status, "web");
    let failed: jiff::Timestamp = web["failures"]["n1"].as_str().unwrap().parse().unwrap();
    let until = web["failures_expire_at"]["n1"].as_str().unwrap();
    let expires: jiff::Timestamp = until.parse().unwrap();
    assert_eq!(
        expires.duration_since(failed),
        jiff::SignedDuration::from_secs(600),
        "{web:#}"
    );
    let browser = Browser::start(&binary, Some(node_pins(&c)));
    let mut cdp = read_only_page(&browser, &c, 2);
    let mark = "document.querySelector('td.pkg-node[data-package=\"web\"] [data-failure=\"n1\"]')";
    cdp.wait_true(&format!("!!{mark}"), Duration::from_secs(10));
    let text = cdp.eval(&format!("{mark}.innerText"));
    let text = text.as_str().unwrap();
    eprintln!("the failure on the page: {text}");
    assert!(
        text.starts_with("failed on n1 at ")
            && text.contains(": excluded there until ")
            && (text.contains("(in 9 min)") || text.contains("(in 10 min)"))
            && text.ends_with("(or halcyon package clear web -n n1)"),
        "{text}"
    );
    // The two times shown are the failure's and its expiry's.
    let times = cdp.eval(&format!(
        "[...{mark}.querySelectorAll('[data-ts]')].map(e => e.dataset.ts)"
    ));
    assert_eq!(times, json!([web["failures"]["n1"], until]), "{text}");
}

/// A node excluded for not completing its work: its card says so, why, since when (local
/// time, the instant in `data-ts`), and what brings it back; once its daemon restarted (the
/// next status has no `excluded`) the card no longer does. The page is opened from a file
/// with no cluster behind it (its stream never connects) and handed the `status` messages
/// the stream would carry, so this needs no node to get stuck.
#[test]
fn an_excluded_node_shows_why_since_when_and_how_it_joins_again() {
    let Some(binary) = chromium_or_skip() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("status.html");
    std::fs::write(&file, halcyon_daemon::page::PAGE.as_str()).unwrap();
    let since = "2026-06-01T11:58:00Z";
    let node = |name: &str, number: u32, excluded: Value| {
        let mut n = json!({
            "name": name, "number": number, "member": excluded.is_null(),
            "reachable": "reachable", "departed": false, "halted_by_admin": false,
            "incarnation": 1, "networks": [{"network": "lan", "path": "up",
            "adapter_down": false, "down": false}],
        });
        if !excluded.is_null() {
            n["excluded"] = excluded;
        }
        n
    };
    let status = |excluded: Value| {
        json!({
            "schema_version": 2, "cluster": "t", "answered_by": "n1", "halted": false,
            "coordinator": "n1",
            "quorum": {"has_quorum": true, "term": 2, "voters": ["n1", "n2", "n3"],
                "last_applied": 40, "detail": null},
            "watchdog": "not configured",
            "lease": {"remaining_ms": 500, "duration_ms": 619},
            "nodes": [node("n1", 1, Value::Null), node("n3", 3, excluded)],
            "packages": [], "execution": null, "pending": [], "events": [],
        })
    };
    let why = "n3 did not complete run web within its bound of 18s 238ms (7s it may take + \
               11s 238ms margin)";
    let excluded = status(json!({"why": why, "since": since, "incarnation": 1, "event": 12}));
    let browser = Browser::start(&binary, None);
    let mut cdp = browser.page();
    cdp.call(
        "Page.navigate",
        json!({"url": format!("file://{}", file.display())}),
    );
    cdp.wait_true(
        "typeof onMessage === 'function' && !!document.getElementById('nodes')",
        Duration::from_secs(10),
    );
    let hand = |cdp: &mut Cdp, status: &Value| {
        let message = serde_json::to_string(&status.to_string()).unwrap();
        cdp.eval(&format!("onMessage('status', {message})"));
    };
    hand(&mut cdp, &excluded);
    let mark = "document.querySelector('#nodes tr[data-node=\"n3\"] [data-excluded=\"n3\"]')";
    cdp.wait_true(&format!("!!{mark}"), Duration::from_secs(5));
    let text = cdp.eval(&format!("{mark}.innerText"));
    let text = text.as_str().unwrap();
    eprintln!("the exclusion on the page: {text}");
    assert!(text.starts_with("excluded since "), "{text}");
    assert!(
        text.contains(&format!("(event #12, incarnation 1): {why}; it joins again when its daemon restarts (systemctl restart halcyon on n3)")),
        "{text}"
    );
    let times = cdp.eval(&format!(
        "[...{mark}.querySelectorAll('[data-ts]')].map(e => e.dataset.ts)"
    ));
    assert_eq!(times, json!([since]), "{text}");
    let badge = cdp.eval("document.querySelector('#nodes tr[data-node=\"n3\"]').innerText");
    assert!(badge.as_str().unwrap().contains("EXCLUDED"), "{badge}");
    // Not also "not a member": the exclusion says it.
    assert!(!badge.as_str().unwrap().contains("not a member"), "{badge}");
    assert_eq!(
        cdp.eval("document.querySelectorAll('[data-excluded]').length"),
        json!(1)
    );
    // Its daemon restarted: the next status has no `excluded` for it.
    hand(&mut cdp, &status(Value::Null));
    cdp.wait_true(
        "!document.querySelector('[data-excluded]') \
         && !document.querySelector('#nodes').innerText.includes('EXCLUDED')",
        Duration::from_secs(5),
    );
}

/// The quorum witness on the page: a row of its own saying it answers and votes; once its
/// daemon is gone, the row says it is unreachable (the page asks `GET /v1/status` every
/// 5 s: the stream does not carry the witness).
#[test]
fn the_witness_shows_whether_it_answers_and_votes() {
    let Some(binary) = chromium_or_skip() else {
        return;
    };
    let mut spec = Spec::new();
    spec.witness = true;
    let mut c = Cluster::start_with(spec);
    c.wait_all_members(1, FORM_TIMEOUT);
    c.wait_for(1, "the witness a voter", FORM_TIMEOUT, |v| {
        v["witness"]["voter"] == true
            && v["witness"]["reachable"] == true
            && v["witness"]["last_applied"].as_u64() > Some(0)
    });
    let browser = Browser::start(&binary, Some(node_pins(&c)));
    let mut cdp = read_only_page(&browser, &c, 1);
    let row = "document.querySelector('#nodes tr[data-witness=\"w\"]')";
    cdp.wait_true(
        &format!("{row}?.dataset.reachable === 'true'"),
        Duration::from_secs(10),
    );
    let text = cdp.eval(&format!("{row}.innerText"));
    let text = text.as_str().unwrap();
    eprintln!("the witness on the page: {text:?}");
    assert!(
        text.contains("witness") && text.contains("reachable") && text.contains("voter"),
        "{text}"
    );
    c.kill_witness();
    let gone = Instant::now();
    cdp.wait_true(
        &format!("{row}?.dataset.reachable === 'false'"),
        Duration::from_secs(15),
    );
    let text = cdp.eval(&format!("{row}.innerText"));
    let text = text.as_str().unwrap();
    eprintln!("{:?} after it was killed: {text:?}", gone.elapsed());
    assert!(text.contains("UNREACHABLE"), "{text}");
}
