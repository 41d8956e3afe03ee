//! Validation of storage and of the objects the file declares (roles,
//! policies, buckets): the parts of `validate.rs` that read more than one
//! section.

use super::validate::{failure, is_origin, range};
use super::*;

impl Config {
    pub(super) fn validate_storage<F>(&self, fail: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str, String, &str) -> ConfigError,
    {
        let storage = &self.storage;
        match storage.backend.as_str() {
            "local" => {}
            "s3" => {
                for (setting, value) in [
                    ("s3.bucket", &self.s3.bucket),
                    ("s3.region", &self.s3.region),
                    ("s3.access_key_id", &self.s3.access_key_id),
                    ("s3.secret_access_key", &self.s3.secret_access_key.0),
                ] {
                    if value.is_empty() {
                        return Err(fail(
                            setting,
                            "it is empty while storage.backend is s3".into(),
                            &format!("set {setting} ({})", env_name(setting)),
                        ));
                    }
                }
                if !self.s3.endpoint.is_empty() && !is_origin(&self.s3.endpoint) {
                    return Err(fail(
                        "s3.endpoint",
                        format!("`{}` is not an http(s) origin", self.s3.endpoint),
                        "use a URL such as http://127.0.0.1:9000, without a path",
                    ));
                }
            }
            other => {
                return Err(fail(
                    "storage.backend",
                    format!("`{other}` is not a storage backend"),
                    "use local or s3",
                ))
            }
        }
        range(
            fail,
            "storage.max_file_size_bytes",
            storage.max_file_size_bytes,
            1,
            5 * 1024 * 1024 * 1024 * 1024,
        )?;
        range(
            fail,
            "storage.signed_url_max_expiry_secs",
            storage.signed_url_max_expiry_secs,
            1,
            365 * 86_400,
        )?;
        range(
            fail,
            "storage.resumable_ttl_secs",
            storage.resumable_ttl_secs,
            60,
            30 * 86_400,
        )?;
        range(
            fail,
            "storage.orphan_grace_secs",
            storage.orphan_grace_secs,
            1,
            30 * 86_400,
        )?;
        range(
            fail,
            "storage.cleanup_interval_secs",
            storage.cleanup_interval_secs,
            1,
            86_400,
        )?;
        range(
            fail,
            "storage.transfer_timeout_secs",
            storage.transfer_timeout_secs,
            1,
            7 * 86_400,
        )?;
        // S3 refuses multipart parts under 5 MiB (except the last) and over 5 GiB.
        range(
            fail,
            "s3.part_size_bytes",
            self.s3.part_size_bytes,
            5 * 1024 * 1024,
            5 * 1024 * 1024 * 1024,
        )?;
        for bucket in &storage.buckets {
            if let Err(problem) = crate::storage::check_bucket_id(&bucket.name) {
                return Err(fail(
                    "storage.buckets",
                    format!("bucket `{}`: {problem}", bucket.name),
                    "use 1-63 lowercase letters, digits, `.`, `_` or `-`",
                ));
            }
            for pattern in &bucket.allowed_mime_types {
                if !crate::storage::valid_mime_pattern(pattern) {
                    return Err(fail(
                        "storage.buckets",
                        format!("bucket `{}`: `{pattern}` is not a MIME type", bucket.name),
                        "write types as image/png, image/* or */*",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The Meilisearch server's address and the declared search indexes.
    pub(super) fn validate_search<F>(&self, fail: &F) -> Result<(), ConfigError>
    where
        F: Fn(&str, String, &str) -> ConfigError,
    {
        let url = &self.search.meilisearch_url;
        if !(url.is_empty() || url.starts_with("http://") || url.starts_with("https://")) {
            return Err(fail(
                "search.meilisearch_url",
                format!("`{url}` is not an http(s) URL"),
                "use the server's address, for example http://127.0.0.1:7700",
            ));
        }
        range(fail, "search.batch_size", self.search.batch_size, 1, 10_000)?;
        range(
            fail,
            "search.task_timeout_secs",
            self.search.task_timeout_secs,
            1,
            3600,
        )?;
        let mut names = std::collections::BTreeSet::new();
        for (at, index) in self.search.indexes.iter().enumerate() {
            if let Err(error) = index.check() {
                return Err(fail(
                    "search.indexes",
                    format!("entry {}: {error}", at + 1),
                    "fix that field of the [[search.indexes]] entry (docs/search.md)",
                ));
            }
            if !names.insert(index.name.as_str()) {
                return Err(fail(
                    "search.indexes",
                    format!("`{}` is declared twice", index.name),
                    "declare each index once",
                ));
            }
            if index.is_meilisearch() && url.is_empty() {
                return Err(fail(
                    "search.indexes",
                    format!("`{}` uses Meilisearch, but search.meilisearch_url is empty", index.name),
                    "set search.meilisearch_url (BASALT_SEARCH_MEILISEARCH_URL), or use backend = \"postgres\"",
                ));
            }
        }
        Ok(())
    }

    pub(super) fn validate_declarations(
        &self,
        origins: &BTreeMap<String, String>,
    ) -> Result<(), ConfigError> {
        use crate::policy::{policy_problem, valid_role_name, BUILTIN_ROLES};
        let fail =
            |setting: &str, problem: String, fix: &str| failure(origins, setting, problem, fix);
        for (setting, role) in [
            ("authz.db_role_anon", &self.authz.db_role_anon),
            (
                "authz.db_role_authenticated",
                &self.authz.db_role_authenticated,
            ),
            ("authz.db_role_service", &self.authz.db_role_service),
            ("database.api_role", &self.database.api_role),
        ] {
            let plain = !role.is_empty()
                && role.len() <= 63
                && role.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !plain {
                return Err(fail(
                    setting,
                    format!("`{role}` is not a database role name"),
                    "use a role such as anon or authenticated",
                ));
            }
        }
        let api_roles = [
            &self.authz.db_role_anon,
            &self.authz.db_role_authenticated,
            &self.authz.db_role_service,
        ];
        if api_roles.contains(&&self.database.api_role) {
            return Err(fail(
                "database.api_role",
                format!(
                    "`{}` is also one of the roles it switches to",
                    self.database.api_role
                ),
                "use a login role of its own, such as authenticator",
            ));
        }
        let declared: Vec<&str> = self.authz.roles.iter().map(|r| r.name.as_str()).collect();
        let known = |name: &str| BUILTIN_ROLES.contains(&name) || declared.contains(&name);
        for (index, role) in self.authz.roles.iter().enumerate() {
            if !valid_role_name(&role.name) || BUILTIN_ROLES.contains(&role.name.as_str()) {
                return Err(fail(
                    "authz.roles",
                    format!("entry {} has the name `{}`", index + 1, role.name),
                    "use a-z, 0-9 and _, starting with a letter, and not anon, authenticated or service_role",
                ));
            }
            if declared.iter().filter(|name| **name == role.name).count() > 1 {
                return Err(fail(
                    "authz.roles",
                    format!("`{}` is declared twice", role.name),
                    "declare each role once",
                ));
            }
            if let Some(parent) = role
                .parents
                .iter()
                .find(|p| !known(p) || *p == &role.name || *p == "service_role")
            {
                return Err(fail(
                    "authz.roles",
                    format!(
                        "`{}` inherits from `{parent}`, which is not a built-in or declared role",
                        role.name
                    ),
                    "declare the parent role too, or remove it",
                ));
            }
        }
        for (index, policy) in self.authz.policies.iter().enumerate() {
            if let Some((field, problem)) = policy_problem(
                &policy.subject,
                &policy.object,
                &policy.action,
                policy.condition.as_deref(),
                policy.columns.as_deref(),
            ) {
                return Err(fail(
                    "authz.policies",
                    format!("entry {}: {field}: {problem}", index + 1),
                    "fix that field of the [[authz.policies]] entry",
                ));
            }
            if !policy.subject.starts_with("user:") && !known(&policy.subject) {
                return Err(fail(
                    "authz.policies",
                    format!(
                        "entry {}: the subject `{}` is not a built-in or declared role",
                        index + 1,
                        policy.subject
                    ),
                    "declare it with [[authz.roles]]",
                ));
            }
        }
        Ok(())
    }
}
