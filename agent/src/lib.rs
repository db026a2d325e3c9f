//! palisade-agent as a library: everything but the command-line entry, so integration
//! tests run the real proxy, decision endpoint, spool and control-plane client.
//!
//! The path of a request: `connections` serves the caller, `proxy` (or the decision endpoint) → `decide` (`api_keys`,
//! `signatures` or `authn` for the credential, the evaluator over `active`, `limits`) → `spool`;
//! `upstream` carries an allowed request on, and `inspect` carries out L3 on the response. Around it: `identity`
//! and `control` talk to the control plane, `sync` keeps the bundle current through
//! `bundle_store`, `app` starts and stops it all.

pub mod active;
pub mod api_keys;
pub mod app;
pub mod authn;
pub mod bundle_store;
pub mod config;
pub mod connections;
pub mod control;
pub mod decide;
pub mod fsutil;
pub mod gateway_certs;
pub mod identity;
pub mod inspect;
pub mod limits;
pub mod preface;
pub mod problem;
pub mod proxy;
pub mod signatures;
pub mod spool;
pub mod sse;
pub mod status;
pub mod sync;
pub mod timeouts;
pub mod tls;
pub mod upstream;

/// The error of type `E` that `error` stems from, if any: errors are wrapped on their way
/// (a body's in hyper's, hyper's in the client's), so the whole chain of sources is searched.
pub fn cause<'a, E: std::error::Error + 'static>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a E> {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if let Some(found) = error.downcast_ref::<E>() {
            return Some(found);
        }
        cause = error.source();
    }
    None
}

/// Unix milliseconds now (0 before 1970, which no clock here reports).
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// An address as text, as `Display` writes it; IPv4 without the formatting machinery,
/// which took more time than anything else in building a request's forwarding headers and
/// decision record.
pub fn ip_text(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (index, octet) in v4.octets().into_iter().enumerate() {
                if index > 0 {
                    text.push('.');
                }
                if octet >= 100 {
                    text.push(char::from(b'0' + octet / 100));
                }
                if octet >= 10 {
                    text.push(char::from(b'0' + octet / 10 % 10));
                }
                text.push(char::from(b'0' + octet % 10));
            }
            text
        }
        std::net::IpAddr::V6(v6) => v6.to_string(),
    }
}

/// Sleeps `duration` unless shutdown comes first; `true` on shutdown.
pub(crate) async fn pause(
    duration: std::time::Duration,
    shutdown: &mut tokio::sync::watch::Receiver<bool>,
) -> bool {
    if *shutdown.borrow() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(duration) => false,
        _ = shutdown.changed() => true,
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    #[test]
    fn addresses_read_as_display_writes_them() {
        for octets in [[0, 0, 0, 0], [127, 0, 0, 1], [10, 9, 99, 100], [255, 255, 255, 255], [1, 20, 200, 7]] {
            let ip = IpAddr::V4(Ipv4Addr::from(octets));
            assert_eq!(super::ip_text(ip), ip.to_string());
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(super::ip_text(v6), "2001:db8::1");
    }
}
