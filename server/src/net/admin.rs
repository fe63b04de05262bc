//! The admin listener: `GET /metrics` (Prometheus text), `GET /healthz`, and the rooms
//! (`GET /rooms` and `GET /rooms/<id>` in detail, `POST /rooms?key=value...` to create an
//! empty room with those properties), on their own address (`admin_bind`, by default `127.0.0.1:7778`) so the public game port does not expose
//! them. One short-lived task per request, at most `admin_max_connections` at once; a request
//! must arrive and be answered within `admin_timeout_ms`. Requests whose `Host` is not an IP literal or one of
//! `allowed_hosts` get 403, so a DNS-rebinding page cannot read them through a browser.

use super::http::{self, AdminEndpoint, Head};
use crate::rooms::Rooms;
use crate::telemetry::Telemetry;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Serves the admin listener until shutdown.
pub(crate) async fn serve(
    listener: TcpListener,
    telemetry: Arc<Telemetry>,
    rooms: Arc<Rooms>,
    hosts: Vec<String>,
    max_connections: usize,
    timeout: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let hosts = Arc::new(hosts);
    let permits = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut tasks = JoinSet::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.changed() => break,
            p = Arc::clone(&permits).acquire_owned() => p,
        };
        let Ok(permit) = permit else { break };
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let (telemetry, rooms, hosts) =
                        (Arc::clone(&telemetry), Arc::clone(&rooms), Arc::clone(&hosts));
                    tasks.spawn(async move {
                        let answering = answer(stream, &telemetry, &rooms, &hosts);
                        let _ = tokio::time::timeout(timeout, answering).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    warn!(error = %e, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
        while tasks.try_join_next().is_some() {}
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

async fn answer(mut stream: TcpStream, telemetry: &Telemetry, rooms: &Rooms, hosts: &[String]) {
    let mut buf = Vec::with_capacity(512);
    let text = "text/plain; charset=utf-8";
    let json = "application/json";
    let bytes = match http::read_head(&mut stream, &mut buf).await {
        Ok(Head::Complete(len)) => match http::route_admin(&buf[..len], hosts) {
            Ok(AdminEndpoint::Metrics) => http::response(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                &[],
                &telemetry.render(),
            ),
            Ok(AdminEndpoint::Healthz) => match telemetry.health() {
                Ok(()) => http::response(200, text, &[], "ok\n"),
                Err(why) => http::response(503, text, &[], &format!("{why}\n")),
            },
            Ok(AdminEndpoint::Rooms) => {
                let all: Vec<_> = rooms.list().iter().map(|r| r.detail_json()).collect();
                http::response(
                    200,
                    json,
                    &[],
                    &format!("{}\n", serde_json::Value::Array(all)),
                )
            }
            Ok(AdminEndpoint::Room(id)) => match rooms.get(&id) {
                Some(room) => http::response(200, json, &[], &format!("{}\n", room.detail_json())),
                None => http::response(404, text, &[], &format!("no such room {id:?}\n")),
            },
            Ok(AdminEndpoint::CreateRoom(props)) => match rooms.create_empty(props) {
                Ok(room) => http::response(201, json, &[], &format!("{}\n", room.detail_json())),
                Err(e) => http::response(503, text, &[], &format!("{e}\n")),
            },
            Err(r) => {
                debug!(status = r.status, "admin request refused");
                http::refusal_response(&r)
            }
        },
        Ok(Head::TooLarge) => http::response(431, text, &[], "request head too large\n"),
        Ok(Head::Eof) | Err(_) => return,
    };
    let _ = http::write_all(&mut stream, &bytes).await;
    let _ = stream.shutdown().await;
}
