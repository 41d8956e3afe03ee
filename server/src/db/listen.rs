//! LISTEN on a PostgreSQL channel from a dedicated connection, waking a
//! `Notify` on every notification (and once after each (re)connect, since
//! notifications sent while no one listened are lost). Reconnects forever.

use super::pool::Tls;
use futures_util::StreamExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio_postgres::AsyncMessage;

pub async fn listen(
    pg: tokio_postgres::Config,
    tls: Tls,
    channel: &'static str,
    wake: Arc<Notify>,
) {
    loop {
        match pg.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let (sender, mut notified) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if let AsyncMessage::Notification(_) = message {
                            let _ = sender.send(());
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {channel}"))
                    .await
                    .is_ok()
                {
                    wake.notify_one();
                    while notified.recv().await.is_some() {
                        wake.notify_one();
                    }
                }
                driver.abort();
            }
            Err(error) => tracing::debug!(channel, "listener cannot connect: {error}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Like [`listen`], but forwards each notification's payload.
pub async fn listen_payloads(
    pg: tokio_postgres::Config,
    tls: Tls,
    channel: &'static str,
    payloads: tokio::sync::mpsc::UnboundedSender<String>,
) {
    loop {
        match pg.connect(tls.clone()).await {
            Ok((client, mut connection)) => {
                let forward = payloads.clone();
                let mut driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(Ok(message)) = messages.next().await {
                        if let AsyncMessage::Notification(notification) = message {
                            let _ = forward.send(notification.payload().to_owned());
                        }
                    }
                });
                if client
                    .batch_execute(&format!("LISTEN {channel}"))
                    .await
                    .is_ok()
                {
                    // Held until the connection ends.
                    let _ = (&mut driver).await;
                }
                driver.abort();
            }
            Err(error) => tracing::debug!(channel, "listener cannot connect: {error}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Runs `action` on every notification on `channel` (and after each
/// reconnect of the listener), and at least every `poll` when one is given,
/// for a notification that was lost. A failing action is logged and retried
/// at the next wake-up.
pub async fn on_notify<F, Fut>(
    pg: tokio_postgres::Config,
    tls: Tls,
    channel: &'static str,
    poll: Option<Duration>,
    mut action: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let wake = Arc::new(Notify::new());
    let listening = listen(pg, tls, channel, wake.clone());
    let acting = async {
        loop {
            match poll {
                Some(poll) => {
                    let _ = tokio::time::timeout(poll, wake.notified()).await;
                }
                None => wake.notified().await,
            }
            if let Err(error) = action().await {
                tracing::error!(channel, "cannot act on a notification: {error:#}");
            }
        }
    };
    tokio::join!(listening, acting);
}
