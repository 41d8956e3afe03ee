//! Listing a bucket's objects under a prefix, with the caller's row condition compiled into the SQL.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::storage) struct ListRequest {
    #[serde(default)]
    prefix: String,
    limit: Option<i64>,
    offset: Option<i64>,
    #[serde(rename = "sortBy")]
    sort_by: Option<SortBy>,
    #[serde(default)]
    search: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::storage) struct SortBy {
    column: String,
    #[serde(default)]
    order: Option<String>,
}

/// The columns of `storage.objects` a listing's policy condition may use.
pub(in crate::storage) struct ObjectColumns;

impl Columns for ObjectColumns {
    fn resolve(&self, name: &str, _: &mut Vec<Param>) -> Result<Column, FilterError> {
        let (sql, type_name) = match name {
            "bucket_id" => ("o.bucket_id", "text"),
            "name" => ("o.name", "text"),
            "owner" => ("o.owner", "uuid"),
            "folder" => ("NULLIF(split_part(o.name, '/', 1), o.name)", "text"),
            "size" => ("o.size", "bigint"),
            "content_type" => ("o.content_type", "text"),
            other => {
                return Err(FilterError::UnusableColumn {
                    column: other.into(),
                    by: "storage policies",
                })
            }
        };
        Ok(Column {
            sql: sql.into(),
            type_name: type_name.into(),
        })
    }
}

/// Folders and files directly under `prefix`, the way Supabase lists them:
/// folders carry only a name. Only objects the caller may `read` count.
pub(in crate::storage) async fn list(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    body: Json<ListRequest>,
) -> Result<HttpResponse, HttpError> {
    let bucket = bucket_param(&request)?;
    let body = body.into_inner();
    let prefix = rules::list_prefix(&body.prefix)?;
    let limit = body.limit.unwrap_or(100);
    let offset = body.offset.unwrap_or(0);
    if !(1..=1000).contains(&limit) || offset < 0 {
        return Err(invalid("limit is 1 to 1000 and offset at least 0"));
    }
    let (sort, order) = match &body.sort_by {
        None => ("entry", "ASC"),
        Some(sort) => {
            let column = match sort.column.as_str() {
                "name" => "entry",
                "created_at" => "created_at",
                "updated_at" => "updated_at",
                other => {
                    return Err(invalid(format!(
                        "sortBy.column `{other}`: use name, created_at or updated_at"
                    )))
                }
            };
            let order = match sort
                .order
                .as_deref()
                .unwrap_or("asc")
                .to_ascii_lowercase()
                .as_str()
            {
                "asc" => "ASC",
                "desc" => "DESC",
                other => return Err(invalid(format!("sortBy.order `{other}`: use asc or desc"))),
            };
            (column, order)
        }
    };
    let decision = decide(&state, &caller, &bucket, &prefix, "read");
    if !decision.allowed {
        return Err(denied("read"));
    }
    let bucket = find_bucket(&state, &bucket).await?;
    let mut params = vec![
        Param::Text(Some(bucket.id.clone())),
        Param::Text(Some(prefix.clone())),
        Param::Text(Some(body.search.clone())),
        Param::Text(Some(limit.to_string())),
        Param::Text(Some(offset.to_string())),
        // `LIKE 'prefix%'` can use the (bucket_id, name text_pattern_ops) index.
        Param::Text(Some(format!(
            "{}%",
            prefix
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        ))),
    ];
    let condition = match &decision.condition {
        None => "TRUE".to_owned(),
        Some(expr) => {
            let uid = caller.user.map(|(user, _)| user.to_string());
            sql::to_sql(
                expr,
                &ObjectColumns,
                &crate::rest::variables(&caller, &uid),
                &mut params,
            )
            .map_err(|e| {
                HttpError::from(
                    ApiError::new(ErrorCode::InvalidRequest).with_details(e.to_string()),
                )
            })?
        }
    };
    let rows = store::list(&state.pool.get().await?, &condition, sort, order, params).await?;
    let entries: Vec<Value> = rows
        .iter()
        .map(|row| {
            let folder: bool = row.get(1);
            if folder {
                json!({"name": row.get::<_, String>(0), "id": null, "created_at": null, "updated_at": null, "metadata": null})
            } else {
                let updated: chrono::DateTime<chrono::Utc> = row.get(4);
                json!({
                    "name": row.get::<_, String>(0), "id": row.get::<_, Uuid>(2),
                    "created_at": row.get::<_, chrono::DateTime<chrono::Utc>>(3), "updated_at": updated,
                    "metadata": {
                        "size": row.get::<_, i64>(5), "mimetype": row.get::<_, String>(6),
                        "cacheControl": row.get::<_, String>(7),
                        "eTag": format!("\"{}\"", row.get::<_, String>(8)),
                        "lastModified": updated, "contentLength": row.get::<_, i64>(5),
                    },
                })
            }
        })
        .collect();
    Ok(HttpResponse::Ok().json(entries))
}
