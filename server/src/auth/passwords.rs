//! Password hashing with Argon2id, off the request threads.

use crate::error::HttpError;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use basalt_core::config::AuthConfig;
use basalt_core::errors::{ApiError, ErrorCode};
use std::sync::Arc;

#[derive(Clone)]
pub struct Passwords {
    argon2: Arc<Argon2<'static>>,
    /// Hashes running at once: each takes `argon2_memory_kib`, so a burst of
    /// sign-ins cannot take unbounded memory; the rest wait their turn.
    permits: Arc<tokio::sync::Semaphore>,
    /// Verified against when the email is unknown, so both cases cost the same.
    dummy_hash: Arc<String>,
}

impl Passwords {
    pub fn new(config: &AuthConfig) -> anyhow::Result<Self> {
        let params = Params::new(
            config.argon2_memory_kib as u32,
            config.argon2_iterations as u32,
            config.argon2_parallelism as u32,
            None,
        )
        .map_err(|error| anyhow::anyhow!("invalid auth.argon2_* settings: {error}"))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        let dummy_hash = argon2
            .hash_password(uuid::Uuid::new_v4().to_string().as_bytes(), &salt)
            .map_err(|error| anyhow::anyhow!("argon2: {error}"))?
            .to_string();
        let parallel = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
        Ok(Passwords {
            argon2: Arc::new(argon2),
            permits: Arc::new(tokio::sync::Semaphore::new(parallel)),
            dummy_hash: Arc::new(dummy_hash),
        })
    }

    pub async fn hash(&self, password: String) -> Result<String, HttpError> {
        let _permit = self.permits.acquire().await.expect("never closed");
        let argon2 = self.argon2.clone();
        actix_web::web::block(move || {
            let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
            argon2
                .hash_password(password.as_bytes(), &salt)
                .map(|hash| hash.to_string())
        })
        .await
        .map_err(|_| HttpError::new(ErrorCode::InternalError))?
        .map_err(|error| {
            ApiError::new(ErrorCode::InternalError)
                .with_details(error.to_string())
                .into()
        })
    }

    /// Whether `password` matches `hash`; with no hash (unknown user), checks
    /// against the dummy hash and answers false, taking the same time.
    pub async fn verify(&self, password: String, hash: Option<String>) -> bool {
        let _permit = self.permits.acquire().await.expect("never closed");
        let argon2 = self.argon2.clone();
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy_hash.as_str().to_owned());
        let matched = actix_web::web::block(move || {
            PasswordHash::new(&hash)
                .map(|parsed| argon2.verify_password(password.as_bytes(), &parsed).is_ok())
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        known && matched
    }
}
