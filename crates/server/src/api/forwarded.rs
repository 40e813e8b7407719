//! Who the client is behind reverse proxies: `X-Forwarded-For` and `Forwarded`
//! (RFC 7239), believed only from `clients.trusted_proxies`, read from the right.

use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, header};
use ipnet::IpNet;

/// The client's address. The socket peer, unless the peer is a trusted proxy:
/// then the forwarding header's hops are read from the right (the one the proxy
/// added) and the first that is not itself a trusted proxy is the client.
/// `X-Forwarded-For` is read if present, else `Forwarded` (RFC 7239). A hop that
/// does not parse (`unknown`, an obfuscated name) ends the walk at the last
/// trusted hop: no one the operator does not trust can choose the key.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |address: &IpAddr| {
        let address = address.to_canonical();
        trusted.iter().any(|network| network.contains(&address))
    };
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<Option<IpAddr>> = if headers.contains_key("x-forwarded-for") {
        headers
            .get_all("x-forwarded-for")
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("?").split(','))
            .map(|hop| parse_hop(hop.trim()))
            .collect()
    } else {
        headers
            .get_all(header::FORWARDED)
            .iter()
            .flat_map(|value| value.to_str().unwrap_or("for=?").split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(name, _)| name.trim().eq_ignore_ascii_case("for"))
                    .and_then(|(_, value)| parse_hop(value.trim().trim_matches('"')))
            })
            .collect()
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        let Some(address) = hop else { break };
        client = address;
        if !is_trusted(&address) {
            break;
        }
    }
    client
}

/// One hop of a forwarding header: `192.0.2.1`, `192.0.2.1:4711`, `2001:db8::1`
/// or `[2001:db8::1]:4711`.
pub(super) fn parse_hop(text: &str) -> Option<IpAddr> {
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|socket| socket.ip()))
        .or_else(|| {
            text.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
                .and_then(|inner| inner.parse().ok())
        })
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarding_headers_are_ignored_unless_the_peer_is_trusted() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let claims = headers(&[
            ("x-forwarded-for", "192.0.2.1"),
            ("forwarded", "for=192.0.2.2"),
        ]);
        assert_eq!(
            client_address(ip("198.51.100.7"), &claims, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(ip("198.51.100.7"), &claims, &[]),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(ip("10.1.1.1"), &claims, &trusted),
            ip("192.0.2.1")
        );
        // A trusted peer that forwards nothing is the client.
        assert_eq!(
            client_address(ip("10.1.1.1"), &HeaderMap::new(), &trusted),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn the_client_is_the_rightmost_hop_that_is_not_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let chain = headers(&[
            ("x-forwarded-for", "203.0.113.66, 192.0.2.1"),
            ("x-forwarded-for", "10.2.2.2"),
        ]);
        assert_eq!(
            client_address(ip("10.1.1.1"), &chain, &trusted),
            ip("192.0.2.1")
        );
        // All hops trusted: the leftmost.
        let inside = headers(&[("x-forwarded-for", "10.3.3.3, 10.2.2.2")]);
        assert_eq!(
            client_address(ip("10.1.1.1"), &inside, &trusted),
            ip("10.3.3.3")
        );
        // An unreadable hop stops the walk at the last trusted one.
        let garbage = headers(&[("x-forwarded-for", "192.0.2.1, nonsense, 10.2.2.2")]);
        assert_eq!(
            client_address(ip("10.1.1.1"), &garbage, &trusted),
            ip("10.2.2.2")
        );
        let garbage = headers(&[("x-forwarded-for", "")]);
        assert_eq!(
            client_address(ip("10.1.1.1"), &garbage, &trusted),
            ip("10.1.1.1")
        );
    }

    #[test]
    fn forwarded_is_read_when_x_forwarded_for_is_absent() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let cases = [
            ("for=192.0.2.60;proto=http;by=203.0.113.43", "192.0.2.60"),
            ("for=\"[2001:db8:cafe::17]:4711\"", "2001:db8:cafe::17"),
            ("For=\"192.0.2.1:80\", for=10.9.9.9", "192.0.2.1"),
            ("for=unknown", "10.1.1.1"),
            ("for=_hidden, for=192.0.2.5", "192.0.2.5"),
        ];
        for (value, expected) in cases {
            let map = headers(&[("forwarded", value)]);
            assert_eq!(
                client_address(ip("10.1.1.1"), &map, &trusted),
                ip(expected),
                "{value}"
            );
        }
        // IPv4-mapped peers match IPv4 networks.
        let map = headers(&[("forwarded", "for=192.0.2.9")]);
        assert_eq!(
            client_address(ip("::ffff:10.0.0.1"), &map, &trusted),
            ip("192.0.2.9")
        );
    }
}
