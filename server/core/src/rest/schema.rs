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

#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl Function {
    /// Immutable and stable functions run in read-only transactions.
    pub fn read_only(&self) -> bool {
        self.volatility != 'v'
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schema {
    pub name: String,
    pub tables: BTreeMap<String, Table>,
    pub foreign_keys: Vec<ForeignKey>,
    /// Overloads share a name.
    pub functions: BTreeMap<String, Vec<Function>>,
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
}

impl Relationship {
    fn describe(&self) -> String {
        match self {
            Relationship::ToOne(fk) | Relationship::ToMany(fk) | Relationship::OneToOne(fk) => {
                fk.name.clone()
            }
            Relationship::ManyToMany { junction, .. } => junction.clone(),
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

    /// The function `name` that takes exactly the named arguments (those with
    /// defaults may be left out).
    pub fn function(&self, name: &str, given: &[String]) -> Result<&Function, QueryError> {
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
        overloads
            .iter()
            .find(|function| {
                let required = function.args.len() - function.defaults;
                given
                    .iter()
                    .all(|g| function.args.iter().any(|(name, _)| name == g))
                    && function.args[..required]
                        .iter()
                        .all(|(name, _)| given.contains(name))
            })
            .ok_or_else(|| {
                let shapes: Vec<String> = overloads
                    .iter()
                    .map(|f| {
                        let args: Vec<String> =
                            f.args.iter().map(|(n, t)| format!("{n} {t}")).collect();
                        format!("{name}({})", args.join(", "))
                    })
                    .collect();
                let given = if given.is_empty() {
                    "no arguments".to_owned()
                } else {
                    format!("the arguments {}", given.join(", "))
                };
                QueryError::FunctionArguments {
                    name: name.into(),
                    given,
                    shapes,
                }
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
}
