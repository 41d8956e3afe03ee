//! The server's background tasks (listeners, followers, sweepers, the job
//! worker), started through one type and stopped through one path: at
//! shutdown every task is told to stop and awaited. A task that has
//! something to finish (the job worker) takes the stop signal itself; any
//! other is cancelled where it waits.

use std::future::Future;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Background {
    stop: watch::Sender<bool>,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
}

impl Default for Background {
    fn default() -> Self {
        Background {
            stop: watch::channel(false).0,
            tasks: Vec::new(),
        }
    }
}

impl Background {
    /// Runs `task` until the server stops; it is cancelled then.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        let mut stop = self.stop.subscribe();
        self.tasks.push((
            name,
            tokio::spawn(async move {
                tokio::select! {
                    _ = task => tracing::info!(task = name, "background task finished"),
                    _ = stop.wait_for(|stop| *stop) => {}
                }
            }),
        ));
    }

    /// Runs the task `start` makes with the stop signal, which it watches to
    /// finish what it is doing before it returns.
    pub fn spawn_graceful<F>(
        &mut self,
        name: &'static str,
        start: impl FnOnce(watch::Receiver<bool>) -> F,
    ) where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks
            .push((name, tokio::spawn(start(self.stop.subscribe()))));
    }

    /// Tells every task to stop and waits for each.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        for (name, task) in self.tasks {
            if let Err(error) = task.await {
                tracing::error!(task = name, "background task failed: {error}");
            }
        }
    }
}
