//! mTLS end to end inside the agent: the real reverse proxy behind its TLS listener with a
//! client CA, callers with certificates made in the test. A registered certificate identity
//! authenticates its client application; an unregistered one (signed by the CA) names a
//! service identity for L1 but authenticates nothing; another CA's certificate never
//! completes the handshake. Behind a gateway, the certificate it passes on to the decision
//! endpoint is verified by the agent the same way.

mod common;

use agent::config::Mode;
use agent::timeouts::Timeouts;
use agent::tls::{TlsListener, server_config};
use common::{API, agent, echo_upstream, operation, records, signed_snapshot};
use ed25519_dalek::SigningKey;
use policy::Snapshot;
use policy::credentials::{Credentials, IssuedKey};
use policy::model::ApiInput;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, SanType,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use base64::Engine;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::sync::Arc;

const BILLING: &str = "spiffe://acme/billing";
const REPORTS: &str = "spiffe://acme/reports";

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

/// A leaf signed by `issuer`: its PEM certificate and PEM key.
fn leaf(issuer: &CertifiedIssuer<'static, KeyPair>, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> (String, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = sans;
    params.extended_key_usages = vec![usage];
    params.distinguished_name.push(DnType::CommonName, "leaf");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn uri(text: &str) -> SanType {
    SanType::URI(text.try_into().unwrap())
}

fn estate() -> Snapshot {
    let issued = IssuedKey {
        client_app: 7,
        credential_id: 1,
        instance: "billing-1".into(),
        prefix: BILLING.into(),
        expires_at: None,
        secret_sha256: None,
    };
    Snapshot {
        apis: vec![ApiInput {
            id: API,
            name: "Ledger".into(),
            environment: "production".into(),
            protection: serde_json::from_value(json!({"authentication": {"mode": "required", "methods": [{"type": "mtls"}]}})).unwrap(),
            operations: vec![
                operation(1, "GET", "/ledger", json!({})),
                operation(2, "GET", "/reports", json!({"authentication": {"mode": "public"}, "network": {"service_identities": [REPORTS]}})),
            ],
            ..Default::default()
        }],
        client_apps: BTreeMap::from([(7, "Billing".to_owned())]),
        credentials: Credentials { mtls_identities: BTreeMap::from([(BILLING.to_owned(), issued)]), ..Credentials::default() },
        ..Default::default()
    }
}

/// The agent's proxy behind TLS with `ca` as the client CA; its https base URL.
async fn tls_proxy(agent: &common::Agent, upstream: SocketAddr, ca: &CertifiedIssuer<'static, KeyPair>, dir: &std::path::Path) -> String {
    let (cert, key) = leaf(ca, vec![SanType::IpAddress("127.0.0.1".parse().unwrap())], ExtendedKeyUsagePurpose::ServerAuth);
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let config = server_config(&write("cert.pem", &cert), &write("key.pem", &key), Some(&write("ca.pem", &ca.pem()))).unwrap();
    let url = format!("http://{upstream}").parse().unwrap();
    let proxy = agent::proxy::Proxy::new(agent.decider.clone(), &url, agent::preface::Protocol::Http1, Timeouts::default()).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let listener = TlsListener::new(listener, config).unwrap();
    let (keep, never) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        agent::connections::serve(listener, Arc::new(proxy), never).await;
        drop(keep);
    });
    format!("https://{address}")
}

fn client(ca: &CertifiedIssuer<'static, KeyPair>, identity: Option<(String, String)>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder().use_rustls_tls().add_root_certificate(reqwest::Certificate::from_pem(ca.pem().as_bytes()).unwrap());
    if let Some((cert, key)) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

async fn code(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or_default();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn client_certificates_authenticate_registered_identities_only() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let agent = agent(Some(&signed_snapshot(&key, 1, &estate())), &key, Mode::Enforce, false).await;
    let (upstream, _) = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let authority = ca("Palisade test CA");
    let base = tls_proxy(&agent, upstream, &authority, dir.path()).await;

    let billing = client(&authority, Some(leaf(&authority, vec![uri(BILLING)], ExtendedKeyUsagePurpose::ClientAuth)));
    let answer = billing.get(format!("{base}/ledger")).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(answer.version(), http::Version::HTTP_2, "ALPN: HTTP/2 for a caller that offers it");
    let seen: Value = answer.json().await.unwrap();
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https");
    // A caller that offers only HTTP/1.1 gets it, with the same identity.
    let (cert, key) = leaf(&authority, vec![uri(BILLING)], ExtendedKeyUsagePurpose::ClientAuth);
    let http1 = reqwest::Client::builder()
        .use_rustls_tls()
        .http1_only()
        .add_root_certificate(reqwest::Certificate::from_pem(authority.pem().as_bytes()).unwrap())
        .identity(reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).unwrap())
        .build()
        .unwrap();
    let answer = http1.get(format!("{base}/ledger")).send().await.unwrap();
    assert_eq!((answer.version(), answer.status().as_u16()), (http::Version::HTTP_11, 200));
    // A service identity rule names another identity.
    assert_eq!(code(billing.get(format!("{base}/reports")).send().await.unwrap()).await, (403, "identity_not_allowed".into()));

    let anonymous = client(&authority, None);
    assert_eq!(code(anonymous.get(format!("{base}/ledger")).send().await.unwrap()).await, (401, "unauthenticated".into()));
    assert_eq!(code(anonymous.get(format!("{base}/reports")).send().await.unwrap()).await, (403, "identity_not_allowed".into()));

    // Signed by the CA but registered nowhere: an identity for L1, no credential.
    let reports = client(&authority, Some(leaf(&authority, vec![uri(REPORTS)], ExtendedKeyUsagePurpose::ClientAuth)));
    assert_eq!(code(reports.get(format!("{base}/ledger")).send().await.unwrap()).await, (401, "credential_not_accepted".into()));
    assert_eq!(reports.get(format!("{base}/reports")).send().await.unwrap().status(), 200);

    // Another CA's certificate claiming the registered identity: no connection at all.
    let rogue = ca("Rogue CA");
    let impostor = client(&authority, Some(leaf(&rogue, vec![uri(BILLING)], ExtendedKeyUsagePurpose::ClientAuth)));
    assert!(impostor.get(format!("{base}/ledger")).send().await.is_err(), "the handshake must fail");

    let records = records(&agent).await;
    assert_eq!(records[0].caller.as_deref(), Some("app:7/billing-1"));
    assert_eq!(records[1].caller.as_deref(), Some("app:7/billing-1"), "over HTTP/1.1");
}

/// A certificate as nginx's `$ssl_client_escaped_cert` passes it on: URL-escaped PEM.
fn escaped(pem: &str) -> String {
    percent_encoding::utf8_percent_encode(pem, percent_encoding::NON_ALPHANUMERIC).to_string()
}

#[tokio::test]
async fn a_gateway_passes_on_client_certificates_the_agent_verifies_itself() {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let agent = agent(Some(&signed_snapshot(&key, 1, &estate())), &key, Mode::Enforce, false).await;
    let dir = tempfile::tempdir().unwrap();
    let authority = ca("Palisade test CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, authority.pem()).unwrap();
    let trusting = agent::gateway_certs::GatewayCertificates::new(&ca_file, "x-client-cert".parse().unwrap()).unwrap();
    let decide = format!("http://{}/decide", common::serve_decisions(agent::proxy::decision_router(agent.decider.clone(), Some(trusting))).await);
    let ignoring = format!("http://{}/decide", common::serve_decisions(agent::proxy::decision_router(agent.decider.clone(), None)).await);
    let http = reqwest::Client::new();
    let ask = async |endpoint: &str, uri: &str, certificate: Option<String>| {
        let mut request = http.get(endpoint).header("x-original-method", "GET").header("x-original-uri", uri);
        if let Some(certificate) = certificate {
            request = request.header("x-client-cert", certificate);
        }
        let response = request.send().await.unwrap();
        let reason = response.headers().get("x-palisade-reason").map(|v| v.to_str().unwrap().to_owned());
        (response.status().as_u16(), reason.unwrap_or_default())
    };

    let (billing, _) = leaf(&authority, vec![uri(BILLING)], ExtendedKeyUsagePurpose::ClientAuth);
    assert_eq!(ask(&decide, "/ledger", Some(escaped(&billing))).await, (200, String::new()));
    assert_eq!(ask(&decide, "/reports", Some(escaped(&billing))).await, (403, "identity_not_allowed".into()));
    // Base64 DER (HAProxy's `ssl_c_der,base64`) reads the same.
    let der = CertificateDer::from_pem_slice(billing.as_bytes()).unwrap();
    let der = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    assert_eq!(ask(&decide, "/ledger", Some(der)).await, (200, String::new()));
    // No certificate, or an empty header (nginx's value when the caller sent none).
    assert_eq!(ask(&decide, "/ledger", None).await, (401, "unauthenticated".into()));
    assert_eq!(ask(&decide, "/ledger", Some(String::new())).await, (401, "unauthenticated".into()));
    // Signed by the CA, registered nowhere: an identity for L1, no credential.
    let (reports, _) = leaf(&authority, vec![uri(REPORTS)], ExtendedKeyUsagePurpose::ClientAuth);
    assert_eq!(ask(&decide, "/ledger", Some(escaped(&reports))).await, (401, "credential_not_accepted".into()));
    assert_eq!(ask(&decide, "/reports", Some(escaped(&reports))).await, (200, String::new()));
    let records_before = records(&agent).await.len();

    // What the CA does not vouch for is refused before any decision, whatever it claims.
    let rogue = ca("Rogue CA");
    let (impostor, _) = leaf(&rogue, vec![uri(BILLING)], ExtendedKeyUsagePurpose::ClientAuth);
    let mut expired = CertificateParams::new(Vec::<String>::new()).unwrap();
    expired.subject_alt_names = vec![uri(BILLING)];
    expired.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    expired.not_before = rcgen::date_time_ymd(2020, 1, 1);
    expired.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = expired.signed_by(&KeyPair::generate().unwrap(), &authority).unwrap().pem();
    let (server_only, _) = leaf(&authority, vec![uri(BILLING)], ExtendedKeyUsagePurpose::ServerAuth);
    let refused = (401, "client_certificate_not_trusted".to_owned());
    for (what, certificate) in [
        ("another CA's", escaped(&impostor)),
        ("an expired", escaped(&expired)),
        ("a server-only", escaped(&server_only)),
        ("a garbled", escaped(&billing.replace("MII", "MIJ"))),
        ("a non-certificate", "not a certificate at all".to_owned()),
        ("the CA's own", escaped(&authority.pem())),
    ] {
        assert_eq!(ask(&decide, "/ledger", Some(certificate)).await, refused, "{what} certificate");
    }
    let duplicated = http.get(&decide).header("x-original-method", "GET").header("x-original-uri", "/ledger")
        .header("x-client-cert", escaped(&billing)).header("x-client-cert", escaped(&reports))
        .send().await.unwrap();
    assert_eq!(duplicated.status(), 401, "two certificates for one request");
    assert!(agent.decider.stats.last_error().unwrap().contains("not trusted"));

    // An endpoint not told to trust a CA never reads the header.
    assert_eq!(ask(&ignoring, "/ledger", Some(escaped(&billing))).await, (401, "unauthenticated".into()));

    let records = records(&agent).await;
    assert_eq!(records.len(), records_before + 1, "refused certificates leave no decision record");
    assert_eq!(records[0].caller.as_deref(), Some("app:7/billing-1"));
}
