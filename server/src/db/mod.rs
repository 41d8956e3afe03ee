//! The database layer: how Basalt connects (TLS, pools), migrates its own
//! schema, listens, and hands connections out. Its failures are the driver's
//! own errors; `crate::error` turns them into API errors.

pub mod listen;
pub mod migrate;
pub mod pool;
pub mod rls;
pub mod roles;

/// A pooled connection that returns to the pool only when released. Dropped
/// unreleased — the request was dropped mid-statement, by a timeout or a
/// client gone away — the connection is detached from the pool and closed,
/// so the cancel sent for its statement can never land on the statement of
/// the next request to use that connection.
pub struct Checkout(Option<pool::ApiObject>);

impl Checkout {
    pub fn new(object: pool::ApiObject) -> Self {
        Checkout(Some(object))
    }

    pub fn client(&mut self) -> &mut pool::ApiObject {
        self.0.as_mut().expect("held until released")
    }

    /// Back to the pool.
    pub fn release(mut self) {
        drop(self.0.take());
    }

    /// Closed, not back to the pool.
    pub fn discard(self) {
        drop(self);
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(object) = self.0.take() {
            drop(pool::ApiObject::take(object));
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
