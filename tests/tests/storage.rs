//! Storage against the real binary on both backends: local disk, and a real
//! S3-compatible server (s3s-fs) on loopback. Each scenario runs once per
//! backend (`mod <scenario> { fn local, fn s3 }`).

use basalt_tests::client::{Answer, Client};
use basalt_tests::scenario::{Fixture, Scenario};
use basalt_tests::{Basalt, S3Server};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Local,
    S3,
}

macro_rules! both {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn local() {
                super::$scenario(super::Kind::Local).await
            }
            #[tokio::test]
            async fn s3() {
                super::$scenario(super::Kind::S3).await
            }
        }
    )+};
}

both!(
    buckets_are_managed_and_guarded,
    uploads_downloads_ranges_and_conditional_requests,
    list_move_copy_and_delete,
    limits_refuse_and_leave_nothing_behind,
    every_traversal_form_is_refused,
    signed_urls_expire_resist_tampering_and_uploads_work_once,
    resumable_upload_survives_an_interruption,
    permissions_owner_folders_public_buckets_and_anon,
    a_200_mb_upload_streams_with_flat_memory,
    orphaned_blobs_and_interrupted_writes_are_cleaned_up,
    a_crash_mid_upload_leaves_nothing_after_cleanup,
    object_changes_reach_the_change_feed,
);

struct Env {
    basalt: Basalt,
    kind: Kind,
    service: String,
    anon: String,
    s3_bucket: Option<String>,
}

async fn start(kind: Kind, extra: &[(&str, &str)]) -> Env {
    let mut builder = Basalt::builder();
    let mut s3_bucket = None;
    if kind == Kind::S3 {
        let s3 = S3Server::shared();
        let bucket = s3.fresh_bucket();
        for (name, value) in s3.env(&bucket) {
            builder = builder.env(name, value);
        }
        s3_bucket = Some(bucket);
    }
    for (name, value) in extra {
        builder = builder.env(name, *value);
    }
    let basalt = builder.start().await;
    let keys = basalt.keys();
    Env {
        basalt,
        kind,
        service: keys.service_role,
        anon: keys.anon,
        s3_bucket,
    }
}

impl Env {
    /// A caller with `token` (a key or a user's token) as the bearer and
    /// the anon key, or with no credentials at all.
    fn client(&self, token: Option<&str>) -> Client<'_> {
        match token {
            Some(token) => self.basalt.as_user(token),
            None => self.basalt.as_nobody(),
        }
    }

    fn request(&self, method: Method, path: &str, token: Option<&str>) -> reqwest::RequestBuilder {
        self.client(token)
            .request(method, &format!("/storage/v1{path}"))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        Answer::from(request.send().await.unwrap()).await
    }

    /// A JSON call with `token` as the bearer (an API key or a user's token).
    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.client(Some(token))
            .call(method, &format!("/storage/v1{path}"), body)
            .await
    }

    async fn upload(
        &self,
        token: &str,
        method: Method,
        path: &str,
        bytes: &[u8],
        content_type: &str,
    ) -> (u16, Value) {
        let request = self
            .request(method, &format!("/object/{path}"), Some(token))
            .header("content-type", content_type)
            .body(bytes.to_vec());
        self.send(request).await.pair()
    }

    async fn download(&self, token: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut request = self.request(Method::GET, &format!("/object/{path}"), Some(token));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.send(request).await
    }

    async fn bucket(&self, body: Value) {
        self.basalt
            .as_user(&self.service)
            .post("/storage/v1/bucket", body)
            .await
            .expect(200);
    }

    async fn policy(&self, policy: Value) {
        self.basalt.as_service().policy(policy).await;
    }

    /// A signed-in user: (id, access token).
    async fn user(&self, name: &str) -> (String, String) {
        let (client, id) = Client::user(&self.basalt, &format!("{name}@example.com")).await;
        (id, client.token.unwrap())
    }

    /// Where the backend keeps blobs, seen from outside Basalt.
    fn backend_root(&self) -> PathBuf {
        match self.kind {
            Kind::Local => self.basalt.data_dir().join("storage"),
            Kind::S3 => S3Server::shared().bucket_dir(self.s3_bucket.as_deref().unwrap()),
        }
    }

    /// Every stored object blob (`objects/…`).
    fn blobs(&self) -> Vec<PathBuf> {
        files(&self.backend_root().join("objects"))
    }

    /// What an interrupted write could leave: local temp files; for S3,
    /// multipart uploads still open in the store (s3s-fs keeps a metadata
    /// file per upload beside the buckets) and Basalt's `pending/` notes.
    fn leftovers(&self) -> Vec<PathBuf> {
        match self.kind {
            Kind::Local => files(&self.backend_root().join(".tmp")),
            Kind::S3 => {
                let bucket = self.s3_bucket.as_deref().unwrap();
                let marker = format!(".bucket-{}.", base64_url(bucket.as_bytes()));
                let root = self.backend_root().parent().unwrap().to_owned();
                let mut found: Vec<PathBuf> = std::fs::read_dir(root)
                    .unwrap()
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| {
                        let name = path.file_name().unwrap().to_string_lossy();
                        name.starts_with(&marker) && name.contains(".upload-")
                    })
                    .collect();
                found.extend(files(&self.backend_root().join("pending")));
                found
            }
        }
    }

    async fn rows(&self) -> i64 {
        let response = self
            .basalt
            .admin_sql("select count(*) as n from storage.objects")
            .await;
        let body: Value = response.json().await.unwrap();
        body["results"][0]["rows"][0][0]
            .as_str()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{body}"))
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files(&path));
        } else {
            found.push(path);
        }
    }
    found
}

/// Sends bytes as they are (no URL normalization) and answers the status.
async fn raw(basalt: &Basalt, head: &str, body: &[u8], send: usize) -> u16 {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", basalt.port))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body[..send]).await.unwrap();
    if send < body.len() {
        // Cut off mid-body, as a dropped connection would.
        drop(stream);
        return 0;
    }
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply)).await;
    let text = String::from_utf8_lossy(&reply);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|i| ((i * 31 + i / 7) % 251) as u8)
        .collect()
}

async fn buckets_are_managed_and_guarded(kind: Kind) {
    let env = start(kind, &[]).await;
    let (_, ann) = env.user("ann").await;
    env.bucket(json!({"id": "avatars", "public": true, "file_size_limit": 1000, "allowed_mime_types": ["image/*"]}))
        .await;
    let (status, body) = env
        .call(
            &env.service,
            Method::POST,
            "/bucket",
            Some(json!({"id": "avatars"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("already_exists"))
    );
    for bad in ["Bad", "../x", "public", ""] {
        let (status, body) = env
            .call(
                &env.service,
                Method::POST,
                "/bucket",
                Some(json!({"id": bad})),
            )
            .await;
        assert_eq!(status, 400, "{bad}: {body}");
    }
    let (status, body) = env
        .call(
            &env.service,
            Method::POST,
            "/bucket",
            Some(json!({"id": "x", "allowed_mime_types": ["nope"]})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed"))
    );
    // Users may not manage buckets without a policy; they see public ones.
    let (status, _) = env
        .call(&ann, Method::POST, "/bucket", Some(json!({"id": "mine"})))
        .await;
    assert_eq!(status, 403);
    env.bucket(json!({"id": "private"})).await;
    let (_, list) = env.call(&ann, Method::GET, "/bucket", None).await;
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["avatars"]);
    let (_, list) = env.call(&env.service, Method::GET, "/bucket", None).await;
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (status, _) = env.call(&ann, Method::GET, "/bucket/private", None).await;
    assert_eq!(status, 404);
    let (status, bucket) = env
        .call(&env.service, Method::GET, "/bucket/avatars", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(bucket["public"], true);
    assert_eq!(bucket["file_size_limit"], 1000);
    assert_eq!(bucket["allowed_mime_types"], json!(["image/*"]));
    let (status, _) = env
        .call(
            &env.service,
            Method::PUT,
            "/bucket/avatars",
            Some(json!({"public": false, "file_size_limit": null})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, bucket) = env
        .call(&env.service, Method::GET, "/bucket/avatars", None)
        .await;
    assert_eq!(
        (bucket["public"].clone(), bucket["file_size_limit"].clone()),
        (json!(false), Value::Null)
    );
    assert_eq!(bucket["allowed_mime_types"], json!(["image/*"]));
    // A bucket with objects is not deleted until emptied.
    let (status, body) = env
        .upload(
            &env.service,
            Method::POST,
            "avatars/a.png",
            b"png",
            "image/png",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = env
        .call(&env.service, Method::DELETE, "/bucket/avatars", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("bucket_not_empty"))
    );
    assert_eq!(env.blobs().len(), 1);
    let (status, body) = env
        .call(&env.service, Method::POST, "/bucket/avatars/empty", None)
        .await;
    assert_eq!((status, body["deleted"].as_i64()), (200, Some(1)));
    assert!(env.blobs().is_empty());
    let (status, _) = env
        .call(&env.service, Method::DELETE, "/bucket/avatars", None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = env
        .call(&env.service, Method::GET, "/bucket/avatars", None)
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("bucket_not_found"))
    );
}

async fn uploads_downloads_ranges_and_conditional_requests(kind: Kind) {
    let env = start(kind, &[]).await;
    env.bucket(json!({"id": "docs"})).await;
    let key = env.service.clone();
    let content = pattern(0, 5000);
    let request = env
        .request(Method::POST, "/object/docs/folder/report 1.txt", Some(&key))
        .header("content-type", "text/plain; charset=utf-8")
        .header("cache-control", "max-age=60")
        .body(content.clone());
    let created = env.send(request).await;
    assert_eq!(created.status, 200, "{}", created.json());
    assert_eq!(created.json()["Key"], "docs/folder/report 1.txt");
    let (status, body) = env
        .upload(
            &key,
            Method::POST,
            "docs/folder/report 1.txt",
            b"x",
            "text/plain",
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("object_exists"))
    );
    let (status, body) = env
        .upload(&key, Method::PUT, "docs/missing.txt", b"x", "text/plain")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("object_not_found"))
    );

    let got = env.download(&key, "docs/folder/report%201.txt", &[]).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.bytes, content);
    assert_eq!(got.header("content-type"), "text/plain; charset=utf-8");
    assert_eq!(
        got.header("cache-control"),
        "private, max-age=60",
        "an authenticated download is not for shared caches"
    );
    assert_eq!(got.header("x-content-type-options"), "nosniff");
    assert_eq!(got.header("content-length"), "5000");
    assert_eq!(
        got.header("content-disposition"),
        "inline; filename=\"report 1.txt\"; filename*=UTF-8''report%201.txt"
    );
    let etag = got.header("etag").to_owned();
    let last_modified = got.header("last-modified").to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    assert!(last_modified.ends_with("GMT"), "{last_modified}");

    let part = env
        .download(
            &key,
            "docs/folder/report%201.txt",
            &[("range", "bytes=100-199")],
        )
        .await;
    assert_eq!(part.status, 206);
    assert_eq!(part.bytes, content[100..200]);
    assert_eq!(part.header("content-range"), "bytes 100-199/5000");
    let tail = env
        .download(
            &key,
            "docs/folder/report%201.txt",
            &[("range", "bytes=-10")],
        )
        .await;
    assert_eq!(
        (tail.status, tail.bytes.as_slice()),
        (206, &content[4990..])
    );
    let past = env
        .download(
            &key,
            "docs/folder/report%201.txt",
            &[("range", "bytes=5000-")],
        )
        .await;
    assert_eq!(
        (past.status, past.json()["code"].as_str()),
        (416, Some("range_not_satisfiable"))
    );
    assert_eq!(past.header("content-range"), "bytes */5000");
    let cached = env
        .download(
            &key,
            "docs/folder/report%201.txt",
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!((cached.status, cached.bytes.len()), (304, 0));
    let cached = env
        .download(
            &key,
            "docs/folder/report%201.txt",
            &[("if-modified-since", &last_modified)],
        )
        .await;
    assert_eq!(cached.status, 304);
    let stale = env
        .download(
            &key,
            "docs/folder/report%201.txt",
            &[("if-none-match", "\"other\"")],
        )
        .await;
    assert_eq!(stale.status, 200);
    let changed = env
        .download(
            &key,
            "docs/folder/report%201.txt",
            &[("range", "bytes=0-9"), ("if-range", "\"old\"")],
        )
        .await;
    assert_eq!((changed.status, changed.bytes.len()), (200, 5000));
    let current = env
        .download(
            &key,
            "docs/folder/report%201.txt",
            &[("range", "bytes=0-9"), ("if-range", &etag)],
        )
        .await;
    assert_eq!((current.status, current.bytes.len()), (206, 10));
    let attachment = env
        .download(
            &key,
            "docs/folder/report%201.txt?download=r%C3%A9sum%C3%A9.txt",
            &[],
        )
        .await;
    assert_eq!(
        attachment.header("content-disposition"),
        "attachment; filename=\"r_sum_.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.txt"
    );
    let head = env
        .send(env.request(
            Method::HEAD,
            "/object/docs/folder/report%201.txt",
            Some(&key),
        ))
        .await;
    assert_eq!(
        (head.status, head.header("content-length"), head.bytes.len()),
        (200, "5000", 0)
    );

    // Upsert replaces: a new version and ETag; PUT replaces too.
    let request = env
        .request(Method::POST, "/object/docs/folder/report 1.txt", Some(&key))
        .header("x-upsert", "true")
        .header("content-type", "text/plain")
        .body("second");
    assert_eq!(env.send(request).await.status, 200);
    let got = env.download(&key, "docs/folder/report%201.txt", &[]).await;
    assert_eq!(got.bytes, b"second");
    assert_ne!(got.header("etag"), etag);
    let (status, _) = env
        .upload(
            &key,
            Method::PUT,
            "docs/folder/report 1.txt",
            b"third",
            "text/plain",
        )
        .await;
    assert_eq!(status, 200);
    let (status, info) = env
        .call(
            &key,
            Method::GET,
            "/object/info/docs/folder/report%201.txt",
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (info["version"].as_i64(), info["size"].as_i64()),
        (Some(3), Some(5))
    );
    // Replaced blobs are gone: one blob for one object.
    assert_eq!(env.blobs().len(), 1);

    // Multipart form, as supabase-js sends it.
    let form = reqwest::multipart::Form::new()
        .text("cacheControl", "120")
        .part(
            "",
            reqwest::multipart::Part::bytes(b"<svg onload=alert(1)>".to_vec())
                .file_name("x.svg")
                .mime_str("image/svg+xml")
                .unwrap(),
        );
    let sent = env
        .send(
            env.request(Method::POST, "/object/docs/x.svg", Some(&key))
                .multipart(form),
        )
        .await;
    assert_eq!(sent.status, 200, "{}", sent.json());
    let svg = env.download(&key, "docs/x.svg", &[]).await;
    assert_eq!(svg.bytes, b"<svg onload=alert(1)>");
    assert_eq!(svg.header("content-type"), "image/svg+xml");
    assert_eq!(svg.header("cache-control"), "private, max-age=120");
    assert!(svg.header("content-disposition").starts_with("attachment;"));
    assert!(svg.header("content-security-policy").contains("sandbox"));
    // One media type, never a list a browser could read another way.
    let (status, body) = env
        .upload(
            &key,
            Method::POST,
            "docs/list.png",
            b"<p>",
            "image/png, text/html",
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed"))
    );
    let form = reqwest::multipart::Form::new()
        .text("cacheControl", "max-age=é")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"x".to_vec()).file_name("cc.txt"),
        );
    let refused = env
        .send(
            env.request(Method::POST, "/object/docs/cc.txt", Some(&key))
                .multipart(form),
        )
        .await;
    assert_eq!(refused.status, 400);
    // Unknown types go out as attachments too.
    env.upload(
        &key,
        Method::POST,
        "docs/x.bin",
        b"?",
        "application/x-unknown",
    )
    .await;
    let unknown = env.download(&key, "docs/x.bin", &[]).await;
    assert!(unknown
        .header("content-disposition")
        .starts_with("attachment;"));
    let missing = env.download(&key, "docs/none.txt", &[]).await;
    assert_eq!(
        (missing.status, missing.json()["code"].as_str()),
        (404, Some("object_not_found"))
    );
}

async fn list_move_copy_and_delete(kind: Kind) {
    let env = start(kind, &[]).await;
    env.bucket(json!({"id": "files"})).await;
    env.bucket(json!({"id": "other"})).await;
    let key = env.service.clone();
    for path in ["a/1.txt", "a/b/2.txt", "a/b/3.txt", "c.txt", "report.pdf"] {
        let (status, body) = env
            .upload(
                &key,
                Method::POST,
                &format!("files/{path}"),
                path.as_bytes(),
                "text/plain",
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let list = |body: Value| {
        let env = &env;
        let key = key.clone();
        async move {
            let (status, body) = env
                .call(&key, Method::POST, "/object/list/files", Some(body))
                .await;
            assert_eq!(status, 200, "{body}");
            body.as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    format!(
                        "{}{}",
                        e["name"].as_str().unwrap(),
                        if e["id"].is_null() { "/" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(json!({})).await, ["a/", "c.txt", "report.pdf"]);
    assert_eq!(list(json!({"prefix": "a"})).await, ["1.txt", "b/"]);
    assert_eq!(list(json!({"prefix": "a/b/"})).await, ["2.txt", "3.txt"]);
    assert_eq!(
        list(json!({"prefix": "a/b", "limit": 1, "offset": 1})).await,
        ["3.txt"]
    );
    assert_eq!(list(json!({"search": "REP"})).await, ["report.pdf"]);
    // A prefix is literal: `_` and `%` are not wildcards.
    for path in ["x_y/1.txt", "xzy/2.txt", "x%25/3.txt"] {
        let (status, _) = env
            .upload(
                &key,
                Method::POST,
                &format!("files/{path}"),
                b"x",
                "text/plain",
            )
            .await;
        assert_eq!(status, 200);
    }
    assert_eq!(list(json!({"prefix": "x_y"})).await, ["1.txt"]);
    assert_eq!(list(json!({"prefix": "x%"})).await, ["3.txt"]);
    env.call(
        &key,
        Method::DELETE,
        "/object/files",
        Some(json!({"prefixes": ["x_y/1.txt", "xzy/2.txt", "x%/3.txt"]})),
    )
    .await;
    assert_eq!(
        list(json!({"sortBy": {"column": "name", "order": "desc"}})).await,
        ["report.pdf", "c.txt", "a/"]
    );
    let (_, entries) = env
        .call(
            &key,
            Method::POST,
            "/object/list/files",
            Some(json!({"prefix": "a/b"})),
        )
        .await;
    assert_eq!(entries[0]["metadata"]["size"], 9);
    assert_eq!(entries[0]["metadata"]["mimetype"], "text/plain");
    let (status, body) = env
        .call(
            &key,
            Method::POST,
            "/object/list/files",
            Some(json!({"prefix": "../"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_object_name"))
    );

    let (status, body) = env
        .call(
            &key,
            Method::POST,
            "/object/move",
            Some(json!({"bucketId": "files", "sourceKey": "c.txt", "destinationKey": "d/c.txt"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        env.download(&key, "files/d/c.txt", &[]).await.bytes,
        b"c.txt"
    );
    assert_eq!(env.download(&key, "files/c.txt", &[]).await.status, 404);
    let (status, body) = env
        .call(
            &key,
            Method::POST,
            "/object/move",
            Some(json!({"bucketId": "files", "sourceKey": "d/c.txt", "destinationKey": "a/1.txt"})),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (409, Some("object_exists"))
    );
    let blobs_before = env.blobs().len();
    let (status, body) = env
        .call(&key, Method::POST, "/object/copy", Some(json!({"bucketId": "files", "sourceKey": "a/1.txt", "destinationKey": "copied.txt", "destinationBucket": "other"})))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Key"], "other/copied.txt");
    assert_eq!(
        env.download(&key, "other/copied.txt", &[]).await.bytes,
        b"a/1.txt"
    );
    assert_eq!(env.blobs().len(), blobs_before + 1);

    let (status, deleted) = env
        .call(
            &key,
            Method::DELETE,
            "/object/files",
            Some(json!({"prefixes": ["a/1.txt", "a/b/2.txt", "nope.txt"]})),
        )
        .await;
    assert_eq!(status, 200);
    let mut names: Vec<&str> = deleted
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a/1.txt", "a/b/2.txt"]);
    assert_eq!(env.download(&key, "files/a/1.txt", &[]).await.status, 404);
    // The copy has its own blob and survives.
    assert_eq!(
        env.download(&key, "other/copied.txt", &[]).await.status,
        200
    );
    let (status, _) = env
        .call(&key, Method::DELETE, "/object/files/a/b/3.txt", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = env
        .call(&key, Method::DELETE, "/object/files/a/b/3.txt", None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(env.blobs().len(), 3);
    assert_eq!(env.rows().await, 3);
}

async fn limits_refuse_and_leave_nothing_behind(kind: Kind) {
    let env = start(kind, &[("BASALT_STORAGE_MAX_FILE_SIZE_BYTES", "1500")]).await;
    env.bucket(json!({"id": "small", "file_size_limit": 1000, "allowed_mime_types": ["image/*", "application/pdf"]}))
        .await;
    let key = env.service.clone();
    let (status, body) = env
        .upload(&key, Method::POST, "small/ok.png", &[1; 1000], "image/png")
        .await;
    assert_eq!(status, 200, "{body}");
    // Declared too large: refused before reading.
    let (status, body) = env
        .upload(&key, Method::POST, "small/big.png", &[1; 1001], "image/png")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    // Chunked, no length: refused while streaming.
    let chunks =
        futures_util::stream::iter((0..20).map(|_| Ok::<_, std::io::Error>(vec![7u8; 100])));
    let request = env
        .request(Method::POST, "/object/small/stream.png", Some(&key))
        .header("content-type", "image/png")
        .body(reqwest::Body::wrap_stream(chunks));
    let refused = env.send(request).await;
    assert_eq!(
        (refused.status, refused.json()["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    // Multipart over the limit.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(vec![0; 5000])
            .file_name("x.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let refused = env
        .send(
            env.request(Method::POST, "/object/small/form.png", Some(&key))
                .multipart(form),
        )
        .await;
    assert_eq!(refused.status, 413);
    // The bucket's MIME types.
    let (status, body) = env
        .upload(&key, Method::POST, "small/x.html", b"<p>", "text/html")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("mime_type_not_allowed"))
    );
    let (status, _) = env
        .upload(
            &key,
            Method::POST,
            "small/x.pdf",
            b"%PDF",
            "application/pdf",
        )
        .await;
    assert_eq!(status, 200);
    // The server-wide limit holds for buckets without one, and over a larger one.
    env.bucket(json!({"id": "open"})).await;
    env.bucket(json!({"id": "roomy", "file_size_limit": 1_000_000}))
        .await;
    for bucket in ["open", "roomy"] {
        let (status, body) = env
            .upload(
                &key,
                Method::POST,
                &format!("{bucket}/x.bin"),
                &[1; 1501],
                "application/pdf",
            )
            .await;
        assert_eq!(
            (status, body["details"].as_str()),
            (413, Some("limit: 1500 bytes"))
        );
    }
    let request = env
        .request(Method::POST, "/object/open/meta.pdf", Some(&key))
        .header("content-type", "application/pdf")
        .header("x-metadata", "{not json")
        .body("x");
    assert_eq!(env.send(request).await.status, 400);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(env.rows().await, 2);
    assert_eq!(env.blobs().len(), 2, "{:?}", env.blobs());
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
}

async fn every_traversal_form_is_refused(kind: Kind) {
    let env = start(kind, &[]).await;
    env.bucket(json!({"id": "safe"})).await;
    let key = env.service.clone();
    let forms = [
        "../escape.txt",
        "a/../../escape.txt",
        "./a.txt",
        "a/./b.txt",
        "%2e%2e/escape.txt",
        "%2E%2E%2Fescape.txt",
        "..%2fescape.txt",
        "a%2f..%2f..%2fescape.txt",
        "..%5cescape.txt",
        "a\\..\\escape.txt",
        "%5c%5cserver%5cshare",
        "C:/windows/x.txt",
        "c%3A%5Cx.txt",
        "/etc/passwd",
        "%2fetc%2fpasswd",
        "a%00.txt",
        "a%0a.txt",
        "a%1b.txt",
        "%252e%252e%252fescape.txt",
        "a//b.txt",
    ];
    for form in forms {
        for method in ["POST", "GET", "DELETE"] {
            let head = format!(
                "{method} /storage/v1/object/safe/{form} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: text/plain\r\nContent-Length: 1\r\nConnection: close\r\n\r\n"
            );
            let status = raw(&env.basalt, &head, b"x", 1).await;
            assert_eq!(status, 400, "{method} {form}");
        }
    }
    let long = "a".repeat(1025);
    let (status, body) = env
        .upload(
            &key,
            Method::POST,
            &format!("safe/{long}"),
            b"x",
            "text/plain",
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("invalid_object_name"))
    );
    for destination in ["../x", "a/../../x", "/x", "a\\x", "a\u{0}x", "%2e%2e/x"] {
        let (status, body) = env
            .call(
                &key,
                Method::POST,
                "/object/copy",
                Some(json!({"bucketId": "safe", "sourceKey": "x", "destinationKey": destination})),
            )
            .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_object_name")),
            "{destination}"
        );
    }
    let (status, _) = env
        .upload(
            &key,
            Method::POST,
            "safe/fine/name..with.dots.txt",
            b"x",
            "text/plain",
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(env.rows().await, 1);
    // Nothing was written next to the backend's root.
    let parent = env.backend_root().parent().unwrap().to_owned();
    assert!(!parent.join("escape.txt").exists());
    assert!(files(&env.backend_root())
        .iter()
        .all(|p| !p.to_string_lossy().contains("escape")));
}

async fn signed_urls_expire_resist_tampering_and_uploads_work_once(kind: Kind) {
    let env = start(kind, &[]).await;
    env.bucket(json!({"id": "private"})).await;
    let key = env.service.clone();
    env.upload(
        &key,
        Method::POST,
        "private/doc.txt",
        b"secret doc",
        "text/plain",
    )
    .await;
    env.upload(
        &key,
        Method::POST,
        "private/other.txt",
        b"other",
        "text/plain",
    )
    .await;
    let (status, signed) = env
        .call(
            &key,
            Method::POST,
            "/object/sign/private/doc.txt",
            Some(json!({"expiresIn": 2})),
        )
        .await;
    assert_eq!(status, 200, "{signed}");
    let url = signed["signedURL"].as_str().unwrap().to_owned();
    // No API key needed.
    let fetch = |path: String| {
        let env = &env;
        async move { env.send(env.request(Method::GET, &path, None)).await }
    };
    let got = fetch(url.clone()).await;
    assert_eq!(
        (got.status, got.bytes.as_slice()),
        (200, b"secret doc".as_slice())
    );
    let token = url.split("token=").nth(1).unwrap().to_owned();
    let (payload, signature) = token.split_once('.').unwrap();
    let mut flipped = signature.as_bytes().to_vec();
    flipped[3] = if flipped[3] == b'A' { b'B' } else { b'A' };
    let tampered = format!(
        "/object/sign/private/doc.txt?token={payload}.{}",
        String::from_utf8(flipped).unwrap()
    );
    let got = fetch(tampered).await;
    assert_eq!(
        (got.status, got.json()["code"].as_str()),
        (400, Some("invalid_signature"))
    );
    let elsewhere = fetch(format!("/object/sign/private/other.txt?token={token}")).await;
    assert_eq!(
        (elsewhere.status, elsewhere.json()["code"].as_str()),
        (400, Some("invalid_signature"))
    );
    let (status, many) = env
        .call(
            &key,
            Method::POST,
            "/object/sign/private",
            Some(json!({"expiresIn": 60, "paths": ["other.txt", "missing.txt", "../x"]})),
        )
        .await;
    assert_eq!(status, 200, "{many}");
    assert_eq!(many[0]["path"], "other.txt");
    assert!(
        many[0]["error"].is_null()
            && many[1]["signedURL"].is_null()
            && many[2]["signedURL"].is_null()
    );
    assert!(many[1]["error"].is_string() && many[2]["error"].is_string());
    let other = fetch(many[0]["signedURL"].as_str().unwrap().to_owned()).await;
    assert_eq!(
        (other.status, other.bytes.as_slice()),
        (200, b"other".as_slice())
    );
    let none = fetch("/object/sign/private/doc.txt".into()).await;
    assert_eq!(none.status, 400);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let expired = fetch(url).await;
    assert_eq!(
        (expired.status, expired.json()["code"].as_str()),
        (400, Some("signed_url_expired"))
    );
    let (status, _) = env
        .call(
            &key,
            Method::POST,
            "/object/sign/private/doc.txt",
            Some(json!({"expiresIn": 0})),
        )
        .await;
    assert_eq!(status, 400);

    // Signed uploads: once, and only to the signed path.
    let (_, signed) = env
        .call(
            &key,
            Method::POST,
            "/object/upload/sign/private/up.txt",
            None,
        )
        .await;
    let url = signed["url"].as_str().unwrap().to_owned();
    let put = |path: String, body: &'static [u8]| {
        let env = &env;
        async move {
            env.send(
                env.request(Method::PUT, &path, None)
                    .header("content-type", "text/plain")
                    .body(body),
            )
            .await
        }
    };
    // Two uses at once: exactly one succeeds.
    let (first, second) = tokio::join!(put(url.clone(), b"uploaded"), put(url.clone(), b"twice"));
    let mut statuses = [first.status, second.status];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{} {}", first.json(), second.json());
    let kept = if first.status == 200 {
        "uploaded"
    } else {
        "twice"
    };
    let again = put(url.clone(), b"again").await;
    assert_eq!(
        (again.status, again.json()["code"].as_str()),
        (409, Some("signed_upload_used"))
    );
    let token = url.split("token=").nth(1).unwrap();
    let moved = put(
        format!("/object/upload/sign/private/else.txt?token={token}"),
        b"x",
    )
    .await;
    assert_eq!(moved.status, 400);
    assert_eq!(
        env.download(&key, "private/up.txt", &[]).await.bytes,
        kept.as_bytes()
    );
    assert_eq!(env.rows().await, 3);
    assert_eq!(env.blobs().len(), 3);
}

async fn resumable_upload_survives_an_interruption(kind: Kind) {
    let env = start(kind, &[]).await;
    env.bucket(json!({"id": "videos"})).await;
    let key = env.service.clone();
    let content = pattern(0, 300_000);
    let b64 = |text: &str| base64_encode(text.as_bytes());
    let created = env
        .send(
            env.request(Method::POST, "/upload/resumable", Some(&key))
                .header("tus-resumable", "1.0.0")
                .header("upload-length", content.len().to_string())
                .header(
                    "upload-metadata",
                    format!(
                        "bucketName {},objectName {},contentType {}",
                        b64("videos"),
                        b64("clip.bin"),
                        b64("video/mp4")
                    ),
                ),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.json());
    let location = created.header("location").to_owned();
    let id = location.rsplit('/').next().unwrap().to_owned();
    let path = format!("/upload/resumable/{id}");
    let patch = |offset: usize, end: usize| {
        let env = &env;
        let key = key.clone();
        let path = path.clone();
        let body = content[offset..end].to_vec();
        async move {
            env.send(
                env.request(Method::PATCH, &path, Some(&key))
                    .header("tus-resumable", "1.0.0")
                    .header("upload-offset", offset.to_string())
                    .header("content-type", "application/offset+octet-stream")
                    .body(body),
            )
            .await
        }
    };
    let offset_now = || {
        let env = &env;
        let key = key.clone();
        let path = path.clone();
        async move {
            let head = env
                .send(
                    env.request(Method::HEAD, &path, Some(&key))
                        .header("tus-resumable", "1.0.0"),
                )
                .await;
            assert_eq!(head.status, 200);
            head.header("upload-offset").parse::<usize>().unwrap()
        }
    };
    let first = patch(0, 100_000).await;
    assert_eq!(
        (first.status, first.header("upload-offset")),
        (204, "100000")
    );
    // A PATCH cut off mid-body stores nothing.
    let head = format!(
        "PATCH /storage/v1{path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 100000\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: 100000\r\n\r\n"
    );
    raw(&env.basalt, &head, &content[100_000..200_000], 40_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(offset_now().await, 100_000);
    let wrong = patch(150_000, 200_000).await;
    assert_eq!(
        (wrong.status, wrong.json()["code"].as_str()),
        (409, Some("upload_offset_mismatch"))
    );
    let missing_version = env.send(env.request(Method::HEAD, &path, Some(&key))).await;
    assert_eq!(missing_version.status, 412);
    // Two PATCHes at one offset: one counts, the other is told.
    let (one, other) = tokio::join!(patch(100_000, 250_000), patch(100_000, 250_000));
    let mut statuses = [one.status, other.status];
    statuses.sort();
    assert_eq!(statuses, [204, 409]);
    assert_eq!(offset_now().await, 250_000);
    assert_eq!(env.rows().await, 0);
    let last = patch(250_000, 300_000).await;
    assert_eq!((last.status, last.header("upload-offset")), (204, "300000"));
    let got = env.download(&key, "videos/clip.bin", &[]).await;
    assert_eq!(got.bytes, content);
    assert_eq!(got.header("content-type"), "video/mp4");
    // Finished: the upload and its parts are gone.
    let head = env
        .send(
            env.request(Method::HEAD, &path, Some(&key))
                .header("tus-resumable", "1.0.0"),
        )
        .await;
    assert_eq!(head.status, 404);
    assert!(files(&env.backend_root().join("uploads")).is_empty());
    assert_eq!(env.blobs().len(), 1);
    // The path is taken now: a new upload there without x-upsert is refused at once.
    let tus_create = |length: usize| {
        env.request(Method::POST, "/upload/resumable", Some(&key))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", length.to_string())
            .header(
                "upload-metadata",
                format!(
                    "bucketName {},objectName {}",
                    b64("videos"),
                    b64("clip.bin")
                ),
            )
    };
    let taken = env.send(tus_create(10)).await;
    assert_eq!(
        (taken.status, taken.json()["code"].as_str()),
        (409, Some("object_exists"))
    );
    // OPTIONS says what the server speaks; DELETE abandons an upload.
    let options = env
        .send(env.request(Method::OPTIONS, "/upload/resumable", Some(&key)))
        .await;
    assert_eq!(
        (options.status, options.header("tus-version")),
        (204, "1.0.0")
    );
    let abandoned = env.send(tus_create(10).header("x-upsert", "true")).await;
    assert_eq!(abandoned.status, 201);
    let abandoned = abandoned
        .header("location")
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let deleted = env
        .send(
            env.request(
                Method::DELETE,
                &format!("/upload/resumable/{abandoned}"),
                Some(&key),
            )
            .header("tus-resumable", "1.0.0"),
        )
        .await;
    assert_eq!(deleted.status, 204);
    let gone = env
        .send(
            env.request(
                Method::HEAD,
                &format!("/upload/resumable/{abandoned}"),
                Some(&key),
            )
            .header("tus-resumable", "1.0.0"),
        )
        .await;
    assert_eq!(gone.status, 404);
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn permissions_owner_folders_public_buckets_and_anon(kind: Kind) {
    let env = start(kind, &[]).await;
    for bucket in [
        json!({"id": "homes"}),
        json!({"id": "pub", "public": true}),
        json!({"id": "vault"}),
    ] {
        env.bucket(bucket).await;
    }
    let (ann_id, ann) = env.user("ann").await;
    let (bob_id, bob) = env.user("bob").await;
    for action in ["read", "write"] {
        env.policy(json!({"subject": "authenticated", "object": "bucket:homes/*", "action": action, "condition": "folder=eq.{auth.uid}"}))
            .await;
    }
    env.policy(json!({"subject": "authenticated", "object": "bucket:homes/*", "action": "delete", "condition": "owner=eq.{auth.uid}"}))
        .await;
    env.policy(
        json!({"subject": "authenticated", "object": "bucket:pub/shared/*", "action": "write"}),
    )
    .await;
    let fixture = Fixture {
        tokens: HashMap::from([("ann".to_owned(), ann.clone()), ("bob".to_owned(), bob)]),
        vars: HashMap::from([
            ("ann".to_owned(), ann_id.clone()),
            ("bob".to_owned(), bob_id),
        ]),
    };
    let scenarios = Scenario::load("scenarios/storage_permissions.toml");
    Scenario::run_all(&scenarios, &env.basalt, &fixture).await;

    // A user's signed upload URL cannot replace an object that user does not own.
    let (status, _) = env
        .upload(
            &env.service,
            Method::POST,
            &format!("homes/{ann_id}/by-admin.txt"),
            b"admin",
            "text/plain",
        )
        .await;
    assert_eq!(status, 200);
    let signed = env
        .send(
            env.request(
                Method::POST,
                &format!("/object/upload/sign/homes/{ann_id}/by-admin.txt"),
                Some(&ann),
            )
            .header("x-upsert", "true"),
        )
        .await;
    assert_eq!(signed.status, 200, "{}", signed.json());
    let put = env
        .send(
            env.request(Method::PUT, signed.json()["url"].as_str().unwrap(), None)
                .header("content-type", "text/plain")
                .body("hijacked"),
        )
        .await;
    assert_eq!(put.status, 403);
    assert_eq!(
        env.download(&env.service, &format!("homes/{ann_id}/by-admin.txt"), &[])
            .await
            .bytes,
        b"admin"
    );
    assert_eq!(env.rows().await, 3);
}

fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|line| line.starts_with(field))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|n| n.parse().ok())
        .unwrap()
}

async fn a_200_mb_upload_streams_with_flat_memory(kind: Kind) {
    const SIZE: u64 = 200 * 1024 * 1024;
    const CHUNK: usize = 256 * 1024;
    let env = start(kind, &[]).await;
    env.bucket(json!({"id": "big"})).await;
    let key = env.service.clone();
    // Warm up, then measure from here.
    env.upload(
        &key,
        Method::POST,
        "big/warm.bin",
        &pattern(0, 1 << 20),
        "application/octet-stream",
    )
    .await;
    let pid = env.basalt.pid();
    let before = memory_kib(pid, "VmRSS:");
    let chunks = futures_util::stream::iter(
        (0..SIZE / CHUNK as u64).map(|i| Ok::<_, std::io::Error>(pattern(i * CHUNK as u64, CHUNK))),
    );
    let request = env
        .request(Method::POST, "/object/big/large.bin", Some(&key))
        .header("content-type", "application/octet-stream")
        .header("content-length", SIZE.to_string())
        .body(reqwest::Body::wrap_stream(chunks));
    let sent = env.send(request).await;
    assert_eq!(sent.status, 200, "{}", sent.json());
    assert_eq!(sent.json()["size"], SIZE);
    let response = env
        .request(Method::GET, "/object/big/large.bin", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut offset = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        assert!(
            chunk.as_ref() == pattern(offset, chunk.len()).as_slice(),
            "differs near byte {offset}"
        );
        offset += chunk.len() as u64;
    }
    assert_eq!(offset, SIZE);
    let peak = memory_kib(pid, "VmHWM:");
    let grew = peak.saturating_sub(before) / 1024;
    println!(
        "{kind:?}: RSS before {} MiB, peak {} MiB",
        before / 1024,
        peak / 1024
    );
    assert!(
        grew < 64,
        "the server's peak RSS grew by {grew} MiB for a 200 MiB object"
    );
}

async fn orphaned_blobs_and_interrupted_writes_are_cleaned_up(kind: Kind) {
    let env = start(kind, &[("BASALT_STORAGE_ORPHAN_GRACE_SECS", "1")]).await;
    env.bucket(json!({"id": "b"})).await;
    let key = env.service.clone();
    env.upload(&key, Method::POST, "b/kept.txt", b"kept", "text/plain")
        .await;
    env.upload(&key, Method::POST, "b/lost.txt", b"lost", "text/plain")
        .await;
    assert_eq!(env.blobs().len(), 2);
    // A crash after the blob was written and before its metadata committed
    // leaves a blob no row refers to: the same as removing the row.
    env.basalt
        .admin_sql("delete from storage.objects where name = 'lost.txt'")
        .await;
    // An upload cut off mid-body.
    let head = format!(
        "POST /storage/v1/object/b/cut.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/octet-stream\r\nContent-Length: 30000000\r\n\r\n"
    );
    raw(&env.basalt, &head, &vec![1; 30_000_000], 12_000_000).await;
    // A resumable upload with one part stored, then expired.
    let b64 = |text: &str| base64_encode(text.as_bytes());
    let created = env
        .send(
            env.request(Method::POST, "/upload/resumable", Some(&key))
                .header("tus-resumable", "1.0.0")
                .header("upload-length", "10")
                .header(
                    "upload-metadata",
                    format!("bucketName {},objectName {}", b64("b"), b64("late.bin")),
                ),
        )
        .await;
    assert_eq!(created.status, 201);
    let upload = created
        .header("location")
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let patched = env
        .send(
            env.request(
                Method::PATCH,
                &format!("/upload/resumable/{upload}"),
                Some(&key),
            )
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", "0")
            .header("content-type", "application/offset+octet-stream")
            .body("12345"),
        )
        .await;
    assert_eq!(patched.status, 204);
    assert_eq!(files(&env.backend_root().join("uploads")).len(), 1);
    // A spent signed-upload token whose URL expired long ago.
    let (_, signed) = env
        .call(&key, Method::POST, "/object/upload/sign/b/signed.txt", None)
        .await;
    let put = env
        .send(
            env.request(Method::PUT, signed["url"].as_str().unwrap(), None)
                .header("content-type", "text/plain")
                .body("s"),
        )
        .await;
    assert_eq!(put.status, 200);
    env.basalt
        .admin_sql(
            "update storage.resumable_uploads set expires_at = now() - interval '1 second';
                    update storage.spent_upload_tokens set expires_at = now() - interval '2 hours'",
        )
        .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let cleanup = env
        .basalt
        .http
        .post(env.basalt.url("/admin/v1/storage/cleanup"))
        .header("apikey", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(cleanup.status(), 200);
    let swept: Value = cleanup.json().await.unwrap();
    assert_eq!(swept["orphaned_blobs"], 1, "{swept}");
    assert_eq!(
        (
            swept["expired_uploads"].as_u64(),
            swept["spent_tokens"].as_u64()
        ),
        (Some(1), Some(1)),
        "{swept}"
    );
    assert!(files(&env.backend_root().join("uploads")).is_empty());
    assert_eq!(env.blobs().len(), 2);
    assert!(env.leftovers().is_empty(), "{:?}", env.leftovers());
    assert_eq!(env.download(&key, "b/kept.txt", &[]).await.bytes, b"kept");
    let (status, _) = env
        .call(&env.anon, Method::POST, "/object/list/b", Some(json!({})))
        .await;
    assert_eq!(status, 403);
    let denied = env
        .basalt
        .http
        .post(env.basalt.url("/admin/v1/storage/cleanup"))
        .header("apikey", &env.anon)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
}

/// SIGKILL while an upload streams: no metadata was committed, and what the
/// dead process left in the backend is gone after the restarted server's cleanup.
async fn a_crash_mid_upload_leaves_nothing_after_cleanup(kind: Kind) {
    let grace = [("BASALT_STORAGE_ORPHAN_GRACE_SECS", "1")];
    let first = start(kind, &grace).await;
    first.bucket(json!({"id": "b"})).await;
    let key = first.service.clone();
    first
        .upload(&key, Method::POST, "b/kept.txt", b"kept", "text/plain")
        .await;
    let basalt = &first.basalt;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", basalt.port))
        .await
        .unwrap();
    let head = format!(
        "POST /storage/v1/object/b/crash.bin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/octet-stream\r\nContent-Length: 40000000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![3; 20_000_000]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    basalt.signal(nix::sys::signal::Signal::SIGKILL);
    drop(stream);
    let mut restarted = Basalt::builder()
        .database_url(basalt.database_url().unwrap())
        .env("BASALT_DATA_DIR", basalt.data_dir().display().to_string())
        .env(grace[0].0, grace[0].1);
    if let Some(bucket) = &first.s3_bucket {
        for (name, value) in S3Server::shared().env(bucket) {
            restarted = restarted.env(name, value);
        }
    }
    let second = Env {
        basalt: restarted.start().await,
        kind,
        service: key.clone(),
        anon: first.anon.clone(),
        s3_bucket: first.s3_bucket.clone(),
    };
    assert_eq!(second.rows().await, 1);
    assert!(
        !second.leftovers().is_empty(),
        "the crash left no partial write"
    );
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let swept: Value = second
        .basalt
        .http
        .post(second.basalt.url("/admin/v1/storage/cleanup"))
        .header("apikey", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        second.leftovers().is_empty(),
        "{swept}: {:?}",
        second.leftovers()
    );
    assert!(swept["incomplete_writes"].as_u64() >= Some(1), "{swept}");
    assert_eq!(second.blobs().len(), 1, "{swept}");
    assert_eq!(
        second.download(&key, "b/kept.txt", &[]).await.bytes,
        b"kept"
    );
}

async fn object_changes_reach_the_change_feed(kind: Kind) {
    let env = start(kind, &[]).await;
    env.bucket(json!({"id": "fed"})).await;
    let key = env.service.clone();
    env.upload(&key, Method::POST, "fed/a.txt", b"a", "text/plain")
        .await;
    env.call(
        &key,
        Method::POST,
        "/object/move",
        Some(json!({"bucketId": "fed", "sourceKey": "a.txt", "destinationKey": "b.txt"})),
    )
    .await;
    env.call(&key, Method::DELETE, "/object/fed/b.txt", None)
        .await;
    let feed: Value = env
        .basalt
        .http
        .get(env.basalt.url("/admin/v1/changes?after=0"))
        .header("apikey", &key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let changes: Vec<(String, String, String)> = feed["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["schema"] == "storage" && c["table"] == "objects")
        .map(|c| {
            let row = if c["new"].is_null() {
                &c["old"]
            } else {
                &c["new"]
            };
            (
                c["operation"].as_str().unwrap().to_owned(),
                row["bucket_id"].as_str().unwrap().to_owned(),
                row["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expected = [
        ("INSERT", "a.txt"),
        ("UPDATE", "b.txt"),
        ("DELETE", "b.txt"),
    ];
    assert_eq!(
        changes,
        expected.map(|(op, name)| (op.to_owned(), "fed".to_owned(), name.to_owned()))
    );
}

#[tokio::test]
async fn buckets_declared_in_the_config_file_are_reconciled() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("basalt.toml");
    std::fs::write(
        &config,
        "[[storage.buckets]]\nname = \"avatars\"\npublic = true\nfile_size_limit = 2048\nallowed_mime_types = [\"image/*\"]\n",
    )
    .unwrap();
    let basalt = Basalt::builder()
        .env("BASALT_CONFIG", config.display().to_string())
        .start()
        .await;
    let service = basalt.keys().service_role;
    let bucket: Value = basalt
        .http
        .get(basalt.url("/storage/v1/bucket/avatars"))
        .header("apikey", &service)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(bucket["public"], true);
    assert_eq!(bucket["file_size_limit"], 2048);
    assert_eq!(bucket["source"], "config");
    let refused = basalt
        .http
        .delete(basalt.url("/storage/v1/bucket/avatars"))
        .header("apikey", &service)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 409);
}

/// Realtime reacts to storage: with `storage` exposed and a `select` policy
/// on `table:storage.objects`, a user's WebSocket subscription receives the
/// changes of their own objects (and only those columns the policy lists).
#[tokio::test]
async fn realtime_subscribers_see_their_own_object_changes() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let env = start(Kind::Local, &[("BASALT_REST_EXTRA_SCHEMAS", "storage")]).await;
    env.bucket(json!({"id": "homes"})).await;
    let (ann_id, ann) = env.user("ann").await;
    let (bob_id, bob) = env.user("bob").await;
    env.policy(json!({"subject": "authenticated", "object": "channel:*", "action": "*"}))
        .await;
    env.policy(json!({"subject": "authenticated", "object": "table:storage.objects", "action": "select",
        "condition": "owner=eq.{auth.uid}", "columns": ["id", "bucket_id", "name", "owner", "size", "content_type"]}))
        .await;
    env.policy(json!({"subject": "authenticated", "object": "bucket:homes/*", "action": "write", "condition": "folder=eq.{auth.uid}"}))
        .await;
    let url = env
        .basalt
        .url(&format!(
            "/realtime/v1/websocket?apikey={}&access_token={ann}",
            env.anon
        ))
        .replacen("http://", "ws://", 1);
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    socket
        .send(Message::Text(
            json!({"type": "join", "ref": "j", "topic": "files",
                   "postgres_changes": [{"event": "*", "schema": "storage", "table": "objects"}]})
            .to_string(),
        ))
        .await
        .unwrap();
    let ack = next_json(&mut socket).await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert_eq!(next_json(&mut socket).await["type"], "presence_state");
    // Bob's object, owned by Bob, is not delivered to Ann.
    let (status, _) = env
        .upload(
            &bob,
            Method::POST,
            &format!("homes/{bob_id}/b.txt"),
            b"b",
            "text/plain",
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = env
        .upload(
            &ann,
            Method::POST,
            &format!("homes/{ann_id}/a.txt"),
            b"ann",
            "text/plain",
        )
        .await;
    assert_eq!(status, 200);
    let change = next_json(&mut socket).await;
    assert_eq!(change["event"], "INSERT", "{change}");
    assert_eq!(change["record"]["name"], format!("{ann_id}/a.txt"));
    assert_eq!(change["record"]["size"], 3);
    assert!(change["record"].get("blob").is_none(), "{change}");
}

async fn next_json<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a message within 5 s")
            .unwrap()
            .unwrap();
        if let tokio_tungstenite::tungstenite::Message::Text(text) = message {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

/// supabase-js's storage client (`@supabase/storage-js`, pinned in
/// tests/js/package.json and installed by `scripts/test`) makes its calls
/// against a real server; the script checks every answer.
#[tokio::test]
async fn supabase_storage_js_works_against_basalt() {
    let env = start(Kind::Local, &[]).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("js/storage-js.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .env("BASALT_URL", env.basalt.url(""))
        .env("SERVICE_KEY", &env.service)
        .output()
        .await
        .expect("node runs (scripts/test installs it)");
    assert!(
        output.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("all calls answered as expected"));
}
