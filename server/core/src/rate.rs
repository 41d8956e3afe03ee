//! Rate specifications (`"60/1m"`) and the token-bucket arithmetic behind the rate
//! limiter. The clock is passed in, so the arithmetic is tested without sleeping.

use std::time::{Duration, Instant};

/// `count` requests per `period`, refilled continuously.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateSpec {
    pub count: u32,
    pub period: Duration,
}

impl RateSpec {
    /// Parses `off`, `<count>/<period>` where period is `second`, `minute`, `hour`
    /// or a number with a unit `s`, `m`, `h` (`100/1s`, `30/10m`). `Ok(None)` is off.
    pub fn parse(text: &str) -> Result<Option<RateSpec>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (count, period) = text
            .split_once('/')
            .ok_or_else(|| format!("`{text}` is not `<count>/<period>`"))?;
        let count: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("`{count}` is not a whole number of requests"))?;
        if count == 0 {
            return Err("the count must be at least 1 (use `off` to disable)".into());
        }
        let period = parse_period(period.trim())?;
        Ok(Some(RateSpec { count, period }))
    }

    /// Tokens added per second.
    pub fn refill_per_second(&self) -> f64 {
        f64::from(self.count) / self.period.as_secs_f64()
    }
}

fn parse_period(text: &str) -> Result<Duration, String> {
    let seconds = match text {
        "second" | "sec" | "s" => 1,
        "minute" | "min" | "m" => 60,
        "hour" | "h" => 3600,
        _ => {
            let split = text
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(|| format!("period `{text}` lacks a unit (s, m or h)"))?;
            let (number, unit) = text.split_at(split);
            let number: u64 = number
                .parse()
                .map_err(|_| format!("period `{text}` must start with a whole number"))?;
            let unit = match unit {
                "s" => 1,
                "m" => 60,
                "h" => 3600,
                _ => return Err(format!("period unit `{unit}` is not s, m or h")),
            };
            if number == 0 {
                return Err("the period must be longer than zero".into());
            }
            number * unit
        }
    };
    Ok(Duration::from_secs(seconds))
}

/// A token bucket: starts full with `count` tokens, refills at `count / period`.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    updated: Instant,
}

/// What one request's check decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    pub allowed: bool,
    /// Whole requests left in the bucket after this one.
    pub remaining: u32,
    /// Seconds until one more request is allowed (0 when allowed now).
    pub retry_after_secs: u64,
    /// Seconds until the bucket is full again.
    pub reset_secs: u64,
}

impl TokenBucket {
    pub fn full(spec: &RateSpec, now: Instant) -> Self {
        TokenBucket {
            tokens: f64::from(spec.count),
            updated: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, spec: &RateSpec, now: Instant) -> Decision {
        self.decide(spec, now, true)
    }

    /// Whether a token is there, without taking it.
    pub fn has_token(&mut self, spec: &RateSpec, now: Instant) -> bool {
        self.refill(spec, now);
        self.tokens >= 1.0
    }

    /// Decides like [`take`](Self::take); takes the token only when `consume` is
    /// set, so a request refused by one bucket costs nothing in the others.
    pub fn decide(&mut self, spec: &RateSpec, now: Instant, consume: bool) -> Decision {
        self.refill(spec, now);
        let allowed = self.tokens >= 1.0;
        if allowed && consume {
            self.tokens -= 1.0;
        }
        let rate = spec.refill_per_second();
        let allowed = allowed && consume;
        let missing_for_one = (1.0 - self.tokens).max(0.0);
        let missing_for_full = f64::from(spec.count) - self.tokens;
        Decision {
            allowed,
            remaining: self.tokens.floor() as u32,
            retry_after_secs: if allowed {
                0
            } else {
                (missing_for_one / rate).ceil().max(1.0) as u64
            },
            reset_secs: (missing_for_full / rate).ceil() as u64,
        }
    }

    /// Whether the bucket has refilled completely, so forgetting it changes nothing.
    pub fn is_full(&self, spec: &RateSpec, now: Instant) -> bool {
        let mut copy = *self;
        copy.refill(spec, now);
        copy.tokens >= f64::from(spec.count)
    }

    fn refill(&mut self, spec: &RateSpec, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * spec.refill_per_second()).min(f64::from(spec.count));
        self.updated = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        let check = |text: &str, count: u32, secs: u64| {
            let spec = RateSpec::parse(text).unwrap().unwrap();
            assert_eq!((spec.count, spec.period.as_secs()), (count, secs), "{text}");
        };
        check("100/second", 100, 1);
        check("30/1m", 30, 60);
        check(" 5 / 10s ", 5, 10);
        check("1000/hour", 1000, 3600);
        assert_eq!(RateSpec::parse("OFF").unwrap(), None);
        for bad in ["", "10", "0/1s", "x/1s", "10/0s", "10/3d", "10/s1", "-1/1s"] {
            assert!(RateSpec::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn bucket_empties_then_refills() {
        let spec = RateSpec::parse("3/3s").unwrap().unwrap();
        let start = Instant::now();
        let mut bucket = TokenBucket::full(&spec, start);
        let remaining: Vec<u32> = (0..3)
            .map(|_| bucket.take(&spec, start).remaining)
            .collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = bucket.take(&spec, start);
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after_secs, 1);
        assert_eq!(refused.reset_secs, 3);
        assert!(!bucket.is_full(&spec, start + Duration::from_secs(2)));
        let later = bucket.take(&spec, start + Duration::from_millis(1100));
        assert!(later.allowed);
        assert!(bucket.is_full(&spec, start + Duration::from_secs(10)));
    }

    #[test]
    fn deciding_without_consuming_leaves_the_token() {
        let spec = RateSpec::parse("1/1m").unwrap().unwrap();
        let now = Instant::now();
        let mut bucket = TokenBucket::full(&spec, now);
        let spared = bucket.decide(&spec, now, false);
        assert!(!spared.allowed);
        assert!(bucket.has_token(&spec, now));
        assert!(bucket.take(&spec, now).allowed);
        assert!(!bucket.has_token(&spec, now));
    }
}
