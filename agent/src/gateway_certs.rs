//! Client certificates a gateway passes on to the decision endpoint. The gateway ended the
//! caller's TLS, so only it saw the caller prove it holds the certificate's key; it sets a
//! header with the certificate (nginx `$ssl_client_escaped_cert`: URL-escaped PEM; or
//! base64 DER, as HAProxy's `ssl_c_der,base64` writes it). The agent does not take the
//! gateway's word for the chain: it verifies the certificate against its own CAs, as its
//! TLS listener does, and knows the caller by the same identities
//! ([`crate::tls::certificate_identities`]).

use http::header::{HeaderMap, HeaderName};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use std::path::Path;
use std::sync::Arc;

/// The header read unless another is configured.
pub const DEFAULT_HEADER: &str = "x-client-cert";

/// A leaf with a few intermediates fits in far less; anything larger is not a chain.
const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Verifies the certificates a gateway passes on.
pub struct GatewayCertificates {
    header: HeaderName,
    verifier: Arc<dyn ClientCertVerifier>,
}

/// What a request's certificate header says.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    /// No header, or an empty one (the caller presented no certificate to the gateway).
    Nothing,
    /// Verified: the leaf's identities, most specific first.
    Verified(Vec<String>),
    /// There, but not a certificate the CAs vouch for; why, for the operator.
    Refused(String),
}

impl GatewayCertificates {
    /// Trusts certificates signed by the CAs in `ca` (PEM), read from `header`.
    pub fn new(ca: &Path, header: HeaderName) -> Result<GatewayCertificates, String> {
        let verifier = crate::tls::client_verifier(ca, "--decision-client-ca")?;
        Ok(GatewayCertificates { header, verifier })
    }

    /// The header this reads.
    pub fn header(&self) -> &HeaderName {
        &self.header
    }

    /// Reads and verifies the certificate the gateway passed on with a request.
    pub fn read(&self, headers: &HeaderMap) -> Presented {
        let mut values = headers.get_all(&self.header).iter();
        let Some(value) = values.next() else { return Presented::Nothing };
        if values.next().is_some() {
            return Presented::Refused(format!("{} was sent more than once", self.header));
        }
        if value.len() > MAX_HEADER_BYTES {
            return Presented::Refused(format!("{} is larger than {MAX_HEADER_BYTES} bytes", self.header));
        }
        let chain = match parse_chain(value.as_bytes()) {
            Ok(None) => return Presented::Nothing,
            Ok(Some(chain)) => chain,
            Err(why) => return Presented::Refused(format!("{}: {why}", self.header)),
        };
        let (leaf, intermediates) = chain.split_first().expect("parse_chain gives at least one certificate");
        match self.verifier.verify_client_cert(leaf, intermediates, UnixTime::now()) {
            Ok(_) => Presented::Verified(crate::tls::certificate_identities(leaf.as_ref())),
            Err(error) => Presented::Refused(format!("{}: {error}", self.header)),
        }
    }
}

/// The certificates in a header value, the leaf first; `None` for an empty value.
fn parse_chain(value: &[u8]) -> Result<Option<Vec<CertificateDer<'static>>>, &'static str> {
    let text: Vec<u8> = percent_encoding::percent_decode(value).collect();
    let text = text.trim_ascii();
    if text.is_empty() {
        return Ok(None);
    }
    let chain: Vec<CertificateDer<'static>> = if text.starts_with(b"-----BEGIN") {
        CertificateDer::pem_slice_iter(text)
            .collect::<Result<_, _>>()
            .map_err(|_| "not a PEM certificate chain")?
    } else {
        use base64::Engine;
        let compact: Vec<u8> = text.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|_| "neither PEM nor base64 DER")?;
        vec![CertificateDer::from(der)]
    };
    if chain.is_empty() {
        return Err("no certificate in it");
    }
    Ok(Some(chain))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_that_are_not_certificates_are_told_apart_from_none() {
        assert_eq!(parse_chain(b""), Ok(None));
        assert_eq!(parse_chain(b"  %20 "), Ok(None));
        assert_eq!(parse_chain(b"%%%not base64"), Err("neither PEM nor base64 DER"));
        assert_eq!(parse_chain(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), Err("no certificate in it"));
        let chain = parse_chain(b"MIIB AQID").unwrap().unwrap();
        assert_eq!(chain.len(), 1, "base64 DER, whitespace ignored (the bytes are checked later)");
    }
}
