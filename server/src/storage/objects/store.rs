//! Every statement over `storage.objects` and `storage.spent_upload_tokens`
//! the object routes run. Handlers decide (bucket, policy, condition) and
//! shape answers; the blobs themselves are the backend's.

use super::{Content, NewBlob};
use crate::error::HttpError;
use crate::storage::{Object, OBJECT_COLUMNS};
use basalt_core::filter::sql::Param;
use deadpool_postgres::GenericClient;
use serde_json::Value;
use uuid::Uuid;

type Result<T> = std::result::Result<T, HttpError>;

/// The object `bucket/name`, its row locked when `lock` (for a change).
pub async fn object(
    client: &impl GenericClient,
    bucket: &str,
    name: &str,
    lock: bool,
) -> Result<Option<Object>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    Ok(client
        .query_opt(
            &format!(
                "SELECT {OBJECT_COLUMNS} FROM storage.objects WHERE bucket_id = $1 AND name = $2{lock}"
            ),
            &[&bucket, &name],
        )
        .await?
        .map(|row| Object::from_row(&row)))
}

/// The objects of `bucket` with these names (those that exist), their rows
/// locked when `lock`.
pub async fn objects(
    client: &impl GenericClient,
    bucket: &str,
    names: &[String],
    lock: bool,
) -> Result<Vec<Object>> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    Ok(client
        .query(
            &format!(
                "SELECT {OBJECT_COLUMNS} FROM storage.objects WHERE bucket_id = $1 AND name = ANY($2){lock}"
            ),
            &[&bucket, &names],
        )
        .await?
        .iter()
        .map(Object::from_row)
        .collect())
}

/// Whether any row refers to the blob `key`.
pub async fn blob_referenced(client: &impl GenericClient, key: &str) -> Result<bool> {
    Ok(client
        .query_opt("SELECT 1 FROM storage.objects WHERE blob = $1", &[&key])
        .await?
        .is_some())
}

/// A new row for `bucket/name`, or `None` when the bucket is gone (the
/// bucket row is held `FOR SHARE` until the commit).
pub async fn insert(
    client: &impl GenericClient,
    bucket: &str,
    name: &str,
    owner: Option<Uuid>,
    blob: &NewBlob,
    content: &Content,
    metadata: &Value,
) -> Result<Option<Object>> {
    Ok(client
        .query_opt(
            &format!(
                "INSERT INTO storage.objects (id, bucket_id, name, owner, blob, size,
                     content_type, cache_control, checksum, metadata)
                 SELECT $1, id, $3, $4, $5, $6, $7, $8, $9, $10
                 FROM storage.buckets WHERE id = $2 FOR SHARE
                 RETURNING {OBJECT_COLUMNS}"
            ),
            &[
                &Uuid::new_v4(),
                &bucket,
                &name,
                &owner,
                &blob.key,
                &blob.size,
                &content.content_type,
                &content.cache_control,
                &blob.checksum,
                metadata,
            ],
        )
        .await?
        .map(|row| Object::from_row(&row)))
}

/// Points the object `id` at a new blob, with its content's attributes.
pub async fn replace(
    client: &impl GenericClient,
    id: Uuid,
    blob: &NewBlob,
    content: &Content,
    metadata: &Value,
) -> Result<Object> {
    let row = client
        .query_one(
            &format!(
                "UPDATE storage.objects SET blob = $2, size = $3, content_type = $4,
                     cache_control = $5, checksum = $6, metadata = $7,
                     version = version + 1, updated_at = now()
                 WHERE id = $1 RETURNING {OBJECT_COLUMNS}"
            ),
            &[
                &id,
                &blob.key,
                &blob.size,
                &content.content_type,
                &content.cache_control,
                &blob.checksum,
                metadata,
            ],
        )
        .await?;
    Ok(Object::from_row(&row))
}

/// Renames the object `id` unless its new path is taken; whether it moved.
/// A concurrent move to the same path is the driver's unique violation.
pub async fn rename(
    client: &impl GenericClient,
    id: Uuid,
    bucket: &str,
    name: &str,
) -> std::result::Result<bool, tokio_postgres::Error> {
    Ok(client
        .execute(
            "UPDATE storage.objects SET bucket_id = $2, name = $3, updated_at = now()
             WHERE id = $1 AND NOT EXISTS (
                 SELECT 1 FROM storage.objects WHERE bucket_id = $2 AND name = $3)",
            &[&id, &bucket, &name],
        )
        .await?
        > 0)
}

pub async fn delete(client: &impl GenericClient, ids: &[Uuid]) -> Result<()> {
    client
        .execute("DELETE FROM storage.objects WHERE id = ANY($1)", &[&ids])
        .await?;
    Ok(())
}

/// Whether a signed upload's token was already used.
pub async fn token_spent(client: &impl GenericClient, id: &str) -> Result<bool> {
    Ok(client
        .query_opt(
            "SELECT 1 FROM storage.spent_upload_tokens WHERE id = $1",
            &[&id],
        )
        .await?
        .is_some())
}

/// Spends a signed upload's token (kept until it expires); false when it
/// was spent already.
pub async fn spend_token(client: &impl GenericClient, id: &str, expires: i64) -> Result<bool> {
    Ok(client
        .execute(
            "INSERT INTO storage.spent_upload_tokens (id, expires_at)
             VALUES ($1, to_timestamp($2)) ON CONFLICT DO NOTHING",
            &[&id, &(expires as f64)],
        )
        .await?
        > 0)
}

/// One page of a folder listing: the entries directly under `$2` (the
/// prefix) in bucket `$1` that `condition` (SQL over `o`, from the policy)
/// lets the caller see; `$3` a search text, `$4`/`$5` limit and offset, `$6`
/// the prefix as a `LIKE` pattern. `sort` and `order` are fixed words.
pub async fn list(
    client: &impl GenericClient,
    condition: &str,
    sort: &str,
    order: &str,
    params: Vec<Param>,
) -> Result<Vec<tokio_postgres::Row>> {
    let statement = format!(
        "WITH visible AS (
             SELECT o.*, substr(o.name, char_length($2::text) + 1) AS rest
             FROM storage.objects o
             WHERE o.bucket_id = $1::text AND o.name LIKE $6::text AND ({condition})
         ), entries AS (
             SELECT split_part(rest, '/', 1) AS entry, true AS folder, NULL::uuid AS id,
                    NULL::timestamptz AS created_at, NULL::timestamptz AS updated_at,
                    NULL::bigint AS size, NULL::text AS content_type,
                    NULL::text AS cache_control, NULL::text AS checksum
             FROM visible WHERE strpos(rest, '/') > 0 GROUP BY 1
             UNION ALL
             SELECT rest, false, id, created_at, updated_at, size, content_type, cache_control, checksum
             FROM visible WHERE strpos(rest, '/') = 0
         )
         SELECT entry, folder, id, created_at, updated_at, size, content_type, cache_control, checksum
         FROM entries
         WHERE $3::text = '' OR strpos(lower(entry), lower($3::text)) > 0
         ORDER BY {sort} {order} NULLS LAST, entry
         LIMIT $4::text::bigint OFFSET $5::text::bigint"
    );
    let values = crate::rest::boxed(params);
    Ok(client
        .query(&statement, &crate::rest::references(&values))
        .await?)
}
