//! TLS for the reverse proxy, with client certificates: callers that present one signed by
//! the configured CA are known by the certificate's identities (URI and DNS subject
//! alternative names, then the subject), which mTLS methods and L1 service-identity rules
//! match. Certificates are optional at the handshake, so callers with other credentials
//! still connect; a route that requires mTLS refuses them. Handshakes run concurrently and
//! time out, so a slow or silent client never holds up the others.

use axum::serve::Listener;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections handshaken and waiting for the server to take them.
const READY_BACKLOG: usize = 1024;

/// The server configuration: this agent's certificate chain and key, and the CA whose
/// client certificates are verified (none: client certificates are not asked for).
pub fn server_config(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Arc<ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<_, _>>())
        .map_err(|e| format!("--tls-cert {}: {e}", cert.display()))?;
    if chain.is_empty() {
        return Err(format!("--tls-cert {}: no certificate in it", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("--tls-key {}: {e}", key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let verifier = client_verifier(path, "--client-ca")?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| format!("--tls-key does not fit --tls-cert: {e}"))?;
    // HTTP/2 first: a caller that offers both gets it (the proxy tells them apart by the
    // first bytes, so one that offers neither may still speak either).
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Verifies client certificates signed by the CAs in `path` (PEM); `flag` names the option
/// in errors. Certificates are optional at the handshake (a route that requires one
/// refuses callers without it), and the gateway's certificates are checked with it too.
pub fn client_verifier(path: &Path, flag: &str) -> Result<Arc<dyn ClientCertVerifier>, String> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    for cert in certs {
        roots.add(cert).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{flag} {}: no certificate in it", path.display()));
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(rustls::crypto::ring::default_provider()))
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("{flag} {}: {e}", path.display()))
}

/// Who is at the other end of a TLS connection.
#[derive(Clone, Debug)]
pub struct TlsPeer {
    pub address: SocketAddr,
    /// The verified client certificate's identities, most specific first; empty when the
    /// caller presented none.
    pub identities: Arc<Vec<String>>,
}

/// A listener that hands axum connections once their TLS handshake is done.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, TlsPeer)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener`, handshaking each connection on its own task.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(READY_BACKLOG);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (tcp, address) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of descriptors and the like: wait rather than spin.
                        tracing::warn!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                if tx.is_closed() {
                    return;
                }
                // As on the plain listener (`app::serve`): answers go out when written.
                let _ = tcp.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let identities = tls
                                .get_ref()
                                .1
                                .peer_certificates()
                                .and_then(|chain| chain.first())
                                .map(|leaf| certificate_identities(leaf.as_ref()))
                                .unwrap_or_default();
                            let peer = TlsPeer { address, identities: Arc::new(identities) };
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%address, %error, "TLS handshake refused"),
                        Err(_) => tracing::debug!(%address, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = TlsPeer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(ready) => ready,
            // The accept task only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(TlsPeer { address: self.local, identities: Arc::new(Vec::new()) })
    }
}

/// A certificate's identities: URI SANs (`spiffe://acme/orders`), DNS SANs, then the
/// subject (`CN=orders,O=Acme`). An unreadable certificate has none.
pub fn certificate_identities(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, certificate)) = x509_parser::parse_x509_certificate(der) else { return Vec::new() };
    let mut identities = Vec::new();
    let mut dns = Vec::new();
    if let Ok(Some(names)) = certificate.subject_alternative_name() {
        for name in &names.value.general_names {
            match name {
                GeneralName::URI(uri) => identities.push((*uri).to_owned()),
                GeneralName::DNSName(host) => dns.push(host.to_ascii_lowercase()),
                _ => {}
            }
        }
    }
    identities.extend(dns);
    let subject = certificate.subject().to_string().replace(", ", ",");
    if !subject.is_empty() {
        identities.push(subject);
    }
    identities
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_come_from_sans_then_the_subject() {
        let mut params = rcgen::CertificateParams::new(vec!["Orders.internal".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(rcgen::string::Ia5String::try_from("spiffe://acme/orders").unwrap()));
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, "orders");
        params.distinguished_name.push(rcgen::DnType::OrganizationName, "Acme");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(certificate_identities(cert.der()), ["spiffe://acme/orders", "orders.internal", "CN=orders,O=Acme"]);
        assert!(certificate_identities(b"not a certificate").is_empty());
    }
}
