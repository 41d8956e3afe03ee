//! API keys: long-lived HS256 JWTs whose `role` claim is `anon` or
//! `service_role`, signed with the JWT secret (as Supabase's keys are).

use crate::http::error::HttpError;
use basalt_core::errors::{ApiError, ErrorCode};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

pub const ANON: &str = "anon";
pub const SERVICE_ROLE: &str = "service_role";
const ISSUER: &str = "basalt";
/// Keys carry a fixed issue time, so `basalt keys` prints the same keys for the
/// same secret every time: 2026-01-01T00:00:00Z, valid for 20 years.
const KEY_ISSUED_AT: i64 = 1_767_225_600;
const KEY_LIFETIME_SECS: i64 = 20 * 365 * 24 * 3600;

#[derive(Debug, Serialize, Deserialize)]
pub struct KeyClaims {
    pub iss: String,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
}

pub struct ApiKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl ApiKeys {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "role"]);
        validation.validate_aud = false;
        validation.leeway = 30;
        ApiKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn mint(&self, role: &str) -> String {
        let claims = KeyClaims {
            iss: ISSUER.into(),
            role: role.into(),
            iat: KEY_ISSUED_AT,
            exp: KEY_ISSUED_AT + KEY_LIFETIME_SECS,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing does not fail")
    }

    /// Verifies signature (constant-time HMAC comparison), algorithm and expiry.
    pub fn verify(&self, token: &str) -> Result<KeyClaims, HttpError> {
        jsonwebtoken::decode::<KeyClaims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|error| {
                ApiError::new(ErrorCode::ApiKeyInvalid)
                    .with_details(error.to_string())
                    .into()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_keys_verify_only_with_their_secret() {
        let keys = ApiKeys::new("0123456789abcdef0123456789abcdef");
        let anon = keys.mint(ANON);
        assert_eq!(anon, keys.mint(ANON), "keys are stable for a secret");
        assert_eq!(keys.verify(&anon).unwrap().role, ANON);
        assert_eq!(
            keys.verify(&keys.mint(SERVICE_ROLE)).unwrap().role,
            SERVICE_ROLE
        );
        let other = ApiKeys::new("another-secret-another-secret-another");
        assert_eq!(
            other.verify(&anon).unwrap_err().error.kind,
            ErrorCode::ApiKeyInvalid
        );
        assert!(keys.verify("not.a.jwt").is_err());
        // alg: none is refused.
        let unsigned = format!(
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.",
            anon.split('.').nth(1).unwrap()
        );
        assert!(keys.verify(&unsigned).is_err());
    }
}
