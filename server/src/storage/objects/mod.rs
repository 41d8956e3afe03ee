//! `/storage/v1/object/…`: uploads (raw or multipart, streamed with limits),
//! downloads (ranges, conditional requests, safe dispositions), info,
//! listing, move, copy, delete and signed URLs: the routes and what the
//! parts share here, each part in its own file.

mod download;
mod listing;
mod manage;
mod signing;
mod store;
mod upload;

pub(super) use download::*;
pub(super) use listing::*;
pub(super) use manage::*;
pub(super) use signing::*;
pub(super) use upload::*;

use super::backend::{new_object_key, BlobWriter};
use super::TRANSFER_LIMITS;
use super::{
    backend_failed, decide, denied, find_bucket, invalid, policy_row, row_allowed, Bucket, Object,
};
use crate::authz::engine::Decision;
use crate::error::HttpError;
use crate::http::{limited_resource, resource};
use crate::identity::Caller;
use crate::state::AppState;
use actix_web::http::header::{self, HeaderValue, HttpDate};
use actix_web::http::{Method, StatusCode};
use actix_web::web::{self, Data, Json, Payload, Query};
use actix_web::{HttpRequest, HttpResponse};
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::filter::sql::{self, Column, Columns, Param};
use basalt_core::filter::FilterError;
use basalt_core::storage::{
    self as rules, check_bucket_id, check_name, name_from_url, ByteRange, SignedToken, TokenError,
};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::pin::Pin;
use std::time::SystemTime;
use uuid::Uuid;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .service(resource("/storage/v1/object/list/{bucket}").route(web::post().to(list)))
        .service(resource("/storage/v1/object/move").route(web::post().to(move_object)))
        .service(resource("/storage/v1/object/copy").route(web::post().to(copy_object)))
        .service(
            limited_resource("/storage/v1/object/sign/{bucket}", TRANSFER_LIMITS)
                .route(web::post().to(sign_many)),
        )
        .service(
            limited_resource(
                "/storage/v1/object/sign/{bucket}/{name:.*}",
                TRANSFER_LIMITS,
            )
            .route(web::post().to(sign))
            .route(web::get().to(signed_download))
            .route(web::head().to(signed_download)),
        )
        .service(
            limited_resource(
                "/storage/v1/object/upload/sign/{bucket}/{name:.*}",
                TRANSFER_LIMITS,
            )
            .route(web::post().to(sign_upload))
            .route(web::put().to(signed_upload)),
        )
        .service(resource("/storage/v1/object/info/{bucket}/{name:.*}").route(web::get().to(info)))
        .service(
            limited_resource(
                "/storage/v1/object/public/{bucket}/{name:.*}",
                TRANSFER_LIMITS,
            )
            .route(web::get().to(public_download))
            .route(web::head().to(public_download)),
        )
        .service(
            limited_resource(
                "/storage/v1/object/authenticated/{bucket}/{name:.*}",
                TRANSFER_LIMITS,
            )
            .route(web::get().to(download))
            .route(web::head().to(download)),
        )
        .service(
            limited_resource("/storage/v1/object/{bucket}", TRANSFER_LIMITS)
                .route(web::delete().to(delete_many)),
        )
        .service(
            limited_resource("/storage/v1/object/{bucket}/{name:.*}", TRANSFER_LIMITS)
                .route(web::post().to(upload_create))
                .route(web::put().to(upload_replace))
                .route(web::get().to(download))
                .route(web::head().to(download))
                .route(web::delete().to(delete_one)),
        );
}

/// The `{bucket}` of a route without an object path.
fn bucket_param(request: &HttpRequest) -> Result<String, HttpError> {
    let bucket = request.match_info().get("bucket").unwrap_or_default();
    check_bucket_id(bucket)?;
    Ok(bucket.to_owned())
}

/// The bucket and object name of a request, from the raw (still
/// percent-encoded) path after `prefix`, so each is decoded exactly once.
fn target(request: &HttpRequest, prefix: &str) -> Result<(String, String), HttpError> {
    let path = request.uri().path();
    let rest = path.strip_prefix(prefix).unwrap_or_default();
    let (bucket, name) = rest.split_once('/').unwrap_or((rest, ""));
    check_bucket_id(bucket)?;
    let name = name_from_url(name)?;
    Ok((bucket.to_owned(), name))
}

pub(super) async fn object_row(
    state: &AppState,
    bucket: &str,
    name: &str,
) -> Result<Option<Object>, HttpError> {
    store::object(&state.pool.get().await?, bucket, name, false).await
}

async fn find_object(state: &AppState, bucket: &str, name: &str) -> Result<Object, HttpError> {
    object_row(state, bucket, name)
        .await?
        .ok_or_else(|| not_found(bucket, name))
}

fn not_found(bucket: &str, name: &str) -> HttpError {
    ApiError::new(ErrorCode::ObjectNotFound)
        .with_details(format!("{bucket}/{name}"))
        .into()
}

/// The bucket, once the caller may `action` in it at `path`: decided before
/// the bucket is looked up, so a caller without any policy gets 403 whether
/// the bucket exists or not. A public bucket's objects may be read by anyone.
async fn permitted_bucket(
    state: &AppState,
    caller: &Caller,
    id: &str,
    path: &str,
    action: &str,
) -> Result<(Bucket, Decision), HttpError> {
    let decision = decide(state, caller, id, path, action);
    if decision.allowed {
        return Ok((find_bucket(state, id).await?, decision));
    }
    match find_bucket(state, id).await {
        Ok(bucket) if action == "read" && bucket.public => Ok((bucket, decision)),
        _ => Err(denied(action)),
    }
}

/// The object if the caller may `action` it: no policy at all is 403; a
/// policy whose condition excludes the object answers as if it were absent.
async fn authorized_object(
    state: &AppState,
    caller: &Caller,
    bucket: &str,
    name: &str,
    action: &str,
) -> Result<(Bucket, Object), HttpError> {
    let (bucket, decision) = permitted_bucket(state, caller, bucket, name, action).await?;
    let object = find_object(state, &bucket.id, name).await?;
    if !may(&bucket, &decision, &object, caller, action) {
        return Err(not_found(&bucket.id, name));
    }
    Ok((bucket, object))
}

/// Whether `decision` lets the caller `action` this object: its row
/// condition holds, or it is a read in a public bucket.
fn may(
    bucket: &Bucket,
    decision: &Decision,
    object: &Object,
    caller: &Caller,
    action: &str,
) -> bool {
    (action == "read" && bucket.public)
        || row_allowed(decision, &object.policy_row(), caller) == Some(true)
}
