//! The replica's registry of realtime connections and subscriptions, and
//! the fan-out of feed changes and broadcasts to them. Everything a
//! delivery needs (the subscriber's row condition, columns, filter) is held
//! in memory, so a change costs no database query per subscriber.

use crate::feed::Change;
use basalt_core::errors::ErrorCode;
use basalt_core::filter::eval::matches;
use basalt_core::filter::sql::Caller as Variables;
use basalt_core::filter::Expr;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, Notify};

/// Who a connection acts as, for row conditions.
#[derive(Debug, Clone)]
pub struct Identity {
    pub uid: Option<String>,
    pub role: String,
    pub claims: Value,
}

/// A subscriber's right to see rows of one table: each matching policy's
/// row condition and columns, kept apart. A row is visible when some
/// policy's condition holds on it, with the columns of the policies whose
/// condition holds (so combining a broad policy with few columns and a
/// narrow one with many never shows many columns of every row).
#[derive(Debug, Clone)]
pub struct Access {
    /// `(condition, columns)`; `None` condition: every row; `None` columns: all.
    pub grants: Vec<basalt_core::policy::Grant>,
}

impl Access {
    /// The columns of `row` the subscriber may see (`Some(None)`: all), or
    /// `None` when the row is not visible.
    fn visible(&self, row: &Value, variables: &Variables) -> Option<Option<Vec<String>>> {
        basalt_core::policy::visible_columns(&self.grants, row, variables)
    }

    /// The columns every grant allows (what a filter may read).
    pub fn common_columns(&self) -> Option<Vec<String>> {
        let mut common: Option<Vec<String>> = None;
        for (_, granted) in &self.grants {
            if let Some(granted) = granted {
                common = Some(match common {
                    None => granted.clone(),
                    Some(so_far) => so_far.into_iter().filter(|c| granted.contains(c)).collect(),
                });
            }
        }
        common
    }
}

#[derive(Debug, Clone)]
pub struct Spec {
    /// `None` for `*`.
    pub event: Option<String>,
    pub schema: String,
    pub table: String,
    pub filter: Option<Expr>,
}

struct Subscription {
    conn: u64,
    topic: String,
    spec: Spec,
    access: Access,
    /// While the subscription replays missed changes from the database,
    /// live messages wait here (positions above the replay's end).
    buffer: Option<Vec<(i64, String)>>,
    last_sent: i64,
}

struct Connection {
    sender: mpsc::Sender<String>,
    kill: Arc<Notify>,
    reason: Option<ErrorCode>,
    identity: Identity,
    session: Option<uuid::Uuid>,
    paused: bool,
    /// Topics joined, with whether the connection receives its own broadcasts.
    topics: HashMap<String, bool>,
}

#[derive(Default)]
struct State {
    /// The last feed position dispatched.
    position: i64,
    connections: HashMap<u64, Connection>,
    subscriptions: Vec<Subscription>,
}

pub struct Hub {
    state: Mutex<State>,
    ids: AtomicU64,
    /// Connections accepted (reserved at the upgrade, released at the end).
    open: AtomicU64,
    /// Per-subscription limit of messages held while it replays.
    buffer_limit: usize,
}

/// What a connection learns when it is cut off.
pub const SLOW_CONSUMER: ErrorCode = ErrorCode::RealtimeSlowConsumer;

impl Hub {
    pub fn new(position: i64, buffer_limit: usize) -> Self {
        Hub {
            state: Mutex::new(State {
                position,
                ..State::default()
            }),
            ids: AtomicU64::new(1),
            open: AtomicU64::new(0),
            buffer_limit,
        }
    }

    /// The state; a panic elsewhere while it was held does not take realtime
    /// down (each change to it is a complete step).
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether delivery to the connection is paused (its token expired).
    pub fn paused(&self, conn: u64) -> bool {
        self.lock().connections.get(&conn).is_some_and(|c| c.paused)
    }

    /// Takes a connection slot if fewer than `max` are taken (atomically, at
    /// the upgrade, before the connection's task runs).
    pub fn reserve(&self, max: u64) -> bool {
        self.open
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                (open < max).then_some(open + 1)
            })
            .is_ok()
    }

    /// Gives a slot back (when the connection ends).
    pub fn release(&self) {
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    pub fn position(&self) -> i64 {
        self.lock().position
    }

    /// Moves past positions that can no longer be read (pruned while this
    /// replica was behind).
    pub fn skip_to(&self, position: i64) {
        let mut state = self.lock();
        state.position = state.position.max(position);
    }

    pub fn connect(
        &self,
        sender: mpsc::Sender<String>,
        kill: Arc<Notify>,
        identity: Identity,
        session: Option<uuid::Uuid>,
    ) -> u64 {
        let id = self.ids.fetch_add(1, Ordering::Relaxed);
        self.lock().connections.insert(
            id,
            Connection {
                sender,
                kill,
                reason: None,
                identity,
                session,
                paused: false,
                topics: HashMap::new(),
            },
        );
        id
    }

    pub fn disconnect(&self, conn: u64) {
        let mut state = self.lock();
        state.connections.remove(&conn);
        state.subscriptions.retain(|s| s.conn != conn);
    }

    /// Why the connection was cut off, if it was.
    pub fn reason(&self, conn: u64) -> Option<ErrorCode> {
        self.lock().connections.get(&conn).and_then(|c| c.reason)
    }

    /// Cuts off every connection (they must resynchronize).
    pub fn cut_all(&self, reason: ErrorCode) {
        for connection in self.lock().connections.values_mut() {
            connection.reason = Some(reason);
            connection.kill.notify_one();
        }
    }

    pub fn cut(&self, conn: u64, reason: ErrorCode) {
        if let Some(connection) = self.lock().connections.get_mut(&conn) {
            connection.reason = Some(reason);
            connection.kill.notify_one();
        }
    }

    pub fn topics(&self, conn: u64) -> usize {
        self.lock()
            .connections
            .get(&conn)
            .map_or(0, |c| c.topics.len())
    }

    pub fn joined(&self, conn: u64, topic: &str) -> bool {
        self.lock()
            .connections
            .get(&conn)
            .is_some_and(|c| c.topics.contains_key(topic))
    }

    /// Joins `topic` and registers its subscriptions. With `replay`, they
    /// buffer live changes until [`Hub::go_live`]; without, they are live at
    /// once. Returns the position after which live delivery is guaranteed.
    pub fn join(
        &self,
        conn: u64,
        topic: &str,
        receive_own: bool,
        subscriptions: Vec<(Spec, Access)>,
        replay_from: Option<i64>,
    ) -> i64 {
        let mut state = self.lock();
        let position = state.position;
        if let Some(connection) = state.connections.get_mut(&conn) {
            connection.topics.insert(topic.to_owned(), receive_own);
        }
        for (spec, access) in subscriptions {
            state.subscriptions.push(Subscription {
                conn,
                topic: topic.to_owned(),
                spec,
                access,
                buffer: replay_from.map(|_| Vec::new()),
                last_sent: replay_from.unwrap_or(position),
            });
        }
        position
    }

    pub fn leave(&self, conn: u64, topic: &str) {
        let mut state = self.lock();
        if let Some(connection) = state.connections.get_mut(&conn) {
            connection.topics.remove(topic);
        }
        state
            .subscriptions
            .retain(|s| !(s.conn == conn && s.topic == topic));
    }

    /// The messages a replayed change produces for `conn`'s subscriptions
    /// on `topic` (each change once per matching subscription).
    pub fn render_for(&self, conn: u64, topic: &str, change: &Change) -> Vec<String> {
        let state = self.lock();
        let Some(connection) = state.connections.get(&conn) else {
            return Vec::new();
        };
        if connection.paused {
            return Vec::new();
        }
        state
            .subscriptions
            .iter()
            .filter(|s| s.conn == conn && s.topic == topic && s.last_sent < change.position)
            .filter_map(|s| render(s, &connection.identity, change))
            .collect()
    }

    /// Ends a replay: sends what was buffered meanwhile (positions after
    /// `replayed_to`), then delivers live.
    pub fn go_live(&self, conn: u64, topic: &str, replayed_to: i64) {
        let mut state = self.lock();
        let State {
            connections,
            subscriptions,
            ..
        } = &mut *state;
        let Some(connection) = connections.get_mut(&conn) else {
            return;
        };
        let mut pending: Vec<(i64, String)> = Vec::new();
        for subscription in subscriptions
            .iter_mut()
            .filter(|s| s.conn == conn && s.topic == topic)
        {
            if let Some(buffer) = subscription.buffer.take() {
                pending.extend(buffer.into_iter().filter(|(p, _)| *p > replayed_to));
            }
            subscription.last_sent = subscription.last_sent.max(replayed_to);
        }
        pending.sort_by_key(|(p, _)| *p);
        for (_, message) in pending {
            if connection.sender.try_send(message).is_err() {
                connection.reason = Some(SLOW_CONSUMER);
                connection.kill.notify_one();
                break;
            }
        }
    }

    /// Fans a committed change out to every live subscription that may see it.
    pub fn dispatch(&self, change: &Change) {
        let mut state = self.lock();
        if change.position <= state.position {
            return;
        }
        state.position = change.position;
        let State {
            connections,
            subscriptions,
            ..
        } = &mut *state;
        for subscription in subscriptions.iter_mut() {
            let Some(connection) = connections.get_mut(&subscription.conn) else {
                continue;
            };
            if connection.paused || connection.reason.is_some() {
                continue;
            }
            let Some(message) = render(subscription, &connection.identity, change) else {
                // Nothing to send, but this subscription is now past it.
                if subscription.buffer.is_none() {
                    subscription.last_sent = change.position;
                }
                continue;
            };
            if let Some(buffer) = &mut subscription.buffer {
                if buffer.len() >= self.buffer_limit {
                    connection.reason = Some(SLOW_CONSUMER);
                    connection.kill.notify_one();
                } else {
                    buffer.push((change.position, message));
                }
                continue;
            }
            match connection.sender.try_send(message) {
                Ok(()) => subscription.last_sent = change.position,
                Err(_) => {
                    // Full (or closed): cut it off rather than wait for it.
                    connection.reason = Some(SLOW_CONSUMER);
                    connection.kill.notify_one();
                }
            }
        }
    }

    /// Delivers a broadcast to the members of `topic` on this replica.
    pub fn broadcast(&self, topic: &str, message: &str, from: Option<u64>) {
        let mut state = self.lock();
        for (id, connection) in state.connections.iter_mut() {
            let Some(receive_own) = connection.topics.get(topic) else {
                continue;
            };
            if (Some(*id) == from && !receive_own) || connection.paused {
                continue;
            }
            if connection.sender.try_send(message.to_owned()).is_err() {
                connection.reason = Some(SLOW_CONSUMER);
                connection.kill.notify_one();
            }
        }
    }

    /// Records the session a connection now acts for (checked for revocation).
    pub fn sign_in(&self, conn: u64, session: Option<uuid::Uuid>) {
        if let Some(connection) = self.lock().connections.get_mut(&conn) {
            connection.session = session;
        }
    }

    /// Pauses delivery to a connection whose token expired.
    pub fn pause(&self, conn: u64) {
        if let Some(connection) = self.lock().connections.get_mut(&conn) {
            connection.paused = true;
        }
    }

    /// A refreshed token: new identity and access (a subscription the new
    /// token may no longer see is dropped); every subscription replays from
    /// its last delivered position. Returns the live position and, per
    /// topic, where its replay starts.
    pub fn refresh(
        &self,
        conn: u64,
        identity: Identity,
        access: impl Fn(&Spec) -> Option<Access>,
    ) -> (i64, Vec<(String, i64)>) {
        let mut state = self.lock();
        let position = state.position;
        let State {
            connections,
            subscriptions,
            ..
        } = &mut *state;
        let Some(connection) = connections.get_mut(&conn) else {
            return (position, Vec::new());
        };
        connection.identity = identity;
        connection.paused = false;
        let mut replays: HashMap<String, i64> = HashMap::new();
        subscriptions.retain_mut(|s| {
            if s.conn != conn {
                return true;
            }
            match access(&s.spec) {
                Some(new) => {
                    s.access = new;
                    s.buffer = Some(Vec::new());
                    let from = replays.entry(s.topic.clone()).or_insert(s.last_sent);
                    *from = (*from).min(s.last_sent);
                    true
                }
                None => false,
            }
        });
        (position, replays.into_iter().collect())
    }

    /// The signed-in connections' sessions, to check for revocation.
    pub fn sessions(&self) -> Vec<(u64, uuid::Uuid)> {
        self.lock()
            .connections
            .iter()
            .filter_map(|(id, c)| c.session.map(|s| (*id, s)))
            .collect()
    }
}

/// The message a change is for a subscription, or `None` when the
/// subscription does not want it or may not see it. A DELETE is judged on
/// the old row, others on the new one; hidden columns are removed.
fn render(subscription: &Subscription, identity: &Identity, change: &Change) -> Option<String> {
    let spec = &subscription.spec;
    if spec.schema != change.schema || spec.table != change.table {
        return None;
    }
    if spec
        .event
        .as_deref()
        .is_some_and(|event| event != change.operation)
    {
        return None;
    }
    let row = if change.operation == "DELETE" {
        change.old.as_ref()
    } else {
        change.new.as_ref()
    }?;
    let variables = Variables {
        uid: identity.uid.as_deref(),
        role: &identity.role,
        claims: &identity.claims,
    };
    // A DELETE is judged on the old row, others on the new one; the old row
    // of an update is shown only if it was visible too.
    let columns = subscription.access.visible(row, &variables)?;
    if let Some(filter) = &spec.filter {
        if matches(filter, row, &variables) != Some(true) {
            return None;
        }
    }
    let old_columns = match (change.operation.as_str(), &change.old) {
        ("UPDATE", Some(old)) => subscription.access.visible(old, &variables),
        _ => Some(columns.clone()),
    };
    let project = |row: &Option<Value>, columns: &Option<Option<Vec<String>>>| -> Value {
        match (row, columns) {
            (_, None) | (None, _) => Value::Null,
            (Some(Value::Object(map)), Some(Some(columns))) => Value::Object(
                map.iter()
                    .filter(|(k, _)| columns.contains(k))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect::<Map<String, Value>>(),
            ),
            (Some(value), Some(None)) => value.clone(),
            (Some(value), Some(Some(_))) => value.clone(),
        }
    };
    let new_columns = Some(columns);
    Some(
        json!({
            "type": "postgres_changes",
            "topic": subscription.topic,
            "position": change.position,
            "event": change.operation,
            "schema": change.schema,
            "table": change.table,
            "commit_timestamp": change.committed_at,
            "record": project(&change.new, &new_columns),
            "old_record": project(&change.old, &old_columns),
        })
        .to_string(),
    )
}
