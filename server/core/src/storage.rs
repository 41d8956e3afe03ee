//! Storage's pure parts: object names and bucket ids (what may reach a
//! backend), byte ranges, `Content-Disposition`, MIME patterns, signed URL
//! tokens and TUS metadata.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The longest object name, in bytes (S3's key limit).
pub const MAX_NAME_BYTES: usize = 1024;

/// Path words that are routes of `/storage/v1/object/`, so no bucket may be named so.
pub const RESERVED_BUCKETS: &[&str] = &[
    "list",
    "sign",
    "public",
    "info",
    "move",
    "copy",
    "upload",
    "authenticated",
];

/// A bucket id: 1-63 of `[a-z0-9._-]`, starting with a letter or digit.
pub fn check_bucket_id(id: &str) -> Result<(), RuleError> {
    let ok = !id.is_empty()
        && id.len() <= 63
        && id.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b));
    if !ok {
        return Err(RuleError::BucketId);
    }
    if RESERVED_BUCKETS.contains(&id) {
        return Err(RuleError::ReservedBucket { id: id.into() });
    }
    Ok(())
}

/// Decodes the percent-encoded object path of a URL, then checks it with [`check_name`].
pub fn name_from_url(raw: &str) -> Result<String, RuleError> {
    let bytes = percent_decode(raw.as_bytes()).ok_or(RuleError::BadPercent)?;
    let name = String::from_utf8(bytes).map_err(|_| RuleError::PathNotUtf8)?;
    check_name(&name)?;
    Ok(name)
}

/// An object name: `/`-separated segments, relative, none empty, `.` or
/// `..`; no backslash, no drive (`C:`) or UNC form, no control character
/// (NUL included), no percent-encoded form of these (a name is decoded once;
/// one still holding `%2e`, `%2f`, `%5c`, `%00`… was encoded twice), at most
/// [`MAX_NAME_BYTES`].
pub fn check_name(name: &str) -> Result<(), RuleError> {
    if name.is_empty() {
        return Err(RuleError::EmptyPath);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(RuleError::LongPath);
    }
    if name.starts_with('/') {
        return Err(RuleError::AbsolutePath);
    }
    if name.contains('\\') {
        return Err(RuleError::Backslash);
    }
    if name.chars().any(char::is_control) {
        return Err(RuleError::ControlCharacter);
    }
    let first = name.split('/').next().unwrap_or_default();
    let bytes = first.as_bytes();
    if bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        return Err(RuleError::DriveLetter);
    }
    for segment in name.split('/') {
        match segment {
            "" => return Err(RuleError::EmptySegment),
            "." | ".." => {
                return Err(RuleError::DotSegment {
                    segment: segment.into(),
                })
            }
            _ => {}
        }
    }
    let lower = name.to_ascii_lowercase();
    for encoded in ["%2e", "%2f", "%5c", "%00", "%25"] {
        if lower.contains(encoded) {
            return Err(RuleError::EncodedPath { encoded });
        }
    }
    Ok(())
}

/// A listing prefix: empty, or a folder path (a trailing `/` is optional);
/// answered with a trailing `/`.
pub fn list_prefix(prefix: &str) -> Result<String, RuleError> {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    check_name(trimmed)?;
    Ok(format!("{trimmed}/"))
}

fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}

/// What a `Range` header asks of an object of `size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// No range, or one this server answers with the whole object (several
    /// ranges, an unknown unit or a malformed header: RFC 9110 lets a
    /// server ignore them).
    Full,
    /// Bytes `start..=end`.
    Part { start: u64, end: u64 },
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

pub fn parse_range(header: Option<&str>, size: u64) -> ByteRange {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return ByteRange::Full;
    };
    if spec.contains(',') {
        return ByteRange::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return ByteRange::Full;
    };
    let number = |text: &str| -> Option<u64> {
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            None
        } else {
            text.parse().ok()
        }
    };
    match (first.is_empty(), last.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match number(last) {
            Some(0) => ByteRange::Unsatisfiable,
            Some(_) if size == 0 => ByteRange::Unsatisfiable,
            Some(n) => ByteRange::Part {
                start: size.saturating_sub(n),
                end: size - 1,
            },
            None => ByteRange::Full,
        },
        (false, _) => {
            let Some(start) = number(first) else {
                return ByteRange::Full;
            };
            let end = if last.is_empty() {
                None
            } else {
                match number(last) {
                    Some(end) if end >= start => Some(end),
                    _ => return ByteRange::Full,
                }
            };
            if start >= size {
                return ByteRange::Unsatisfiable;
            }
            ByteRange::Part {
                start,
                end: end.map_or(size - 1, |end| end.min(size - 1)),
            }
        }
        (true, true) => ByteRange::Full,
    }
}

/// `Content-Disposition` per RFC 6266: an ASCII `filename` (quotes,
/// backslashes and non-ASCII replaced by `_`) and the exact name as UTF-8
/// percent-encoded `filename*`.
/// Bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE and its kin) are
/// replaced by `_` in both forms: `invoice\u{202E}fdp.exe` would otherwise show
/// as `invoiceexe.pdf`.
pub fn content_disposition(attachment: bool, filename: &str) -> String {
    let kind = if attachment { "attachment" } else { "inline" };
    let bidi = |c: char| matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    let filename: String = filename
        .chars()
        .map(|c| if bidi(c) { '_' } else { c })
        .collect();
    let filename = filename.as_str();
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() && c != '"' && c != '\\' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let mut encoded = String::new();
    for byte in filename.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// The `Cache-Control` of a download that only its caller may keep (an
/// authenticated or signed download): shared caches must not store it, so
/// `public` goes and `private` comes first (`no-store` stays as it is).
pub fn private_cache_control(stored: &str) -> String {
    let directives: Vec<&str> = stored
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty() && !d.eq_ignore_ascii_case("public"))
        .filter(|d| !d.eq_ignore_ascii_case("private"))
        .collect();
    if directives
        .iter()
        .any(|d| d.eq_ignore_ascii_case("no-store"))
    {
        return directives.join(", ");
    }
    std::iter::once("private")
        .chain(directives)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The media type without parameters, lowercased: `Text/HTML; charset=x` → `text/html`.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// `type/subtype`, `type/*` or `*/*`.
pub fn valid_mime_pattern(pattern: &str) -> bool {
    let Some((kind, sub)) = pattern.split_once('/') else {
        return false;
    };
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-*".contains(&b))
    };
    token(kind) && token(sub) && (kind != "*" || sub == "*")
}

/// Whether `content_type` is allowed by `patterns` (an empty list allows all).
pub fn mime_allowed(patterns: &[String], content_type: &str) -> bool {
    if patterns.is_empty() {
        return true;
    }
    let essence = essence(content_type);
    let Some((kind, _)) = essence.split_once('/') else {
        return false;
    };
    patterns.iter().any(|pattern| {
        let pattern = pattern.to_ascii_lowercase();
        pattern == "*/*"
            || pattern == essence
            || pattern
                .strip_suffix("/*")
                .is_some_and(|prefix| prefix == kind)
    })
}

/// Content shown inline: types a browser renders without running anything
/// (images but SVG, audio, video, plain text, PDF, JSON). Everything else
/// — HTML, SVG, XML, scripts, unknown types — is served as an attachment
/// under a sandboxing CSP, so an upload cannot script the API's origin.
pub fn inline_safe(content_type: &str) -> bool {
    let essence = essence(content_type);
    let (kind, sub) = essence.split_once('/').unwrap_or(("", ""));
    match kind {
        "image" => !sub.contains("svg") && !sub.contains("xml"),
        "audio" | "video" => true,
        "text" => matches!(sub, "plain" | "csv"),
        "application" => matches!(sub, "pdf" | "json" | "octet-stream"),
        _ => false,
    }
}

/// A stored content type: one `type/subtype` with optional `; name=value`
/// parameters, printable ASCII, no list (a comma would let a browser pick
/// another type than the one checked). Answers it lowercased in its type.
pub fn content_type(text: &str) -> Result<String, RuleError> {
    let text = text.trim();
    let bad = || RuleError::NotAMediaType { text: text.into() };
    if text.len() > 255 || text.contains(',') || !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(bad());
    }
    let mut parts = text.split(';');
    let essence = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
    let token = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => {}
        _ => return Err(bad()),
    }
    let mut normalized = essence;
    for parameter in parts {
        let parameter = parameter.trim();
        match parameter.split_once('=') {
            Some((name, value)) if token(name.trim()) && !value.trim().is_empty() => {
                normalized.push_str("; ");
                normalized.push_str(name.trim());
                normalized.push('=');
                normalized.push_str(value.trim());
            }
            _ => return Err(bad()),
        }
    }
    Ok(normalized)
}

/// A `Cache-Control` value to store: printable ASCII only; a bare number of
/// seconds (as supabase-js sends it) becomes `max-age=<n>`.
pub fn cache_control(text: &str) -> Result<String, RuleError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 256 || !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(RuleError::NotCacheControl { text: text.into() });
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        Ok(format!("max-age={text}"))
    } else {
        Ok(text.to_owned())
    }
}

/// What a signed URL lets its holder do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedToken {
    /// `download` or `upload`.
    pub kind: String,
    pub bucket: String,
    pub name: String,
    /// Unix seconds after which the token is refused.
    pub exp: i64,
    /// A random id (uploads: spent on first use).
    pub id: String,
    /// The signer's user id, the owner of an uploaded object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Uploads: whether the upload may replace an existing object.
    #[serde(default)]
    pub upsert: bool,
    /// Uploads: signed with the service_role key (may replace any object;
    /// a user's token replaces only objects that user owns).
    #[serde(default)]
    pub service: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Invalid,
    Expired,
}

fn mac(key: &[u8], payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    mac.update(b"basalt-storage-url\0");
    mac.update(payload.as_bytes());
    mac
}

/// `payload.signature`, both base64url.
pub fn sign_token(key: &[u8], token: &SignedToken) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(token).expect("serializes"));
    let signature = URL_SAFE_NO_PAD.encode(mac(key, &payload).finalize().into_bytes());
    format!("{payload}.{signature}")
}

/// Checks the signature (in constant time), then the expiry.
pub fn verify_token(key: &[u8], text: &str, now: i64) -> Result<SignedToken, TokenError> {
    let (payload, signature) = text.split_once('.').ok_or(TokenError::Invalid)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| TokenError::Invalid)?;
    mac(key, payload)
        .verify_slice(&signature)
        .map_err(|_| TokenError::Invalid)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Invalid)?;
    let token: SignedToken = serde_json::from_slice(&bytes).map_err(|_| TokenError::Invalid)?;
    if token.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(token)
}

/// TUS `Upload-Metadata`: `key base64value` pairs separated by commas.
pub fn tus_metadata(header: &str) -> Result<Vec<(String, String)>, RuleError> {
    let mut pairs = Vec::new();
    for item in header.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = match item.split_once(' ') {
            Some((key, value)) => (key, value.trim()),
            None => (item, ""),
        };
        let decoded = STANDARD
            .decode(value)
            .map_err(|_| RuleError::MetadataNotBase64 { key: key.into() })?;
        let text = String::from_utf8(decoded)
            .map_err(|_| RuleError::MetadataNotUtf8 { key: key.into() })?;
        pairs.push((key.to_owned(), text));
    }
    Ok(pairs)
}

/// What a storage rule refused: a bucket id (`invalid_bucket_name`), an
/// object path (`invalid_object_name`) or a header's value (`validation_failed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    BucketId,
    ReservedBucket {
        id: String,
    },
    BadPercent,
    PathNotUtf8,
    EmptyPath,
    LongPath,
    AbsolutePath,
    Backslash,
    ControlCharacter,
    DriveLetter,
    EmptySegment,
    DotSegment {
        segment: String,
    },
    /// An encoded separator, dot or NUL left after decoding once.
    EncodedPath {
        encoded: &'static str,
    },
    NotAMediaType {
        text: String,
    },
    NotCacheControl {
        text: String,
    },
    MetadataNotBase64 {
        key: String,
    },
    MetadataNotUtf8 {
        key: String,
    },
}

impl std::fmt::Display for RuleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use RuleError::*;
        match self {
            BucketId => f.write_str("a bucket id is 1-63 lowercase letters, digits, `.`, `_` or `-`, starting with a letter or digit"),
            ReservedBucket { id } => write!(f, "`{id}` is a reserved word"),
            BadPercent => f.write_str("a `%` is not followed by two hex digits"),
            PathNotUtf8 => f.write_str("the path is not UTF-8"),
            EmptyPath => f.write_str("the object path is empty"),
            LongPath => write!(f, "the object path is over {MAX_NAME_BYTES} bytes"),
            AbsolutePath => f.write_str("the object path is absolute (starts with `/`)"),
            Backslash => f.write_str("the object path holds a backslash"),
            ControlCharacter => f.write_str("the object path holds a control character"),
            DriveLetter => f.write_str("the object path starts with a drive letter"),
            EmptySegment => {
                f.write_str("the object path has an empty segment (`//` or a trailing `/`)")
            }
            DotSegment { segment } => write!(f, "the object path has a `{segment}` segment"),
            EncodedPath { encoded } => write!(
                f,
                "the object path holds `{encoded}`, an encoded separator, dot or NUL"
            ),
            NotAMediaType { text } => write!(f, "`{text}` is not one media type such as image/png"),
            NotCacheControl { text } => write!(f, "`{text}` is not a Cache-Control value"),
            MetadataNotBase64 { key } => write!(f, "the value of `{key}` is not base64"),
            MetadataNotUtf8 { key } => write!(f, "`{key}` is not UTF-8"),
        }
    }
}

impl crate::errors::Problem for RuleError {
    fn code(&self) -> crate::errors::ErrorCode {
        use crate::errors::ErrorCode;
        use RuleError::*;
        match self {
            BucketId | ReservedBucket { .. } => ErrorCode::InvalidBucketName,
            NotAMediaType { .. }
            | NotCacheControl { .. }
            | MetadataNotBase64 { .. }
            | MetadataNotUtf8 { .. } => ErrorCode::ValidationFailed,
            _ => ErrorCode::InvalidObjectName,
        }
    }
}

impl std::error::Error for RuleError {}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
