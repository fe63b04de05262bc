//! The `tickwire-server` binary as an operator runs it: it logs without ANSI colour codes when
//! its output is not a terminal, answers SIGTERM by closing a connection still in the HTTP phase
//! with 503 and exiting 0 within the grace period, and refuses to start, saying why, when
//! `max_connections` cannot fit under the open-file limit.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn server() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tickwire-server"));
    cmd.env("RUST_LOG", "info");
    cmd
}

#[test]
fn sigterm_exits_zero_within_the_grace_period_and_logs_have_no_ansi() {
    let mut child = server()
        .args(["--bind", "127.0.0.1:0", "--admin-bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the server starts");
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let addr: SocketAddr = loop {
        let line = rx.recv_timeout(WAIT).expect("a 'listening' log line");
        lines.push(line.clone());
        if line.contains(" listening ")
            && let Some(a) = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("local_addr="))
        {
            break a.parse().expect("an address");
        }
    };
    // A connection in the HTTP phase: half a request head.
    let mut http = TcpStream::connect(addr).expect("connects");
    http.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .expect("write");
    // Let the server see it as a session before the signal: wait for its accept to register.
    let probing = Instant::now();
    while probing.elapsed() < WAIT {
        let mut probe = TcpStream::connect(addr).expect("probe");
        probe
            .write_all(b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("probe");
        let mut out = String::new();
        let _ = probe.read_to_string(&mut out);
        if out.starts_with("HTTP/1.1 404") {
            break;
        }
    }
    let started = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(started.elapsed() < WAIT, "still running after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "exit status {exit}");
    assert!(
        started.elapsed() < Duration::from_millis(3000 + 1000),
        "exited within the grace period (3 s): {:?}",
        started.elapsed()
    );
    http.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut answer = String::new();
    let _ = http.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("shutting down"), "{answer:?}");
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
        lines.push(line);
    }
    let all = lines.join("\n");
    assert!(all.contains("shut down"), "{all}");
    assert!(
        !all.contains('\u{1b}'),
        "ANSI escape codes in piped logs:\n{all}"
    );
}

#[test]
fn a_connection_cap_over_the_file_limit_refuses_to_start() {
    let out = server()
        .args([
            "--bind",
            "127.0.0.1:0",
            "--admin-bind",
            "",
            "--max-connections",
            "1099511627776",
        ])
        .output()
        .expect("runs");
    assert!(!out.status.success(), "started with an impossible cap");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("max_connections") && err.contains("ulimit"),
        "no clear message: {err}"
    );
}
