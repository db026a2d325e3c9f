//! The command line (and its `PALISADE_AGENT_*` environment twins), checked into a
//! [`Config`] before anything starts.

use crate::preface::Protocol;
use crate::timeouts::Timeouts;
use clap::{Parser, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Denials are answered.
    Enforce,
    /// Denials are logged (outcome `monitor`) and the request goes through.
    Monitor,
}

#[derive(Parser, Debug)]
#[command(
    name = "palisade-agent",
    version,
    about = "Palisade enforcement agent: verifies signed policy bundles and enforces them in front of an API",
    long_about = "Palisade enforcement agent.\n\nOn first start it enrolls with the control plane using a \
                  single-use token and keeps its own key in the data directory. It then verifies and \
                  activates signed policy bundles and enforces them as a reverse proxy (--listen with \
                  --upstream), as a decision endpoint for gateways such as nginx auth_request \
                  (--decision-listen), or both. Without a verified bundle it refuses every request \
                  (unless --fail-open)."
)]
pub struct Args {
    /// The control plane's base URL, e.g. https://palisade.example.com.
    #[arg(long, env = "PALISADE_AGENT_CONTROL_PLANE")]
    pub control_plane: Url,
    /// Single-use enrollment token (`pae_…`); needed only on the first start.
    #[arg(long, env = "PALISADE_AGENT_ENROLL_TOKEN", hide_env_values = true)]
    pub enroll_token: Option<String>,
    /// Where the agent keeps its key, identity, last verified bundle and decision spool.
    #[arg(long, env = "PALISADE_AGENT_DATA_DIR")]
    pub data_dir: PathBuf,
    /// The id of the API this agent fronts.
    #[arg(long, env = "PALISADE_AGENT_API")]
    pub api: i64,
    /// Reverse-proxy listen address, e.g. 0.0.0.0:8080 (needs --upstream).
    #[arg(long, env = "PALISADE_AGENT_LISTEN", requires = "upstream")]
    pub listen: Option<SocketAddr>,
    /// The API instance requests are forwarded to, e.g. http://127.0.0.1:9000.
    #[arg(long, env = "PALISADE_AGENT_UPSTREAM", requires = "listen")]
    pub upstream: Option<Url>,
    /// Speak HTTP/2 to the upstream (prior knowledge over http://, ALPN h2 over https://),
    /// as gRPC needs; every caller's requests then share its multiplexed connection.
    #[arg(long, env = "PALISADE_AGENT_UPSTREAM_HTTP2", requires = "upstream")]
    pub upstream_http2: bool,
    /// Decision endpoint listen address for gateways (GET|POST /decide).
    #[arg(long, env = "PALISADE_AGENT_DECISION_LISTEN")]
    pub decision_listen: Option<SocketAddr>,
    #[arg(
        long,
        env = "PALISADE_AGENT_MODE",
        value_enum,
        default_value = "enforce"
    )]
    pub mode: Mode,
    /// Forward requests while no verified bundle is active (logged as `monitor`) instead of
    /// refusing them with 503.
    #[arg(long, env = "PALISADE_AGENT_FAIL_OPEN")]
    pub fail_open: bool,
    /// The name to enroll under (the control plane may choose one otherwise).
    #[arg(long, env = "PALISADE_AGENT_NAME")]
    pub name: Option<String>,
    /// Serve the reverse proxy over TLS with this certificate chain (PEM; needs --tls-key).
    #[arg(long, env = "PALISADE_AGENT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "PALISADE_AGENT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Verify client certificates signed by these CAs (PEM) and know callers by them (mTLS);
    /// needs --tls-cert. Certificates stay optional at the handshake.
    #[arg(long, env = "PALISADE_AGENT_CLIENT_CA", requires = "tls_cert")]
    pub client_ca: Option<PathBuf>,
    /// At the decision endpoint, verify the client certificates a gateway passes on (see
    /// --decision-client-cert-header) against these CAs (PEM) and know callers by them.
    /// The gateway must set that header itself on every decision request, so a caller's
    /// own header never reaches the agent.
    #[arg(long, env = "PALISADE_AGENT_DECISION_CLIENT_CA", requires = "decision_listen")]
    pub decision_client_ca: Option<PathBuf>,
    /// The header the gateway puts the caller's certificate in: URL-escaped PEM (nginx
    /// `$ssl_client_escaped_cert`) or base64 DER.
    #[arg(long, env = "PALISADE_AGENT_DECISION_CLIENT_CERT_HEADER", requires = "decision_client_ca", default_value = crate::gateway_certs::DEFAULT_HEADER)]
    pub decision_client_cert_header: String,
    /// The most disk the decision records waiting for upload may take, in MiB. When an
    /// outage fills it, the oldest are dropped (counted in the heartbeat) rather than the
    /// disk filled.
    #[arg(long, env = "PALISADE_AGENT_SPOOL_MAX_MB", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_048_576))]
    pub spool_max_mb: u64,
    /// Seconds a caller has to send a request's head, and between the bytes of its body;
    /// also how long an idle keep-alive connection is kept.
    #[arg(long, env = "PALISADE_AGENT_CALLER_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub caller_timeout: u64,
    /// Seconds the upstream has to answer once a request has reached it, and between the
    /// bytes of its answer; then the caller gets 504.
    #[arg(long, env = "PALISADE_AGENT_UPSTREAM_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub upstream_timeout: u64,
}

/// What the agent runs with, once checked.
#[derive(Clone, Debug)]
pub struct Config {
    pub control_plane: Url,
    pub enroll_token: Option<String>,
    pub data_dir: PathBuf,
    pub api: i64,
    pub proxy: Option<ProxyConfig>,
    pub decision_listen: Option<SocketAddr>,
    /// The CAs and header of client certificates a gateway passes on to the decision
    /// endpoint; none: such headers are not read.
    pub decision_client_certs: Option<(PathBuf, http::HeaderName)>,
    /// The sealed decision batches' size cap, in bytes.
    pub spool_max_bytes: u64,
    pub timeouts: Timeouts,
    pub mode: Mode,
    pub fail_open: bool,
    pub name: Option<String>,
}

#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub upstream: Url,
    /// What the upstream is spoken to in.
    pub upstream_protocol: Protocol,
    pub tls: Option<TlsFiles>,
}

/// The files the proxy's TLS listener is made from.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl Config {
    pub fn from_args(args: Args) -> Result<Config, String> {
        if !matches!(args.control_plane.scheme(), "http" | "https") {
            return Err("--control-plane must be an http:// or https:// URL".into());
        }
        if args.control_plane.scheme() == "http" && !is_loopback(&args.control_plane) {
            tracing::warn!(
                "the control plane is reached over plain HTTP: use https:// outside a test setup"
            );
        }
        let proxy = match (args.listen, args.upstream) {
            (Some(listen), Some(upstream)) => {
                if !matches!(upstream.scheme(), "http" | "https") || upstream.host_str().is_none() {
                    return Err("--upstream must be an http:// or https:// URL with a host".into());
                }
                if upstream.query().is_some() || upstream.fragment().is_some() {
                    return Err("--upstream must not carry a query or fragment".into());
                }
                let tls = match (args.tls_cert, args.tls_key) {
                    (Some(cert), Some(key)) => Some(TlsFiles { cert, key, client_ca: args.client_ca }),
                    _ => None,
                };
                Some(ProxyConfig { listen, upstream, upstream_protocol: if args.upstream_http2 { Protocol::Http2 } else { Protocol::Http1 }, tls })
            }
            (None, None) if args.tls_cert.is_some() => {
                return Err("--tls-cert serves the reverse proxy: give --listen and --upstream".into());
            }
            (None, None) => None,
            _ => return Err("--listen and --upstream go together".into()),
        };
        if proxy.is_none() && args.decision_listen.is_none() {
            return Err("give --listen with --upstream (reverse proxy), --decision-listen (gateway decisions), or both".into());
        }
        if args.api <= 0 {
            return Err("--api is the positive id of the API this agent fronts".into());
        }
        let decision_client_certs = match args.decision_client_ca {
            None => None,
            Some(ca) => {
                let header = http::HeaderName::from_bytes(args.decision_client_cert_header.trim().as_bytes())
                    .map_err(|_| format!("--decision-client-cert-header {:?} is not a header name", args.decision_client_cert_header))?;
                Some((ca, header))
            }
        };
        Ok(Config {
            control_plane: args.control_plane,
            enroll_token: args.enroll_token.filter(|token| !token.trim().is_empty()),
            data_dir: args.data_dir,
            api: args.api,
            proxy,
            decision_listen: args.decision_listen,
            decision_client_certs,
            spool_max_bytes: args.spool_max_mb * 1024 * 1024,
            timeouts: Timeouts {
                caller_head: Duration::from_secs(args.caller_timeout),
                caller_body: Duration::from_secs(args.caller_timeout),
                upstream: Duration::from_secs(args.upstream_timeout),
            },
            mode: args.mode,
            fail_open: args.fail_open,
            name: args.name,
        })
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(domain)) => domain == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &[&str]) -> Result<Config, String> {
        let mut argv = vec![
            "palisade-agent",
            "--control-plane",
            "https://cp.example",
            "--data-dir",
            "/tmp/x",
            "--api",
            "3",
        ];
        argv.extend_from_slice(extra);
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        Config::from_args(args)
    }

    #[test]
    fn a_listener_is_required_and_the_proxy_needs_both_halves() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--listen", "127.0.0.1:8080"]).is_err());
        assert!(parse(&["--upstream", "http://127.0.0.1:9000"]).is_err());
        assert!(parse(&["--listen", "127.0.0.1:8080", "--upstream", "ftp://x"]).is_err());
        let config = parse(&[
            "--listen",
            "127.0.0.1:8080",
            "--upstream",
            "http://127.0.0.1:9000",
            "--mode",
            "monitor",
        ])
        .unwrap();
        assert_eq!(config.mode, Mode::Monitor);
        assert!(config.proxy.is_some() && config.decision_listen.is_none());
        let config = parse(&["--decision-listen", "127.0.0.1:8081", "--fail-open"]).unwrap();
        assert!(config.fail_open && config.proxy.is_none());
    }

    #[test]
    fn tls_needs_its_key_and_the_proxy() {
        let proxy = ["--listen", "127.0.0.1:8443", "--upstream", "http://127.0.0.1:9000"];
        let with = |extra: &[&'static str]| parse(&[&proxy[..], extra].concat());
        assert!(with(&["--tls-cert", "c.pem"]).is_err(), "no key");
        assert!(with(&["--client-ca", "ca.pem"]).is_err(), "a CA without TLS");
        let config = with(&["--tls-cert", "c.pem", "--tls-key", "k.pem", "--client-ca", "ca.pem"]).unwrap();
        assert!(config.proxy.unwrap().tls.unwrap().client_ca.is_some());
        assert!(parse(&["--decision-listen", "127.0.0.1:8081", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).is_err());
    }

    #[test]
    fn the_upstream_is_spoken_to_in_http1_unless_http2_is_asked_for() {
        let proxy = ["--listen", "127.0.0.1:8080", "--upstream", "http://127.0.0.1:9000"];
        let protocol = |extra: &[&'static str]| parse(&[&proxy[..], extra].concat()).unwrap().proxy.unwrap().upstream_protocol;
        assert_eq!(protocol(&[]), Protocol::Http1);
        assert_eq!(protocol(&["--upstream-http2"]), Protocol::Http2);
        assert!(parse(&["--decision-listen", "127.0.0.1:8081", "--upstream-http2"]).is_err(), "no upstream to speak to");
    }

    #[test]
    fn gateway_certificates_need_the_decision_endpoint_and_a_header_name() {
        assert!(parse(&["--listen", "127.0.0.1:8080", "--upstream", "http://127.0.0.1:9000", "--decision-client-ca", "ca.pem"]).is_err());
        let decide = ["--decision-listen", "127.0.0.1:8081"];
        let with = |extra: &[&'static str]| parse(&[&decide[..], extra].concat());
        assert!(with(&["--decision-client-cert-header", "x-cert"]).is_err(), "a header without the CAs");
        assert!(with(&["--decision-client-ca", "ca.pem", "--decision-client-cert-header", "no spaces"]).is_err());
        let (ca, header) = with(&["--decision-client-ca", "ca.pem"]).unwrap().decision_client_certs.unwrap();
        assert_eq!((ca.to_str(), header.as_str()), (Some("ca.pem"), "x-client-cert"));
        let (_, header) = with(&["--decision-client-ca", "ca.pem", "--decision-client-cert-header", "X-SSL-Client-Cert"]).unwrap().decision_client_certs.unwrap();
        assert_eq!(header, "x-ssl-client-cert");
        assert!(parse(&decide).unwrap().decision_client_certs.is_none());
    }

    #[test]
    fn the_spool_cap_is_a_positive_number_of_mib() {
        let decide = ["--decision-listen", "127.0.0.1:8081"];
        let with = |extra: &[&'static str]| parse(&[&decide[..], extra].concat());
        assert_eq!(parse(&decide).unwrap().spool_max_bytes, 1024 * 1024 * 1024);
        assert_eq!(with(&["--spool-max-mb", "64"]).unwrap().spool_max_bytes, 64 * 1024 * 1024);
        for bad in ["0", "-1", "lots", "99999999"] {
            assert!(with(&["--spool-max-mb", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn time_limits_are_whole_seconds_with_nginx_defaults() {
        let decide = ["--decision-listen", "127.0.0.1:8081"];
        let with = |extra: &[&'static str]| parse(&[&decide[..], extra].concat());
        assert_eq!(parse(&decide).unwrap().timeouts, Timeouts::default());
        let timeouts = with(&["--caller-timeout", "5", "--upstream-timeout", "300"]).unwrap().timeouts;
        assert_eq!(timeouts.caller_head, Duration::from_secs(5));
        assert_eq!(timeouts.caller_body, Duration::from_secs(5));
        assert_eq!(timeouts.upstream, Duration::from_secs(300));
        for bad in ["0", "-3", "1.5", "forever", "86401"] {
            assert!(with(&["--caller-timeout", bad]).is_err(), "{bad}");
            assert!(with(&["--upstream-timeout", bad]).is_err(), "{bad}");
        }
    }
}
