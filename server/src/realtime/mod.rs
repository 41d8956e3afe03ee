//! Realtime over WebSocket (`/realtime/v1/websocket`): subscriptions to the
//! change feed with per-row authorization, resume from a feed position,
//! broadcast, token refresh and expiry, revoked sessions cut off, and
//! back-pressure. The protocol is in docs/realtime.md.
//!
//! Each replica follows the feed itself (`feed.rs`, woken by
//! `NOTIFY basalt_changes`) and fans changes out from memory (`hub.rs`);
//! broadcasts travel between replicas as `NOTIFY basalt_broadcast`.

pub mod hub;

mod channels;
mod phoenix;
mod presence;
mod protocol;
mod relays;
mod socket;

use channels::*;
use phoenix::{Frame, Phoenix, Serializer};
use presence::*;
pub use presence::{keep_presence, relay_presence};
use protocol::*;
use relays::*;
pub use relays::{cut_revoked_sessions, follow_feed, relay_broadcasts};
use socket::*;

use crate::authz::routes::subject_of;
use crate::db;
use crate::error::HttpError;
use crate::feed::{self, Page};
use crate::http::resource;
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::web::{self, Data, Json};
use actix_web::{HttpRequest, HttpResponse};
use actix_ws::{CloseCode, CloseReason, Message};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::filter::parse_condition;
use futures_util::StreamExt;
use hub::{Access, Hub, Identity, Spec};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, Notify};

/// The NOTIFY channel broadcasts travel on between replicas.
const BROADCAST_CHANNEL: &str = "basalt_broadcast";
/// The NOTIFY channel presence changes travel on.
const PRESENCE_CHANNEL: &str = "basalt_presence";
/// A replica not seen for this long is dead: its presence is removed.
const REPLICA_TIMEOUT_SECS: f64 = 15.0;
/// NOTIFY payloads are limited to 8000 bytes; a broadcast must fit.
const MAX_BROADCAST_BYTES: usize = 7000;
/// Server pings this often; a client silent for `IDLE` is disconnected.
const PING_EVERY: Duration = Duration::from_secs(25);
const IDLE: Duration = Duration::from_secs(75);

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/realtime/v1/websocket").route(web::get().to(websocket)))
        .service(resource("/realtime/v1/broadcast").route(web::post().to(server_broadcast)));
}

impl crate::state::AppState {
    /// Realtime connections and subscriptions on this replica.
    pub fn realtime(&self) -> &std::sync::Arc<hub::Hub> {
        self.services.get()
    }
}
