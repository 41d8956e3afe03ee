//! Auth's pure rules: the password policy (a long password is refused, never
//! truncated), email address shape, which redirect URLs are allowed, and email
//! template rendering.

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
    if !missing.is_empty() {
        return Some(format!(
            "the password must also contain: {}",
            missing.join(", ")
        ));
    }
    // zxcvbn knows the most common passwords, keyboard walks, dates,
    // repeats and sequences: score 0 is "guessed in under a thousand tries".
    if config.password_min_score > 0 {
        let score = u8::from(zxcvbn::zxcvbn(password, &[]).score());
        if u64::from(score) < config.password_min_score {
            return Some(
                "the password is too common or too easy to guess; use a longer phrase".into(),
            );
        }
    }
    None
}

/// A plausible email address: ASCII, one `@`, a dot in the domain, ≤ 254
/// bytes, and none of the characters that would let a mailer read a display
/// name or a second address into it (`<>(),;:"[]\` and spaces).
pub fn valid_email(email: &str) -> bool {
    if !email.is_ascii() || email.contains(['<', '>', '(', ')', ',', ';', ':', '"', '[', ']', '\\'])
    {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    email.len() <= 254
        && !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !email.contains("..")
        && !domain.contains('@')
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Whether `redirect` may be sent to: the site URL itself or a path under it,
/// or an entry of the allow-list (exact, or a prefix when it ends with `*`).
pub fn redirect_allowed(redirect: &str, site_url: &str, allow_list: &[String]) -> bool {
    if redirect
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
    {
        return false;
    }
    let under = |base: &str| {
        let base = base.trim_end_matches('/');
        redirect == base
            || redirect
                .strip_prefix(base)
                .is_some_and(|rest| rest.starts_with(['/', '?', '#']))
    };
    under(site_url)
        || allow_list
            .iter()
            .any(|entry| match entry.strip_suffix('*') {
                Some(prefix) => {
                    redirect.starts_with(prefix)
                        && prefix.contains("://")
                        && prefix[prefix.find("://").unwrap() + 3..].contains('/')
                }
                None => under(entry),
            })
}

/// Fills `{{ name }}` placeholders; values are HTML-escaped when `html` is set.
pub fn render(template: &str, values: &[(&str, &str)], html: bool) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        let value = if html {
            escape_html(value)
        } else {
            (*value).to_owned()
        };
        for pattern in [format!("{{{{ {name} }}}}"), format!("{{{{{name}}}}}")] {
            out = out.replace(&pattern, &value);
        }
    }
    out
}

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {

    #[test]
    fn common_passwords_are_refused_and_phrases_pass() {
        let config = AuthConfig::default();
        for weak in [
            "12345678",
            "password",
            "qwertyuiop",
            "password1",
            "iloveyou",
            "11111111",
        ] {
            assert!(policy_problem(&config, weak).is_some(), "{weak}");
        }
        for fine in [
            "password one",
            "a long passphrase 1",
            "correct horse battery staple",
            "attacker pass",
        ] {
            assert_eq!(policy_problem(&config, fine), None, "{fine}");
        }
        let off = AuthConfig {
            password_min_score: 0,
            ..AuthConfig::default()
        };
        assert_eq!(policy_problem(&off, "12345678"), None);
    }

    #[test]
    fn double_dots_are_not_an_address() {
        for bad in [
            "a@example..com",
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
        assert!(valid_email("first.last@example.co.uk"));
    }

    use super::*;

    #[test]
    fn lengths_and_classes() {
        let mut config = AuthConfig {
            password_min_length: 8,
            password_max_length: 12,
            password_min_score: 0,
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
    fn redirects() {
        let allow = vec![
            "https://app.example.com/welcome".to_owned(),
            "myapp://callback/*".to_owned(),
        ];
        let site = "https://example.com";
        for good in [
            "https://example.com",
            "https://example.com/",
            "https://example.com/account?x=1",
            "https://app.example.com/welcome",
            "https://app.example.com/welcome/step-2",
            "myapp://callback/anything",
        ] {
            assert!(redirect_allowed(good, site, &allow), "{good}");
        }
        for bad in [
            "https://example.com.evil.net/",
            "https://evil.net/?https://example.com",
            "https://app.example.com/welcomeback",
            "https://example.com@evil.net/",
            "myapp://other",
            "https://example.com/\\evil",
            "https://example.com/ x",
            "javascript:alert(1)",
        ] {
            assert!(!redirect_allowed(bad, site, &allow), "{bad}");
        }
        // A bare scheme-and-host wildcard would allow any path on any host: refused.
        assert!(!redirect_allowed(
            "https://evil.net/",
            site,
            &["https://*".to_owned()]
        ));
    }

    #[test]
    fn templates_escape_in_html_only() {
        let values = [("link", "https://x/?a=1&b=2"), ("email", "<a@b.co>")];
        assert_eq!(
            render("Go: {{ link }} {{email}}", &values, false),
            "Go: https://x/?a=1&b=2 <a@b.co>"
        );
        assert_eq!(
            render("<a href=\"{{ link }}\">{{ email }}</a>", &values, true),
            "<a href=\"https://x/?a=1&amp;b=2\">&lt;a@b.co&gt;</a>"
        );
    }

    #[test]
    fn emails() {
        for good in ["a@b.co", "first.last+tag@example.com"] {
            assert!(valid_email(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "@b.co",
            "a@@b.co",
            "a b@c.co",
            "a@.co",
            "a@b.co.",
            "a@b\n.co",
            "x<attacker@evil.com>",
            "a@b.co,c@d.co",
            "vİctim@x.co",
            "a\0@b.co",
        ] {
            assert!(!valid_email(bad), "{bad:?}");
        }
    }
}
