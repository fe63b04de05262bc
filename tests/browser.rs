//! The browser client in a real headless Chromium, against a real server with bots: the page
//! connects, the player moves when keys are pressed, other players are seen moving, no snapshot
//! fails its checksum, a screenshot is saved, closing the server shows its close code, and the
//! Reconnect button connects again to a server back on the same address.
//!
//! Chromium is driven over the DevTools protocol (a WebSocket, spoken with tokio-tungstenite)
//! on a port it picks itself. Every wait happens inside the page, as a promise that resolves
//! when the page's state (`window.tickwire`) says so; the test only bounds it. Chromium comes
//! from `TICKWIRE_CHROMIUM` or the PATH (`chromium`, `chromium-browser`, `google-chrome`);
//! without one the test fails under CI (`.ci/run` installs Debian's `chromium`) and is skipped
//! with a message elsewhere.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tickwire_bots::{SwarmConfig, run_swarm};
use tickwire_server::{Config, VisibilityMode};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TICKWIRE_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| p.is_file())
}

/// A DevTools connection to one page.
struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    session: String,
    next_id: u64,
}

impl Page {
    /// Sends a command (to the page's session unless `browser`) and returns its result or its
    /// error.
    async fn try_call_on(
        &mut self,
        browser: bool,
        method: &str,
        params: Value,
    ) -> Result<Value, Value> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if !browser {
            msg["sessionId"] = json!(self.session);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .expect("send to chromium");
        loop {
            let Some(Ok(Message::Text(text))) = self.ws.next().await else {
                panic!("chromium's DevTools connection ended");
            };
            let reply: Value = serde_json::from_str(&text).expect("DevTools sends JSON");
            if reply["id"] == id {
                return match reply.get("error") {
                    Some(e) => Err(e.clone()),
                    None => Ok(reply["result"].clone()),
                };
            }
        }
    }

    async fn call_on(&mut self, browser: bool, method: &str, params: Value) -> Value {
        match self.try_call_on(browser, method, params).await {
            Ok(v) => v,
            Err(e) => panic!("{method} failed: {e}"),
        }
    }

    async fn call(&mut self, method: &str, params: Value) -> Value {
        self.call_on(false, method, params).await
    }

    /// Evaluates `expr` in the page (awaiting it if it is a promise) and returns its value.
    async fn eval(&mut self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expr, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(r.get("exceptionDetails").is_none(), "{expr} threw: {r}");
        r["result"]["value"].clone()
    }

    /// Resolves once `condition` (a JavaScript expression) is true in the page, checking it on
    /// every animation frame. An evaluation cut short by a navigation (the page replacing its
    /// JavaScript context) is simply made again in the new context.
    async fn until(&mut self, what: &str, condition: &str) {
        let expr = format!(
            "new Promise(done => {{ const check = () => {{ try {{ if ({condition}) return done(true); }} catch (e) {{}} requestAnimationFrame(check); }}; check(); }})"
        );
        let params = json!({"expression": expr, "awaitPromise": true, "returnByValue": true});
        bounded(what, async {
            loop {
                match self
                    .try_call_on(false, "Runtime.evaluate", params.clone())
                    .await
                {
                    Ok(r) if r.get("exceptionDetails").is_none() => return,
                    Ok(r) => panic!("{what}: {r}"),
                    Err(e) if e.to_string().contains("context") => continue,
                    Err(e) => panic!("{what}: {e}"),
                }
            }
        })
        .await;
    }

    async fn key(&mut self, kind: &str, key: &str, code: &str, vk: u32) {
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": kind, "key": key, "code": code, "windowsVirtualKeyCode": vk}),
        )
        .await;
    }
}

/// Starts headless Chromium on a port of its choosing and opens `url` in a new page.
async fn open_page(chromium: &Path, profile: &Path, url: &str) -> (Child, Page) {
    let mut child = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,800",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("about:blank")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("chromium starts");
    let stderr = child.stderr.take().expect("piped");
    let browser_url = bounded("chromium's DevTools address", async {
        let mut lines = BufReader::new(stderr).lines();
        while let Some(line) = lines.next_line().await.expect("read chromium's stderr") {
            if let Some(url) = line.strip_prefix("DevTools listening on ") {
                return url.trim().to_owned();
            }
        }
        panic!("chromium exited without a DevTools address");
    })
    .await;
    let (ws, _) = tokio_tungstenite::connect_async(browser_url.as_str())
        .await
        .expect("connect to chromium");
    let mut page = Page {
        ws,
        session: String::new(),
        next_id: 0,
    };
    let target = page
        .call_on(true, "Target.createTarget", json!({"url": url}))
        .await["targetId"]
        .clone();
    let attached = page
        .call_on(
            true,
            "Target.attachToTarget",
            json!({"targetId": target, "flatten": true}),
        )
        .await;
    page.session = attached["sessionId"]
        .as_str()
        .expect("a session")
        .to_owned();
    (child, page)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_plays_in_headless_chromium() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Chromium found: install Debian's chromium (.ci/run does) or set TICKWIRE_CHROMIUM"
        );
        eprintln!(
            "skipping the browser test: no Chromium (set TICKWIRE_CHROMIUM or install chromium)"
        );
        return;
    };
    let server = start(Config {
        visibility: VisibilityMode::Global,
        ..test_config()
    })
    .await;
    let bots = tokio::spawn(run_swarm(SwarmConfig {
        url: server.ws_url(),
        bots: 6,
        duration: Duration::from_secs(30),
        seed: 4,
        metrics_url: server.metrics_url(),
        behaviours: tickwire::behaviours(),
        ..SwarmConfig::default()
    }));
    let profile = std::env::temp_dir().join(format!("tickwire-chromium-{}", std::process::id()));
    let server_addr = server.local_addr();
    let url = format!("http://{server_addr}/");
    let (mut child, mut page) = open_page(&chromium, &profile, &url).await;

    page.until("the page to connect", "window.tickwire && tickwire.status === 'connected' && tickwire.ownPosition && tickwire.others.length >= 6").await;

    // Holding D moves our own player (as the server confirms it) to the right.
    let x0 = page
        .eval("tickwire.ownPosition.x")
        .await
        .as_f64()
        .expect("a number");
    page.key("keyDown", "d", "KeyD", 68).await;
    page.until(
        "the player to move right",
        &format!("tickwire.ownPosition.x > {x0} + 40 || tickwire.ownPosition.x > 3900"),
    )
    .await;
    page.key("keyUp", "d", "KeyD", 68).await;

    // The bots are seen moving.
    page.eval("window.__start = Object.fromEntries(tickwire.others.map(o => [o.id, o.x + ',' + o.y])); true").await;
    page.until(
        "another player to move",
        "tickwire.others.some(o => window.__start[o.id] !== undefined && window.__start[o.id] !== o.x + ',' + o.y)",
    )
    .await;

    // Every snapshot so far reproduced the server's view: none failed to apply, for any
    // reason, and nothing in the page threw.
    assert_eq!(page.eval("tickwire.mismatches").await, json!(0));
    assert_eq!(page.eval("tickwire.unapplied").await, json!(0));
    assert_eq!(page.eval("tickwire.errors").await, json!(0));
    assert_eq!(page.eval("tickwire.status").await, json!("connected"));

    // The page applies snapshots at the tick rate: at least 27 per second over 3 s, timed by
    // the page's own clock.
    let sample = "[tickwire.applied, performance.now()]";
    let a = page.eval(sample).await;
    tokio::time::sleep(Duration::from_secs(3)).await; // the measurement window, not a wait
    let b = page.eval(sample).await;
    let count = |v: &serde_json::Value, i: usize| v[i].as_f64().expect("a number");
    let rate = (count(&b, 0) - count(&a, 0)) / ((count(&b, 1) - count(&a, 1)) / 1000.0);
    assert!(
        rate >= 27.0,
        "the page applied {rate:.1} snapshots per second"
    );
    assert_eq!(page.eval("tickwire.unapplied").await, json!(0));

    // The SDK times the page's inputs: each names its tick and the server reports how early
    // it came, counting the late ones, and the margin stays within the clock's bounds. How
    // many are late depends on the headless browser's coarse timers and the machine's load,
    // so it is not asserted here (the clock's behaviour is tested on simulated time in
    // tests/js/codec.test.mjs, and the server's count of late inputs in tests/timing.rs).
    let timing = page.eval("tickwire.inputTiming").await;
    let reports = timing["reports"].as_f64().expect("a number");
    let late = timing["late"].as_f64().expect("a number");
    let margin = timing["marginMs"].as_f64().expect("a number");
    assert!(reports >= 30.0, "{timing}");
    assert!(late <= reports, "{timing}");
    assert!((1.5..=15.0).contains(&margin), "{timing}");

    // The connection drops without a close frame: the page shows "reconnecting" and the SDK
    // resumes the same player, every snapshot still verified.
    page.eval(
        "window.__seen = []; setInterval(() => { const s = tickwire.status; \
         if (window.__seen[window.__seen.length - 1] !== s) window.__seen.push(s); }, 1); true",
    )
    .await;
    let player = page.eval("tickwire.player").await;
    let id = u32::try_from(player.as_u64().expect("a player id")).expect("a u32");
    server.faults().drop_connection_of(id);
    page.until(
        "the page to resume",
        "tickwire.resumes === 1 && tickwire.status === 'connected'",
    )
    .await;
    assert_eq!(
        page.eval("tickwire.player").await,
        player,
        "the same player"
    );
    assert_eq!(server.stats().resumes.get(), 1);
    let seen = page.eval("window.__seen").await;
    assert!(
        seen.as_array()
            .is_some_and(|s| s.contains(&json!("reconnecting"))),
        "the status passed through reconnecting: {seen}"
    );
    let applied = page.eval("tickwire.applied").await.as_u64().expect("count");
    page.until(
        "snapshots after the resume",
        &format!("tickwire.applied > {applied} + 30"),
    )
    .await;
    assert_eq!(page.eval("tickwire.mismatches").await, json!(0));
    assert_eq!(page.eval("tickwire.unapplied").await, json!(0));
    assert_eq!(page.eval("tickwire.errors").await, json!(0));

    let shot = page
        .call("Page.captureScreenshot", json!({"format": "png"}))
        .await;
    let png = base64_decode(shot["data"].as_str().expect("image data"));
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-client.png");
    std::fs::write(&path, &png).expect("save the screenshot");
    eprintln!("screenshot saved to {}", path.display());

    // Closing the server: the page shows the close code and reason.
    server.shutdown().await;
    page.until("the page to see the close", "tickwire.status === 'closed'")
        .await;
    assert_eq!(page.eval("tickwire.closeCode").await, json!(1001));
    // The HUD shows it from its next frame on.
    page.until(
        "the HUD to show the close",
        "document.getElementById('closed').textContent.includes('1001')",
    )
    .await;
    let shown = page
        .eval("document.getElementById('closed').textContent")
        .await;
    assert!(
        shown
            .as_str()
            .is_some_and(|t| t.contains("1001") && t.contains("shutting down")),
        "{shown}"
    );
    assert_eq!(page.eval("tickwire.mismatches").await, json!(0));
    assert_eq!(page.eval("tickwire.unapplied").await, json!(0));

    // Reconnecting is a button, not a reload: a server back on the same address, one click.
    let again = start(Config {
        bind: server_addr,
        visibility: VisibilityMode::Global,
        ..test_config()
    })
    .await;
    page.eval("document.getElementById('reconnect').click(); true")
        .await;
    page.until(
        "the page to reconnect",
        "tickwire.status === 'connected' && tickwire.ownPosition !== null",
    )
    .await;
    assert_eq!(page.eval("tickwire.mismatches").await, json!(0));
    again.shutdown().await;

    let _ = child.kill().await;
    bots.abort();
    let _ = std::fs::remove_dir_all(&profile);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whiteboard_page_loads_on_the_same_sdk_and_sees_others_draw() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Chromium found: install Debian's chromium (.ci/run does) or set TICKWIRE_CHROMIUM"
        );
        eprintln!("skipping the whiteboard browser test: no Chromium");
        return;
    };
    let server = start(Config {
        game: "whiteboard".into(),
        ..test_config()
    })
    .await;
    // Eight bots on two boards (rooms); the page joins one of them by id, from its URL.
    let bots = tokio::spawn(run_swarm(SwarmConfig {
        url: server.ws_url(),
        bots: 8,
        rooms: 2,
        duration: Duration::from_secs(30),
        seed: 9,
        metrics_url: server.metrics_url(),
        behaviours: tickwire::behaviours(),
        ..SwarmConfig::default()
    }));
    let rooms = std::sync::Arc::clone(server.rooms());
    eventually("two boards of four bots", || {
        let list = rooms.list();
        list.len() == 2 && list.iter().all(|r| r.players() == 4)
    })
    .await;
    let room = rooms.list()[1].id().to_owned();
    let profile = std::env::temp_dir().join(format!("tickwire-chromium-wb-{}", std::process::id()));
    let url = format!("http://{}/?room={room}", server.local_addr());
    let (mut child, mut page) = open_page(&chromium, &profile, &url).await;
    page.until(
        "the whiteboard page to connect and see the bots",
        "window.tickwire && tickwire.status === 'connected' && tickwire.game === 'whiteboard' \
         && tickwire.others.length >= 4",
    )
    .await;
    assert_eq!(page.eval("tickwire.room").await, json!(room));
    assert_eq!(
        page.eval("tickwire.others.length").await,
        json!(4),
        "only its own board's players"
    );
    // Other players' changes arrive: strokes accumulate and cursors move.
    page.eval("window.__strokes = tickwire.strokes; window.__start = Object.fromEntries(tickwire.others.map(o => [o.id, o.x + ',' + o.y])); true").await;
    page.until(
        "the bots' strokes to appear",
        "tickwire.strokes > window.__strokes + 30",
    )
    .await;
    page.until(
        "a cursor to move",
        "tickwire.others.some(o => window.__start[o.id] !== undefined && window.__start[o.id] !== o.x + ',' + o.y)",
    )
    .await;
    // Chat rides on reliable events: the page's own line comes back once, and the bots' lines
    // arrive too.
    page.eval("tickwire.say('hello from chromium') > 0").await;
    page.until(
        "the page's chat line to come back",
        "tickwire.chat.filter(c => c.text === 'hello from chromium').length === 1",
    )
    .await;
    page.until(
        "the bots' chat lines",
        "tickwire.chat.filter(c => c.text !== 'hello from chromium').length >= 2",
    )
    .await;
    assert_eq!(page.eval("tickwire.mismatches").await, json!(0));
    assert_eq!(page.eval("tickwire.unapplied").await, json!(0));
    assert_eq!(page.eval("tickwire.errors").await, json!(0));
    server.shutdown().await;
    let _ = child.kill().await;
    bots.abort();
    let _ = std::fs::remove_dir_all(&profile);
}

/// Standard base64 (DevTools returns screenshots so).
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|c| u32::from(val(*c))).collect();
        let n = v
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, x)| acc | x << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_joins_a_server_that_requires_tokens_with_the_token_in_its_url() {
    let Some(chromium) = chromium() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "no Chromium found: install Debian's chromium (.ci/run does) or set TICKWIRE_CHROMIUM"
        );
        eprintln!("skipping the token browser test: no Chromium");
        return;
    };
    use tickwire_server::token::{TokenSigner, unix_now};
    let signer =
        TokenSigner::from_key_text(&TokenSigner::generate().expect("a key")).expect("reads back");
    let server = start(Config {
        join_token_public_key: signer.public_key(),
        ..test_config()
    })
    .await;
    let token = signer
        .mint("browser-player", "arena", unix_now() + 60)
        .expect("mints");
    let profile =
        std::env::temp_dir().join(format!("tickwire-chromium-token-{}", std::process::id()));
    let url = format!("http://{}/?token={token}", server.local_addr());
    let (mut child, mut page) = open_page(&chromium, &profile, &url).await;
    page.until(
        "the page to join with its token and apply snapshots",
        "window.tickwire && tickwire.status === 'connected' && tickwire.applied > 30",
    )
    .await;
    assert_eq!(page.eval("tickwire.mismatches").await, json!(0));
    assert_eq!(server.stats().token_refusals.get(), 0);
    assert_eq!(server.stats().joins.get(), 1);
    server.shutdown().await;
    let _ = child.kill().await;
    let _ = std::fs::remove_dir_all(&profile);
}
