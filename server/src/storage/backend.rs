//! Where blobs live: the [`Backend`] trait and its local-disk implementation
//! (the S3 one is in `s3.rs`). Keys are made by Basalt (`objects/<xx>/<uuid>`,
//! `uploads/<uuid>/<uuid>`), never from an object's name, and are checked again
//! here, so nothing a client sends can name a file outside the root.

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

pub type ByteStream = BoxStream<'static, std::io::Result<Bytes>>;

#[derive(Debug, Clone)]
pub struct BlobInfo {
    pub key: String,
    pub modified: SystemTime,
}

/// A blob store. Writes are all or nothing: a blob is visible under its key
/// only once its writer finished; a writer dropped unfinished leaves nothing
/// (or, after a crash, something [`Backend::sweep_incomplete`] removes).
#[async_trait]
pub trait Backend: Send + Sync {
    fn kind(&self) -> &'static str;
    async fn writer(&self, key: &str) -> anyhow::Result<Box<dyn BlobWriter>>;
    /// The blob's bytes, or those of `start..=end`.
    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> anyhow::Result<ByteStream>;
    async fn copy(&self, from: &str, to: &str) -> anyhow::Result<()>;
    /// Removes a blob; a missing one is not an error.
    async fn delete(&self, key: &str) -> anyhow::Result<()>;
    /// Every blob whose key starts with `prefix`.
    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<BlobInfo>>;
    /// Removes what interrupted writes left (temporary files, multipart
    /// uploads) started before `before`; answers how many.
    async fn sweep_incomplete(&self, before: SystemTime) -> anyhow::Result<u64>;
}

#[async_trait]
pub trait BlobWriter: Send {
    async fn write(&mut self, chunk: Bytes) -> anyhow::Result<()>;
    /// Makes the blob visible under its key.
    async fn finish(self: Box<Self>) -> anyhow::Result<()>;
}

/// Keys are `[a-z0-9-]` segments separated by `/`.
pub fn check_key(key: &str) -> anyhow::Result<()> {
    let ok = !key.is_empty()
        && key.len() <= 256
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    anyhow::ensure!(ok, "refused blob key {key:?}");
    Ok(())
}

/// A fresh key for an object's content.
pub fn new_object_key() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("objects/{}/{id}", &id[..2])
}

/// Reads a whole stream into a writer (copies, assembling resumable uploads).
pub async fn pump(mut from: ByteStream, writer: &mut Box<dyn BlobWriter>) -> anyhow::Result<u64> {
    use futures_util::StreamExt;
    let mut total = 0;
    while let Some(chunk) = from.next().await {
        let chunk = chunk?;
        total += chunk.len() as u64;
        writer.write(chunk).await?;
    }
    Ok(total)
}

/// Files under a root directory: `<root>/<key>`, written to `<root>/.tmp/`
/// first, fsynced, then renamed into place.
pub struct Local {
    root: PathBuf,
}

/// Blobs are private to Basalt's user: folders 0700, files 0600.
async fn private_dir(path: &Path) -> std::io::Result<()> {
    tokio::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .await
}

impl Local {
    pub async fn open(root: PathBuf) -> anyhow::Result<Local> {
        private_dir(&root.join(".tmp")).await?;
        // A root made by an earlier version (0755) is closed too: what is
        // inside cannot be reached through it.
        for dir in [&root, &root.join(".tmp")] {
            tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).await?;
        }
        Ok(Local { root })
    }

    fn path(&self, key: &str) -> anyhow::Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

struct LocalWriter {
    file: Option<tokio::fs::File>,
    temp: PathBuf,
    target: PathBuf,
}

impl Drop for LocalWriter {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[async_trait]
impl BlobWriter for LocalWriter {
    async fn write(&mut self, chunk: Bytes) -> anyhow::Result<()> {
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(&chunk).await?;
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        let mut file = self.file.take().expect("open until finished");
        let result = async {
            file.flush().await?;
            file.sync_all().await?;
            drop(file);
            let parent = self.target.parent().expect("keys have a folder");
            private_dir(parent).await?;
            tokio::fs::rename(&self.temp, &self.target).await?;
            tokio::fs::File::open(parent).await?.sync_all().await?;
            anyhow::Ok(())
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&self.temp).await;
        }
        result
    }
}

#[async_trait]
impl Backend for Local {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn writer(&self, key: &str) -> anyhow::Result<Box<dyn BlobWriter>> {
        let target = self.path(key)?;
        let temp = self
            .root
            .join(".tmp")
            .join(uuid::Uuid::new_v4().to_string());
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .await?;
        Ok(Box::new(LocalWriter {
            file: Some(file),
            temp,
            target,
        }))
    }

    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> anyhow::Result<ByteStream> {
        let mut file = tokio::fs::File::open(self.path(key)?).await?;
        let stream: ByteStream = match range {
            Some((start, end)) => {
                file.seek(std::io::SeekFrom::Start(start)).await?;
                Box::pin(tokio_util::io::ReaderStream::with_capacity(
                    file.take(end - start + 1),
                    64 * 1024,
                ))
            }
            None => Box::pin(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024)),
        };
        Ok(stream)
    }

    async fn copy(&self, from: &str, to: &str) -> anyhow::Result<()> {
        let source = self.read(from, None).await?;
        let mut writer = self.writer(to).await?;
        pump(source, &mut writer).await?;
        writer.finish().await
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        let path = self.path(key)?;
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(error) if error.kind() == ErrorKind::NotFound => {}
            Err(error) => return Err(error.into()),
        }
        // Folders of resumable uploads' parts go with their last part.
        if key.starts_with("uploads/") {
            if let Some(parent) = path.parent() {
                let _ = tokio::fs::remove_dir(parent).await;
            }
        }
        Ok(())
    }

    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<BlobInfo>> {
        let mut found = Vec::new();
        let mut folders = vec![self.root.clone()];
        while let Some(folder) = folders.pop() {
            let mut entries = match tokio::fs::read_dir(&folder).await {
                Ok(entries) => entries,
                Err(error) if error.kind() == ErrorKind::NotFound => continue,
                Err(error) => return Err(error.into()),
            };
            while let Some(entry) = entries.next_entry().await? {
                let path = entry.path();
                let Some(key) = relative_key(&self.root, &path) else {
                    continue;
                };
                let meta = entry.metadata().await?;
                if meta.is_dir() {
                    if key != ".tmp" && (key.starts_with(prefix) || prefix.starts_with(&key)) {
                        folders.push(path);
                    }
                } else if key.starts_with(prefix) && check_key(&key).is_ok() {
                    found.push(BlobInfo {
                        key,
                        modified: meta.modified()?,
                    });
                }
            }
        }
        Ok(found)
    }

    async fn sweep_incomplete(&self, before: SystemTime) -> anyhow::Result<u64> {
        let mut removed = 0;
        let mut entries = tokio::fs::read_dir(self.root.join(".tmp")).await?;
        while let Some(entry) = entries.next_entry().await? {
            if entry.metadata().await?.modified()? < before {
                tokio::fs::remove_file(entry.path()).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn relative_key(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let parts: Vec<&str> = relative
        .components()
        .map(|c| c.as_os_str().to_str())
        .collect::<Option<_>>()?;
    Some(parts.join("/"))
}
