//! PEM files to rustls settings; every error names the configuration key and the file.

use super::{identity, Settings, TlsError};
use crate::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use std::path::Path;
use std::sync::Arc;

/// TLS 1.3 and 1.2, as §8 asks; 1.2 for clients and stores that have no 1.3.
static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The one crypto provider (see the module documentation for why `ring`).
pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

fn content(key: &'static str, path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::Content {
        key,
        path: path.to_owned(),
        problem: problem.into(),
    }
}

fn settings_error(key: &'static str, e: impl std::fmt::Display) -> TlsError {
    TlsError::Settings {
        key,
        problem: e.to_string(),
    }
}

/// Every certificate of a PEM file; at least one.
pub fn certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(key, path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(content(key, path, "no CERTIFICATE block found"));
    }
    for c in &certs {
        identity::check_parses(c).map_err(|e| content(key, path, e))?;
    }
    Ok(certs)
}

/// The private key of a PEM file.
pub fn private_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| content(key, path, format!("no usable private key: {e}")))
}

/// A root store holding every certificate of a PEM bundle.
pub fn roots(key: &'static str, path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certs(key, path)? {
        roots
            .add(cert)
            .map_err(|e| content(key, path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}

/// Builds one generation of settings from the files `cfg` names.
pub(super) fn settings(cfg: &TlsConfig) -> Result<Settings, TlsError> {
    let provider = provider();
    let identity = if cfg.serves() {
        let chain = certs("tls.cert", &cfg.cert)?;
        let key = private_key("tls.key", &cfg.key)?;
        Some((chain, key))
    } else {
        None
    };
    let serial = identity
        .as_ref()
        .and_then(|(chain, _)| identity::serial(&chain[0]));
    let (server, server_client_auth) = match &identity {
        None => (None, None),
        Some((chain, key)) => {
            let builder = ServerConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(VERSIONS)
                .map_err(|e| settings_error("tls", e))?;
            let server = builder
                .clone()
                .with_no_client_auth()
                .with_single_cert(chain.clone(), key.clone_key())
                .map_err(|e| settings_error("tls.key", format!("{e} (does it match tls.cert?)")))?;
            let client_auth = if cfg.client_ca.as_os_str().is_empty() {
                None
            } else {
                let roots = roots("tls.client_ca", &cfg.client_ca)?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                        .build()
                        .map_err(|e| settings_error("tls.client_ca", e))?;
                let config = builder
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(chain.clone(), key.clone_key())
                    .map_err(|e| settings_error("tls.key", e))?;
                Some(Arc::new(config))
            };
            (Some(Arc::new(server)), client_auth)
        }
    };
    let client = if cfg.connects() {
        let roots = roots("tls.ca", &cfg.ca)?;
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(VERSIONS)
            .map_err(|e| settings_error("tls", e))?
            .with_root_certificates(roots);
        let config = match identity {
            // Mutual TLS: the same certificate as a client (node → balancer, proxy → node).
            Some((chain, key)) => builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| settings_error("tls.key", e))?,
            None => builder.with_no_client_auth(),
        };
        Some(Arc::new(config))
    } else {
        None
    };
    Ok(Settings {
        server,
        server_client_auth,
        client,
        serial,
    })
}

/// The files of a client-only TLS setting (a service such as etcd reached over TLS),
/// each with the configuration key that names it in errors.
#[derive(Debug, Clone, Copy)]
pub struct ClientFiles<'a> {
    /// CA bundle verifying the servers, and its key; an empty path = the system's roots.
    pub ca: (&'static str, &'a Path),
    /// Client certificate and its key; an empty path = no client certificate.
    pub cert: (&'static str, &'a Path),
    /// The certificate's private key, and its key.
    pub key: (&'static str, &'a Path),
}

/// Client settings from `files`: servers verified against the bundle (or the system's
/// roots), a client certificate presented when one is named.
pub fn client_config(files: ClientFiles<'_>) -> Result<Arc<ClientConfig>, TlsError> {
    let (ca_key, ca) = files.ca;
    let roots = if ca.as_os_str().is_empty() {
        let found = rustls_native_certs::load_native_certs();
        let mut roots = RootCertStore::empty();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(settings_error(
                ca_key,
                "empty, and no system CA certificates were found: name a CA bundle",
            ));
        }
        roots
    } else {
        roots(ca_key, ca)?
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| settings_error(ca_key, e))?
        .with_root_certificates(roots);
    let ((cert_key, cert), (key_key, key)) = (files.cert, files.key);
    let config = if cert.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        let chain = certs(cert_key, cert)?;
        let private = private_key(key_key, key)?;
        builder
            .with_client_auth_cert(chain, private)
            .map_err(|e| settings_error(key_key, format!("{e} (does it match {cert_key}?)")))?
    };
    Ok(Arc::new(config))
}
