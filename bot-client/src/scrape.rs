//! Reading the server's `/metrics` (Prometheus text) before and after the measured window, to
//! report the server's CPU time beside what the bots measured. A plain HTTP/1.1 GET over
//! TCP: the admin endpoint is plain text on loopback or a private network, and one request per
//! run does not justify an HTTP client crate.

use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Largest `/metrics` answer read, in bytes.
const MAX_METRICS_BYTES: u64 = 4 * 1024 * 1024;
/// Time allowed for one scrape.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(3);

/// The figures read from one scrape.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it was read.
    pub at: Instant,
    /// `process_cpu_seconds_total`.
    pub cpu_seconds: f64,
    /// `process_resident_memory_bytes`, if reported.
    pub resident_bytes: Option<f64>,
    /// Client ticks: one per client per tick of its room, counted as the snapshots handed
    /// to sessions or skipped (`tickwire_snapshots_sent_total` plus
    /// `tickwire_snapshots_dropped_total`), so a server running many rooms is measured per
    /// client tick, not per tick of any room.
    pub client_ticks: f64,
}

/// The default metrics URL for a server URL: its admin port (7778) when the server is on
/// loopback, else none (the admin port is not meant to be reachable from elsewhere).
#[must_use]
pub fn default_metrics_url(server_url: &str) -> Option<String> {
    let rest = server_url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = if let Some(v6) = authority.strip_prefix('[') {
        format!("[{}]", v6.split_once(']')?.0)
    } else {
        authority
            .rsplit_once(':')
            .map_or(authority, |(h, _)| h)
            .to_owned()
    };
    let loopback = host == "localhost"
        || host == "[::1]"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    loopback.then(|| format!("http://{host}:7778/metrics"))
}

/// The value of the first sample of `name` (no labels) in Prometheus text.
#[must_use]
pub fn value(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

/// GETs `url` (`http://host:port/path`) and reads the figures.
pub async fn scrape(url: &str) -> Result<Sample, String> {
    let text = tokio::time::timeout(SCRAPE_TIMEOUT, get(url))
        .await
        .map_err(|_| format!("{url}: no answer within {SCRAPE_TIMEOUT:?}"))??;
    let need = |name: &str| value(&text, name).ok_or_else(|| format!("{url}: no {name}"));
    Ok(Sample {
        at: Instant::now(),
        cpu_seconds: need("process_cpu_seconds_total")?,
        resident_bytes: value(&text, "process_resident_memory_bytes"),
        client_ticks: need("tickwire_snapshots_sent_total")?
            + need("tickwire_snapshots_dropped_total")?,
    })
}

async fn get(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// metrics URLs are supported"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let mut tcp = tokio::net::TcpStream::connect(authority)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    tcp.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let mut out = Vec::new();
    tcp.take(MAX_METRICS_BYTES)
        .read_to_end(&mut out)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    let text = String::from_utf8_lossy(&out);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{url}: not an HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        let status = head.lines().next().unwrap_or("");
        return Err(format!("{url}: {status}"));
    }
    Ok(body.to_owned())
}

/// What the server spent over the window, from two samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerCost {
    /// CPU time as a percentage of one core.
    pub cpu_pct: f64,
    /// CPU microseconds per connected client per tick.
    pub cpu_us_per_client_tick: f64,
    /// Resident memory at the end, bytes.
    pub resident_bytes: Option<f64>,
}

/// The server's cost between `before` and `after`.
#[must_use]
pub fn cost(before: &Sample, after: &Sample) -> Option<ServerCost> {
    let elapsed = after.at.duration_since(before.at).as_secs_f64();
    let cpu = after.cpu_seconds - before.cpu_seconds;
    let client_ticks = after.client_ticks - before.client_ticks;
    if elapsed <= 0.0 || client_ticks <= 0.0 || cpu < 0.0 {
        return None;
    }
    Some(ServerCost {
        cpu_pct: cpu / elapsed * 100.0,
        cpu_us_per_client_tick: cpu * 1e6 / client_ticks,
        resident_bytes: after.resident_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_url_only_on_loopback() {
        assert_eq!(
            default_metrics_url("ws://127.0.0.1:7777/ws").as_deref(),
            Some("http://127.0.0.1:7778/metrics")
        );
        assert_eq!(
            default_metrics_url("wss://localhost:9000/game").as_deref(),
            Some("http://localhost:7778/metrics")
        );
        assert_eq!(
            default_metrics_url("ws://[::1]:7777/ws").as_deref(),
            Some("http://[::1]:7778/metrics")
        );
        assert_eq!(default_metrics_url("wss://game.example/ws"), None);
        assert_eq!(default_metrics_url("ws://10.0.0.5:7777/ws"), None);
    }

    #[test]
    fn values_and_cost() {
        let text = "# HELP x\nprocess_cpu_seconds_total 12.5\ntickwire_ticks_total 300\n\
                    tickwire_ticks_total_other 1\ntickwire_clients 10\n";
        assert_eq!(value(text, "process_cpu_seconds_total"), Some(12.5));
        assert_eq!(value(text, "tickwire_ticks_total"), Some(300.0));
        assert_eq!(value(text, "tickwire_clients"), Some(10.0));
        // 100 clients over 300 ticks of their rooms, however many rooms that took.
        assert_eq!(value(text, "missing"), None);
        let t0 = Instant::now();
        let before = Sample {
            at: t0,
            cpu_seconds: 10.0,
            resident_bytes: None,
            client_ticks: 1000.0,
        };
        let after = Sample {
            at: t0 + Duration::from_secs(10),
            cpu_seconds: 11.5,
            resident_bytes: Some(1e6),
            client_ticks: 31_000.0,
        };
        let c = cost(&before, &after).expect("a cost");
        assert!((c.cpu_pct - 15.0).abs() < 1e-9);
        assert!((c.cpu_us_per_client_tick - 50.0).abs() < 1e-9);
    }
}
