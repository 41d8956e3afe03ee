//! The schema cache: the exposed schemas' tables, columns, keys, foreign keys
//! and functions, read from the catalog at start-up and again whenever DDL
//! runs (an event trigger sends `NOTIFY basalt_schema`, which every replica
//! listens for). Requests take an `Arc` snapshot, so a reload never disturbs
//! one in flight. A name the cache does not know triggers a reload, for DDL
//! whose notification has not arrived yet: one at a time, at most one start
//! per 100 ms, and requests that missed while one ran use its result rather
//! than starting another.

use crate::db;
use basalt_core::rest::views::{self, BaseForeignKey, Relation, ViewColumn};
use basalt_core::rest::{ComputedRelationship, Function, Schema, Table};
use deadpool_postgres::Pool;
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

/// Reloads after misses start at least this far apart (names no one has
/// created cannot make the server read the catalog in a loop).
const MISS_RELOAD_SPACING: Duration = Duration::from_millis(100);

/// The exposed schemas by name; the first is the default.
type Schemas = BTreeMap<String, Arc<Schema>>;

pub struct SchemaCache {
    names: Vec<String>,
    current: RwLock<Arc<Schemas>>,
    /// When the last reload started; held while one runs.
    reloading: tokio::sync::Mutex<Instant>,
}

impl SchemaCache {
    /// Reads `names` (the default schema first).
    pub async fn load(pool: &Pool, names: Vec<String>) -> anyhow::Result<Self> {
        let schemas = introspect_all(pool, &names).await?;
        Ok(SchemaCache {
            names,
            current: RwLock::new(Arc::new(schemas)),
            reloading: tokio::sync::Mutex::new(Instant::now()),
        })
    }

    /// The default schema.
    pub fn get(&self) -> Arc<Schema> {
        self.profile(&self.names[0])
            .expect("the default schema is loaded")
    }

    /// An exposed schema by name.
    pub fn profile(&self, name: &str) -> Option<Arc<Schema>> {
        self.current
            .read()
            .expect("not poisoned")
            .get(name)
            .cloned()
    }

    /// The names of the exposed schemas, the default first.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// Reads the catalog again (one reload at a time).
    pub async fn reload(&self, pool: &Pool) -> anyhow::Result<()> {
        let mut started = self.reloading.lock().await;
        *started = Instant::now();
        self.replace(pool).await
    }

    async fn replace(&self, pool: &Pool) -> anyhow::Result<()> {
        let schemas = introspect_all(pool, &self.names).await?;
        tracing::debug!(schemas = schemas.len(), "schema cache reloaded");
        *self.current.write().expect("not poisoned") = Arc::new(schemas);
        Ok(())
    }

    /// After a request found no such name in the snapshot it took at
    /// `looked`: reloads, unless a reload started since (then its result is
    /// as new as needed). Returns whether a newer snapshot is in place.
    pub async fn reload_after_miss(&self, pool: &Pool, looked: Instant) -> bool {
        let mut started = self.reloading.lock().await;
        if *started >= looked {
            return true;
        }
        let since = started.elapsed();
        if since < MISS_RELOAD_SPACING {
            tokio::time::sleep(MISS_RELOAD_SPACING - since).await;
        }
        *started = Instant::now();
        match self.replace(pool).await {
            Ok(()) => true,
            Err(error) => {
                tracing::warn!("cannot reload the schema cache: {error:#}");
                false
            }
        }
    }
}

async fn introspect_all(pool: &Pool, names: &[String]) -> anyhow::Result<Schemas> {
    let mut schemas = Schemas::new();
    for name in names {
        schemas.insert(name.clone(), Arc::new(introspect(pool, name).await?));
    }
    Ok(schemas)
}

async fn introspect(pool: &Pool, name: &str) -> anyhow::Result<Schema> {
    let mut connection = pool.get().await?;
    // One snapshot for every catalog query: DDL committing between two of
    // them cannot leave a table without its keys or relationships.
    let client = connection
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await?;
    let mut schema = Schema {
        name: name.to_owned(),
        ..Schema::default()
    };
    for row in client
        .query(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, a.atttypmod),
                    CASE WHEN a.attidentity <> '' THEN format('nextval(%L::regclass)',
                             pg_get_serial_sequence(format('%I.%I', n.nspname, c.relname), a.attname))
                         ELSE pg_get_expr(d.adbin, d.adrelid) END,
                    c.relrowsecurity OR c.relkind = 'v'
             FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
             ORDER BY c.relname, a.attnum",
            &[&name],
        )
        .await?
    {
        let table_name: String = row.get(0);
        let table = schema
            .tables
            .entry(table_name.clone())
            .or_insert_with(|| Table {
                schema: name.to_owned(),
                name: table_name,
                hides_rows: row.get(4),
                ..Table::default()
            });
        let column: String = row.get(1);
        if let Some(default) = row.get::<_, Option<String>>(3) {
            table.defaults.insert(column.clone(), default);
        }
        table.columns.push((column, row.get(2)));
    }
    // Keys of every table of the database: views carry those of the tables
    // they show (`views::infer`), which may live in schemas not exposed.
    let mut unique_keys = Vec::new();
    for row in client
        .query(
            "SELECT n.nspname::text, c.relname::text, array_agg(a.attname::text ORDER BY k.ord),
                    con.contype = 'p'
             FROM pg_constraint con
             JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             WHERE con.contype IN ('p', 'u') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             GROUP BY n.nspname, c.relname, con.oid, con.contype",
            &[],
        )
        .await?
    {
        let relation: Relation = (row.get(0), row.get(1));
        let columns: Vec<String> = row.get(2);
        if relation.0 == name && row.get::<_, bool>(3) {
            if let Some(table) = schema.tables.get_mut(&relation.1) {
                table.primary_key = columns.clone();
            }
        }
        unique_keys.push((relation, columns));
    }
    let foreign_keys: Vec<BaseForeignKey> = client
        .query(
            "SELECT con.conname::text, n.nspname::text, c.relname::text, fns.nspname::text, f.relname::text,
                    array_agg(a.attname::text ORDER BY k.ord), array_agg(fa.attname::text ORDER BY k.ord)
             FROM pg_constraint con
             JOIN pg_class c ON c.oid = con.conrelid
             JOIN pg_class f ON f.oid = con.confrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             JOIN pg_namespace fns ON fns.oid = f.relnamespace
             CROSS JOIN LATERAL unnest(con.conkey, con.confkey) WITH ORDINALITY k(attnum, fattnum, ord)
             JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum
             JOIN pg_attribute fa ON fa.attrelid = f.oid AND fa.attnum = k.fattnum
             WHERE con.contype = 'f' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
             GROUP BY con.oid, con.conname, n.nspname, c.relname, fns.nspname, f.relname
             ORDER BY con.conname, n.nspname, c.relname",
            &[],
        )
        .await?
        .iter()
        .map(|row| BaseForeignKey {
            name: row.get(0),
            table: (row.get(1), row.get(2)),
            foreign_table: (row.get(3), row.get(4)),
            columns: row.get(5),
            foreign_columns: row.get(6),
        })
        .collect();
    // The rules of this schema's views (and of the views they read, down to
    // the tables): which base column each view column shows.
    let rules: Vec<(u32, Relation, Vec<views::Origin>)> = client
        .query(
            "WITH RECURSIVE views AS (
                SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = $1 AND c.relkind IN ('v', 'm')
                UNION
                SELECT d.refobjid FROM views
                JOIN pg_rewrite r ON r.ev_class = views.oid
                JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                                 AND d.refclassid = 'pg_class'::regclass AND d.refobjid <> views.oid
                JOIN pg_class b ON b.oid = d.refobjid AND b.relkind IN ('v', 'm')
             )
             SELECT v.oid, n.nspname::text, v.relname::text, r.ev_action::text
             FROM views
             JOIN pg_class v ON v.oid = views.oid
             JOIN pg_namespace n ON n.oid = v.relnamespace
             JOIN pg_rewrite r ON r.ev_class = v.oid AND r.rulename = '_RETURN'",
            &[&name],
        )
        .await?
        .iter()
        .map(|row| {
            let rule: String = row.get(3);
            (row.get(0), (row.get(1), row.get(2)), views::origins(&rule))
        })
        .collect();
    // The columns of the base tables, and of the views (named by position).
    let mut tables: Vec<u32> = rules
        .iter()
        .flat_map(|(view, _, origins)| {
            origins
                .iter()
                .map(|origin| origin.table)
                .chain(std::iter::once(*view))
        })
        .collect();
    tables.sort_unstable();
    tables.dedup();
    let mut base_columns = BTreeMap::new();
    for row in client
        .query(
            "SELECT c.oid, n.nspname::text, c.relname::text, a.attnum, a.attname::text
             FROM pg_attribute a
             JOIN pg_class c ON c.oid = a.attrelid
             JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE c.oid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped",
            &[&tables],
        )
        .await?
    {
        let relation: Relation = (row.get(1), row.get(2));
        base_columns.insert(
            (row.get::<_, u32>(0), row.get::<_, i16>(3)),
            (relation, row.get::<_, String>(4)),
        );
    }
    let view_columns: Vec<ViewColumn> = rules
        .iter()
        .flat_map(|(oid, view, origins)| {
            let base_columns = &base_columns;
            origins.iter().filter_map(move |origin| {
                let (base, base_column) = base_columns.get(&(origin.table, origin.column))?;
                let (_, column) = base_columns.get(&(*oid, origin.position))?;
                Some(ViewColumn {
                    view: view.clone(),
                    column: column.clone(),
                    base: base.clone(),
                    base_column: base_column.clone(),
                })
            })
        })
        .collect();
    views::infer(&mut schema, &foreign_keys, &view_columns, &unique_keys);
    schema.postgis = client
        .query_opt(
            "SELECT n.nspname::text FROM pg_extension e
             JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'postgis'",
            &[],
        )
        .await?
        .map(|row| row.get(0));
    let mut functions: BTreeMap<String, Vec<Function>> = BTreeMap::new();
    for row in client
        .query(
            "WITH args AS (
                SELECT p.oid, o.i, format_type(o.t, NULL) AS type,
                       coalesce(p.proargnames[o.i], '') AS name,
                       coalesce(p.proargmodes[o.i], 'i') AS mode, ty.typtype = 'c' AS composite
                FROM pg_proc p
                JOIN pg_namespace n ON n.oid = p.pronamespace
                CROSS JOIN LATERAL unnest(coalesce(p.proallargtypes, p.proargtypes::oid[])) WITH ORDINALITY o(t, i)
                JOIN pg_type ty ON ty.oid = o.t
                WHERE n.nspname = $1
             ), inputs AS (
                SELECT * FROM args WHERE mode IN ('i', 'b', 'v')
             ), outputs AS (
                SELECT * FROM args WHERE mode IN ('o', 'b', 't')
             )
             SELECT p.proname::text,
                    coalesce((SELECT array_agg(name ORDER BY i) FROM inputs WHERE inputs.oid = p.oid), '{}'),
                    coalesce((SELECT array_agg(type ORDER BY i) FROM inputs WHERE inputs.oid = p.oid), '{}'),
                    p.pronargdefaults::int, format_type(p.prorettype, NULL), p.proretset,
                    p.provolatile::text,
                    (SELECT c.relname::text FROM pg_class c WHERE c.oid = t.typrelid AND c.relnamespace = n.oid),
                    p.prosecdef, p.provariadic <> 0,
                    coalesce((SELECT array_agg(name ORDER BY i) FROM inputs WHERE inputs.oid = p.oid AND composite), '{}'),
                    coalesce((SELECT array_agg(name ORDER BY i) FROM outputs WHERE outputs.oid = p.oid),
                             (SELECT array_agg(a.attname::text ORDER BY a.attnum) FROM pg_attribute a
                              WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '{}'),
                    coalesce((SELECT array_agg(type ORDER BY i) FROM outputs WHERE outputs.oid = p.oid),
                             (SELECT array_agg(format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) FROM pg_attribute a
                              WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped), '{}'),
                    p.prorows = 1
             FROM pg_proc p
             JOIN pg_namespace n ON n.oid = p.pronamespace
             JOIN pg_type t ON t.oid = p.prorettype
             WHERE n.nspname = $1 AND p.prokind = 'f'
               AND p.prorettype NOT IN ('trigger'::regtype, 'event_trigger'::regtype)",
            &[&name],
        )
        .await?
    {
        let names: Vec<String> = row.get(1);
        let types: Vec<String> = row.get(2);
        let returns_set: bool = row.get(5);
        let returns_table: Option<String> = row.get(7);
        // One argument of a table's row type: a computed relationship when
        // it returns rows of a table, else (one value back) a computed field.
        if let [arg_type] = &types[..] {
            let table = arg_type.rsplit('.').next().unwrap_or(arg_type).trim_matches('"');
            match (schema.tables.contains_key(table), &returns_table) {
                (true, Some(target)) => {
                    schema.computed_relationships.push(ComputedRelationship {
                        function: row.get(0),
                        table: table.to_owned(),
                        target: target.clone(),
                        to_one: !returns_set || row.get::<_, bool>(13),
                    });
                    continue;
                }
                (true, None) if !returns_set => {
                    if let Some(table) = schema.tables.get_mut(table) {
                        table.computed.push((row.get(0), row.get::<_, String>(4)));
                    }
                    continue;
                }
                // Any other function of a row stays callable as RPC.
                _ => {}
            }
        }
        // Unnamed arguments cannot be named in a call: only a function with
        // one, taking the whole body, is callable.
        let body_argument = matches!(&names[..], [name] if name.is_empty())
            && matches!(
                types[0].as_str(),
                "json" | "jsonb" | "text" | "xml" | "bytea"
            );
        if names.iter().any(String::is_empty) && !body_argument {
            continue;
        }
        // Unnamed OUT columns are `column1`, `column2`, … as PostgreSQL names
        // them; a single unnamed one makes a scalar result.
        let mut result_names: Vec<String> = row.get(11);
        if result_names == [""] {
            result_names.clear();
        }
        let result_names: Vec<String> = result_names
            .into_iter()
            .enumerate()
            .map(|(at, name)| match name.is_empty() {
                true => format!("column{}", at + 1),
                false => name,
            })
            .collect();
        let mut result_types: Vec<String> = row.get(12);
        result_types.truncate(result_names.len());
        let function = Function {
            name: row.get(0),
            args: names.into_iter().zip(types).collect(),
            defaults: row.get::<_, i32>(3) as usize,
            returns: row.get(4),
            returns_set,
            volatility: row.get::<_, String>(6).chars().next().unwrap_or('v'),
            returns_table,
            security_definer: row.get(8),
            variadic: row.get(9),
            composite_args: row.get(10),
            result_columns: result_names.into_iter().zip(result_types).collect(),
        };
        functions
            .entry(function.name.clone())
            .or_default()
            .push(function);
    }
    schema.functions = functions;
    Ok(schema)
}

/// Reloads the cache whenever DDL runs on any replica's database (and after
/// each reconnect of the listener, since notifications may have been missed).
pub async fn reload_on_change(
    cache: Arc<SchemaCache>,
    pool: Pool,
    pg: tokio_postgres::Config,
    tls: db::pool::Tls,
) {
    db::listen::on_notify(pg, tls, "basalt_schema", None, || cache.reload(&pool)).await
}
