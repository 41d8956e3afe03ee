//! Query-string and path parameters: their extractors' failures answered in
//! the catalogue's shape (never the framework's `text/plain`), and an empty
//! value read as absent (`?page=&per_page=`, as supabase-js sends them).

use crate::error::HttpError;
use actix_web::{error, HttpRequest};
use basalt_core::errors::{ApiError, ErrorCode};
use serde::{Deserialize, Deserializer};
use std::str::FromStr;

/// `400 invalid_request` naming what part of the request was malformed.
fn invalid(what: &str, cause: impl std::fmt::Display) -> actix_web::Error {
    HttpError::from(
        ApiError::new(ErrorCode::InvalidRequest).with_details(format!("{what}: {cause}")),
    )
    .into()
}

pub fn query_error(error: error::QueryPayloadError, _: &HttpRequest) -> actix_web::Error {
    invalid("query string", error)
}

pub fn path_error(error: error::PathError, _: &HttpRequest) -> actix_web::Error {
    invalid("path", error)
}

pub fn form_error(error: error::UrlencodedError, _: &HttpRequest) -> actix_web::Error {
    invalid("form body", error)
}

/// An optional parameter whose empty value means absent.
pub fn empty_as_none<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match Option::<String>::deserialize(deserializer)? {
        None => Ok(None),
        Some(text) if text.trim().is_empty() => Ok(None),
        Some(text) => text
            .trim()
            .parse()
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}
