//! The S3 backend, through aws-sdk-s3: one bucket of the store holds every
//! Basalt bucket's blobs. Uploads are buffered a part at a time (at most
//! three parts of `s3.part_size_bytes` in memory: two being sent, one
//! filling): a blob smaller than a part is one
//! `PutObject`, a larger one a multipart upload, aborted if the writer is
//! dropped unfinished. Each multipart upload in progress is also noted as a
//! small `pending/<uuid>` object, so that uploads a crash left open can be
//! found and aborted even on stores that cannot list multipart uploads.

use super::backend::{check_key, Backend, BlobInfo, BlobWriter, ByteStream};
use async_trait::async_trait;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use aws_sdk_s3::Client;
use basalt_core::config::S3Config;
use bytes::{Bytes, BytesMut};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Parts of one upload sent at once: memory per upload is at most this many
/// parts in flight plus the one filling.
const PARTS_IN_FLIGHT: usize = 2;

pub struct S3 {
    client: Client,
    bucket: String,
    part_size: usize,
}

fn failed(error: impl std::error::Error) -> anyhow::Error {
    anyhow::anyhow!("S3: {}", DisplayErrorContext(error))
}

impl S3 {
    pub fn new(config: &S3Config) -> S3 {
        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(Credentials::new(
                config.access_key_id.clone(),
                config.secret_access_key.expose().to_owned(),
                None,
                None,
                "basalt-config",
            ))
            .force_path_style(config.force_path_style)
            // Bodies are sent with their length; checksums only where S3 requires them.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
        if !config.endpoint.is_empty() {
            builder = builder.endpoint_url(config.endpoint.clone());
        }
        S3 {
            client: Client::from_conf(builder.build()),
            bucket: config.bucket.clone(),
            part_size: config.part_size_bytes as usize,
        }
    }

    /// Checks at start-up that the bucket can be reached with these credentials.
    pub async fn check(&self) -> anyhow::Result<()> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }
}

struct S3Writer {
    client: Client,
    bucket: String,
    key: String,
    part_size: usize,
    buffer: BytesMut,
    upload_id: Option<String>,
    parts: Vec<CompletedPart>,
    /// Parts being sent (aborted with the writer when it is dropped).
    sending: tokio::task::JoinSet<anyhow::Result<CompletedPart>>,
    next_part: i32,
    /// The `pending/<uuid>` note of the multipart upload.
    note: Option<String>,
    finished: bool,
}

/// What a `pending/<uuid>` note records.
#[derive(serde::Serialize, serde::Deserialize)]
struct Note {
    key: String,
    upload_id: String,
}

impl S3Writer {
    async fn send_part(&mut self, body: Bytes) -> anyhow::Result<()> {
        if self.upload_id.is_none() {
            let created = self
                .client
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .send()
                .await
                .map_err(failed)?;
            let upload_id = created
                .upload_id()
                .ok_or_else(|| anyhow::anyhow!("S3 gave no upload id"))?
                .to_owned();
            let note = format!("pending/{}", uuid::Uuid::new_v4());
            let body = serde_json::to_vec(&Note {
                key: self.key.clone(),
                upload_id: upload_id.clone(),
            })?;
            self.upload_id = Some(upload_id);
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&note)
                .body(S3Body::from(body))
                .send()
                .await
                .map_err(failed)?;
            self.note = Some(note);
        }
        // At most PARTS_IN_FLIGHT parts are being sent while the next fills.
        while self.sending.len() >= PARTS_IN_FLIGHT {
            let sent = self.sending.join_next().await.expect("not empty")??;
            self.parts.push(sent);
        }
        self.next_part += 1;
        let number = self.next_part;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&self.key)
            .upload_id(self.upload_id.as_deref().expect("created above"))
            .part_number(number)
            .body(S3Body::from(body));
        self.sending.spawn(async move {
            let sent = request.send().await.map_err(failed)?;
            Ok(CompletedPart::builder()
                .set_e_tag(sent.e_tag().map(str::to_owned))
                .part_number(number)
                .build())
        });
        Ok(())
    }
}

impl Drop for S3Writer {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if let Some(upload_id) = self.upload_id.take() {
            let (client, bucket, key) =
                (self.client.clone(), self.bucket.clone(), self.key.clone());
            let note = self.note.take();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(async move {
                    if let Err(error) =
                        abort(&client, &bucket, &key, &upload_id, note.as_deref()).await
                    {
                        tracing::warn!("aborting a multipart upload: {error:#}");
                    }
                });
            }
        }
    }
}

#[async_trait]
impl BlobWriter for S3Writer {
    async fn write(&mut self, chunk: Bytes) -> anyhow::Result<()> {
        self.buffer.extend_from_slice(&chunk);
        while self.buffer.len() >= self.part_size {
            let part = self.buffer.split_to(self.part_size).freeze();
            self.send_part(part).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> anyhow::Result<()> {
        let rest = self.buffer.split().freeze();
        if self.upload_id.is_none() {
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .body(S3Body::from(rest))
                .send()
                .await
                .map_err(failed)?;
        } else {
            if !rest.is_empty() {
                self.send_part(rest).await?;
            }
            while let Some(sent) = self.sending.join_next().await {
                self.parts.push(sent??);
            }
            self.parts.sort_by_key(|part| part.part_number());
            self.client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&self.key)
                .upload_id(self.upload_id.as_deref().expect("multipart"))
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(std::mem::take(&mut self.parts)))
                        .build(),
                )
                .send()
                .await
                .map_err(failed)?;
        }
        self.finished = true;
        if let Some(note) = self.note.take() {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(note)
                .send()
                .await
                .map_err(failed)?;
        }
        Ok(())
    }
}

/// Aborts a multipart upload (one already gone is fine) and removes its note.
async fn abort(
    client: &Client,
    bucket: &str,
    key: &str,
    upload_id: &str,
    note: Option<&str>,
) -> anyhow::Result<()> {
    if let Err(error) = client
        .abort_multipart_upload()
        .bucket(bucket)
        .key(key)
        .upload_id(upload_id)
        .send()
        .await
    {
        let gone = error
            .as_service_error()
            .is_some_and(|e| e.is_no_such_upload());
        if !gone {
            return Err(failed(error));
        }
    }
    if let Some(note) = note {
        client
            .delete_object()
            .bucket(bucket)
            .key(note)
            .send()
            .await
            .map_err(failed)?;
    }
    Ok(())
}

fn system_time(time: Option<&aws_sdk_s3::primitives::DateTime>) -> SystemTime {
    time.map_or(UNIX_EPOCH, |t| {
        UNIX_EPOCH + Duration::from_secs(t.secs().max(0) as u64)
    })
}

#[async_trait]
impl Backend for S3 {
    fn kind(&self) -> &'static str {
        "s3"
    }

    async fn writer(&self, key: &str) -> anyhow::Result<Box<dyn BlobWriter>> {
        check_key(key)?;
        Ok(Box::new(S3Writer {
            client: self.client.clone(),
            bucket: self.bucket.clone(),
            key: key.to_owned(),
            part_size: self.part_size,
            buffer: BytesMut::new(),
            upload_id: None,
            parts: Vec::new(),
            sending: tokio::task::JoinSet::new(),
            next_part: 0,
            note: None,
            finished: false,
        }))
    }

    async fn read(&self, key: &str, range: Option<(u64, u64)>) -> anyhow::Result<ByteStream> {
        check_key(key)?;
        let mut request = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some((start, end)) = range {
            request = request.range(format!("bytes={start}-{end}"));
        }
        let body = request.send().await.map_err(failed)?.body;
        Ok(Box::pin(futures_util::stream::unfold(
            body,
            |mut body| async move {
                match body.try_next().await {
                    Ok(Some(chunk)) => Some((Ok(chunk), body)),
                    Ok(None) => None,
                    Err(error) => Some((Err(std::io::Error::other(error)), body)),
                }
            },
        )))
    }

    async fn copy(&self, from: &str, to: &str) -> anyhow::Result<()> {
        check_key(from)?;
        check_key(to)?;
        self.client
            .copy_object()
            .bucket(&self.bucket)
            .key(to)
            .copy_source(format!("{}/{from}", self.bucket))
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        check_key(key)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(failed)?;
        Ok(())
    }

    async fn list(&self, prefix: &str) -> anyhow::Result<Vec<BlobInfo>> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(failed)?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    found.push(BlobInfo {
                        key: key.to_owned(),
                        modified: system_time(object.last_modified()),
                    });
                }
            }
            match page.next_continuation_token() {
                Some(next) if page.is_truncated() == Some(true) => token = Some(next.to_owned()),
                _ => return Ok(found),
            }
        }
    }

    async fn sweep_incomplete(&self, before: SystemTime) -> anyhow::Result<u64> {
        let mut removed = 0;
        for note in self.list("pending/").await? {
            if note.modified >= before {
                continue;
            }
            let body = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&note.key)
                .send()
                .await
                .map_err(failed)?
                .body
                .collect()
                .await?
                .into_bytes();
            match serde_json::from_slice::<Note>(&body) {
                Ok(open) => {
                    abort(
                        &self.client,
                        &self.bucket,
                        &open.key,
                        &open.upload_id,
                        Some(&note.key),
                    )
                    .await?
                }
                Err(_) => self.delete(&note.key).await?,
            }
            removed += 1;
        }
        let uploads = match self
            .client
            .list_multipart_uploads()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(uploads) => uploads,
            // Some S3-compatible stores do not list multipart uploads; a
            // lifecycle rule on the bucket must abort them there.
            Err(error) => {
                tracing::debug!("cannot list multipart uploads: {}", failed(error));
                return Ok(removed);
            }
        };
        for upload in uploads.uploads() {
            if system_time(upload.initiated()) >= before {
                continue;
            }
            if let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) {
                self.client
                    .abort_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(id)
                    .send()
                    .await
                    .map_err(failed)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
