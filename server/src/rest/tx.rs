//! The transaction runner of the data API: a request's statements in one
//! transaction on the data API's pool, as the caller's database role with
//! their claims and statement timeout, with `Idempotency-Key` claimed and
//! answered inside it, and a statement cancelled (its connection closed)
//! when the request is dropped.

use super::idempotency::Idempotency;
use super::{is_service_key, query_failed, Reply};
use crate::db::pool::{ApiObject, Session};
use crate::db::{rls, CancelOnDrop, Checkout};
use crate::error::HttpError;
use crate::identity::Caller;
use crate::state::AppState;
use basalt_core::filter::sql::Param;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

pub(crate) type Values = Vec<Box<dyn ToSql + Sync + Send>>;

/// Parameters as the driver takes them: text, or arrays of text.
pub(crate) fn boxed(params: Vec<Param>) -> Values {
    params
        .into_iter()
        .map(|param| -> Box<dyn ToSql + Sync + Send> {
            match param {
                Param::Text(text) => Box::new(text),
                Param::TextArray(items) => Box::new(items),
            }
        })
        .collect()
}

pub(crate) fn references(values: &Values) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|v| v.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// One statement of a request: its SQL, parameters, and the relation it is
/// about (for error messages).
pub struct Step {
    pub sql: String,
    pub params: Vec<Param>,
    pub relation: String,
    /// Prefixed to the details of an error this step raises (in a batch).
    pub label: Option<String>,
}

impl Step {
    pub fn new((sql, params): (String, Vec<Param>), relation: &str) -> Step {
        Step {
            sql,
            params,
            relation: relation.to_owned(),
            label: None,
        }
    }
}

/// What the statements of a request turn into: their rows, or the refusal
/// of `respond`.
type Respond<'a> = Box<dyn FnOnce(&[tokio_postgres::Row]) -> Result<Reply, HttpError> + 'a>;

/// Runs `steps` read-only as the caller, each returning one row, and
/// answers with `respond` (the rows may carry more columns after the ones
/// the step selects). One round trip: `BEGIN READ ONLY`, the role switch,
/// the statements and `ROLLBACK` are pipelined. Rows are used only when
/// `BEGIN` and the switch succeeded; in a read-only transaction that is
/// rolled back, statements that ran regardless change nothing. An API key's
/// read of one statement runs in its session instead (see [`Session`]).
pub async fn read(
    state: &AppState,
    caller: &Caller,
    steps: Vec<Step>,
    respond: impl FnOnce(&[tokio_postgres::Row]) -> Result<Reply, HttpError>,
) -> Result<Reply, HttpError> {
    with_connection(state, caller, steps, None, Box::new(respond), Mode::Read).await
}

/// [`read`] of statements that may answer several rows (a text query plan,
/// one line per row), always in a transaction with the role switch.
pub async fn read_lines(
    state: &AppState,
    caller: &Caller,
    steps: Vec<Step>,
    respond: impl FnOnce(&[tokio_postgres::Row]) -> Result<Reply, HttpError>,
) -> Result<Reply, HttpError> {
    with_connection(state, caller, steps, None, Box::new(respond), Mode::Lines).await
}

/// Runs `steps` in one transaction as the caller, each returning one row;
/// `respond` turns the rows into the reply or refuses (which rolls
/// everything back), else the transaction commits. With an
/// `Idempotency-Key`, the key is claimed first and the reply stored before
/// the commit; a key already used replays its reply instead (see
/// `idempotency.rs`).
pub async fn write(
    state: &AppState,
    caller: &Caller,
    idempotency: Option<&Idempotency>,
    steps: Vec<Step>,
    respond: impl FnOnce(&[tokio_postgres::Row]) -> Result<Reply, HttpError>,
) -> Result<Reply, HttpError> {
    with_connection(
        state,
        caller,
        steps,
        idempotency,
        Box::new(respond),
        Mode::Write,
    )
    .await
}

/// [`write`] of statements whose rows `respond` never refuses (the caller
/// made sure: no row condition to count, no `max-affected`, no row to show,
/// no `Idempotency-Key`): `COMMIT` is pipelined with them, so the write takes
/// one round trip. A statement that fails turns the `COMMIT` into a rollback.
pub async fn write_at_once(
    state: &AppState,
    caller: &Caller,
    steps: Vec<Step>,
    respond: impl FnOnce(&[tokio_postgres::Row]) -> Result<Reply, HttpError>,
) -> Result<Reply, HttpError> {
    with_connection(state, caller, steps, None, Box::new(respond), Mode::AtOnce).await
}

/// [`write`], answered and then rolled back (`Prefer: tx=rollback`):
/// nothing stays, and no `Idempotency-Key` is kept.
pub async fn write_then_roll_back(
    state: &AppState,
    caller: &Caller,
    steps: Vec<Step>,
    respond: impl FnOnce(&[tokio_postgres::Row]) -> Result<Reply, HttpError>,
) -> Result<Reply, HttpError> {
    with_connection(state, caller, steps, None, Box::new(respond), Mode::DryRun).await
}

/// How a transaction ends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Read,
    Lines,
    Write,
    AtOnce,
    DryRun,
}

/// A slot among the caller's running requests and a connection of the data
/// API's pool, given back when the request ends; a request dropped mid-way
/// (a timeout) cancels its statement and closes its connection.
async fn with_connection(
    state: &AppState,
    caller: &Caller,
    steps: Vec<Step>,
    idempotency: Option<&Idempotency>,
    respond: Respond<'_>,
    mode: Mode,
) -> Result<Reply, HttpError> {
    let _slot = state
        .fairness()
        .acquire(caller, state.config.rest.max_concurrent_per_caller)?;
    let mut checkout = Checkout::new(state.api_pool.current().get().await?);
    let in_session = mode == Mode::Read && caller.user.is_none() && steps.len() == 1;
    if !in_session {
        // What this request runs may change the session: it is unknown after.
        checkout.client().session = None;
    }
    let result = async {
        let prepared = Prepared::new(state, checkout.client(), caller, steps, in_session).await?;
        match mode {
            Mode::Read if in_session => {
                prepared
                    .read_in_session(state, checkout.client(), respond)
                    .await
            }
            Mode::Read | Mode::Lines => prepared.read(state, checkout.client(), respond).await,
            Mode::Write | Mode::AtOnce | Mode::DryRun => {
                prepared
                    .write(state, checkout.client(), idempotency, respond, mode)
                    .await
            }
        }
    }
    .await;
    match result {
        Ok(Answered::Kept(reply)) => {
            checkout.release();
            Ok(reply)
        }
        Ok(Answered::Discarded(reply)) => {
            checkout.discard();
            Ok(reply)
        }
        Err(error) => {
            checkout.release();
            Err(error)
        }
    }
}

/// A reply, and whether its connection may serve other requests.
enum Answered {
    Kept(Reply),
    /// The statement left the session other than it was set (app SQL changed
    /// a setting for the session): the connection is closed.
    Discarded(Reply),
}

/// Prepared statements each pooled connection keeps (per distinct SQL text:
/// one per query shape); past this the cache is emptied and refilled, so
/// endless shapes cannot grow a connection's memory without bound.
const STATEMENT_CACHE_LIMIT: usize = 256;

/// A request's statements prepared on its connection, with the role switch.
/// Each statement is prepared once per connection and reused. Transactions
/// are driven with plain `BEGIN`/`COMMIT`/`ROLLBACK` so that `BEGIN` and the
/// switch to the caller's role travel in one round trip (pipelined); a
/// request dropped half-way leaves no open transaction behind, because its
/// connection is then closed (see [`Checkout`]).
struct Prepared {
    steps: Vec<Step>,
    statements: Vec<tokio_postgres::Statement>,
    values: Vec<Values>,
    act: tokio_postgres::Statement,
    /// The claims, the role, the statement timeout and the `search_path` of
    /// the role switch.
    act_values: [String; 4],
}

impl Prepared {
    async fn new(
        state: &AppState,
        client: &mut ApiObject,
        caller: &Caller,
        steps: Vec<Step>,
        in_session: bool,
    ) -> Result<Prepared, HttpError> {
        if client.statement_cache.size() >= STATEMENT_CACHE_LIMIT {
            client.statement_cache.clear();
        }
        let service = is_service_key(caller);
        let role = if service {
            state.config.authz.db_role_service.clone()
        } else {
            rls::database_role(&state.config.authz, caller.user.is_some()).to_owned()
        };
        // Callers' statements are bounded in the database too (not the
        // service_role key's): `0` leaves the server's request timeout alone.
        let statement_timeout = if service {
            "0".to_owned()
        } else {
            state.config.rest.statement_timeout_ms.to_string()
        };
        let act = client.prepare_cached(rls::ACT_AS_ON_API_CONNECTION).await?;
        let mut statements = Vec::with_capacity(steps.len());
        for step in &steps {
            let sql = if in_session {
                std::borrow::Cow::Owned(rls::in_session(&step.sql))
            } else {
                std::borrow::Cow::Borrowed(step.sql.as_str())
            };
            let prepared = match client.prepare_cached(&sql).await {
                // Statements are prepared as the login role (it has USAGE on
                // the exposed schemas to resolve names); an API key's session
                // may have left its role on the connection, which may lack
                // it: prepared again once that role is reset.
                Err(error) if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) => {
                    client.session = None;
                    client.batch_execute("RESET ROLE").await?;
                    client.prepare_cached(&sql).await
                }
                prepared => prepared,
            };
            statements.push(
                prepared.map_err(|e| labelled(query_failed(e, &role, &step.relation), step))?,
            );
        }
        let values = steps
            .iter()
            .map(|step| boxed(step.params.clone()))
            .collect();
        Ok(Prepared {
            steps,
            statements,
            values,
            act,
            act_values: [
                caller.claims.to_string(),
                role,
                statement_timeout,
                client.search_path.clone(),
            ],
        })
    }

    fn role(&self) -> &str {
        &self.act_values[1]
    }

    fn act_params(&self) -> [&(dyn ToSql + Sync); 4] {
        let [claims, role, timeout, search_path] = &self.act_values;
        [claims, role, timeout, search_path]
    }

    fn failed(&self, error: tokio_postgres::Error, step: &Step) -> HttpError {
        labelled(query_failed(error, self.role(), &step.relation), step)
    }

    async fn read(
        &self,
        state: &AppState,
        client: &tokio_postgres::Client,
        respond: Respond<'_>,
    ) -> Result<Answered, HttpError> {
        let mut running = CancelOnDrop::new(client.cancel_token(), state.tls.clone());
        let act_params = self.act_params();
        let arguments: Vec<_> = self.values.iter().map(references).collect();
        let queries = futures_util::future::join_all(
            self.statements
                .iter()
                .zip(&arguments)
                .map(|(statement, values)| client.query(statement, values)),
        );
        let (began, acted, results, rolled_back) = futures_util::join!(
            client.batch_execute("BEGIN READ ONLY"),
            client.execute(&self.act, &act_params),
            queries,
            client.batch_execute("ROLLBACK")
        );
        running.disarm();
        began?;
        acted?;
        // Each step's rows in turn: one each, but for a text plan's lines.
        let mut rows = Vec::with_capacity(results.len());
        for (result, step) in results.into_iter().zip(&self.steps) {
            let step_rows = result.map_err(|e| self.failed(e, step))?;
            if step_rows.is_empty() {
                tracing::error!(relation = %step.relation, "a read statement returned no row");
                return Err(HttpError::new(
                    basalt_core::errors::ErrorCode::InternalError,
                ));
            }
            rows.extend(step_rows);
        }
        rolled_back?;
        respond(&rows).map(Answered::Kept)
    }

    /// An API key's read of one statement, in the connection's session
    /// (`db::rls::SESSION_SETUP`): the role, claims and statement timeout
    /// were set for the session, and transactions are read-only by default,
    /// so the statement runs alone, in its own implicit transaction. The
    /// session is set up when the connection's last request did not leave
    /// it so — in a transaction with this statement, so that the statement
    /// never runs if that fails. The statement's row ends with the
    /// settings as they are after it ran (`db::rls::in_session`): the
    /// session is kept only when they are still what was set.
    async fn read_in_session(
        &self,
        state: &AppState,
        client: &mut ApiObject,
        respond: Respond<'_>,
    ) -> Result<Answered, HttpError> {
        debug_assert_eq!(self.statements.len(), 1);
        let [claims, role, timeout, _] = &self.act_values;
        let known = client
            .session
            .take()
            .filter(|session| session.is_for(role, claims, timeout));
        let values = references(&self.values[0]);
        let statement = &self.statements[0];
        let (row, session) = match known {
            Some(session) => {
                let mut running = CancelOnDrop::new(client.cancel_token(), state.tls.clone());
                let row = client.query_one(statement, &values).await;
                running.disarm();
                (row, session)
            }
            None => {
                let setup = client.prepare_cached(rls::SESSION_SETUP).await?;
                let act_params = self.act_params();
                let mut running = CancelOnDrop::new(client.cancel_token(), state.tls.clone());
                let (began, set, row, committed) = futures_util::join!(
                    // Whatever earlier requests' SQL set for the session goes.
                    client.batch_execute("BEGIN READ ONLY; RESET ALL"),
                    client.query_one(&setup, &act_params),
                    client.query_one(statement, &values),
                    // A rollback when anything failed.
                    client.batch_execute("COMMIT")
                );
                running.disarm();
                began?;
                let set = set?;
                committed?;
                let session = Session {
                    role: role.clone(),
                    claims: claims.clone(),
                    statement_timeout: timeout.clone(),
                    expected: (0..rls::SESSION_SETTINGS).map(|at| set.get(at)).collect(),
                };
                (row, std::sync::Arc::new(session))
            }
        };
        let row = row.map_err(|e| self.failed(e, &self.steps[0]))?;
        let after = row.len() - rls::SESSION_SETTINGS;
        let unchanged = (0..rls::SESSION_SETTINGS).all(|at| {
            row.get::<_, Option<&str>>(after + at) == Some(session.expected[at].as_str())
        });
        let reply = respond(std::slice::from_ref(&row))?;
        if unchanged {
            client.session = Some(session);
            Ok(Answered::Kept(reply))
        } else {
            tracing::warn!(
                relation = %self.steps[0].relation,
                "a statement changed the settings of its connection's session; the connection is closed"
            );
            Ok(Answered::Discarded(reply))
        }
    }

    async fn write(
        &self,
        state: &AppState,
        client: &tokio_postgres::Client,
        idempotency: Option<&Idempotency>,
        respond: Respond<'_>,
        mode: Mode,
    ) -> Result<Answered, HttpError> {
        let act_params = self.act_params();
        let outcome = async {
            if let Some(key) = idempotency {
                // The key is claimed as the login role, whatever role an
                // API key's session left on the connection.
                client
                    .batch_execute("BEGIN READ WRITE; SET LOCAL ROLE NONE")
                    .await?;
                if let Some(stored) = key.claim(client, state).await? {
                    return Ok(Err(stored));
                }
            }
            // One round trip: `BEGIN` (unless the key's claim began the
            // transaction), the role switch and every statement, pipelined.
            // Had the switch failed, the transaction is aborted and the
            // statements after it are refused. (`BEGIN` itself fails only
            // on a broken connection; the statements would then run in no
            // transaction, as the login role or a session's read-only
            // role, and their rows are not used.)
            let begin = async {
                match idempotency {
                    None => client.batch_execute("BEGIN READ WRITE").await,
                    Some(_) => Ok(()),
                }
            };
            let arguments: Vec<_> = self.values.iter().map(references).collect();
            let statements = futures_util::future::join_all(
                self.statements
                    .iter()
                    .zip(&arguments)
                    .map(|(statement, values)| client.query_one(statement, values)),
            );
            // Armed while the statements run: if the request is dropped
            // then (a timeout), they are cancelled.
            let commit = async {
                match mode {
                    Mode::AtOnce => Some(client.batch_execute("COMMIT").await),
                    _ => None,
                }
            };
            let mut running = CancelOnDrop::new(client.cancel_token(), state.tls.clone());
            let (began, acted, results, committed) = futures_util::join!(
                begin,
                client.execute(&self.act, &act_params),
                statements,
                commit
            );
            running.disarm();
            began?;
            acted?;
            let mut rows = Vec::with_capacity(self.steps.len());
            for (result, step) in results.into_iter().zip(&self.steps) {
                rows.push(result.map_err(|e| self.failed(e, step))?);
            }
            if let Some(committed) = committed {
                // Deferred constraints are checked here.
                committed.map_err(|e| query_failed(e, self.role(), "the transaction"))?;
                return respond(&rows)
                    .inspect_err(|error| {
                        tracing::error!(
                            code = ?error.error.code,
                            "a write committed with its statements was refused after the commit"
                        )
                    })
                    .map(Ok);
            }
            let reply = respond(&rows)?;
            if let Some(key) = idempotency {
                key.store(client, &reply).await?;
            }
            Ok::<_, HttpError>(Ok(reply))
        }
        .await;
        match outcome {
            // Committed (or, had a statement failed, rolled back) already.
            Ok(Ok(reply)) if mode == Mode::AtOnce => Ok(Answered::Kept(reply)),
            Err(error) if mode == Mode::AtOnce => Err(error),
            Ok(Ok(reply)) if mode == Mode::DryRun => {
                client.batch_execute("ROLLBACK").await?;
                Ok(Answered::Kept(reply))
            }
            Ok(Ok(reply)) => {
                // Deferred constraints are checked here.
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(|e| query_failed(e, self.role(), "the transaction"))?;
                Ok(Answered::Kept(reply))
            }
            // A replayed reply: nothing of this request was written.
            Ok(Err(reply)) => {
                client.batch_execute("ROLLBACK").await?;
                Ok(Answered::Kept(reply))
            }
            Err(error) => {
                client.batch_execute("ROLLBACK").await?;
                Err(error)
            }
        }
    }
}

/// Prefixes an error's details with its step's label (in a batch).
fn labelled(mut error: HttpError, step: &Step) -> HttpError {
    if let Some(label) = &step.label {
        let details = error.error.details.take().unwrap_or_default();
        error.error.details = Some(format!("{label}: {details}"));
    }
    error
}
