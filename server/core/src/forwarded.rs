//! Who the client is behind proxies: `X-Forwarded-For` and `X-Forwarded-Proto`
//! are believed only from configured trusted proxies, so a client cannot claim
//! another address (and reset its rate-limit bucket) by sending the header itself.

use ipnet::IpNet;
use std::net::IpAddr;

fn is_trusted(address: &IpAddr, trusted: &[IpNet]) -> bool {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(*address),
        v4 => *v4,
    };
    trusted.iter().any(|network| network.contains(&address))
}

/// The client address: the peer itself unless the peer is a trusted proxy; then
/// the right-most `X-Forwarded-For` entry that is not a trusted proxy (entries
/// to its left were written by the client and prove nothing).
pub fn client_ip<'a>(
    peer: IpAddr,
    forwarded_for: impl IntoIterator<Item = &'a str>,
    trusted: &[IpNet],
) -> IpAddr {
    if !is_trusted(&peer, trusted) {
        return peer;
    }
    let entries: Vec<&str> = forwarded_for
        .into_iter()
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(address) = parse_entry(entry) else {
            break;
        };
        client = address;
        if !is_trusted(&address, trusted) {
            break;
        }
    }
    client
}

/// Whether the request reached the edge over TLS, as told by a trusted proxy.
pub fn forwarded_https(peer: IpAddr, forwarded_proto: Option<&str>, trusted: &[IpNet]) -> bool {
    is_trusted(&peer, trusted)
        && forwarded_proto
            .and_then(|value| value.split(',').next())
            .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"))
}

/// Accepts `1.2.3.4`, `1.2.3.4:80`, `::1` and `[::1]:80`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(address) = entry.parse() {
        return Some(address);
    }
    if let Ok(socket) = entry.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    entry
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peers_cannot_claim_another_address() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let cases: &[(&str, &[&str], &str)] = &[
            ("203.0.113.9", &["1.2.3.4"], "203.0.113.9"),
            ("10.0.0.2", &["1.2.3.4"], "1.2.3.4"),
            ("10.0.0.2", &["6.6.6.6, 1.2.3.4"], "1.2.3.4"),
            ("10.0.0.2", &["6.6.6.6", "1.2.3.4, 10.0.0.7"], "1.2.3.4"),
            ("10.0.0.2", &["10.0.0.5, 10.0.0.7"], "10.0.0.5"),
            ("10.0.0.2", &["garbage, 1.2.3.4"], "1.2.3.4"),
            ("10.0.0.2", &["1.2.3.4, garbage"], "10.0.0.2"),
            ("10.0.0.2", &[], "10.0.0.2"),
            ("10.0.0.2", &["[2001:db8::1]:443"], "2001:db8::1"),
            ("::ffff:10.0.0.2", &["1.2.3.4:5678"], "1.2.3.4"),
        ];
        for (peer, headers, expected) in cases {
            assert_eq!(
                client_ip(ip(peer), headers.iter().copied(), &trusted),
                ip(expected),
                "peer {peer} with {headers:?}"
            );
        }
    }

    #[test]
    fn https_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().unwrap()];
        assert!(forwarded_https(ip("127.0.0.1"), Some("https"), &trusted));
        assert!(forwarded_https(
            ip("127.0.0.1"),
            Some("HTTPS, http"),
            &trusted
        ));
        assert!(!forwarded_https(ip("127.0.0.1"), Some("http"), &trusted));
        assert!(!forwarded_https(ip("127.0.0.2"), Some("https"), &trusted));
        assert!(!forwarded_https(ip("127.0.0.1"), None, &trusted));
    }
}
