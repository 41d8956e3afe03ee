//! Move, copy and delete.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::storage) struct Transfer {
    #[serde(rename = "bucketId")]
    bucket_id: String,
    #[serde(rename = "sourceKey")]
    source_key: String,
    #[serde(rename = "destinationKey")]
    destination_key: String,
    #[serde(rename = "destinationBucket")]
    destination_bucket: Option<String>,
}

pub(in crate::storage) struct Endpoints {
    source: Object,
    destination: Bucket,
    name: String,
    decision: Decision,
}

/// Checks both ends of a move or copy: `source_action` on the source object,
/// `write` on the destination, and the destination bucket's limits.
pub(in crate::storage) async fn endpoints(
    state: &AppState,
    caller: &Caller,
    transfer: &Transfer,
    source_action: &str,
) -> Result<Endpoints, HttpError> {
    check_bucket_id(&transfer.bucket_id)?;
    let to_bucket = transfer
        .destination_bucket
        .clone()
        .unwrap_or_else(|| transfer.bucket_id.clone());
    check_bucket_id(&to_bucket)?;
    check_name(&transfer.source_key)?;
    check_name(&transfer.destination_key)?;
    let (_, source) = authorized_object(
        state,
        caller,
        &transfer.bucket_id,
        &transfer.source_key,
        source_action,
    )
    .await?;
    let (destination, decision) = permitted_bucket(
        state,
        caller,
        &to_bucket,
        &transfer.destination_key,
        "write",
    )
    .await?;
    // A copy belongs to its maker; a moved object keeps its owner.
    let owner = if source_action == "read" {
        caller.user.map(|(user, _)| user)
    } else {
        source.owner
    };
    let row = policy_row(
        &destination.id,
        &transfer.destination_key,
        owner,
        Some(source.size),
        Some(&source.content_type),
    );
    if row_allowed(&decision, &row, caller) != Some(true) {
        return Err(denied("write"));
    }
    if source.size as u64 > destination.size_limit(&state.config) {
        return Err(too_large(destination.size_limit(&state.config)));
    }
    check_type(&destination, &source.content_type)?;
    Ok(Endpoints {
        source,
        destination,
        name: transfer.destination_key.clone(),
        decision,
    })
}

/// Renames an object (metadata only; the blob stays). Needs `delete` on the
/// source, as its path is emptied, and `write` on the destination.
pub(in crate::storage) async fn move_object(
    state: Data<AppState>,
    caller: Caller,
    body: Json<Transfer>,
) -> Result<HttpResponse, HttpError> {
    let ends = endpoints(&state, &caller, &body, "delete").await?;
    let client = state.pool.get().await?;
    let moved = store::rename(&client, ends.source.id, &ends.destination.id, &ends.name)
        .await
        .map_err(|error| match error.code() {
            Some(code) if *code == tokio_postgres::error::SqlState::UNIQUE_VIOLATION => {
                exists_error(&ends.destination.id, &ends.name)
            }
            _ => HttpError::from(error),
        })?;
    if !moved {
        return Err(exists_error(&ends.destination.id, &ends.name));
    }
    Ok(HttpResponse::Ok().json(json!({ "message": "Successfully moved" })))
}

/// Copies an object's blob to a new one (the copy is owned by the caller).
pub(in crate::storage) async fn copy_object(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    body: Json<Transfer>,
) -> Result<HttpResponse, HttpError> {
    let ends = endpoints(&state, &caller, &body, "read").await?;
    let mode = Mode::creating(upsert_header(&request));
    if mode == Mode::Create
        && object_row(&state, &ends.destination.id, &ends.name)
            .await?
            .is_some()
    {
        return Err(exists_error(&ends.destination.id, &ends.name));
    }
    let key = new_object_key();
    state
        .storage()
        .backend
        .copy(&ends.source.blob, &key)
        .await
        .map_err(backend_failed)?;
    let content = Content {
        content_type: ends.source.content_type.clone(),
        cache_control: ends.source.cache_control.clone(),
        metadata: ends.source.metadata.clone(),
    };
    let writer = Writer::Caller(&caller, ends.decision);
    let blob = NewBlob {
        key,
        size: ends.source.size,
        checksum: ends.source.checksum.clone(),
    };
    let object = commit(
        &state,
        &ends.destination,
        &ends.name,
        mode,
        &writer,
        blob,
        &content,
    )
    .await?;
    Ok(HttpResponse::Ok().json(json!({
        "Id": object.id, "Key": format!("{}/{}", object.bucket_id, object.name),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::storage) struct DeleteMany {
    prefixes: Vec<String>,
}

/// Deletes the named objects the caller may delete; others (and missing
/// ones) are left out of the answer, which lists what was deleted.
pub(in crate::storage) async fn delete_many(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
    body: Json<DeleteMany>,
) -> Result<HttpResponse, HttpError> {
    let bucket = bucket_param(&request)?;
    let names = body.into_inner().prefixes;
    if names.is_empty() || names.len() > 1000 {
        return Err(invalid("prefixes: send 1 to 1000 object paths"));
    }
    for name in &names {
        check_name(name)?;
    }
    if !names
        .iter()
        .any(|name| decide(&state, &caller, &bucket, name, "delete").allowed)
    {
        return Err(denied("delete"));
    }
    let bucket = find_bucket(&state, &bucket).await?;
    let deleted = delete_objects(&state, &caller, &bucket, &names).await?;
    Ok(HttpResponse::Ok().json(deleted.iter().map(Object::info).collect::<Vec<_>>()))
}

pub(in crate::storage) async fn delete_one(
    state: Data<AppState>,
    request: HttpRequest,
    caller: Caller,
) -> Result<HttpResponse, HttpError> {
    let (bucket, name) = target(&request, "/storage/v1/object/")?;
    let (bucket, _) = permitted_bucket(&state, &caller, &bucket, &name, "delete").await?;
    let deleted = delete_objects(&state, &caller, &bucket, std::slice::from_ref(&name)).await?;
    if deleted.is_empty() {
        return Err(not_found(&bucket.id, &name));
    }
    Ok(HttpResponse::Ok().json(json!({ "message": "Successfully deleted" })))
}

pub(in crate::storage) async fn delete_objects(
    state: &AppState,
    caller: &Caller,
    bucket: &Bucket,
    names: &[String],
) -> Result<Vec<Object>, HttpError> {
    let decisions: HashMap<&str, Decision> = names
        .iter()
        .map(|name| {
            (
                name.as_str(),
                decide(state, caller, &bucket.id, name, "delete"),
            )
        })
        .collect();
    let mut client = state.pool.get().await?;
    let transaction = client.transaction().await?;
    let allowed: Vec<Object> = store::objects(&transaction, &bucket.id, names, true)
        .await?
        .into_iter()
        .filter(|object| {
            decisions.get(object.name.as_str()).is_some_and(|decision| {
                row_allowed(decision, &object.policy_row(), caller) == Some(true)
            })
        })
        .collect();
    let ids: Vec<Uuid> = allowed.iter().map(|object| object.id).collect();
    store::delete(&transaction, &ids).await?;
    transaction.commit().await?;
    drop(client);
    for object in &allowed {
        discard(state, &object.blob).await;
    }
    Ok(allowed)
}
