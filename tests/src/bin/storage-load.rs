//! The storage throughput tool: uploads and downloads 1 MB and 100 MB
//! objects through Basalt, on a local-disk Basalt and an S3 Basalt, beside
//! the raw throughput of the same disk (write + fsync, read) and of the same
//! S3 server (PutObject/GetObject with aws-sdk-s3). Bounded in sizes and
//! repetitions.
//!
//! storage-load <local Basalt URL> <its service_role key> <S3 Basalt URL> <its service_role key>
//!              <scratch dir> <S3 endpoint> <S3 bucket> <access key> <secret key>
//!
//! Prints a Markdown table; `bench/run` runs it, results are in docs/benchmarks.md.

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use futures_util::StreamExt;
use std::io::{Read, Write};
use std::time::Instant;

const MB: usize = 1_000_000;

fn payload(size: usize) -> Vec<u8> {
    (0..size).map(|i| (i % 251) as u8).collect()
}

/// (size, repetitions)
const CASES: [(usize, usize); 2] = [(MB, 20), (100 * MB, 2)];

fn rate(bytes: usize, seconds: f64) -> f64 {
    bytes as f64 / MB as f64 / seconds
}

async fn basalt(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    size: usize,
    times: usize,
) -> (f64, f64) {
    let body = bytes::Bytes::from(payload(size));
    let mut up = 0.0;
    let mut down = 0.0;
    for i in 0..times {
        let url = format!("{base}/storage/v1/object/bench/{size}-{i}.bin");
        let started = Instant::now();
        let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = body
            .chunks(256 * 1024)
            .map(|c| Ok(body.slice_ref(c)))
            .collect();
        let response = http
            .post(&url)
            .header("apikey", key)
            .header("content-type", "application/octet-stream")
            .header("content-length", size.to_string())
            .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
                chunks,
            )))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().await.unwrap()
        );
        up += started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut stream = http
            .get(&url)
            .header("apikey", key)
            .send()
            .await
            .unwrap()
            .bytes_stream();
        let mut received = 0;
        while let Some(chunk) = stream.next().await {
            received += chunk.unwrap().len();
        }
        assert_eq!(received, size);
        down += started.elapsed().as_secs_f64();
    }
    (rate(size * times, up), rate(size * times, down))
}

fn disk(dir: &std::path::Path, size: usize, times: usize) -> (f64, f64) {
    let body = payload(size);
    let mut up = 0.0;
    let mut down = 0.0;
    for i in 0..times {
        let path = dir.join(format!("raw-{size}-{i}"));
        let started = Instant::now();
        let mut file = std::fs::File::create(&path).unwrap();
        for chunk in body.chunks(256 * 1024) {
            file.write_all(chunk).unwrap();
        }
        file.sync_all().unwrap();
        up += started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut file = std::fs::File::open(&path).unwrap();
        let mut buffer = vec![0; 256 * 1024];
        let mut received = 0;
        loop {
            let n = file.read(&mut buffer).unwrap();
            if n == 0 {
                break;
            }
            received += n;
        }
        assert_eq!(received, size);
        down += started.elapsed().as_secs_f64();
        std::fs::remove_file(path).unwrap();
    }
    (rate(size * times, up), rate(size * times, down))
}

async fn s3(client: &aws_sdk_s3::Client, bucket: &str, size: usize, times: usize) -> (f64, f64) {
    let body = bytes::Bytes::from(payload(size));
    let mut up = 0.0;
    let mut down = 0.0;
    for i in 0..times {
        let key = format!("raw/{size}-{i}");
        let started = Instant::now();
        client
            .put_object()
            .bucket(bucket)
            .key(&key)
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .unwrap();
        up += started.elapsed().as_secs_f64();
        let started = Instant::now();
        let mut object = client
            .get_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap()
            .body;
        let mut received = 0;
        while let Some(chunk) = object.try_next().await.unwrap() {
            received += chunk.len();
        }
        assert_eq!(received, size);
        down += started.elapsed().as_secs_f64();
        client
            .delete_object()
            .bucket(bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
    }
    (rate(size * times, up), rate(size * times, down))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, local, local_key, on_s3, s3_key, scratch, endpoint, bucket, access, secret] =
        args.as_slice()
    else {
        eprintln!("usage: storage-load <local URL> <key> <S3 URL> <key> <scratch dir> <S3 endpoint> <S3 bucket> <access key> <secret key>");
        std::process::exit(2);
    };
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new(access, secret, None, None, "bench"))
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    let client = aws_sdk_s3::Client::from_conf(config);
    for (base, key) in [(local, local_key), (on_s3, s3_key)] {
        let response = http
            .post(format!("{base}/storage/v1/bucket"))
            .header("apikey", key)
            .json(&serde_json::json!({"id": "bench"}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success() || response.status() == 409);
    }
    println!("| object | raw disk up / down | Basalt on disk up / down | raw S3 server up / down | Basalt on S3 up / down | Basalt ÷ raw (disk; S3), up / down |");
    println!("|---|---|---|---|---|---|");
    for (size, times) in CASES {
        let raw_disk = disk(std::path::Path::new(scratch), size, times);
        let on_disk = basalt(&http, local, local_key, size, times).await;
        let raw_s3 = s3(&client, bucket, size, times).await;
        let basalt_s3 = basalt(&http, on_s3, s3_key, size, times).await;
        println!(
            "| {} MB ×{times} | {:.0} / {:.0} MB/s | {:.0} / {:.0} MB/s | {:.0} / {:.0} MB/s | {:.0} / {:.0} MB/s | {:.2} / {:.2}; {:.2} / {:.2} |",
            size / MB,
            raw_disk.0, raw_disk.1, on_disk.0, on_disk.1, raw_s3.0, raw_s3.1, basalt_s3.0, basalt_s3.1,
            on_disk.0 / raw_disk.0, on_disk.1 / raw_disk.1, basalt_s3.0 / raw_s3.0, basalt_s3.1 / raw_s3.1,
        );
    }
}
