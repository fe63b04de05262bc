//! TLS for `wss://`: the certificate chain and key are read from PEM files into a rustls
//! acceptor that uses the `ring` provider (the only one compiled in).

use crate::error::ServerError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;

/// Builds an acceptor from PEM files.
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServerError> {
    let err = |what: &Path, e: &dyn std::fmt::Display| ServerError::Tls {
        message: format!("{}: {e}", what.display()),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| err(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(cert, &e))?;
    if chain.is_empty() {
        return Err(err(cert, &"no certificate found"));
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| err(key, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| err(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| err(cert, &e))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
