//! The database layer: how Basalt connects (TLS, pool), migrates its own schema,
//! and turns database failures into API errors.

pub mod listen;
pub mod migrate;
pub mod pool;
pub mod rls;
pub mod roles;

use crate::error::HttpError;
use basalt_core::errors::{ApiError, ErrorCode};

/// A pool failure means the database is unreachable or saturated: 503, retry soon.
pub fn unavailable(error: impl std::fmt::Display) -> HttpError {
    HttpError::from(ApiError::new(ErrorCode::DatabaseUnavailable).with_details(error.to_string()))
        .retry_after(1)
}

/// Maps a failure of one of Basalt's own statements: a bug to log and answer
/// with 500, or, when the connection broke, the database being unavailable.
pub fn failed(error: tokio_postgres::Error) -> HttpError {
    if error.as_db_error().is_none() {
        return unavailable(error);
    }
    // PostgreSQL's DETAIL can quote row values (emails): log the code and message only.
    if let Some(db) = error.as_db_error() {
        tracing::error!(
            sqlstate = db.code().code(),
            "statement failed: {}",
            db.message()
        );
    }
    HttpError::new(basalt_core::errors::ErrorCode::InternalError)
}

/// Maps a failed statement the caller wrote (admin SQL): the server's own error is the caller's to fix (400),
/// a broken connection is the database being unavailable (503).
pub fn statement_error(error: tokio_postgres::Error) -> HttpError {
    match error.as_db_error() {
        Some(db) => {
            let mut api = ApiError::new(ErrorCode::SqlError)
                .with_message(db.message().to_owned())
                .with_details(format!(
                    "SQLSTATE {}{}",
                    db.code().code(),
                    db.detail().map(|d| format!(": {d}")).unwrap_or_default()
                ));
            if let Some(hint) = db.hint() {
                api = api.with_hint(hint.to_owned());
            }
            api.into()
        }
        None => unavailable(error),
    }
}

/// A pooled connection that returns to the pool only when released. Dropped
/// unreleased — the request was dropped mid-statement, by a timeout or a
/// client gone away — the connection is detached from the pool and closed,
/// so the cancel sent for its statement can never land on the statement of
/// the next request to use that connection.
pub struct Checkout(Option<deadpool_postgres::Object>);

impl Checkout {
    pub fn new(object: deadpool_postgres::Object) -> Self {
        Checkout(Some(object))
    }

    pub fn client(&mut self) -> &mut deadpool_postgres::Object {
        self.0.as_mut().expect("held until released")
    }

    /// Back to the pool.
    pub fn release(mut self) {
        drop(self.0.take());
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(deadpool_postgres::Object::take(object));
        }
    }
}

/// Cancels the statement running on a connection if dropped while armed: when a
/// request times out or the client goes away, its SQL stops too instead of
/// running on unseen.
pub struct CancelOnDrop {
    token: Option<tokio_postgres::CancelToken>,
    tls: pool::Tls,
}

impl CancelOnDrop {
    pub fn new(token: tokio_postgres::CancelToken, tls: pool::Tls) -> Self {
        CancelOnDrop {
            token: Some(token),
            tls,
        }
    }

    /// The statement finished: nothing to cancel.
    pub fn disarm(&mut self) {
        self.token = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(token) = self.token.take() {
            let tls = self.tls.clone();
            tokio::spawn(async move {
                if let Err(error) = token.cancel_query(tls).await {
                    tracing::warn!("could not cancel a statement: {error}");
                }
            });
        }
    }
}
