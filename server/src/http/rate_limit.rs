//! Rate limiting: token buckets per client IP and per API key for each route
//! group, 429 with `Retry-After`, and `RateLimit-*` headers on every answer.
//!
//! Written here rather than taken from a crate because the limits are per route
//! group and per two kinds of key, and the IETF `RateLimit-*` headers need each
//! bucket's remaining count and reset time; the arithmetic is in
//! `basalt_core::rate` and tested there.

use super::limits::state;
use crate::error::HttpError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::ResponseError;
use basalt_core::config::RateLimitConfig;
use basalt_core::errors::{ApiError, ErrorCode};
use basalt_core::rate::{Decision, RateSpec, TokenBucket};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum BucketKey {
    Ip(&'static str, IpAddr),
    /// A keyed hash of the API key, so keys themselves are not kept in memory.
    ApiKey(&'static str, u64),
    /// An auth action and a keyed hash of a lower-cased email address.
    Email(&'static str, u64),
}

struct Limits {
    per_ip: Option<RateSpec>,
    per_key: Option<RateSpec>,
}

pub struct RateLimiter {
    enabled: bool,
    per_email: Option<RateSpec>,
    groups: HashMap<&'static str, Limits>,
    buckets: Mutex<HashMap<BucketKey, TokenBucket>>,
    key_hasher: RandomState,
}

/// Past this many buckets, refilled ones are swept at once instead of every minute.
const MAX_BUCKETS: usize = 500_000;

/// IPv6 clients are limited per /64, the block one subscriber usually holds,
/// so rotating addresses inside it does not buy fresh buckets.
fn bucket_address(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let segments = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(
                    segments[0],
                    segments[1],
                    segments[2],
                    segments[3],
                    0,
                    0,
                    0,
                    0,
                ))
            }
        },
        v4 => v4,
    }
}

/// One answer: the decision of the tightest bucket and that bucket's spec.
pub struct Verdict {
    pub decision: Decision,
    pub spec: RateSpec,
}

/// The route group of a path, or `None` for paths that are never limited.
pub fn group_of(path: &str) -> Option<&'static str> {
    let first = path.trim_start_matches('/').split('/').next().unwrap_or("");
    Some(match first {
        "health" | "metrics" => return None,
        "auth" => "auth",
        "rest" => "rest",
        "storage" => "storage",
        "realtime" => "realtime",
        "search" => "search",
        "admin" => "admin",
        _ => "default",
    })
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Self {
        let parse = |text: &str| RateSpec::parse(text).expect("validated at start-up");
        let groups = config
            .groups()
            .into_iter()
            .map(|(name, group)| {
                (
                    name,
                    Limits {
                        per_ip: parse(&group.per_ip),
                        per_key: parse(&group.per_key),
                    },
                )
            })
            .collect();
        RateLimiter {
            enabled: config.enabled,
            per_email: parse(&config.auth_per_email),
            groups,
            buckets: Mutex::new(HashMap::new()),
            key_hasher: RandomState::new(),
        }
    }

    /// Takes a token from each bucket that applies; the tightest answer wins.
    pub fn check(
        &self,
        group: &'static str,
        ip: IpAddr,
        api_key: Option<&str>,
        now: Instant,
    ) -> Option<Verdict> {
        if !self.enabled {
            return None;
        }
        let limits = self.groups.get(group)?;
        let mut checks = Vec::new();
        if let Some(spec) = limits.per_ip {
            checks.push((BucketKey::Ip(group, bucket_address(ip)), spec));
        }
        if let (Some(spec), Some(key)) = (limits.per_key, api_key) {
            checks.push((
                BucketKey::ApiKey(group, self.key_hasher.hash_one(key)),
                spec,
            ));
        }
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        if buckets.len() >= MAX_BUCKETS {
            self.sweep_locked(&mut buckets, now);
        }
        // Take a token only when every bucket has one: a refused request costs nothing.
        let all_have_tokens = checks.iter().all(|(key, spec)| {
            buckets
                .entry(*key)
                .or_insert_with(|| TokenBucket::full(spec, now))
                .has_token(spec, now)
        });
        checks
            .into_iter()
            .map(|(key, spec)| Verdict {
                decision: buckets.get_mut(&key).expect("inserted above").decide(
                    &spec,
                    now,
                    all_have_tokens,
                ),
                spec,
            })
            .min_by_key(|verdict| (verdict.decision.allowed, verdict.decision.remaining))
    }

    /// Takes a token from the bucket of an email address for one action
    /// (sign-up, sign-in, recovery, ...), or answers 429. Actions have separate
    /// buckets, so flooding one (recovery mails) cannot lock the owner out of
    /// another (signing in).
    pub fn check_email(
        &self,
        action: &'static str,
        email: &str,
        now: Instant,
    ) -> Result<(), HttpError> {
        let Some(spec) = self.per_email.filter(|_| self.enabled) else {
            return Ok(());
        };
        let key = BucketKey::Email(
            action,
            self.key_hasher.hash_one(email.trim().to_ascii_lowercase()),
        );
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        let decision = buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::full(&spec, now))
            .take(&spec, now);
        if decision.allowed {
            return Ok(());
        }
        Err(
            HttpError::from(ApiError::new(ErrorCode::RateLimited).with_details(format!(
                "at most {} requests per {} s for one email address",
                spec.count,
                spec.period.as_secs()
            )))
            .retry_after(decision.retry_after_secs),
        )
    }

    /// Forgets buckets that have refilled completely: they behave like new ones,
    /// so memory stays bounded by the clients active within one period.
    pub fn sweep(&self, now: Instant) -> usize {
        let mut buckets = self.buckets.lock().expect("rate limiter lock");
        self.sweep_locked(&mut buckets, now);
        buckets.len()
    }

    fn sweep_locked(&self, buckets: &mut HashMap<BucketKey, TokenBucket>, now: Instant) {
        buckets.retain(|key, bucket| {
            let spec = match key {
                BucketKey::Ip(group, _) => self.groups[group].per_ip,
                BucketKey::ApiKey(group, _) => self.groups[group].per_key,
                BucketKey::Email(..) => self.per_email,
            };
            spec.is_some_and(|spec| !bucket.is_full(&spec, now))
        });
    }
}

fn set_headers(headers: &mut HeaderMap, verdict: &Verdict) {
    let mut set = |name: &'static str, value: String| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    };
    set("ratelimit-limit", verdict.spec.count.to_string());
    set(
        "ratelimit-remaining",
        verdict.decision.remaining.to_string(),
    );
    set("ratelimit-reset", verdict.decision.reset_secs.to_string());
    set(
        "ratelimit-policy",
        format!("{};w={}", verdict.spec.count, verdict.spec.period.as_secs()),
    );
}

pub async fn middleware(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let Some(group) = group_of(request.path()) else {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let state = state(&request);
    let ip = super::security::client_ip(&request, &state.trusted_proxies);
    let api_key = super::keys::presented_key(request.headers());
    let verdict = state
        .rate_limiter()
        .check(group, ip, api_key.as_deref(), Instant::now());
    let Some(verdict) = verdict else {
        return next
            .call(request)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    if !verdict.decision.allowed {
        let error = HttpError::from(ApiError::new(ErrorCode::RateLimited).with_details(format!(
            "at most {} requests per {} s for `{group}` routes",
            verdict.spec.count,
            verdict.spec.period.as_secs()
        )))
        .retry_after(verdict.decision.retry_after_secs);
        let mut response = error.error_response();
        set_headers(response.headers_mut(), &verdict);
        return Ok(request.into_response(response));
    }
    let mut response = next.call(request).await?.map_into_boxed_body();
    set_headers(response.headers_mut(), &verdict);
    Ok(response)
}

impl crate::state::AppState {
    pub fn rate_limiter(&self) -> &std::sync::Arc<RateLimiter> {
        self.services.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_ip: &str, per_key: &str) -> RateLimiter {
        let mut config = RateLimitConfig::default();
        config.rest.per_ip = per_ip.into();
        config.rest.per_key = per_key.into();
        RateLimiter::new(&config)
    }

    #[test]
    fn groups_by_first_segment_and_exempts_probes() {
        assert_eq!(group_of("/rest/v1/posts"), Some("rest"));
        assert_eq!(group_of("/auth/v1/token"), Some("auth"));
        assert_eq!(group_of("/nowhere"), Some("default"));
        assert_eq!(group_of("/health/ready"), None);
        assert_eq!(group_of("/metrics"), None);
    }

    #[test]
    fn per_ip_and_per_key_buckets_are_separate_and_the_tightest_wins() {
        let now = Instant::now();
        let limiter = limiter("2/1m", "3/1m");
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(
            limiter
                .check("rest", a, Some("k"), now)
                .unwrap()
                .decision
                .allowed
        );
        assert!(
            limiter
                .check("rest", a, Some("k"), now)
                .unwrap()
                .decision
                .allowed
        );
        let third = limiter.check("rest", a, Some("k"), now).unwrap();
        assert!(!third.decision.allowed, "the IP bucket is empty");
        assert_eq!(third.spec.count, 2);
        // Another IP with the same key: its IP bucket is full, the key has 0 left after this.
        assert!(
            limiter
                .check("rest", b, Some("k"), now)
                .unwrap()
                .decision
                .allowed
        );
        assert!(
            !limiter
                .check("rest", b, Some("k"), now)
                .unwrap()
                .decision
                .allowed,
            "the key bucket is empty"
        );
        // Groups do not share buckets.
        assert!(
            limiter
                .check("default", a, Some("k"), now)
                .unwrap()
                .decision
                .allowed
        );
    }

    #[test]
    fn ipv6_clients_share_a_bucket_per_64() {
        let now = Instant::now();
        let limiter = limiter("1/1m", "off");
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_block: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_block: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert!(
            limiter
                .check("rest", first, None, now)
                .unwrap()
                .decision
                .allowed
        );
        assert!(
            !limiter
                .check("rest", same_block, None, now)
                .unwrap()
                .decision
                .allowed
        );
        assert!(
            limiter
                .check("rest", other_block, None, now)
                .unwrap()
                .decision
                .allowed
        );
    }

    #[test]
    fn sweep_forgets_only_refilled_buckets() {
        let now = Instant::now();
        let limiter = limiter("1/1s", "off");
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        limiter.check("rest", a, None, now);
        assert_eq!(limiter.sweep(now), 1);
        assert_eq!(limiter.sweep(now + std::time::Duration::from_secs(2)), 0);
    }

    #[test]
    fn disabled_limiter_decides_nothing() {
        let config = RateLimitConfig {
            enabled: false,
            ..Default::default()
        };
        let limiter = RateLimiter::new(&config);
        assert!(limiter
            .check("rest", "10.0.0.1".parse().unwrap(), None, Instant::now())
            .is_none());
    }
}
