//! The PostgreSQL backend: the weighted document expression (the same text
//! in the GIN index and in every search, so the planner uses the index), the
//! DDL that indexes it, and one search as one statement answering one JSON
//! value: the page of hits with highlights, the capped total and the facets.

use super::{IndexDef, SearchQuery, MAX_FACET_VALUES, MAX_TOTAL_HITS};
use crate::filter::sql::{to_sql, Caller, Param};
use crate::filter::{Expr, FilterError};
use crate::rest::{quote, Scope, Table};

/// Where Basalt keeps the text search configurations and the extensions
/// it installs (migration V19): API roles have USAGE on it, nothing else.
pub const SCHEMA: &str = "basalt_search";

/// How one search reads its index: the text search configuration as a
/// qualified name, and where `pg_trgm` lives when typos are tolerated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setup {
    /// `english`, or `basalt_search.english_unaccent` for accent folding.
    pub config: String,
    /// The schema of `pg_trgm`'s operators (for `typo_tolerance`).
    pub trgm_schema: Option<String>,
}

impl Setup {
    fn regconfig(&self) -> String {
        // Names are checked (`[a-z_]` and Basalt's own schema), so a literal is safe.
        format!("'{}'::regconfig", self.config)
    }
}

/// The name of an index's triggers on its table (and of its trigram index, `_trgm`).
pub fn index_name(def: &IndexDef) -> String {
    format!("basalt_search_{}", def.name.replace('-', "_"))
}

fn column(alias: Option<&str>, name: &str) -> String {
    match alias {
        Some(alias) => format!("{alias}.{}", quote(name)),
        None => quote(name),
    }
}

/// `setweight(to_tsvector(cfg, coalesce(col::text, '')), 'A') || …` over
/// `columns` (each with its weight).
pub fn document_sql(setup: &Setup, alias: Option<&str>, columns: &[(String, char)]) -> String {
    let parts: Vec<String> = columns
        .iter()
        .map(|(name, weight)| {
            format!(
                "setweight(to_tsvector({}, COALESCE({}::text, '')), '{weight}')",
                setup.regconfig(),
                column(alias, name)
            )
        })
        .collect();
    format!("({})", parts.join(" || "))
}

/// The searchable text as one string, for trigram matching.
pub fn text_sql(alias: Option<&str>, columns: &[(String, char)]) -> String {
    let parts: Vec<String> = columns
        .iter()
        .map(|(name, _)| format!("COALESCE({}::text, '')", column(alias, name)))
        .collect();
    format!("({})", parts.join(" || ' ' || "))
}

/// The documents table of an index: its rows' keys and weighted vectors,
/// kept by triggers on the indexed table.
pub fn documents_table(def: &IndexDef) -> String {
    format!("{SCHEMA}.{}", quote(&def.name))
}

/// The statements that make an index on `schema.table`: the documents
/// table (`key` with its types) with its GIN index, filled from the table
/// and kept by row triggers (a `SECURITY DEFINER` function of Basalt's, so
/// writers need no privilege on it), the trigram index for typo tolerance,
/// and read access for `readers` (the API roles, whose searches read it).
pub fn index_ddl(
    def: &IndexDef,
    setup: &Setup,
    table: &Table,
    key: &[(String, String)],
    readers: &[&str],
) -> Vec<String> {
    let qualified = table.qualified();
    let name = index_name(def);
    let documents = documents_table(def);
    let weighted = def.weighted();
    let columns: Vec<String> = key.iter().map(|(c, _)| quote(c)).collect();
    let typed: Vec<String> = key
        .iter()
        .map(|(c, t)| format!("{} {t} NOT NULL", quote(c)))
        .collect();
    let of = |row: &str| -> String {
        key.iter()
            .map(|(c, _)| format!("{row}.{}", quote(c)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sync = format!("{SCHEMA}.{}", quote(&format!("{}_sync", def.name)));
    let truncate = format!("{SCHEMA}.{}", quote(&format!("{}_truncate", def.name)));
    let mut statements = vec![
        format!(
            "CREATE TABLE {documents} ({}, document tsvector NOT NULL, PRIMARY KEY ({}))",
            typed.join(", "),
            columns.join(", ")
        ),
        format!("CREATE INDEX ON {documents} USING gin (document)"),
        format!(
            "CREATE FUNCTION {sync}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $body$
             BEGIN
               IF TG_OP IN ('UPDATE', 'DELETE') THEN
                 DELETE FROM {documents} WHERE ({}) = ({});
               END IF;
               IF TG_OP IN ('INSERT', 'UPDATE') THEN
                 INSERT INTO {documents} VALUES ({}, {});
               END IF;
               RETURN NULL;
             END $body$",
            columns.join(", "),
            of("OLD"),
            of("NEW"),
            document_sql(setup, Some("NEW"), &weighted)
        ),
        format!(
            "CREATE FUNCTION {truncate}() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog AS $body$
             BEGIN TRUNCATE {documents}; RETURN NULL; END $body$"
        ),
        format!("REVOKE ALL ON FUNCTION {sync}(), {truncate}() FROM PUBLIC"),
        format!(
            "CREATE TRIGGER {} AFTER INSERT OR UPDATE OR DELETE ON {qualified} FOR EACH ROW EXECUTE FUNCTION {sync}()",
            quote(&name)
        ),
        format!(
            "CREATE TRIGGER {} AFTER TRUNCATE ON {qualified} FOR EACH STATEMENT EXECUTE FUNCTION {truncate}()",
            quote(&format!("{name}_truncate"))
        ),
        format!(
            "INSERT INTO {documents} SELECT {}, {} FROM {qualified} t",
            of("t"),
            document_sql(setup, Some("t"), &weighted)
        ),
        format!("ANALYZE {documents}"),
    ];
    if !readers.is_empty() {
        let readers: Vec<String> = readers.iter().map(|r| quote(r)).collect();
        statements.push(format!(
            "GRANT SELECT ON {documents} TO {}",
            readers.join(", ")
        ));
    }
    if let Some(trgm) = &setup.trgm_schema {
        statements.push(trigram_ddl(def, &qualified, trgm));
    }
    statements
}

/// The trigram index of the searchable text, for typo tolerance.
fn trigram_ddl(def: &IndexDef, qualified: &str, trgm: &str) -> String {
    format!(
        "CREATE INDEX {} ON {qualified} USING gin ({} {}.gin_trgm_ops)",
        quote(&format!("{}_trgm", index_name(def))),
        text_sql(None, &def.weighted()),
        quote(trgm)
    )
}

/// The statements that drop what [`index_ddl`] made (idempotent).
pub fn drop_ddl(def: &IndexDef, schema: &str) -> Vec<String> {
    vec![
        format!(
            "DROP FUNCTION IF EXISTS {SCHEMA}.{}() CASCADE",
            quote(&format!("{}_sync", def.name))
        ),
        format!(
            "DROP FUNCTION IF EXISTS {SCHEMA}.{}() CASCADE",
            quote(&format!("{}_truncate", def.name))
        ),
        format!("DROP TABLE IF EXISTS {}", documents_table(def)),
        format!(
            "DROP INDEX IF EXISTS {}.{}",
            quote(schema),
            quote(&format!("{}_trgm", index_name(def)))
        ),
    ]
}

/// What one search may see, decided before planning.
pub struct Scoped<'a> {
    pub def: &'a IndexDef,
    pub table: &'a Table,
    /// The key columns.
    pub key: &'a [String],
    /// Columns returned in each hit's `document`.
    pub returned: &'a [String],
    /// Searchable columns searched, with their weights.
    pub searched: &'a [(String, char)],
    /// The caller's row condition (their policies'), if any.
    pub condition: Option<&'a Expr>,
    /// Whether the index's documents table serves this search (a table,
    /// and every searchable column searched); else the vectors are
    /// computed from the columns searched.
    pub documents: bool,
}

/// One search as one statement answering one row: `body` (JSON text).
pub fn search_sql(
    scoped: &Scoped,
    setup: &Setup,
    query: &SearchQuery,
    caller: &Caller,
) -> Result<(String, Vec<Param>), FilterError> {
    let mut params = vec![Param::Text(Some(query.q.clone()))];
    let scope = Scope {
        table: scoped.table,
        alias: Some("t"),
    };
    let searching = !query.q.trim().is_empty();
    let document = if scoped.documents {
        "d.document".to_owned()
    } else {
        document_sql(setup, Some("t"), scoped.searched)
    };
    let text = text_sql(Some("t"), scoped.searched);
    let mut conditions: Vec<String> = Vec::new();
    let mut rank = "0::real".to_owned();
    if searching {
        let matched = format!("({document} @@ q.query)");
        match setup.trgm_schema.as_ref().filter(|_| query.plain()) {
            Some(trgm) => {
                let trgm = quote(trgm);
                conditions.push(format!("({matched} OR ($1 OPERATOR({trgm}.<%) {text}))"));
                rank = format!(
                    "(CASE WHEN {matched} THEN 1 + ts_rank_cd({document}, q.query) ELSE {trgm}.word_similarity($1, {text}) END)"
                );
            }
            None => {
                conditions.push(matched);
                rank = format!("ts_rank_cd({document}, q.query)");
            }
        }
    }
    if let Some(condition) = scoped.condition {
        conditions.push(format!(
            "({})",
            to_sql(condition, &scope, caller, &mut params)?
        ));
    }
    if let Some(filter) = &query.filter {
        conditions.push(format!(
            "({})",
            to_sql(filter, &scope, caller, &mut params)?
        ));
    }
    let filtered = if conditions.is_empty() {
        "true".to_owned()
    } else {
        conditions.join(" AND ")
    };
    let from = if scoped.documents {
        let on: Vec<String> = scoped
            .key
            .iter()
            .map(|k| format!("d.{0} = t.{0}", quote(k)))
            .collect();
        format!(
            "{} t JOIN {} d ON {}, q",
            scoped.table.qualified(),
            documents_table(scoped.def),
            on.join(" AND ")
        )
    } else {
        format!("{} t, q", scoped.table.qualified())
    };
    let websearch = format!("websearch_to_tsquery({}, $1)", setup.regconfig());
    let tsquery = if query.prefix_search() {
        // The last lexeme matches as a prefix: `'data' & 'bas'` → `… & 'bas':*`.
        format!(
            "(SELECT CASE WHEN w::text ~ '''$' THEN regexp_replace(w::text, '''$', ''':*')::tsquery ELSE w END FROM {websearch} AS w)"
        )
    } else {
        websearch
    };
    // Sort columns first, then the rank, then the key (a stable order).
    let order = |alias: &str, rank: &str| -> String {
        let mut parts: Vec<String> = query
            .sort
            .iter()
            .map(|(name, descending)| {
                format!(
                    "{} {} NULLS LAST",
                    column(Some(alias), name),
                    if *descending { "DESC" } else { "ASC" }
                )
            })
            .collect();
        parts.push(format!("{rank} DESC"));
        parts.extend(
            scoped
                .key
                .iter()
                .map(|k| format!("{} ASC", column(Some(alias), k))),
        );
        parts.join(", ")
    };
    let id = match scoped.key {
        [one] => format!("to_json({})", column(Some("p"), one)),
        many => format!(
            "json_build_array({})",
            many.iter()
                .map(|k| column(Some("p"), k))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let row_of = |items: Vec<String>| -> String {
        if items.is_empty() {
            "'{}'::json".to_owned()
        } else {
            format!("(SELECT to_json(x) FROM (SELECT {}) x)", items.join(", "))
        }
    };
    let document_json = row_of(
        scoped
            .returned
            .iter()
            .map(|c| format!("{} AS {}", column(Some("p"), c), quote(c)))
            .collect(),
    );
    let highlights = if query.highlight.is_empty() {
        "'{}'::json".to_owned()
    } else {
        if searching {
            params.push(Param::Text(Some(format!(
            "StartSel=\"{}\", StopSel=\"{}\", MaxFragments=3, MaxWords=30, MinWords=10, FragmentDelimiter=\" … \"",
                query.pre_tag, query.post_tag
            ))));
        }
        let options = params.len();
        row_of(
            query
                .highlight
                .iter()
                .map(|c| {
                    let value = format!("COALESCE({}::text, '')", column(Some("p"), c));
                    let marked = if searching {
                        format!(
                            "ts_headline({}, {value}, q.query, ${options})",
                            setup.regconfig()
                        )
                    } else {
                        value
                    };
                    format!("{marked} AS {}", quote(c))
                })
                .collect(),
        )
    };
    let facets: Vec<String> = query
        .facets
        .iter()
        .map(|name| {
            let array = scoped
                .table
                .columns
                .iter()
                .any(|(c, t)| c == name && t.ends_with("[]"));
            let value = if array {
                format!("unnest({})::text", column(Some("t"), name))
            } else {
                format!("{}::text", column(Some("t"), name))
            };
            format!(
                "'{}', (SELECT COALESCE(json_object_agg(v, n ORDER BY n DESC, v), '{{}}'::json) FROM (SELECT v, count(*) AS n FROM (SELECT {value} AS v FROM {from} WHERE {filtered}) s WHERE v IS NOT NULL GROUP BY v ORDER BY n DESC, v LIMIT {MAX_FACET_VALUES}) f)",
                name.replace('\'', "''")
            )
        })
        .collect();
    let facets = if facets.is_empty() {
        "'{}'::json".to_owned()
    } else {
        format!("json_build_object({})", facets.join(", "))
    };
    // With nothing to check on the table's rows (no condition, filter,
    // sort, near match or row-level security), the page and the count come from the
    // documents table alone, and only the page's rows are read.
    let fuzzy = searching && setup.trgm_schema.is_some() && query.plain();
    let alone = scoped.documents
        && !fuzzy
        && scoped.condition.is_none()
        && query.filter.is_none()
        && query.sort.is_empty()
        && !scoped.table.hides_rows;
    let (page, counted) = if alone {
        let keys: Vec<String> = scoped
            .key
            .iter()
            .map(|k| format!("d.{}", quote(k)))
            .collect();
        let on: Vec<String> = scoped
            .key
            .iter()
            .map(|k| format!("t.{0} = k.{0}", quote(k)))
            .collect();
        let documents = format!("{} d, q", documents_table(scoped.def));
        (
            format!(
                "SELECT t.*, k.\"_basalt_rank\" FROM (SELECT {}, {rank} AS \"_basalt_rank\" FROM {documents} WHERE {filtered} ORDER BY {} LIMIT {} OFFSET {}) k JOIN {} t ON {}",
                keys.join(", "),
                order("d", "\"_basalt_rank\""),
                query.limit,
                query.offset,
                scoped.table.qualified(),
                on.join(" AND ")
            ),
            documents,
        )
    } else {
        (
            format!(
                "SELECT t.*, {rank} AS \"_basalt_rank\" FROM {from} WHERE {filtered} ORDER BY {} LIMIT {} OFFSET {}",
                order("t", "\"_basalt_rank\""),
                query.limit,
                query.offset
            ),
            from.clone(),
        )
    };
    let sql = format!(
        "WITH q AS (SELECT {tsquery} AS query) \
         SELECT json_build_object(\
           'hits', COALESCE((SELECT json_agg(json_build_object('id', {id}, 'document', {document_json}, 'rank', p.\"_basalt_rank\", 'highlights', {highlights}) ORDER BY {outer_order}) \
              FROM ({page}) p, q), '[]'::json), \
           'estimatedTotalHits', (SELECT count(*) FROM (SELECT 1 FROM {counted} WHERE {filtered} LIMIT {cap}) c), \
           'facetDistribution', {facets})::text",
        outer_order = order("p", "p.\"_basalt_rank\""),
        cap = MAX_TOTAL_HITS,
    );
    Ok((sql, params))
}
