//! JSON Web Tokens: minting the API keys (`anon`, `service_role`) and users'
//! access tokens, and verifying every token a request presents.
//!
//! Verification pins HS256 (so `alg: none` and RS/HS key confusion fail),
//! checks the signature in constant time, `exp` and `nbf` with a small clock
//! skew, requires `role` and `exp`, and requires `aud = authenticated` on user
//! tokens. API keys carry no `aud`, like Supabase's.

use crate::error::HttpError;
use basalt_core::errors::{ApiError, ErrorCode};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const ANON: &str = "anon";
pub const SERVICE_ROLE: &str = "service_role";
pub const AUDIENCE: &str = "authenticated";
const ISSUER: &str = "basalt";
/// Keys carry a fixed issue time, so `basalt keys` prints the same keys for the
/// same secret every time: 2026-01-01T00:00:00Z, valid for 20 years.
const KEY_ISSUED_AT: i64 = 1_767_225_600;
const KEY_LIFETIME_SECS: i64 = 20 * 365 * 24 * 3600;

#[derive(Debug, Serialize, Deserialize)]
struct KeyClaims {
    iss: String,
    role: String,
    iat: i64,
    exp: i64,
}

/// The claims of a user's access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
    pub session_id: String,
    pub email: String,
    pub app_metadata: Value,
    pub user_metadata: Value,
    /// As GoTrue: policies can tell anonymous users (`{auth.claims.is_anonymous}`).
    pub is_anonymous: bool,
    /// The session's assurance level: `aal1`, or `aal2` after a second factor.
    pub aal: String,
    /// How the session was authenticated: `[{"method", "timestamp"}]`.
    pub amr: Value,
}

/// What a verified token says about its bearer.
#[derive(Debug, Clone)]
pub struct Verified {
    pub role: String,
    /// Every claim of the token (for policy variables such as `{auth.claims.org_id}`).
    pub claims: Value,
    /// Set for users' access tokens: `(user id, session id)`.
    pub user: Option<(uuid::Uuid, uuid::Uuid)>,
}

/// An asymmetric key that signs users' access tokens (RS256 or ES256).
pub struct SigningKey {
    algorithm: Algorithm,
    key_id: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// The public key as a JWK, for the JWKS endpoint.
    jwk: Value,
}

impl SigningKey {
    /// Reads an RSA (PKCS#1 or PKCS#8) or P-256 (PKCS#8) private key in PEM.
    pub fn from_pem(pem: &str, key_id: &str) -> anyhow::Result<SigningKey> {
        use base64::Engine;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let rsa = {
            use rsa::pkcs1::DecodeRsaPrivateKey;
            use rsa::pkcs8::DecodePrivateKey;
            rsa::RsaPrivateKey::from_pkcs8_pem(pem)
                .ok()
                .or_else(|| rsa::RsaPrivateKey::from_pkcs1_pem(pem).ok())
        };
        let (algorithm, encoding, decoding, mut jwk) = if let Some(private) = rsa {
            use rsa::traits::PublicKeyParts;
            let n = b64(&private.n().to_bytes_be());
            let e = b64(&private.e().to_bytes_be());
            (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(pem.as_bytes())?,
                DecodingKey::from_rsa_components(&n, &e)?,
                serde_json::json!({"kty": "RSA", "n": n, "e": e, "alg": "RS256"}),
            )
        } else {
            use p256::elliptic_curve::sec1::ToEncodedPoint;
            use p256::pkcs8::DecodePrivateKey;
            let secret = p256::SecretKey::from_pkcs8_pem(pem).map_err(|_| {
                anyhow::anyhow!(
                    "jwt.signing_key_file holds neither an RSA key nor a P-256 key in PKCS#8 PEM"
                )
            })?;
            let point = secret.public_key().to_encoded_point(false);
            let x = b64(point.x().expect("uncompressed point"));
            let y = b64(point.y().expect("uncompressed point"));
            (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(pem.as_bytes())?,
                DecodingKey::from_ec_components(&x, &y)?,
                serde_json::json!({"kty": "EC", "crv": "P-256", "x": x, "y": y, "alg": "ES256"}),
            )
        };
        let key_id = if key_id.is_empty() {
            use sha2::Digest;
            hex::encode(&sha2::Sha256::digest(jwk.to_string().as_bytes())[..8])
        } else {
            key_id.to_owned()
        };
        jwk["kid"] = Value::String(key_id.clone());
        jwk["use"] = Value::String("sig".into());
        Ok(SigningKey {
            algorithm,
            key_id,
            encoding,
            decoding,
            jwk,
        })
    }
}

pub struct Jwt {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    signing: Option<SigningKey>,
    /// API keys (tokens without a user) already verified, by the SHA-256 of
    /// the whole token, with their `exp`: the same few keys come with every
    /// request, and checking their signature and decoding their claims again
    /// cost about a tenth of a data read (docs/benchmarks.md). A token is
    /// found only if it is byte for byte one that verified; it is checked for
    /// expiry on every use. Users' tokens are never kept.
    keys: std::sync::Mutex<std::collections::HashMap<[u8; 32], (Verified, i64)>>,
}

/// How many verified API keys are kept (emptied when full: only tokens that
/// verified get in, so this takes many valid keys, not requests).
const KEY_CACHE_LIMIT: usize = 64;

impl Jwt {
    pub fn new(secret: &str, clock_skew_secs: u64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // Only tokens this server issued: another service sharing the
        // secret signs with its own `iss`.
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.set_issuer(&[ISSUER]);
        validation.validate_aud = false;
        validation.validate_nbf = true;
        validation.leeway = clock_skew_secs;
        Jwt {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            signing: None,
            keys: Default::default(),
        }
    }

    /// Signs access tokens with `key` from now on (API keys stay HS256).
    pub fn with_signing_key(mut self, key: SigningKey) -> Self {
        self.signing = Some(key);
        self
    }

    /// The public keys for `/.well-known/jwks.json`.
    pub fn jwks(&self) -> Value {
        let keys: Vec<&Value> = self.signing.iter().map(|key| &key.jwk).collect();
        serde_json::json!({ "keys": keys })
    }

    pub fn mint_key(&self, role: &str) -> String {
        let claims = KeyClaims {
            iss: ISSUER.into(),
            role: role.into(),
            iat: KEY_ISSUED_AT,
            exp: KEY_ISSUED_AT + KEY_LIFETIME_SECS,
        };
        self.sign(&claims)
    }

    pub fn mint_access(&self, claims: &AccessClaims) -> String {
        match &self.signing {
            Some(key) => {
                let mut header = Header::new(key.algorithm);
                header.kid = Some(key.key_id.clone());
                jsonwebtoken::encode(&header, claims, &key.encoding)
                    .expect("signing with a loaded key does not fail")
            }
            None => self.sign(claims),
        }
    }

    fn sign(&self, claims: &impl Serialize) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .expect("HS256 signing does not fail")
    }

    /// Picks the key by the token's algorithm: HS256 → the secret; the signing
    /// key's algorithm → its public key; anything else is refused. An HS256
    /// token is never checked against a public key, so RS/HS confusion fails.
    fn key_for(&self, token: &str) -> Result<(&DecodingKey, Validation), HttpError> {
        let bad = |why: &str| {
            HttpError::from(ApiError::new(ErrorCode::BadJwt).with_details(why.to_owned()))
        };
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| bad("the token is malformed"))?;
        if header.alg == Algorithm::HS256 {
            return Ok((&self.decoding, self.validation.clone()));
        }
        match &self.signing {
            Some(key) if header.alg == key.algorithm => {
                let mut validation = self.validation.clone();
                validation.algorithms = vec![key.algorithm];
                Ok((&key.decoding, validation))
            }
            _ => Err(bad(
                "this server does not accept tokens signed with that algorithm",
            )),
        }
    }

    pub fn verify(&self, token: &str) -> Result<Verified, HttpError> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = chrono::Utc::now().timestamp();
        let leeway = self.validation.leeway as i64;
        if let Some((verified, exp)) = self.lock_keys().get(&digest) {
            if now - leeway <= *exp {
                return Ok(verified.clone());
            }
        }
        let verified = self.verify_token(token)?;
        let exp = verified.claims.get("exp").and_then(Value::as_i64);
        if let (None, Some(exp), None) = (verified.user, exp, verified.claims.get("nbf")) {
            let mut keys = self.lock_keys();
            if keys.len() >= KEY_CACHE_LIMIT {
                keys.clear();
            }
            keys.insert(digest, (verified.clone(), exp));
        }
        Ok(verified)
    }

    fn lock_keys(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<[u8; 32], (Verified, i64)>> {
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn verify_token(&self, token: &str) -> Result<Verified, HttpError> {
        let (key, validation) = self.key_for(token)?;
        let claims = jsonwebtoken::decode::<Value>(token, key, &validation)
            .map_err(|error| {
                let (code, why) = match error.kind() {
                    ErrorKind::ExpiredSignature => {
                        (ErrorCode::JwtExpired, "the token has expired".to_owned())
                    }
                    ErrorKind::ImmatureSignature => (
                        ErrorCode::BadJwt,
                        "the token is not valid yet (nbf)".to_owned(),
                    ),
                    ErrorKind::InvalidSignature => {
                        (ErrorCode::BadJwt, "the signature does not match".to_owned())
                    }
                    ErrorKind::InvalidAlgorithm => (
                        ErrorCode::BadJwt,
                        "only HS256 tokens are accepted".to_owned(),
                    ),
                    ErrorKind::InvalidIssuer => (
                        ErrorCode::BadJwt,
                        "the `iss` claim is not this server's".to_owned(),
                    ),
                    ErrorKind::MissingRequiredClaim(claim) => {
                        (ErrorCode::BadJwt, format!("the `{claim}` claim is missing"))
                    }
                    _ => (ErrorCode::BadJwt, "the token is malformed".to_owned()),
                };
                HttpError::from(ApiError::new(code).with_details(why))
            })?
            .claims;
        let bad = |why: &str| {
            HttpError::from(ApiError::new(ErrorCode::BadJwt).with_details(why.to_owned()))
        };
        let role = claims
            .get("role")
            .and_then(Value::as_str)
            .filter(|role| !role.is_empty())
            .ok_or_else(|| bad("the `role` claim is missing"))?
            .to_owned();
        // An API key has no subject; a user's token always has one, and can
        // never carry an API key's role, whatever a user row says.
        let api_key_role = role == ANON || role == SERVICE_ROLE;
        match (claims.get("sub").is_some(), api_key_role) {
            (false, true) => {
                return Ok(Verified {
                    role,
                    user: None,
                    claims,
                })
            }
            (false, false) => return Err(bad("the `sub` claim is missing")),
            (true, true) => return Err(bad("a user's token cannot carry the role of an API key")),
            (true, false) => {}
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => aud == AUDIENCE,
            Some(Value::Array(auds)) => auds.iter().any(|aud| aud == AUDIENCE),
            _ => false,
        };
        if !audience_ok {
            return Err(bad("the `aud` claim must be `authenticated`"));
        }
        let uuid_claim = |name: &str| {
            claims
                .get(name)
                .and_then(Value::as_str)
                .and_then(|text| text.parse::<uuid::Uuid>().ok())
                .ok_or_else(|| bad(&format!("the `{name}` claim must be a UUID")))
        };
        let user = Some((uuid_claim("sub")?, uuid_claim("session_id")?));
        Ok(Verified { role, user, claims })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn encode_raw(header: &Value, claims: &Value, secret: &str) -> String {
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let signing_input = format!("{}.{}", b64(header), b64(claims));
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        let signature =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    fn user_claims(overrides: Value) -> Value {
        let now = chrono::Utc::now().timestamp();
        let mut claims = serde_json::json!({
            "sub": uuid::Uuid::new_v4().to_string(),
            "session_id": uuid::Uuid::new_v4().to_string(),
            "aud": "authenticated",
            "role": "authenticated",
            "iss": "basalt",
            "iat": now,
            "exp": now + 600,
        });
        for (key, value) in overrides.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(key);
            } else {
                claims[key] = value.clone();
            }
        }
        claims
    }

    #[test]
    fn keys_are_stable_and_verify_only_with_their_secret() {
        let jwt = Jwt::new(SECRET, 30);
        let anon = jwt.mint_key(ANON);
        assert_eq!(anon, jwt.mint_key(ANON));
        assert_eq!(jwt.verify(&anon).unwrap().role, ANON);
        assert!(jwt.verify(&anon).unwrap().user.is_none());
        let other = Jwt::new("another-secret-another-secret-another", 30);
        assert_eq!(
            other.verify(&anon).unwrap_err().error.kind,
            ErrorCode::BadJwt
        );
    }

    /// A verified API key is kept, but only byte for byte, and never past
    /// its `exp`.
    #[test]
    fn kept_api_keys_still_expire_and_match_exactly() {
        let jwt = Jwt::new(SECRET, 0);
        let hs256 = serde_json::json!({"alg": "HS256", "typ": "JWT"});
        let exp = chrono::Utc::now().timestamp() + 1;
        let key = encode_raw(
            &hs256,
            &serde_json::json!({"iss": "basalt", "role": "anon", "exp": exp}),
            SECRET,
        );
        assert_eq!(jwt.verify(&key).unwrap().role, ANON);
        assert_eq!(jwt.verify(&key).unwrap().role, ANON, "kept");
        // The same claims under a wrong signature are not the kept key.
        let (unsigned, _) = key.rsplit_once('.').unwrap();
        let forged = format!("{unsigned}.{}", "A".repeat(43));
        assert_eq!(
            jwt.verify(&forged).unwrap_err().error.kind,
            ErrorCode::BadJwt
        );
        // Past its `exp`, the kept key is refused as a fresh one would be.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        assert_eq!(
            jwt.verify(&key).unwrap_err().error.kind,
            ErrorCode::JwtExpired
        );
    }

    /// Every rejection the issue lists, each with its reason.
    #[test]
    fn rejections() {
        let jwt = Jwt::new(SECRET, 30);
        let hs256 = serde_json::json!({"alg": "HS256", "typ": "JWT"});
        let now = chrono::Utc::now().timestamp();
        let valid = encode_raw(&hs256, &user_claims(serde_json::json!({})), SECRET);
        assert!(jwt.verify(&valid).unwrap().user.is_some());

        let none_alg = {
            let parts: Vec<&str> = valid.split('.').collect();
            let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"alg":"none","typ":"JWT"}"#);
            format!("{header}.{}.", parts[1])
        };
        let cases: Vec<(&str, String, ErrorCode, &str)> = vec![
            ("alg none", none_alg, ErrorCode::BadJwt, ""),
            (
                "wrong key",
                encode_raw(
                    &hs256,
                    &user_claims(serde_json::json!({})),
                    "wrong-secret-wrong-secret-wrong-secret",
                ),
                ErrorCode::BadJwt,
                "signature",
            ),
            (
                "RS256 header with an HMAC signature (key confusion)",
                encode_raw(
                    &serde_json::json!({"alg": "RS256"}),
                    &user_claims(serde_json::json!({})),
                    SECRET,
                ),
                ErrorCode::BadJwt,
                "algorithm",
            ),
            (
                "expired beyond the skew",
                encode_raw(
                    &hs256,
                    &user_claims(serde_json::json!({"exp": now - 120})),
                    SECRET,
                ),
                ErrorCode::JwtExpired,
                "expired",
            ),
            (
                "nbf in the future",
                encode_raw(
                    &hs256,
                    &user_claims(serde_json::json!({"nbf": now + 600})),
                    SECRET,
                ),
                ErrorCode::BadJwt,
                "nbf",
            ),
            (
                "wrong aud",
                encode_raw(
                    &hs256,
                    &user_claims(serde_json::json!({"aud": "someone-else"})),
                    SECRET,
                ),
                ErrorCode::BadJwt,
                "aud",
            ),
            (
                "missing aud",
                encode_raw(
                    &hs256,
                    &user_claims(serde_json::json!({"aud": null})),
                    SECRET,
                ),
                ErrorCode::BadJwt,
                "aud",
            ),
            (
                "missing role",
                encode_raw(
                    &hs256,
                    &user_claims(serde_json::json!({"role": null})),
                    SECRET,
                ),
                ErrorCode::BadJwt,
                "role",
            ),
            (
                "a user token with an API key's role",
                encode_raw(
                    &hs256,
                    &user_claims(serde_json::json!({"role": "service_role"})),
                    SECRET,
                ),
                ErrorCode::BadJwt,
                "API key",
            ),
            (
                "missing exp",
                encode_raw(
                    &hs256,
                    &user_claims(serde_json::json!({"exp": null})),
                    SECRET,
                ),
                ErrorCode::BadJwt,
                "exp",
            ),
            (
                "another issuer",
                encode_raw(
                    &hs256,
                    &user_claims(serde_json::json!({"iss": "another-service"})),
                    SECRET,
                ),
                ErrorCode::BadJwt,
                "iss",
            ),
            (
                "missing iss",
                encode_raw(
                    &hs256,
                    &user_claims(serde_json::json!({"iss": null})),
                    SECRET,
                ),
                ErrorCode::BadJwt,
                "iss",
            ),
            (
                "malformed",
                "not.a.token".to_owned(),
                ErrorCode::BadJwt,
                "malformed",
            ),
            (
                "garbage",
                "garbage".to_owned(),
                ErrorCode::BadJwt,
                "malformed",
            ),
        ];
        for (name, token, code, why) in cases {
            let error = jwt.verify(&token).expect_err(name);
            assert_eq!(error.error.kind, code, "{name}: {error:?}");
            assert!(
                error.error.details.as_deref().unwrap_or("").contains(why),
                "{name}: {error:?}"
            );
        }
        // Within the clock skew an expired token still passes.
        let barely = encode_raw(
            &hs256,
            &user_claims(serde_json::json!({"exp": now - 5})),
            SECRET,
        );
        assert!(jwt.verify(&barely).is_ok());
    }
}
