//! `GET /rest/v1/`: an OpenAPI 3.0 document generated from the schema cache,
//! describing only what the caller may do: a table appears with the
//! operations its policies allow, a function when it may be executed.

use super::plan::Table;
use super::schema::{Function, Schema};
use serde_json::{json, Map, Value};

/// A PostgreSQL type as a JSON Schema.
fn type_schema(type_name: &str) -> Value {
    if let Some(element) = type_name.strip_suffix("[]") {
        return json!({"type": "array", "items": type_schema(element)});
    }
    let base = type_name.split('(').next().unwrap_or(type_name).trim();
    match base {
        "smallint" | "integer" => json!({"type": "integer", "format": "int32"}),
        "bigint" => json!({"type": "integer", "format": "int64"}),
        "real" => json!({"type": "number", "format": "float"}),
        "double precision" => json!({"type": "number", "format": "double"}),
        "numeric" => json!({"type": "number"}),
        "boolean" => json!({"type": "boolean"}),
        "uuid" => json!({"type": "string", "format": "uuid"}),
        "date" => json!({"type": "string", "format": "date"}),
        "timestamp with time zone" | "timestamp without time zone" => {
            json!({"type": "string", "format": "date-time"})
        }
        "json" | "jsonb" => json!({}),
        _ => json!({"type": "string"}),
    }
    .as_object()
    .map(|o| {
        let mut o = o.clone();
        o.insert("description".into(), Value::String(type_name.to_owned()));
        Value::Object(o)
    })
    .unwrap_or_default()
}

fn table_schema(table: &Table, columns: Option<&[String]>) -> Value {
    let properties: Map<String, Value> = table
        .columns
        .iter()
        .filter(|(name, _)| columns.is_none_or(|visible| visible.contains(name)))
        .map(|(name, type_name)| (name.clone(), type_schema(type_name)))
        .collect();
    json!({"type": "object", "properties": properties})
}

fn reference(kind: &str, name: &str) -> Value {
    // JSON pointer escaping (RFC 6901) for names with `/` or `~`.
    let escaped = name.replace('~', "~0").replace('/', "~1");
    json!({"$ref": format!("#/components/{kind}/{escaped}")})
}

fn common_parameters() -> Value {
    let query = |name: &str, description: &str| json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"}, "description": description});
    let header = |name: &str, description: &str| json!({"name": name, "in": "header", "required": false, "schema": {"type": "string"}, "description": description});
    json!({
        "select": query("select", "Columns, renames (alias:col), casts (col::text), JSON paths (data->a->>b) and embedded resources (author(name))."),
        "order": query("order", "col.asc|desc[.nullsfirst|nullslast], comma-separated."),
        "limit": {"name": "limit", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}, "description": "The page size (capped by rest.max_rows)."},
        "offset": {"name": "offset", "in": "query", "required": false, "schema": {"type": "integer", "minimum": 0}},
        "cursor": query("cursor", "Keyset pagination: empty for the first page, then the Basalt-Next-Cursor of the previous page."),
        "on_conflict": query("on_conflict", "Unique columns an upsert resolves conflicts on (default: the primary key)."),
        "columns": query("columns", "The body keys an insert reads."),
        "range": header("Range", "Rows first-last, e.g. 0-9 (206 Partial Content, 416 past the end)."),
        "prefer": header("Prefer", "return=minimal|headers-only|representation, count=exact|planned|estimated, resolution=merge-duplicates|ignore-duplicates, missing=default, max-affected=N."),
        "idempotencyKey": header("Idempotency-Key", "Replays the stored response of a write sent again with this key."),
    })
}

fn table_paths(table: &Table, allowed: &dyn Fn(&str) -> bool) -> Value {
    let schema_ref = reference("schemas", &table.name);
    let filters: Vec<Value> = table
        .columns
        .iter()
        .map(|(name, type_name)| {
            json!({"name": name, "in": "query", "required": false, "schema": {"type": "string"},
                   "description": format!("Filter on {name} ({type_name}): op.value, e.g. eq.1, in.(1,2), is.null.")})
        })
        .collect();
    let with = |names: &[&str]| -> Vec<Value> {
        let mut list: Vec<Value> = names.iter().map(|n| reference("parameters", n)).collect();
        list.extend(filters.iter().cloned());
        list
    };
    let rows = json!({"type": "array", "items": schema_ref});
    let error = json!({"description": "An error: {code, message, details, hint}", "content": {"application/json": {"schema": reference("schemas", "Error")}}});
    let mut item = Map::new();
    if allowed("select") {
        item.insert("get".into(), json!({
            "summary": format!("Read rows of {}", table.name),
            "parameters": with(&["select", "order", "limit", "offset", "cursor", "range", "prefer"]),
            "responses": {
                "200": {"description": "The rows", "content": {"application/json": {"schema": rows}, "text/csv": {"schema": {"type": "string"}}}},
                "206": {"description": "A page of the rows (Content-Range has the total)", "content": {"application/json": {"schema": rows}}},
                "400": error, "401": error, "403": error, "416": error
            }
        }));
    }
    let body = json!({"required": true, "content": {"application/json": {"schema": {"oneOf": [schema_ref, rows]}}}});
    let written = json!({"description": "Nothing (return=minimal)"});
    if allowed("insert") {
        item.insert("post".into(), json!({
            "summary": format!("Insert (or upsert) rows into {}", table.name),
            "parameters": [reference("parameters", "select"), reference("parameters", "columns"), reference("parameters", "on_conflict"), reference("parameters", "prefer"), reference("parameters", "idempotencyKey")],
            "requestBody": body,
            "responses": {"201": {"description": "Created; the rows with return=representation", "content": {"application/json": {"schema": rows}}}, "400": error, "401": error, "403": error, "409": error}
        }));
        if !table.primary_key.is_empty() && allowed("update") {
            item.insert("put".into(), json!({
                "summary": format!("Create or replace one row of {} by primary key", table.name),
                "parameters": with(&["prefer", "idempotencyKey"]),
                "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref}}},
                "responses": {"200": {"description": "The row (return=representation)", "content": {"application/json": {"schema": rows}}}, "204": written, "400": error}
            }));
        }
    }
    if allowed("update") {
        item.insert("patch".into(), json!({
            "summary": format!("Update filtered rows of {}", table.name),
            "parameters": with(&["prefer", "idempotencyKey"]),
            "requestBody": {"required": true, "content": {"application/json": {"schema": schema_ref}}},
            "responses": {"200": {"description": "The rows (return=representation)", "content": {"application/json": {"schema": rows}}}, "204": written, "400": error, "403": error}
        }));
    }
    if allowed("delete") {
        item.insert("delete".into(), json!({
            "summary": format!("Delete filtered rows of {}", table.name),
            "parameters": with(&["prefer", "idempotencyKey"]),
            "responses": {"200": {"description": "The rows (return=representation)", "content": {"application/json": {"schema": rows}}}, "204": written, "400": error, "403": error}
        }));
    }
    Value::Object(item)
}

fn function_path(function: &Function) -> Value {
    let properties: Map<String, Value> = function
        .args
        .iter()
        .map(|(name, type_name)| (name.clone(), type_schema(type_name)))
        .collect();
    let required: Vec<&String> = function.args[..function.args.len() - function.defaults]
        .iter()
        .map(|(name, _)| name)
        .collect();
    let mut body = json!({"type": "object", "properties": properties});
    if !required.is_empty() {
        body["required"] = json!(required);
    }
    let result = if function.returns_set {
        json!({"type": "array", "items": type_schema(&function.returns)})
    } else {
        type_schema(&function.returns)
    };
    let response = json!({"200": {"description": "The result", "content": {"application/json": {"schema": result}}}});
    // One unnamed argument takes the whole body, of its media type.
    let content = match function.body_argument() {
        Some("text") => json!({"text/plain": {"schema": {"type": "string"}}}),
        Some("xml") => json!({"text/xml": {"schema": {"type": "string"}}}),
        Some("bytea") => {
            json!({"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}})
        }
        Some(_) => json!({"application/json": {"schema": {}}}),
        None => json!({"application/json": {"schema": body}}),
    };
    let mut item = json!({"post": {
        "summary": format!("Call {}", function.name),
        "requestBody": {"required": !required.is_empty(), "content": content},
        "responses": response
    }});
    if function.read_only() && function.body_argument().is_none() {
        let parameters: Vec<Value> = function
            .args
            .iter()
            .enumerate()
            .map(|(i, (name, type_name))| {
                json!({"name": name, "in": "query", "required": i < function.args.len() - function.defaults, "schema": type_schema(type_name)})
            })
            .collect();
        item["get"] = json!({"summary": format!("Call {} (read-only)", function.name), "parameters": parameters, "responses": response});
    }
    item
}

/// The document; `allowed(object, action)` answers for the caller.
/// `allowed(object, action)` says whether the caller may act; `columns(object)`
/// which columns their policies name (`None`: all), so that no column the
/// caller may not use is named.
pub fn openapi(
    schema: &Schema,
    server_url: &str,
    version: &str,
    allowed: &dyn Fn(&str, &str) -> bool,
    columns: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        "Error".into(),
        json!({"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string"}, "message": {"type": "string"},
            "details": {"type": "string", "nullable": true}, "hint": {"type": "string", "nullable": true}}}),
    );
    for table in schema.tables.values() {
        let object = format!("table:{}.{}", schema.name, table.name);
        let item = table_paths(table, &|action| allowed(&object, action));
        if item.as_object().is_some_and(|o| !o.is_empty()) {
            paths.insert(format!("/{}", table.name), item);
            schemas.insert(
                table.name.clone(),
                table_schema(table, columns(&object).as_deref()),
            );
        }
    }
    for (name, overloads) in &schema.functions {
        let object = format!("function:{}.{name}", schema.name);
        // Overloads share a path; the first one is described.
        if let (Some(function), true) = (overloads.first(), allowed(&object, "execute")) {
            paths.insert(format!("/rpc/{name}"), function_path(function));
        }
    }
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "Basalt data API",
            "version": version,
            "description": format!("Tables, views and functions of the `{}` schema, as this caller may use them.", schema.name)
        },
        "servers": [{"url": server_url}],
        "security": [{"apikey": []}, {"apikey": [], "bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "parameters": common_parameters(),
            "securitySchemes": {
                "apikey": {"type": "apiKey", "in": "header", "name": "apikey"},
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_allowed_operations_are_described() {
        let table = Table {
            schema: "public".into(),
            name: "posts".into(),
            columns: vec![
                ("id".into(), "bigint".into()),
                ("tags".into(), "text[]".into()),
            ],
            primary_key: vec!["id".into()],
            ..Table::default()
        };
        let schema = Schema {
            name: "public".into(),
            tables: [("posts".to_owned(), table)].into_iter().collect(),
            ..Schema::default()
        };
        let document = openapi(
            &schema,
            "http://x/rest/v1",
            "1",
            &|_, action| action == "select",
            &|_| None,
        );
        let item = &document["paths"]["/posts"];
        assert!(item["get"].is_object());
        assert!(item["post"].is_null() && item["delete"].is_null());
        assert_eq!(
            document["components"]["schemas"]["posts"]["properties"]["tags"]["items"]["type"],
            "string"
        );
        let none = openapi(&schema, "http://x/rest/v1", "1", &|_, _| false, &|_| None);
        assert_eq!(none["paths"], json!({}));
        // Columns no policy names are not named.
        let narrow = openapi(&schema, "http://x/rest/v1", "1", &|_, _| true, &|_| {
            Some(vec!["id".into()])
        });
        let properties = &narrow["components"]["schemas"]["posts"]["properties"];
        assert!(properties["id"].is_object() && properties["tags"].is_null());
    }
}
