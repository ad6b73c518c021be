//! Endpoint strings: what we bound, and what peers should dial.

use std::net::{IpAddr, Ipv4Addr};

use nix::ifaddrs::getifaddrs;
use nix::net::if_::InterfaceFlags;

use crate::error::{Error, Result};

/// Splits `tcp://host:port` into host and port; other schemes give `None`.
fn split_tcp(endpoint: &str) -> Option<(&str, &str)> {
    let rest = endpoint.strip_prefix("tcp://")?;
    rest.rsplit_once(':')
}

/// Whether `host` (as libzmq prints it) is a wildcard address.
fn is_wildcard(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "*" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_unspecified())
}

/// Whether a bound endpoint is reachable from this host only (a loopback
/// address, or not TCP at all). Wildcards and real addresses are not.
pub(crate) fn is_local_only(bound: &str) -> bool {
    let Some((host, _)) = split_tcp(bound) else {
        return true;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare == "localhost" || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Formats a host for an endpoint, bracketing IPv6 literals.
fn format_host(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// The endpoint peers should dial, from what libzmq reports as bound
/// (`ZMQ_LAST_ENDPOINT`, which carries the real port when port 0 was asked).
///
/// A wildcard host is replaced by `advertise_host` when given, else by the
/// first non-loopback IPv4 address of an up interface, else `127.0.0.1`.
/// Non-TCP endpoints are returned as they are.
///
/// # Errors
/// [`Error::Transport`] when a TCP endpoint has no port or the port is zero.
pub(crate) fn advertised_endpoint(bound: &str, advertise_host: Option<&str>) -> Result<String> {
    let Some((host, port)) = split_tcp(bound) else {
        return Ok(bound.to_owned());
    };
    if port.is_empty() || port == "0" || port == "*" {
        return Err(Error::transport(format!(
            "libzmq reported {bound:?} without a usable port"
        )));
    }
    let host = match advertise_host {
        Some(host) => format_host(host),
        None if is_wildcard(host) => first_routable_ipv4()
            .unwrap_or(Ipv4Addr::LOCALHOST)
            .to_string(),
        None => host.to_owned(),
    };
    Ok(format!("tcp://{host}:{port}"))
}

/// The first IPv4 address of an up, non-loopback interface that is neither
/// loopback, unspecified nor link-local.
pub(crate) fn first_routable_ipv4() -> Option<Ipv4Addr> {
    let addrs = match getifaddrs() {
        Ok(addrs) => addrs,
        Err(err) => {
            tracing::debug!(%err, "getifaddrs failed; advertising loopback");
            return None;
        }
    };
    addrs
        .filter(|ifa| {
            ifa.flags.contains(InterfaceFlags::IFF_UP)
                && !ifa.flags.contains(InterfaceFlags::IFF_LOOPBACK)
        })
        .filter_map(|ifa| ifa.address?.as_sockaddr_in().map(|sin| sin.ip()))
        .find(|ip| !ip.is_loopback() && !ip.is_unspecified() && !ip.is_link_local())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_binds_count_as_local() {
        assert!(is_local_only("tcp://127.0.0.1:4000"));
        assert!(is_local_only("tcp://[::1]:4000"));
        assert!(is_local_only("ipc:///tmp/x"));
        assert!(!is_local_only("tcp://0.0.0.0:4000"));
        assert!(!is_local_only("tcp://[::]:4000"));
        assert!(!is_local_only("tcp://10.1.2.3:4000"));
    }

    #[test]
    fn concrete_hosts_are_kept_and_wildcards_replaced() {
        assert_eq!(
            advertised_endpoint("tcp://127.0.0.1:4000", None).unwrap(),
            "tcp://127.0.0.1:4000"
        );
        let wild = advertised_endpoint("tcp://0.0.0.0:4000", None).unwrap();
        assert!(!wild.contains("0.0.0.0"), "{wild}");
        assert!(wild.ends_with(":4000"));
        assert_eq!(
            advertised_endpoint("tcp://0.0.0.0:4000", Some("node7")).unwrap(),
            "tcp://node7:4000"
        );
        assert_eq!(
            advertised_endpoint("tcp://[::]:4000", Some("::1")).unwrap(),
            "tcp://[::1]:4000"
        );
        assert!(advertised_endpoint("tcp://0.0.0.0:0", None).is_err());
        assert_eq!(
            advertised_endpoint("ipc:///tmp/x", None).unwrap(),
            "ipc:///tmp/x"
        );
    }

    #[test]
    fn wildcards_are_recognised() {
        assert!(is_wildcard("0.0.0.0"));
        assert!(is_wildcard("*"));
        assert!(is_wildcard("[::]"));
        assert!(!is_wildcard("10.1.2.3"));
        assert!(!is_wildcard("example.org"));
    }
}
