//! Unit tests: files to settings, errors naming the file, reload keeping the old.

use super::*;
use std::path::Path;

/// Writes a CA and a leaf named `name` into `dir`; returns (ca, cert, key) paths.
fn pki(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, &ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

fn cfg(ca: &Path, cert: &Path, key: &Path) -> TlsConfig {
    TlsConfig {
        cert: cert.to_owned(),
        key: key.to_owned(),
        ca: ca.to_owned(),
        client_ca: ca.to_owned(),
        client_auth: None,
    }
}

#[test]
fn plain_config_builds_nothing() {
    assert!(Tls::from_config(&TlsConfig::default()).unwrap().is_none());
}

#[test]
fn files_build_server_and_client_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(dir.path(), "node-1");
    let tls = Tls::from_config(&cfg(&ca, &cert, &key)).unwrap().unwrap();
    assert!(tls.server_config(false).is_some());
    assert!(tls.server_config(true).is_some());
    assert!(tls.client_config().is_some());
    assert!(tls
        .acceptor(Listener::Registration)
        .unwrap()
        .requires_client_cert());
    assert!(!tls
        .acceptor(Listener::Proxy)
        .unwrap()
        .requires_client_cert());
    let id = PeerIdentity::from_cert(&load::certs("tls.cert", &cert).unwrap()[0]).unwrap();
    assert!(id.names("node-1"));
    assert!(!id.names("node-2"));
    assert_eq!(Some(id.serial), tls.serial());
}

#[test]
fn errors_name_the_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(dir.path(), "n");
    let missing = dir.path().join("missing.pem");
    let err = Tls::from_config(&cfg(&ca, &missing, &key))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("tls.cert") && err.contains("missing.pem"),
        "{err}"
    );
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "hello").unwrap();
    let mut c = cfg(&ca, &cert, &key);
    c.ca = garbage.clone();
    let err = Tls::from_config(&c).err().unwrap().to_string();
    assert!(
        err.contains("`tls.ca`") && err.contains("garbage.pem"),
        "{err}"
    );
    let err = Tls::from_config(&cfg(&ca, &cert, &garbage))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("tls.key") && err.contains("garbage.pem"),
        "{err}"
    );
    // A key of another certificate.
    let other = tempfile::tempdir().unwrap();
    let (_, _, other_key) = pki(other.path(), "n");
    let err = Tls::from_config(&cfg(&ca, &cert, &other_key))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tls.key"), "{err}");
}

#[test]
fn broken_reload_keeps_the_old_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = pki(dir.path(), "n");
    let tls = Tls::from_config(&cfg(&ca, &cert, &key)).unwrap().unwrap();
    let before = tls.serial();
    std::fs::write(&cert, "not pem").unwrap();
    assert!(tls.reload().is_err());
    assert_eq!(tls.serial(), before, "the old certificate stays");
    pki(dir.path(), "n");
    tls.reload().unwrap();
    assert_ne!(tls.serial(), before, "a good file is taken");
}
