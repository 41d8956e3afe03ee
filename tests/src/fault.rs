//! A fault-injecting HTTP/1.1 proxy in front of a real server: requests pass
//! through unchanged until a test switches on a fault, so failures that a
//! healthy server never produces on demand (a 5xx, a task that never
//! finishes, a failed task) happen exactly when the test wants them.

use super::*;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Everything passes.
    None,
    /// Document writes (`POST`/`DELETE` under `/indexes/*/documents`) get `503`.
    DocumentWrites503,
    /// Task lookups (`GET /tasks/<id>`) say the task is still enqueued.
    TasksNeverFinish,
    /// Task lookups say the task failed.
    TasksFail,
}

pub struct FaultProxy {
    pub url: String,
    fault: Arc<Mutex<Fault>>,
    /// Requests that a fault answered.
    injected: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: &str) -> FaultProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let fault = Arc::new(Mutex::new(Fault::None));
        let injected = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.trim_end_matches('/').to_owned();
        let task = tokio::spawn({
            let (fault, injected) = (fault.clone(), injected.clone());
            async move {
                let http = reqwest::Client::new();
                while let Ok((socket, _)) = listener.accept().await {
                    let (fault, injected, http, upstream) = (
                        fault.clone(),
                        injected.clone(),
                        http.clone(),
                        upstream.clone(),
                    );
                    tokio::spawn(async move {
                        let _ = serve(socket, &http, &upstream, &fault, &injected).await;
                    });
                }
            }
        });
        FaultProxy {
            url,
            fault,
            injected,
            task,
        }
    }

    pub fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }

    pub fn injected(&self) -> usize {
        self.injected.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One connection: requests in turn (keep-alive), each forwarded or faulted.
async fn serve(
    socket: tokio::net::TcpStream,
    http: &reqwest::Client,
    upstream: &str,
    fault: &Mutex<Fault>,
    injected: &AtomicUsize,
) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let mut headers = Vec::new();
        let mut length = 0usize;
        let mut chunked = false;
        loop {
            let mut header = String::new();
            read.read_line(&mut header).await?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                }
                if name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.to_ascii_lowercase().contains("chunked");
                    continue;
                }
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        let mut body = vec![0; length];
        read.read_exact(&mut body).await?;
        while chunked {
            let mut size = String::new();
            read.read_line(&mut size).await?;
            let size = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)
                .map_err(std::io::Error::other)?;
            let mut chunk = vec![0; size + 2];
            read.read_exact(&mut chunk).await?;
            chunk.truncate(size);
            body.extend_from_slice(&chunk);
            chunked = size > 0;
        }
        let current = *fault.lock().unwrap();
        let documents = path.starts_with("/indexes/") && path.contains("/documents");
        let (status, reply) = if current == Fault::DocumentWrites503
            && documents
            && (method == "POST" || method == "DELETE")
        {
            injected.fetch_add(1, Ordering::SeqCst);
            (
                503,
                br#"{"message":"injected by the test proxy","code":"internal","type":"internal","link":""}"#.to_vec(),
            )
        } else {
            let mut request = http.request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{upstream}{path}"),
            );
            for (name, value) in &headers {
                if !["host", "content-length", "connection"]
                    .contains(&name.to_ascii_lowercase().as_str())
                {
                    request = request.header(name, value);
                }
            }
            let answer = request
                .body(body)
                .send()
                .await
                .map_err(std::io::Error::other)?;
            let status = answer.status().as_u16();
            let mut reply = answer
                .bytes()
                .await
                .map_err(std::io::Error::other)?
                .to_vec();
            let task_lookup = method == "GET" && path.starts_with("/tasks/");
            if task_lookup && matches!(current, Fault::TasksNeverFinish | Fault::TasksFail) {
                if let Ok(mut task) = serde_json::from_slice::<serde_json::Value>(&reply) {
                    injected.fetch_add(1, Ordering::SeqCst);
                    if current == Fault::TasksNeverFinish {
                        task["status"] = "enqueued".into();
                        task["startedAt"] = serde_json::Value::Null;
                        task["finishedAt"] = serde_json::Value::Null;
                        task["duration"] = serde_json::Value::Null;
                    } else {
                        task["status"] = "failed".into();
                        let at = task["enqueuedAt"].clone();
                        task["startedAt"] = at.clone();
                        task["finishedAt"] = at;
                        task["duration"] = "PT0S".into();
                        task["error"] = serde_json::json!({"message": "injected failure", "code": "internal", "type": "internal", "link": ""});
                    }
                    reply = serde_json::to_vec(&task).unwrap();
                }
            }
            (status, reply)
        };
        let head = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            reply.len()
        );
        write.write_all(head.as_bytes()).await?;
        write.write_all(&reply).await?;
    }
}
