//! The policy engine. Casbin holds the role graph (`g`: user → role, role →
//! role) and the policy rules (`p`); on top of its matching, a decision
//! gathers every matching policy's row condition and column list. A decision
//! is computed in memory from the loaded snapshot: no database round trip.

use super::adapter::PgAdapter;
use basalt_core::filter::{self, Expr};
use casbin::{CoreApi, DefaultModel, Enforcer, MgmtApi, RbacApi};
use deadpool_postgres::Pool;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use uuid::Uuid;

/// Casbin's model: request (subject, object, action); policies carry their id;
/// `g` is the role graph; objects match with `keyMatch` (a trailing `*`).
const MODEL: &str = r#"
[request_definition]
r = sub, obj, act

[policy_definition]
p = sub, obj, act, id

[role_definition]
g = _, _

[policy_effect]
e = some(where (p.eft == allow))

[matchers]
m = g(r.sub, p.sub) && keyMatch(r.obj, p.obj) && (r.act == p.act || p.act == "*")
"#;

pub const SERVICE_ROLE: &str = "service_role";
pub const AUTHENTICATED: &str = "authenticated";

/// A policy as stored, with its condition parsed once at load.
#[derive(Debug)]
pub struct Policy {
    pub id: Uuid,
    pub subject: String,
    pub object: String,
    pub action: String,
    pub condition: Option<String>,
    pub parsed: Option<Expr>,
    pub columns: Option<Vec<String>>,
    pub description: String,
    pub source: String,
}

impl Policy {
    /// A policy held in memory (tests, benchmarks); the condition is parsed here.
    pub fn new(
        subject: &str,
        object: &str,
        action: &str,
        condition: Option<&str>,
        columns: Option<Vec<String>>,
    ) -> anyhow::Result<Policy> {
        Ok(Policy {
            id: Uuid::new_v4(),
            subject: subject.into(),
            object: object.into(),
            action: action.into(),
            condition: condition.map(str::to_owned),
            parsed: condition.map(filter::parse_condition).transpose()?,
            columns,
            description: String::new(),
            source: "memory".into(),
        })
    }

    pub fn json(&self) -> Value {
        json!({
            "id": self.id, "subject": self.subject, "object": self.object, "action": self.action,
            "condition": self.condition, "columns": self.columns, "description": self.description,
            "source": self.source,
        })
    }
}

/// Who asks: the role of their token, their user id, and roles from their claims.
#[derive(Debug, Clone, Default)]
pub struct Subject {
    pub role: String,
    pub user_id: Option<Uuid>,
    pub claim_roles: Vec<String>,
}

/// The answer of [`Engine::authorize`].
#[derive(Debug, Clone)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
    /// Rows the subject may touch: `None` means every row (when allowed).
    pub condition: Option<Expr>,
    /// Columns the subject may use: `None` means all.
    pub columns: Option<Vec<String>>,
    /// The policies that allowed it (all of them, when conditions are OR-ed).
    pub policies: Vec<Arc<Policy>>,
    /// The subject's names that were considered: itself and inherited roles.
    pub subjects: Vec<String>,
}

impl Decision {
    /// Each allowing policy's condition and columns, kept apart for
    /// per-row combination (`basalt_core::policy::visible_columns`); the
    /// service_role key, which no policy names, sees every row and column.
    pub fn grants(&self) -> Vec<basalt_core::policy::Grant> {
        if self.policies.is_empty() {
            return vec![(None, None)];
        }
        self.policies
            .iter()
            .map(|policy| (policy.parsed.clone(), policy.columns.clone()))
            .collect()
    }
}

/// Everything a decision needs, precomputed when policies are loaded.
struct Snapshot {
    /// For every member of the role graph (users and roles): all roles it
    /// holds through inheritance, from casbin's role manager.
    roles: HashMap<String, Vec<String>>,
    /// Policies by subject, each with its position (to keep creation order).
    by_subject: HashMap<String, Vec<(usize, Arc<Policy>)>>,
}

impl Snapshot {
    fn new(enforcer: Enforcer, policies: Vec<Arc<Policy>>) -> Snapshot {
        let members: BTreeSet<String> = enforcer
            .get_named_grouping_policy("g")
            .into_iter()
            .filter_map(|rule| rule.into_iter().next())
            .collect();
        let roles = members
            .into_iter()
            .map(|member| {
                let held = enforcer.get_implicit_roles_for_user(&member, None);
                (member, held)
            })
            .collect();
        let mut by_subject: HashMap<String, Vec<(usize, Arc<Policy>)>> = HashMap::new();
        for (position, policy) in policies.into_iter().enumerate() {
            by_subject
                .entry(policy.subject.clone())
                .or_default()
                .push((position, policy));
        }
        Snapshot { roles, by_subject }
    }
}

pub struct Engine {
    current: RwLock<Arc<Snapshot>>,
}

/// `keyMatch`: exact, or a pattern ending in `*` matching any rest.
pub fn object_matches(pattern: &str, object: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => object.starts_with(prefix),
        None => pattern == object,
    }
}

async fn snapshot(pool: &Pool) -> anyhow::Result<Snapshot> {
    let model = DefaultModel::from_str(MODEL).await?;
    let enforcer = Enforcer::new(model, PgAdapter::new(pool.clone())).await?;
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT id, subject, object, action, condition, columns, description, source
             FROM basalt.policies ORDER BY created_at, id",
            &[],
        )
        .await?;
    let policies = rows
        .iter()
        .map(|row| {
            let condition: Option<String> = row.get(4);
            let parsed = match &condition {
                Some(text) => Some(filter::parse_condition(text).map_err(|e| {
                    anyhow::anyhow!(
                        "policy {} has an invalid condition: {e}",
                        row.get::<_, Uuid>(0)
                    )
                })?),
                None => None,
            };
            Ok(Arc::new(Policy {
                id: row.get(0),
                subject: row.get(1),
                object: row.get(2),
                action: row.get(3),
                condition,
                parsed,
                columns: row.get(5),
                description: row.get(6),
                source: row.get(7),
            }))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Snapshot::new(enforcer, policies))
}

impl Engine {
    pub async fn load(pool: &Pool) -> anyhow::Result<Engine> {
        Ok(Engine {
            current: RwLock::new(Arc::new(snapshot(pool).await?)),
        })
    }

    /// An engine from rules held in memory, no database: `inheritance` holds
    /// `(member, role)` pairs (`user:<id>` → role, role → parent role).
    pub async fn from_rules(
        policies: Vec<Policy>,
        inheritance: Vec<(String, String)>,
    ) -> anyhow::Result<Engine> {
        let model = DefaultModel::from_str(MODEL).await?;
        let mut enforcer = Enforcer::new(model, casbin::MemoryAdapter::default()).await?;
        let grouping: Vec<Vec<String>> = inheritance
            .into_iter()
            .map(|(member, role)| vec![member, role])
            .collect();
        if !grouping.is_empty() {
            enforcer.add_grouping_policies(grouping).await?;
        }
        let rules: Vec<Vec<String>> = policies
            .iter()
            .map(|p| {
                vec![
                    p.subject.clone(),
                    p.object.clone(),
                    p.action.clone(),
                    p.id.to_string(),
                ]
            })
            .collect();
        if !rules.is_empty() {
            enforcer.add_policies(rules).await?;
        }
        Ok(Engine {
            current: RwLock::new(Arc::new(Snapshot::new(
                enforcer,
                policies.into_iter().map(Arc::new).collect(),
            ))),
        })
    }

    /// Loads a fresh snapshot; requests in flight keep the one they started with.
    pub async fn reload(&self, pool: &Pool) -> anyhow::Result<()> {
        let fresh = Arc::new(snapshot(pool).await?);
        *self.current.write().expect("engine lock") = fresh;
        Ok(())
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        self.current.read().expect("engine lock").clone()
    }

    /// Every policy (of any subject) allowing `action` on `object`: what
    /// any caller's decision there may combine.
    pub fn policies_on(&self, object: &str, action: &str) -> Vec<Arc<Policy>> {
        let snapshot = self.snapshot();
        let mut found: Vec<&(usize, Arc<Policy>)> = snapshot
            .by_subject
            .values()
            .flatten()
            .filter(|(_, p)| {
                object_matches(&p.object, object) && (p.action == action || p.action == "*")
            })
            .collect();
        found.sort_by_key(|(position, _)| *position);
        found.into_iter().map(|(_, p)| p.clone()).collect()
    }

    /// Decides whether `subject` may do `action` on `object`, and on which rows
    /// and columns. Deny by default. Only the service_role key's own role
    /// bypasses policies: a role named so in a user's claims or inherited
    /// through the role graph does not.
    pub fn authorize(&self, subject: &Subject, object: &str, action: &str) -> Decision {
        self.decide(subject, object, action, None)
    }

    /// The same for a request that uses `columns`: only policies whose column
    /// list covers all of them count, so a policy granting every row of a few
    /// columns never widens another granting a few rows of every column.
    pub fn authorize_columns(
        &self,
        subject: &Subject,
        object: &str,
        action: &str,
        columns: &[String],
    ) -> Decision {
        self.decide(subject, object, action, Some(columns))
    }

    fn decide(
        &self,
        subject: &Subject,
        object: &str,
        action: &str,
        columns: Option<&[String]>,
    ) -> Decision {
        let snapshot = self.snapshot();
        let mut start: Vec<String> = vec![subject.role.clone()];
        if let Some(user) = subject.user_id {
            start.push(format!("user:{user}"));
            start.push(AUTHENTICATED.to_owned());
        }
        // Claim roles can never be the key roles.
        start.extend(
            subject
                .claim_roles
                .iter()
                .filter(|r| *r != SERVICE_ROLE && *r != "anon")
                .cloned(),
        );
        let mut names: BTreeSet<String> = BTreeSet::new();
        for name in &start {
            names.insert(name.clone());
            if let Some(held) = snapshot.roles.get(name) {
                names.extend(held.iter().filter(|r| *r != SERVICE_ROLE).cloned());
            }
        }
        let subjects: Vec<String> = names.iter().cloned().collect();
        let decision = |allowed: bool, reason: String, condition, columns, policies| Decision {
            allowed,
            reason,
            condition,
            columns,
            policies,
            subjects: subjects.clone(),
        };
        if subject.role == SERVICE_ROLE && subject.user_id.is_none() {
            return decision(
                true,
                "the service_role key bypasses policies".into(),
                None,
                None,
                Vec::new(),
            );
        }
        let mut candidates: Vec<&(usize, Arc<Policy>)> = names
            .iter()
            .filter_map(|name| snapshot.by_subject.get(name))
            .flatten()
            .filter(|(_, p)| {
                object_matches(&p.object, object) && (p.action == action || p.action == "*")
            })
            .filter(|(_, p)| match (columns, &p.columns) {
                (Some(wanted), Some(granted)) => wanted.iter().all(|c| granted.contains(c)),
                _ => true,
            })
            .collect();
        candidates.sort_by_key(|(position, _)| *position);
        let matching: Vec<Arc<Policy>> = candidates.into_iter().map(|(_, p)| p.clone()).collect();
        if matching.is_empty() {
            let what = match columns {
                Some(columns) if !columns.is_empty() => {
                    format!("{action} {object} ({})", columns.join(", "))
                }
                _ => format!("{action} {object}"),
            };
            return decision(
                false,
                format!("no policy lets {} {what}", subjects.join(", ")),
                None,
                None,
                Vec::new(),
            );
        }
        let granted = if matching.iter().any(|p| p.columns.is_none()) {
            None
        } else {
            let all: BTreeSet<String> = matching
                .iter()
                .flat_map(|p| p.columns.clone().unwrap_or_default())
                .collect();
            Some(all.into_iter().collect())
        };
        if let Some(unconditional) = matching.iter().find(|p| p.parsed.is_none()).cloned() {
            let reason = format!("policy {} allows every row", unconditional.id);
            // The deciding policy first, then the others that also match.
            let mut ordered = vec![unconditional.clone()];
            ordered.extend(
                matching
                    .into_iter()
                    .filter(|p| !Arc::ptr_eq(p, &unconditional)),
            );
            return decision(true, reason, None, granted, ordered);
        }
        let mut conditions: Vec<Expr> = matching.iter().filter_map(|p| p.parsed.clone()).collect();
        let condition = if conditions.len() == 1 {
            conditions.pop().expect("one")
        } else {
            Expr::Or(conditions)
        };
        let reason = format!(
            "{} policies allow the rows matching their conditions",
            matching.len()
        );
        decision(true, reason, Some(condition), granted, matching)
    }
}
