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

/// Why the pinned file does not vouch for the server's certificate, carried inside rustls'
/// `CertificateError::Other` so that [`problem`] can put it in words without reading text.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct NotPinned(String);

/// What was wrong with a refused certificate, in words for a person (the caller says which
/// setting to change). Decided from the error's type, never from its text.
pub fn problem(refused: &CertificateError) -> String {
    match refused {
        CertificateError::Other(OtherError(inner)) => match inner.downcast_ref::<NotPinned>() {
            Some(not_pinned) => not_pinned.0.clone(),
            None => inner.to_string(),
        },
        CertificateError::UnknownIssuer => "no trusted authority signed it".into(),
        CertificateError::BadSignature => "its signature is not the pinned CA's".into(),
        CertificateError::BadEncoding => "it cannot be read".into(),
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("it has expired ({refused})")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("it is not valid yet ({refused})")
        }
        other => other.to_string(),
    }
}

/// [`problem`] for the error a pinned verification step gave.
fn problem_of(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(refused) => problem(refused),
        other => other.to_string(),
    }
}

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
            return Err(Pinned::refuse(
                "it is not the pinned certificate, and the pinned file holds no CA",
            ));
        }
        let parsed = ParsedCertificate::try_from(end_entity)
            .map_err(|e| Pinned::refuse(format!("it cannot be read: {}", problem_of(&e))))?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )
        .map_err(|e| Pinned::refuse(problem_of(&e)))?;
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

/// An HTTP client that trusts only the certificates in `pem` (LND's `tls.cert`, clnrest's
/// `ca.pem` or `server.pem`): the node's certificate must be one of them or signed by one.
/// `connect` bounds the TCP connection and the TLS handshake; a whole call is bounded by the
/// caller, per request.
pub fn pinned_client(pem: &[u8], connect: std::time::Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .use_preconfigured_tls(pinned_config(pem)?)
        .user_agent(concat!("satflow/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(connect)
        .build()
        .map_err(|e| e.to_string())
}

/// A TLS client configuration that trusts only the certificates in `pem`: the server's
/// certificate must be one of them or signed by one (also used for an `ssl://` Electrum
/// server's own certificate).
pub fn pinned_config(pem: &[u8]) -> Result<rustls::ClientConfig, String> {
    let certs = certificates(pem)?;
    let mut roots = RootCertStore::empty();
    // A certificate that cannot be a trust anchor is still pinned exactly.
    let _ = roots.add_parsable_certificates(certs.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(
        rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned {
                certs,
                roots,
                provider,
            }))
            .with_no_client_auth(),
    )
}
