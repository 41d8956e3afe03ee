//! A casbin adapter on tokio-postgres: loads `p` rules from `basalt.policies`
//! and `g` rules from `basalt.role_parents` and `basalt.user_roles`.
//!
//! Writes do not go through casbin: the admin API changes the tables in SQL
//! (with checks casbin cannot make: row conditions, columns, sources), then
//! NOTIFY `basalt_policies` makes every replica load a fresh enforcer.

use casbin::{Adapter, Filter, Model, Result};
use deadpool_postgres::Pool;

pub struct PgAdapter {
    pool: Pool,
}

impl PgAdapter {
    pub fn new(pool: Pool) -> Self {
        PgAdapter { pool }
    }

    async fn rows(&self) -> std::result::Result<Vec<(&'static str, Vec<String>)>, String> {
        let client = self.pool.get().await.map_err(|e| e.to_string())?;
        let mut rules = Vec::new();
        for row in client
            .query(
                "SELECT subject, object, action, id::text FROM basalt.policies",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
        {
            rules.push(("p", vec![row.get(0), row.get(1), row.get(2), row.get(3)]));
        }
        for row in client
            .query(
                "SELECT role, parent FROM basalt.role_parents
                 UNION ALL SELECT 'user:' || user_id, role FROM basalt.user_roles",
                &[],
            )
            .await
            .map_err(|e| e.to_string())?
        {
            rules.push(("g", vec![row.get(0), row.get(1)]));
        }
        Ok(rules)
    }
}

fn adapter_error(message: String) -> casbin::Error {
    casbin::Error::AdapterError(casbin::error::AdapterError(message.into()))
}

#[async_trait::async_trait]
impl Adapter for PgAdapter {
    async fn load_policy(&mut self, model: &mut dyn Model) -> Result<()> {
        for (section, rule) in self.rows().await.map_err(adapter_error)? {
            model.add_policy(section, section, rule);
        }
        Ok(())
    }

    async fn load_filtered_policy<'a>(
        &mut self,
        model: &mut dyn Model,
        _: Filter<'a>,
    ) -> Result<()> {
        self.load_policy(model).await
    }

    async fn save_policy(&mut self, _: &mut dyn Model) -> Result<()> {
        Ok(())
    }

    async fn clear_policy(&mut self) -> Result<()> {
        Ok(())
    }

    fn is_filtered(&self) -> bool {
        false
    }

    async fn add_policy(&mut self, _: &str, _: &str, _: Vec<String>) -> Result<bool> {
        Ok(false)
    }

    async fn add_policies(&mut self, _: &str, _: &str, _: Vec<Vec<String>>) -> Result<bool> {
        Ok(false)
    }

    async fn remove_policy(&mut self, _: &str, _: &str, _: Vec<String>) -> Result<bool> {
        Ok(false)
    }

    async fn remove_policies(&mut self, _: &str, _: &str, _: Vec<Vec<String>>) -> Result<bool> {
        Ok(false)
    }

    async fn remove_filtered_policy(
        &mut self,
        _: &str,
        _: &str,
        _: usize,
        _: Vec<String>,
    ) -> Result<bool> {
        Ok(false)
    }
}
