//! Talking to a node that presents a certificate of its own making: LND's self-signed
//! `tls.cert`, or Core Lightning's `clnrest`, whose `server.pem` is signed by the node's own
//! `ca.pem`. The connection is trusted when, and only when, the node presents exactly a pinned
//! certificate or one signed by it (the pinned file then is the node's CA). Never trusts a
//! public root, and never decides anything from an error's text.
//!
//! Pinning replaces the usual hostname check (a node's certificate names `localhost`, `cln` or
//! an IP, while it is reached by whatever name the machine has); the chain up to the pinned
//! CA, the validity dates and the handshake signature are still checked, so only the holder of
//! a key the pinned certificate vouches for can answer.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, RootCertStore, SignatureScheme};

/// Why the pinned file does not vouch for the node's certificate (shown in the error's chain).
#[derive(Debug, thiserror::Error)]
#[error(
    "the node presented a certificate that is neither the pinned one nor signed by it ({0}); is tls_cert_file the node's own certificate or CA (clnrest: ca.pem or server.pem, LND: tls.cert)?"
)]
struct NotPinned(String);

#[derive(Debug)]
struct Pinned {
    certs: Vec<CertificateDer<'static>>,
    /// The pinned certificates that can serve as a CA (a self-signed end certificate cannot,
    /// and is matched exactly instead).
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
}

impl Pinned {
    fn refuse(reason: impl Into<String>) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(NotPinned(
            reason.into(),
        )))))
    }
}

impl ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.certs.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
            return Ok(ServerCertVerified::assertion());
        }
        if self.roots.is_empty() {
            return Err(Pinned::refuse("the pinned file holds no CA"));
        }
        let parsed = ParsedCertificate::try_from(end_entity)
            .map_err(|e| Pinned::refuse(format!("its certificate cannot be read: {e}")))?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )
        .map_err(|e| Pinned::refuse(e.to_string()))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The certificates in a PEM file (one or more `CERTIFICATE` blocks), or why there are none.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not a PEM certificate: {e}"))?;
    if certs.is_empty() {
        return Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// Whether a failed request failed because the node's certificate was refused: the same
/// certificate will be refused again, so retrying cannot help. Decided from the error types
/// in the chain (rustls' certificate error, which reaches here wrapped in an `io::Error`).
pub fn certificate_refused(error: &(dyn std::error::Error + 'static)) -> bool {
    let is_cert = |e: &(dyn std::error::Error + 'static)| {
        matches!(
            e.downcast_ref::<rustls::Error>(),
            Some(rustls::Error::InvalidCertificate(_))
        )
    };
    let mut next = Some(error);
    while let Some(e) = next {
        if is_cert(e) {
            return true;
        }
        // `io::Error::source` skips the error it wraps: look inside it.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && is_cert(inner)
        {
            return true;
        }
        next = e.source();
    }
    false
}

/// An HTTP client that trusts only the certificates in `pem` (LND's `tls.cert`, clnrest's
/// `ca.pem` or `server.pem`): the node's certificate must be one of them or signed by one.
/// `connect` bounds the TCP connection and the TLS handshake; a whole call is bounded by the
/// caller, per request.
pub fn pinned_client(pem: &[u8], connect: std::time::Duration) -> Result<reqwest::Client, String> {
    let certs = certificates(pem)?;
    let mut roots = RootCertStore::empty();
    // A certificate that cannot be a trust anchor is still pinned exactly.
    let _ = roots.add_parsable_certificates(certs.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(Pinned {
            certs,
            roots,
            provider,
        }))
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect)
        .build()
        .map_err(|e| e.to_string())
}
