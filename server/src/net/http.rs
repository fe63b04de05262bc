//! The HTTP front of every connection: the request head is read and routed here, before any
//! WebSocket code sees the socket. A request either gets a plain HTTP answer with a status and a
//! body that says why, or is accepted as a WebSocket upgrade with a negotiated subprotocol.
//!
//! The admin listener routes with [`route_admin`]: `GET /metrics` and `GET /healthz` only, and
//! only for a `Host` that is an IP literal or in `allowed_hosts` (a DNS-rebinding page gets 403).
//!
//! Game-port routing (all paths but the WebSocket path, `/ws` by default, and the browser
//! client's files: 404):
//! - `GET /ws` with valid upgrade headers: `101 Switching Protocols`.
//! - `GET /ws` without them: `426 Upgrade Required`.
//! - a method other than GET: `405`.
//! - an `Origin` the policy refuses: `403`.
//! - only unknown subprotocols offered: `400`, naming the supported ones.
//! - a join token (query parameter `token`, or subprotocol `tickwire.token.<token>` beside a
//!   format) is extracted here and checked by the session, which holds the key.

use crate::token::TOKEN_SUBPROTOCOL_PREFIX;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Longest request head accepted, in bytes; longer gets 431.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Most header lines accepted; more gets 431.
const MAX_HEADERS: usize = 32;

/// The message format a WebSocket session speaks, chosen by `Sec-WebSocket-Protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subprotocol {
    /// `tickwire.v1`: bincode in binary frames. The default when none is offered.
    Binary,
    /// `tickwire.v1.json`: the same messages as JSON in text frames.
    Json,
}

impl Subprotocol {
    /// Name of the binary protocol.
    pub const BINARY_NAME: &'static str = "tickwire.v1";
    /// Name of the JSON protocol.
    pub const JSON_NAME: &'static str = "tickwire.v1.json";

    /// The name used in `Sec-WebSocket-Protocol`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Subprotocol::Binary => Self::BINARY_NAME,
            Subprotocol::Json => Self::JSON_NAME,
        }
    }

    fn parse(s: &str) -> Option<Subprotocol> {
        match s {
            Self::BINARY_NAME => Some(Subprotocol::Binary),
            Self::JSON_NAME => Some(Subprotocol::Json),
            _ => None,
        }
    }
}

/// A request accepted for upgrade.
#[derive(Debug, PartialEq, Eq)]
pub struct Upgrade {
    /// Value for `Sec-WebSocket-Accept`.
    pub accept_key: String,
    /// The negotiated format.
    pub protocol: Subprotocol,
    /// Whether the client offered subprotocols (then the response must name the chosen one).
    pub echo_protocol: bool,
    /// A join token, from the query parameter `token` or a `tickwire.token.<token>`
    /// subprotocol (checked by the caller, which holds the key).
    pub token: Option<String>,
    /// The query parameter `resume=1`: the connection will resume a held player (its secret
    /// stands in for a join token).
    pub resume: bool,
}

/// A request answered with a plain HTTP response.
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    /// HTTP status code.
    pub status: u16,
    /// Text body explaining the refusal.
    pub body: String,
    /// Extra header lines (`Name: value`).
    pub headers: Vec<String>,
}

impl Refusal {
    fn new(status: u16, body: impl Into<String>) -> Refusal {
        Refusal {
            status,
            body: body.into(),
            headers: Vec::new(),
        }
    }
}

/// An endpoint of the admin listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminEndpoint {
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET /healthz`: 200 while the tick loop is on schedule, 503 otherwise.
    Healthz,
    /// `GET /rooms`: every room in detail.
    Rooms,
    /// `GET /rooms/<id>`: one room in detail.
    Room(String),
    /// `POST /rooms?key=value&...`: create an empty room with these properties
    /// (URL-encoded).
    CreateRoom(Vec<(String, String)>),
}

/// What the game port's routing decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// Upgrade to WebSocket.
    Upgrade(Upgrade),
    /// Serve a file of the game's page or the JavaScript SDK (`GET /`, `/sdk/tickwire.js`).
    Asset(&'static super::web::Asset),
    /// Serve the public lobby listing (`GET /rooms`).
    Rooms,
    /// Answer with an error status and close.
    Refuse(Refusal),
}

/// What the routing checks requests against.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Path of the WebSocket endpoint.
    pub ws_path: String,
    /// Whether `tickwire.v1.json` may be negotiated.
    pub json: bool,
    /// Whether the browser client is served.
    pub web_client: bool,
    /// Who may connect from a browser.
    pub origins: OriginPolicy,
    /// The game's page files.
    pub page: &'static [super::web::Asset],
    /// Whether `GET /rooms` lists the rooms.
    pub room_listing: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            ws_path: "/ws".into(),
            json: true,
            web_client: true,
            origins: OriginPolicy::default(),
            page: &[],
            room_listing: true,
        }
    }
}

/// Who may connect from a browser.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Origins allowed besides the server's own (exact match, e.g. `https://game.example`);
    /// `*` allows any.
    pub allowed: Vec<String>,
    /// Host names the server answers to as itself, besides IP literals (see [`host_allowed`]).
    pub hosts: Vec<String>,
}

impl Default for OriginPolicy {
    fn default() -> Self {
        OriginPolicy {
            allowed: Vec::new(),
            hosts: vec!["localhost".into()],
        }
    }
}

impl OriginPolicy {
    /// Requests with no `Origin` (native clients, bots) are always allowed. A browser request is
    /// allowed if its origin is listed, or if it is same-origin: the Origin's host equals the
    /// `Host` header and that host is one the server answers to ([`host_allowed`]), so a
    /// DNS-rebinding page, whose `Host` and `Origin` both name the attacker's domain, is not.
    #[must_use]
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else { return true };
        if self
            .allowed
            .iter()
            .any(|a| a == "*" || a.eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let origin_host = origin
            .split_once("://")
            .map(|(_, h)| h.trim_end_matches('/'));
        matches!((origin_host, host), (Some(o), Some(h))
            if o.eq_ignore_ascii_case(h) && host_allowed(h, &self.hosts))
    }
}

/// True if a `Host` header value (with or without a port) names this server: an IP literal
/// (`127.0.0.1`, `[::1]`), or a name in `hosts` (case-insensitive).
#[must_use]
pub fn host_allowed(host: &str, hosts: &[String]) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split_once(']')
            .is_some_and(|(ip, _)| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    name.parse::<std::net::Ipv4Addr>().is_ok() || hosts.iter().any(|h| h.eq_ignore_ascii_case(name))
}

fn header<'a>(req: &'a httparse::Request<'_, '_>, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim)
}

fn has_token(value: Option<&str>, token: &str) -> bool {
    value.is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

/// True for a syntactically valid `Sec-WebSocket-Key`: base64 of exactly 16 bytes.
fn valid_key(key: &str) -> bool {
    let b = key.as_bytes();
    let b64 = |c: u8| c.is_ascii_alphanumeric() || c == b'+' || c == b'/';
    // 16 bytes encode to 22 characters and "==", the last of which carries 2 zero bits.
    b.len() == 24
        && b[..22].iter().all(|&c| b64(c))
        && &b[22..] == b"=="
        && b"AQgw".contains(&b[21])
}

/// Routes a complete request head (up to and including the blank line).
pub fn route(head: &[u8], policy: &Policy) -> Route {
    match route_request(head, policy) {
        Ok(r) => r,
        Err(refusal) => Route::Refuse(refusal),
    }
}

/// Parses a complete request head; a malformed one is refused.
fn parse<'h, 'b>(
    head: &'b [u8],
    headers: &'h mut [httparse::Header<'b>],
) -> Result<httparse::Request<'h, 'b>, Refusal> {
    let mut req = httparse::Request::new(headers);
    match req.parse(head) {
        Ok(httparse::Status::Complete(_)) => Ok(req),
        Ok(httparse::Status::Partial) => Err(Refusal::new(400, "incomplete request\n")),
        Err(httparse::Error::TooManyHeaders) => Err(Refusal::new(431, "too many header lines\n")),
        Err(e) => Err(Refusal::new(400, format!("malformed request: {e}\n"))),
    }
}

/// The request's path without its query.
fn path_of<'a>(req: &httparse::Request<'_, 'a>) -> &'a str {
    req.path.unwrap_or("").split('?').next().unwrap_or("")
}

/// 405 unless the method is GET.
fn only_get(req: &httparse::Request<'_, '_>, path: &str) -> Result<(), Refusal> {
    if req.method == Some("GET") {
        return Ok(());
    }
    let mut r = Refusal::new(405, format!("{path} only accepts GET\n"));
    r.headers.push("Allow: GET".into());
    Err(r)
}

fn route_request(head: &[u8], policy: &Policy) -> Result<Route, Refusal> {
    let ws_path = policy.ws_path.as_str();
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let req = parse(head, &mut headers)?;
    let path = path_of(&req);
    if policy.web_client
        && let Some(asset) = super::web::asset(policy.page, path)
    {
        only_get(&req, path)?;
        return Ok(Route::Asset(asset));
    }
    if policy.room_listing && path == "/rooms" {
        only_get(&req, path)?;
        return Ok(Route::Rooms);
    }
    if path != ws_path {
        return Err(Refusal::new(
            404,
            format!("not found: the WebSocket endpoint is {ws_path}\n"),
        ));
    }
    if req.method != Some("GET") {
        let mut r = Refusal::new(
            405,
            format!("{ws_path} only accepts GET with a WebSocket upgrade\n"),
        );
        r.headers.push("Allow: GET".into());
        return Err(r);
    }
    let upgrade = has_token(header(&req, "upgrade"), "websocket")
        && has_token(header(&req, "connection"), "upgrade");
    if !upgrade {
        let mut r = Refusal::new(
            426,
            format!("{ws_path} is a WebSocket endpoint: send a WebSocket upgrade request\n"),
        );
        r.headers.push("Upgrade: websocket".into());
        r.headers.push("Connection: Upgrade".into());
        return Err(r);
    }
    if header(&req, "sec-websocket-version") != Some("13") {
        let mut r = Refusal::new(426, "unsupported WebSocket version: use 13\n");
        r.headers.push("Sec-WebSocket-Version: 13".into());
        return Err(r);
    }
    let Some(key) = header(&req, "sec-websocket-key").filter(|k| valid_key(k)) else {
        return Err(Refusal::new(
            400,
            "missing or malformed Sec-WebSocket-Key\n",
        ));
    };
    let origin = header(&req, "origin");
    if !policy.origins.allows(origin, header(&req, "host")) {
        return Err(Refusal::new(
            403,
            format!(
                "origin {} is not allowed to connect\n",
                origin.unwrap_or("")
            ),
        ));
    }
    let all_offered: Vec<&str> = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .filter_map(|h| std::str::from_utf8(h.value).ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    // A token offered as a subprotocol is not a format: it is never chosen or echoed.
    let (tokens, offered): (Vec<&str>, Vec<&str>) = all_offered
        .iter()
        .partition(|p| p.starts_with(TOKEN_SUBPROTOCOL_PREFIX));
    let token = tokens
        .first()
        .map(|p| &p[TOKEN_SUBPROTOCOL_PREFIX.len()..])
        .or_else(|| query_param(req.path.unwrap_or(""), "token"))
        .map(str::to_owned);
    if !tokens.is_empty() && offered.is_empty() {
        // A browser that offered subprotocols fails a handshake that echoes none.
        return Err(Refusal::new(
            400,
            format!(
                "a token subprotocol must come with a format: offer {} too\n",
                Subprotocol::BINARY_NAME
            ),
        ));
    }
    let protocol = if offered.is_empty() {
        Subprotocol::Binary
    } else {
        let usable = |p: &Subprotocol| policy.json || *p == Subprotocol::Binary;
        match offered
            .iter()
            .filter_map(|p| Subprotocol::parse(p))
            .find(usable)
        {
            Some(p) => p,
            None => {
                let supported = if policy.json {
                    format!("{}, {}", Subprotocol::BINARY_NAME, Subprotocol::JSON_NAME)
                } else {
                    Subprotocol::BINARY_NAME.to_owned()
                };
                return Err(Refusal::new(
                    400,
                    format!(
                        "unsupported subprotocol ({}); supported: {supported}\n",
                        offered.join(", ")
                    ),
                ));
            }
        }
    };
    Ok(Route::Upgrade(Upgrade {
        accept_key: derive_accept_key(key.as_bytes()),
        protocol,
        echo_protocol: !offered.is_empty(),
        token,
        resume: query_param(req.path.unwrap_or(""), "resume") == Some("1"),
    }))
}

/// The value of query parameter `name` in a request target, as sent (tokens are URL-safe).
fn query_param<'a>(target: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = target.split_once('?')?;
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Routes a request head on the admin listener: `GET /metrics`, `GET /healthz`,
/// `GET /rooms`, `GET /rooms/<id>` and `POST /rooms?key=value...`, for a `Host` that
/// [`host_allowed`] accepts.
pub fn route_admin(head: &[u8], hosts: &[String]) -> Result<AdminEndpoint, Refusal> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let req = parse(head, &mut headers)?;
    let path = path_of(&req);
    let endpoint = match path {
        "/metrics" => AdminEndpoint::Metrics,
        "/healthz" => AdminEndpoint::Healthz,
        "/rooms" if req.method == Some("POST") => {
            let query = req
                .path
                .unwrap_or("")
                .split_once('?')
                .map_or("", |(_, q)| q);
            let props: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect();
            if let Err(e) = tickwire_protocol::input::validate_props(&props) {
                return Err(Refusal::new(400, format!("{e}\n")));
            }
            AdminEndpoint::CreateRoom(props)
        }
        "/rooms" => AdminEndpoint::Rooms,
        p if p.starts_with("/rooms/") => AdminEndpoint::Room(p["/rooms/".len()..].to_owned()),
        _ => {
            return Err(Refusal::new(
                404,
                "not found: this admin port serves /metrics, /healthz and /rooms\n",
            ));
        }
    };
    if !matches!(endpoint, AdminEndpoint::CreateRoom(_)) {
        only_get(&req, path)?;
    }
    match header(&req, "host") {
        Some(h) if host_allowed(h, hosts) => Ok(endpoint),
        h => Err(Refusal::new(
            403,
            format!(
                "host {} is not one this server answers to (see allowed_hosts)\n",
                h.unwrap_or("(none)")
            ),
        )),
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        426 => "Upgrade Required",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// The bytes of a refusal response; the connection closes after it.
#[must_use]
pub fn refusal_response(r: &Refusal) -> Vec<u8> {
    response(r.status, "text/plain; charset=utf-8", &r.headers, &r.body)
}

/// The bytes of a complete response with a body; the connection closes after it.
#[must_use]
pub fn response(status: u16, content_type: &str, headers: &[String], body: &str) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {} {}\r\n", status, reason_phrase(status));
    for h in headers {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str(&format!(
        "Content-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         Connection: close\r\n\r\n",
        body.len()
    ));
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

/// The bytes of the `101 Switching Protocols` response.
#[must_use]
pub fn upgrade_response(u: &Upgrade) -> Vec<u8> {
    let mut s = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n",
        u.accept_key
    );
    if u.echo_protocol {
        s.push_str(&format!(
            "Sec-WebSocket-Protocol: {}\r\n",
            u.protocol.name()
        ));
    }
    s.push_str("\r\n");
    s.into_bytes()
}

/// What reading a request head produced.
pub enum Head {
    /// A complete head of `len` bytes at the start of the buffer; bytes after it belong to
    /// the WebSocket stream.
    Complete(usize),
    /// The peer closed before sending a whole head.
    Eof,
    /// The head is over [`MAX_HEAD_BYTES`].
    TooLarge,
}

/// Reads until the end of the request head (a blank line), into `buf`. A head (blank line
/// included) longer than [`MAX_HEAD_BYTES`] is refused without reading further.
pub async fn read_head<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<Head> {
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(if pos + 4 <= MAX_HEAD_BYTES {
                Head::Complete(pos + 4)
            } else {
                Head::TooLarge
            });
        }
        if buf.len() >= MAX_HEAD_BYTES {
            return Ok(Head::TooLarge);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(Head::Eof);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Writes a response and flushes it.
pub async fn write_all<S: AsyncWrite + Unpin>(stream: &mut S, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

    fn req(path: &str, extra: &str) -> Vec<u8> {
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:7777\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: {KEY}\r\n{extra}\r\n"
        )
        .into_bytes()
    }

    fn status(r: Route) -> u16 {
        match r {
            Route::Upgrade(_) => 101,
            Route::Asset(_) | Route::Rooms => 200,
            Route::Refuse(e) => e.status,
        }
    }

    fn upgrade(r: Route) -> Upgrade {
        match r {
            Route::Upgrade(u) => u,
            other => panic!("expected an upgrade, got {other:?}"),
        }
    }

    fn refusal(r: Route) -> Refusal {
        match r {
            Route::Refuse(e) => e,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn room_routes() {
        let get = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        let policy = Policy::default();
        assert_eq!(route(get("/rooms").as_bytes(), &policy), Route::Rooms);
        let post = "POST /rooms HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        assert_eq!(status(route(post.as_bytes(), &policy)), 405);
        let off = Policy {
            room_listing: false,
            ..Policy::default()
        };
        assert_eq!(status(route(get("/rooms").as_bytes(), &off)), 404);
        // The admin port: details, one room, and creation with URL-encoded properties.
        let hosts: Vec<String> = Vec::new();
        let admin = |head: String| route_admin(head.as_bytes(), &hosts);
        assert_eq!(admin(get("/rooms")), Ok(AdminEndpoint::Rooms));
        assert_eq!(
            admin(get("/rooms/abc")),
            Ok(AdminEndpoint::Room("abc".into()))
        );
        let create = |q: &str| format!("POST /rooms?{q} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        assert_eq!(
            admin(create("mode=ctf&map=big%20one")),
            Ok(AdminEndpoint::CreateRoom(vec![
                ("mode".into(), "ctf".into()),
                ("map".into(), "big one".into())
            ]))
        );
        let status_of = |r: Result<AdminEndpoint, Refusal>| r.map_or_else(|e| e.status, |_| 200);
        assert_eq!(status_of(admin(create("a=1&a=2"))), 400, "repeated key");
        let put = "PUT /rooms HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_owned();
        assert_eq!(status_of(admin(put)), 405);
    }

    #[test]
    fn telemetry_endpoints_are_only_on_the_admin_router() {
        let hosts = vec!["localhost".to_owned()];
        let get = |path: &str, host: &str| {
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
        };
        let admin_status =
            |head: &[u8]| route_admin(head, &hosts).map_or_else(|r| r.status, |_| 200);
        assert_eq!(
            route_admin(&get("/metrics", "127.0.0.1:7778"), &hosts),
            Ok(AdminEndpoint::Metrics)
        );
        assert_eq!(
            route_admin(&get("/healthz", "localhost:7778"), &hosts),
            Ok(AdminEndpoint::Healthz)
        );
        assert_eq!(
            route_admin(&get("/healthz", "[::1]:7778"), &hosts),
            Ok(AdminEndpoint::Healthz)
        );
        assert_eq!(
            admin_status(b"POST /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"),
            405
        );
        assert_eq!(admin_status(&get("/ws", "127.0.0.1")), 404);
        assert_eq!(admin_status(b"garbage\r\n\r\n"), 400);
        // A DNS-rebinding page reaches us under the attacker's name.
        assert_eq!(admin_status(&get("/metrics", "evil.example:7778")), 403);
        // The game port no longer serves them.
        let p = Policy::default();
        assert_eq!(status(route(&get("/metrics", "127.0.0.1"), &p)), 404);
        assert_eq!(status(route(&get("/healthz", "127.0.0.1"), &p)), 404);
    }

    #[test]
    fn hosts() {
        let hosts = vec!["localhost".to_owned(), "Game.Example".to_owned()];
        for ok in [
            "127.0.0.1",
            "127.0.0.1:7777",
            "10.1.2.3:80",
            "[::1]:7777",
            "[::1]",
            "localhost:7777",
            "game.example",
        ] {
            assert!(host_allowed(ok, &hosts), "{ok}");
        }
        for bad in [
            "evil.example:7777",
            "localhost.evil.example",
            "[nope]:1",
            "",
        ] {
            assert!(!host_allowed(bad, &hosts), "{bad}");
        }
    }

    #[test]
    fn upgrade_with_the_rfc_sample_key() {
        let up = upgrade(route(&req("/ws", ""), &Policy::default()));
        assert_eq!(up.accept_key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
        assert_eq!(up.protocol, Subprotocol::Binary);
        assert!(!up.echo_protocol);
        let resp = String::from_utf8(upgrade_response(&up)).expect("ascii");
        assert!(resp.starts_with("HTTP/1.1 101"));
        assert!(!resp.contains("Sec-WebSocket-Protocol"));
    }

    #[test]
    fn routing_statuses() {
        let p = Policy::default();
        assert_eq!(status(route(&req("/ws?x=1", ""), &p)), 101);
        assert_eq!(status(route(&req("/other", ""), &p)), 404);
        assert_eq!(
            status(route(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", &p)),
            426
        );
        assert_eq!(
            status(route(b"POST /ws HTTP/1.1\r\nHost: x\r\n\r\n", &p)),
            405
        );
        assert_eq!(status(route(b"garbage\r\n\r\n", &p)), 400);
        let bad_key = String::from_utf8(req("/ws", ""))
            .expect("ascii")
            .replace(KEY, "short");
        assert_eq!(status(route(bad_key.as_bytes(), &p)), 400);
        let v8 = String::from_utf8(req("/ws", ""))
            .expect("ascii")
            .replace("Version: 13", "Version: 8");
        assert_eq!(status(route(v8.as_bytes(), &p)), 426);
    }

    #[test]
    fn origin_policy() {
        let p = Policy::default();
        assert_eq!(
            status(route(&req("/ws", "Origin: http://127.0.0.1:7777\r\n"), &p)),
            101
        );
        assert_eq!(
            status(route(&req("/ws", "Origin: https://evil.example\r\n"), &p)),
            403
        );
        // DNS rebinding: Origin and Host agree, but on a name the server does not answer to.
        let rebinding = "GET /ws HTTP/1.1\r\nHost: evil.example:7777\r\nUpgrade: websocket\r\n\
                         Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
                         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
                         Origin: http://evil.example:7777\r\n\r\n";
        assert_eq!(status(route(rebinding.as_bytes(), &p)), 403);
        let localhost = rebinding.replace("evil.example", "localhost");
        assert_eq!(status(route(localhost.as_bytes(), &p)), 101);
        let p = Policy {
            origins: OriginPolicy {
                allowed: vec!["https://game.example".into()],
                ..OriginPolicy::default()
            },
            ..Policy::default()
        };
        assert_eq!(
            status(route(&req("/ws", "Origin: https://game.example\r\n"), &p)),
            101
        );
        assert_eq!(
            status(route(&req("/ws", "Origin: https://evil.example\r\n"), &p)),
            403
        );
        let any = Policy {
            origins: OriginPolicy {
                allowed: vec!["*".into()],
                ..OriginPolicy::default()
            },
            ..Policy::default()
        };
        assert_eq!(
            status(route(&req("/ws", "Origin: https://evil.example\r\n"), &any)),
            101
        );
    }

    #[test]
    fn subprotocol_negotiation() {
        let p = Policy::default();
        let up = upgrade(route(
            &req("/ws", "Sec-WebSocket-Protocol: foo, tickwire.v1.json\r\n"),
            &p,
        ));
        assert_eq!(up.protocol, Subprotocol::Json);
        assert!(
            String::from_utf8(upgrade_response(&up))
                .expect("ascii")
                .contains("Sec-WebSocket-Protocol: tickwire.v1.json\r\n")
        );
        let up = upgrade(route(
            &req("/ws", "Sec-WebSocket-Protocol: tickwire.v1\r\n"),
            &p,
        ));
        assert_eq!(up.protocol, Subprotocol::Binary);
        let refused = refusal(route(
            &req("/ws", "Sec-WebSocket-Protocol: mqtt, chat\r\n"),
            &p,
        ));
        assert_eq!(refused.status, 400);
        assert!(refused.body.contains("tickwire.v1") && refused.body.contains("tickwire.v1.json"));
        let binary_only = Policy {
            json: false,
            ..Policy::default()
        };
        let r = route(
            &req("/ws", "Sec-WebSocket-Protocol: tickwire.v1.json\r\n"),
            &binary_only,
        );
        assert_eq!(refusal(r).status, 400);
    }

    #[test]
    fn join_tokens_are_found_in_the_query_or_a_subprotocol() {
        let p = Policy::default();
        assert_eq!(upgrade(route(&req("/ws", ""), &p)).token, None);
        let q = upgrade(route(&req("/ws?x=1&token=abc-_9", ""), &p));
        assert_eq!(q.token.as_deref(), Some("abc-_9"));
        let sub = upgrade(route(
            &req(
                "/ws",
                "Sec-WebSocket-Protocol: tickwire.v1, tickwire.token.xyz\r\n",
            ),
            &p,
        ));
        assert_eq!(sub.token.as_deref(), Some("xyz"));
        assert_eq!(sub.protocol, Subprotocol::Binary);
        let resp = String::from_utf8(upgrade_response(&sub)).expect("ascii");
        assert!(resp.contains("Sec-WebSocket-Protocol: tickwire.v1\r\n"));
        assert!(!resp.contains("xyz"), "the token is never echoed");
        // A token alone: the browser would fail a handshake that echoes no protocol.
        let alone = route(
            &req("/ws", "Sec-WebSocket-Protocol: tickwire.token.xyz\r\n"),
            &p,
        );
        assert_eq!(refusal(alone).status, 400);
    }

    #[test]
    fn custom_ws_path() {
        let p = Policy {
            ws_path: "/game".into(),
            ..Policy::default()
        };
        assert_eq!(status(route(&req("/game", ""), &p)), 101);
        assert_eq!(status(route(&req("/ws", ""), &p)), 404);
    }

    #[tokio::test]
    async fn the_head_limit_is_exact() {
        let head = |len: usize| {
            let mut h = b"GET /ws HTTP/1.1\r\nX: ".to_vec();
            h.resize(len - 4, b'a');
            h.extend_from_slice(b"\r\n\r\n");
            h
        };
        for (len, fits) in [(MAX_HEAD_BYTES, true), (MAX_HEAD_BYTES + 1, false)] {
            let bytes = head(len);
            let mut buf = Vec::new();
            let got = read_head(&mut bytes.as_slice(), &mut buf)
                .await
                .expect("reads");
            match got {
                Head::Complete(n) => assert!(fits && n == len, "{len}"),
                Head::TooLarge => assert!(!fits, "{len}"),
                Head::Eof => panic!("eof"),
            }
        }
    }

    #[test]
    fn key_validation() {
        assert!(valid_key(KEY));
        assert!(
            !valid_key("dGhlIHNhbXBsZSBub25jZR=="),
            "non-zero padding bits"
        );
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZQ="));
        assert!(!valid_key("dGhlIHNhbXBsZSBub25jZQ!="));
    }
}
