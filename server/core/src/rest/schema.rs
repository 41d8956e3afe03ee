//! The schema cache's contents: the exposed schema's tables and views with
//! their columns, primary keys and defaults, the foreign keys between them,
//! and its functions. The server fills it from the catalog; everything here
//! only reads it, so every identifier that reaches SQL was found in it.

use super::error::QueryError;
use super::plan::Table;
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForeignKey {
    pub name: String,
    pub table: String,
    pub columns: Vec<String>,
    pub foreign_table: String,
    pub foreign_columns: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Function {
    pub name: String,
    /// `(name, type)` of the input arguments, in order.
    pub args: Vec<(String, String)>,
    /// How many trailing arguments have defaults.
    pub defaults: usize,
    pub returns: String,
    pub returns_set: bool,
    /// The exposed table whose rows the function returns, if any.
    pub returns_table: Option<String>,
    /// `i`mmutable, `s`table or `v`olatile.
    pub volatility: char,
    /// `SECURITY DEFINER`: runs with its owner's rights, deliberately.
    pub security_definer: bool,
    /// The last argument is `VARIADIC` (an array given as its elements).
    pub variadic: bool,
    /// The arguments of a composite (row) type, given as JSON objects.
    pub composite_args: Vec<String>,
    /// `(name, type)` of the columns of a composite result: `RETURNS TABLE`,
    /// `OUT` parameters, or a row type.
    pub result_columns: Vec<(String, String)>,
}

impl Function {
    /// Immutable and stable functions run in read-only transactions.
    pub fn read_only(&self) -> bool {
        self.volatility != 'v'
    }

    /// The type of the one unnamed argument that takes the whole body
    /// (`json`, `jsonb`, `text`, `xml` or `bytea`), if that is its shape.
    pub fn body_argument(&self) -> Option<&str> {
        match &self.args[..] {
            [(name, type_name)] if name.is_empty() => Some(type_name),
            _ => None,
        }
    }

    /// Whether `given` names every argument without a default and nothing else.
    fn takes(&self, given: &[String]) -> bool {
        let required = self.args.len() - self.defaults;
        self.body_argument().is_none()
            && given
                .iter()
                .all(|g| self.args.iter().any(|(name, _)| name == g))
            && self.args[..required]
                .iter()
                .all(|(name, _)| given.contains(name))
    }

    /// `name(a integer, b text)`.
    fn signature(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|(n, t)| {
                if n.is_empty() {
                    t.clone()
                } else {
                    format!("{n} {t}")
                }
            })
            .collect();
        format!("{}({})", self.name, args.join(", "))
    }
}

/// A function taking a row of `table` and returning rows of `target`,
/// embedded under its own name like a relationship (PostgREST's computed
/// relationships).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputedRelationship {
    pub function: String,
    pub table: String,
    pub target: String,
    /// It returns one row (not a set, or `ROWS 1`): an object or null.
    pub to_one: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    pub name: String,
    pub tables: BTreeMap<String, Table>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Overloads share a name.
    pub functions: BTreeMap<String, Vec<Function>>,
    pub computed_relationships: Vec<ComputedRelationship>,
    /// The schema PostGIS is installed in, if it is (for GeoJSON answers).
    pub postgis: Option<String>,
}

/// How an embedded resource relates to the one it is embedded in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relationship {
    /// The parent holds the key: at most one related row (an object or null).
    ToOne(ForeignKey),
    /// The related table holds the key: an array.
    ToMany(ForeignKey),
    /// The related table holds the key, and it is unique there (its primary
    /// key or a unique constraint): at most one related row (an object or null).
    OneToOne(ForeignKey),
    /// Through a junction table with keys to both: an array.
    ManyToMany {
        junction: String,
        to_parent: ForeignKey,
        to_target: ForeignKey,
    },
    /// The rows a function of the parent's row returns.
    Computed(ComputedRelationship),
}

impl Relationship {
    fn describe(&self) -> String {
        match self {
            Relationship::ToOne(fk) | Relationship::ToMany(fk) | Relationship::OneToOne(fk) => {
                fk.name.clone()
            }
            Relationship::ManyToMany { junction, .. } => junction.clone(),
            Relationship::Computed(computed) => computed.function.clone(),
        }
    }

    /// At most one related row: an object or null.
    pub fn to_one(&self) -> bool {
        match self {
            Relationship::ToOne(_) | Relationship::OneToOne(_) => true,
            Relationship::Computed(computed) => computed.to_one,
            Relationship::ToMany(_) | Relationship::ManyToMany { .. } => false,
        }
    }

    fn matches(&self, hint: &str) -> bool {
        match self {
            Relationship::ToOne(fk) | Relationship::ToMany(fk) | Relationship::OneToOne(fk) => {
                fk.name == hint || fk.columns.len() == 1 && fk.columns[0] == hint
            }
            Relationship::ManyToMany {
                junction,
                to_parent,
                to_target,
            } => junction == hint || to_parent.name == hint || to_target.name == hint,
            Relationship::Computed(computed) => computed.function == hint,
        }
    }
}

impl Schema {
    /// The relationship from the referenced table to the one holding `fk`:
    /// one-to-one when the key is unique there.
    fn reverse(&self, fk: &ForeignKey) -> Relationship {
        let mut columns = fk.columns.clone();
        columns.sort();
        let unique = self
            .tables
            .get(&fk.table)
            .is_some_and(|table| table.unique_keys.contains(&columns));
        if unique {
            Relationship::OneToOne(fk.clone())
        } else {
            Relationship::ToMany(fk.clone())
        }
    }

    /// The table an embed names, and the hint that picks its foreign key: a
    /// table or view by its name, or (as PostgREST) a foreign key by its
    /// constraint name or its one column — the row it refers to from the
    /// table holding it, the rows holding it from the referenced table.
    pub fn embed_target(
        &self,
        parent: &str,
        relation: &str,
        hint: Option<&str>,
    ) -> Option<(String, Option<String>)> {
        // A computed relationship's function name wins over a table's name,
        // as in PostgREST (it is how one overrides a detected relationship).
        if let Some(computed) = self.computed(parent, relation) {
            return Some((computed.target.clone(), Some(computed.function.clone())));
        }
        if self.tables.contains_key(relation) {
            return Some((relation.to_owned(), hint.map(str::to_owned)));
        }
        let by_column = |fk: &ForeignKey| fk.columns.len() == 1 && fk.columns[0] == relation;
        self.foreign_keys.iter().find_map(|fk| {
            if fk.table == parent && (fk.name == relation || by_column(fk)) {
                Some((fk.foreign_table.clone(), Some(fk.name.clone())))
            } else if fk.foreign_table == parent && fk.name == relation {
                Some((fk.table.clone(), Some(fk.name.clone())))
            } else {
                None
            }
        })
    }

    /// The computed relationship `function` of `table`.
    fn computed(&self, table: &str, function: &str) -> Option<&ComputedRelationship> {
        self.computed_relationships
            .iter()
            .find(|c| c.table == table && c.function == function)
    }

    /// The table or view, or an error naming the closest one.
    pub fn table(&self, name: &str) -> Result<&Table, QueryError> {
        self.tables
            .get(name)
            .ok_or_else(|| QueryError::UnknownTable {
                schema: self.name.clone(),
                name: name.into(),
                suggestion: crate::config::suggestion(name, self.tables.keys().map(String::as_str))
                    .map(str::to_owned),
            })
    }

    /// How `target` relates to `parent`; `hint` (after `!`) picks a foreign
    /// key by its name or column, or a junction table, when several qualify.
    pub fn relationship(
        &self,
        parent: &str,
        target: &str,
        hint: Option<&str>,
    ) -> Result<Relationship, QueryError> {
        if let Some(computed) = hint.and_then(|hint| self.computed(parent, hint)) {
            if computed.target == target {
                return Ok(Relationship::Computed(computed.clone()));
            }
        }
        let mut candidates = Vec::new();
        for fk in &self.foreign_keys {
            let self_reference = fk.table == fk.foreign_table;
            // A self-reference embeds its children (as PostgREST's recursive
            // one-to-many); named by `!hint`, the row it refers to.
            if fk.table == parent
                && fk.foreign_table == target
                && (!self_reference || hint.is_some())
            {
                candidates.push(Relationship::ToOne(fk.clone()));
            }
            if fk.table == target
                && fk.foreign_table == parent
                && (!self_reference || hint.is_none())
            {
                candidates.push(self.reverse(fk));
            }
        }
        for to_parent in &self.foreign_keys {
            if to_parent.foreign_table != parent
                || to_parent.table == parent
                || to_parent.table == target
            {
                continue;
            }
            for to_target in &self.foreign_keys {
                if to_target.table == to_parent.table
                    && to_target.foreign_table == target
                    && to_target.name != to_parent.name
                {
                    candidates.push(Relationship::ManyToMany {
                        junction: to_parent.table.clone(),
                        to_parent: to_parent.clone(),
                        to_target: to_target.clone(),
                    });
                }
            }
        }
        if let Some(hint) = hint {
            candidates.retain(|candidate| candidate.matches(hint));
        }
        // With a junction and a direct key both present, the direct key wins
        // (as in PostgREST).
        if candidates.len() > 1
            && candidates
                .iter()
                .any(|c| !matches!(c, Relationship::ManyToMany { .. }))
        {
            candidates.retain(|c| !matches!(c, Relationship::ManyToMany { .. }));
        }
        match candidates.len() {
            1 => Ok(candidates.pop().expect("one")),
            0 => Err(QueryError::NoRelationship {
                parent: parent.into(),
                target: target.into(),
                hint: hint.map(str::to_owned),
            }),
            _ => Err(QueryError::AmbiguousRelationship {
                parent: parent.into(),
                target: target.into(),
                candidates: candidates
                    .iter()
                    .map(|c| format!("{target}!{}", c.describe()))
                    .collect(),
            }),
        }
    }

    /// The function `name` that takes exactly the named arguments `given`
    /// (those with defaults may be left out) or, when none does or the
    /// body is not an object of arguments (`given` is `None`), the one whose
    /// single unnamed argument takes the whole body as one of `whole`'s
    /// types. Two overloads that both take `given` are ambiguous.
    pub fn function(
        &self,
        name: &str,
        given: Option<&[String]>,
        whole: &[&str],
    ) -> Result<&Function, QueryError> {
        let overloads = self
            .functions
            .get(name)
            .ok_or_else(|| QueryError::UnknownFunction {
                schema: self.name.clone(),
                name: name.into(),
                suggestion: crate::config::suggestion(
                    name,
                    self.functions.keys().map(String::as_str),
                )
                .map(str::to_owned),
            })?;
        let named: Vec<&Function> = match given {
            Some(given) => overloads.iter().filter(|f| f.takes(given)).collect(),
            None => Vec::new(),
        };
        if let [function] = named[..] {
            return Ok(function);
        }
        if named.len() > 1 {
            return Err(QueryError::AmbiguousFunction {
                schema: self.name.clone(),
                candidates: named.iter().map(|f| f.signature()).collect(),
            });
        }
        let body = overloads
            .iter()
            .find(|f| f.body_argument().is_some_and(|t| whole.contains(&t)));
        if let Some(function) = body {
            return Ok(function);
        }
        if given.is_none() && whole.contains(&"json") {
            return Err(QueryError::ArgumentsNotAnObject);
        }
        let given = match given {
            Some([]) => "no arguments".to_owned(),
            Some(given) => format!("the arguments {}", given.join(", ")),
            None => format!("a {} body", whole.first().copied().unwrap_or("binary")),
        };
        Err(QueryError::FunctionArguments {
            name: name.into(),
            given,
            shapes: overloads.iter().map(Function::signature).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fk(name: &str, table: &str, column: &str, foreign: &str) -> ForeignKey {
        ForeignKey {
            name: name.into(),
            table: table.into(),
            columns: vec![column.into()],
            foreign_table: foreign.into(),
            foreign_columns: vec!["id".into()],
        }
    }

    #[test]
    fn one_to_one_and_self_references() {
        let mut schema = Schema {
            name: "public".into(),
            foreign_keys: vec![
                fk("specs_film_fkey", "specs", "film_id", "films"),
                fk(
                    "employees_supervisor_fkey",
                    "employees",
                    "supervisor_id",
                    "employees",
                ),
            ],
            ..Schema::default()
        };
        // Not unique on the referencing side: to-many.
        assert!(matches!(
            schema.relationship("films", "specs", None),
            Ok(Relationship::ToMany(_))
        ));
        let specs = Table {
            name: "specs".into(),
            unique_keys: vec![vec!["film_id".into()]],
            ..Table::default()
        };
        schema.tables.insert("specs".into(), specs);
        assert!(matches!(
            schema.relationship("films", "specs", None),
            Ok(Relationship::OneToOne(_))
        ));
        assert!(matches!(
            schema.relationship("specs", "films", None),
            Ok(Relationship::ToOne(_))
        ));
        // A self-reference: the children, or by hint the parent.
        assert!(matches!(
            schema.relationship("employees", "employees", None),
            Ok(Relationship::ToMany(_))
        ));
        assert!(matches!(
            schema.relationship("employees", "employees", Some("supervisor_id")),
            Ok(Relationship::ToOne(_))
        ));
    }

    #[test]
    fn relationships_and_hints() {
        let schema = Schema {
            name: "public".into(),
            foreign_keys: vec![
                fk("posts_author_fkey", "posts", "author_id", "users"),
                fk("posts_editor_fkey", "posts", "editor_id", "users"),
                fk("post_tags_post_fkey", "post_tags", "post_id", "posts"),
                fk("post_tags_tag_fkey", "post_tags", "tag_id", "tags"),
            ],
            ..Schema::default()
        };
        let ambiguous = schema.relationship("posts", "users", None).unwrap_err();
        assert!(crate::errors::Problem::hint(&ambiguous)
            .unwrap()
            .contains("users!posts_author_fkey"));
        assert!(matches!(
            schema.relationship("posts", "users", Some("editor_id")),
            Ok(Relationship::ToOne(fk)) if fk.name == "posts_editor_fkey"
        ));
        assert!(matches!(
            schema.relationship("users", "posts", Some("posts_author_fkey")),
            Ok(Relationship::ToMany(_))
        ));
        assert!(matches!(
            schema.relationship("posts", "tags", None),
            Ok(Relationship::ManyToMany { junction, .. }) if junction == "post_tags"
        ));
        assert!(matches!(
            schema.relationship("posts", "post_tags", None),
            Ok(Relationship::ToMany(_))
        ));
        assert!(schema.relationship("tags", "users", None).is_err());
    }

    fn function(args: &[(&str, &str)]) -> Function {
        Function {
            name: "pick".into(),
            args: args
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
            returns: "text".into(),
            volatility: 'i',
            ..Function::default()
        }
    }

    #[test]
    fn overloads_resolve_by_argument_names_and_the_body() {
        let schema = Schema {
            name: "public".into(),
            functions: [(
                "pick".to_owned(),
                vec![
                    function(&[("a", "integer")]),
                    function(&[("a", "text")]),
                    function(&[("a", "integer"), ("b", "integer")]),
                    function(&[("", "jsonb")]),
                ],
            )]
            .into(),
            ..Schema::default()
        };
        let names = |given: &[&str]| given.iter().map(|g| g.to_string()).collect::<Vec<_>>();
        let json = ["json", "jsonb"];
        let two = schema.function("pick", Some(&names(&["a", "b"])), &json);
        assert_eq!(two.unwrap().args.len(), 2);
        let ambiguous = schema
            .function("pick", Some(&names(&["a"])), &json)
            .unwrap_err();
        assert_eq!(
            ambiguous.to_string(),
            "could not choose the best candidate function between: public.pick(a integer), public.pick(a text)"
        );
        assert_eq!(
            crate::errors::Problem::upstream(&ambiguous),
            Some("PGRST203")
        );
        // Keys no overload takes, or a body that is not an object: the
        // function taking the whole body.
        let whole = schema
            .function("pick", Some(&names(&["x"])), &json)
            .unwrap();
        assert_eq!(whole.body_argument(), Some("jsonb"));
        assert!(schema.function("pick", None, &json).is_ok());
        // Not for a GET's query parameters, nor a body of another type.
        assert!(schema.function("pick", Some(&names(&["x"])), &[]).is_err());
        assert!(schema.function("pick", None, &["text"]).is_err());
    }
}
