//! The password policy: length bounds (a long password is refused, never
//! truncated) and required character classes.

use crate::config::AuthConfig;

/// Why `password` breaks the policy, or `None` when it is acceptable.
pub fn policy_problem(config: &AuthConfig, password: &str) -> Option<String> {
    let length = password.chars().count() as u64;
    if length < config.password_min_length {
        return Some(format!(
            "the password must be at least {} characters long",
            config.password_min_length
        ));
    }
    if length > config.password_max_length {
        return Some(format!(
            "the password must be at most {} characters long",
            config.password_max_length
        ));
    }
    let missing: Vec<&str> = config
        .password_required_classes
        .iter()
        .map(String::as_str)
        .filter(|class| {
            !password.chars().any(|c| match *class {
                "lower" => c.is_lowercase(),
                "upper" => c.is_uppercase(),
                "digit" => c.is_ascii_digit(),
                _ => !c.is_alphanumeric(),
            })
        })
        .collect();
    (!missing.is_empty()).then(|| format!("the password must also contain: {}", missing.join(", ")))
}

/// A plausible email address: one `@`, a dot in the domain, no spaces, ≤ 254 bytes.
pub fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_and_classes() {
        let mut config = AuthConfig {
            password_min_length: 8,
            password_max_length: 12,
            ..AuthConfig::default()
        };
        assert!(policy_problem(&config, "short")
            .unwrap()
            .contains("at least 8"));
        assert!(policy_problem(&config, "abcdefghijklm")
            .unwrap()
            .contains("at most 12"));
        assert_eq!(policy_problem(&config, "abcdefgh"), None);
        // Length counts characters, not bytes.
        assert_eq!(policy_problem(&config, "ééééééééé"), None);
        config.password_required_classes = vec!["upper".into(), "digit".into(), "symbol".into()];
        assert_eq!(
            policy_problem(&config, "abcdefgh").unwrap(),
            "the password must also contain: upper, digit, symbol"
        );
        assert_eq!(policy_problem(&config, "Abcdef1!"), None);
    }

    #[test]
    fn emails() {
        for good in ["a@b.co", "first.last+tag@example.com"] {
            assert!(valid_email(good), "{good}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a@@b.co", "a b@c.co", "a@.co", "a@b.co.", "a@b\n.co",
        ] {
            assert!(!valid_email(bad), "{bad:?}");
        }
    }
}
