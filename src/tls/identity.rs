//! Who a peer certificate names: its common name and DNS subject alternative names.

use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The names and serial of a verified peer certificate (its first, end-entity one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The subject's common names, then its DNS subject alternative names.
    pub names: Vec<String>,
    /// The serial number, upper-case hex (as `openssl x509 -serial` prints it).
    pub serial: String,
}

impl PeerIdentity {
    /// Reads the names of `cert`; `None` if it does not parse (a verified
    /// certificate always does).
    pub fn from_cert(cert: &CertificateDer<'_>) -> Option<PeerIdentity> {
        let (_, x509) = X509Certificate::from_der(cert).ok()?;
        let mut names: Vec<String> = x509
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
            .collect();
        if let Ok(Some(san)) = x509.subject_alternative_name() {
            for name in &san.value.general_names {
                if let GeneralName::DNSName(dns) = name {
                    if !names.iter().any(|n| n == dns) {
                        names.push((*dns).to_owned());
                    }
                }
            }
        }
        Some(PeerIdentity {
            names,
            serial: serial_hex(x509.raw_serial()),
        })
    }

    /// Whether the certificate names `name` (CN or DNS SAN, exactly).
    pub fn names(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

fn serial_hex(raw: &[u8]) -> String {
    // DER keeps a leading zero byte for positive numbers with the top bit set.
    let raw = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        _ => raw,
    };
    raw.iter().map(|b| format!("{b:02X}")).collect()
}

/// Serial of `cert`, for logs and tests.
pub fn serial(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, x509) = X509Certificate::from_der(cert).ok()?;
    Some(serial_hex(x509.raw_serial()))
}

/// Checks that `cert` is an X.509 certificate, so that a wrong file is named at load.
pub fn check_parses(cert: &CertificateDer<'_>) -> Result<(), String> {
    X509Certificate::from_der(cert)
        .map(|_| ())
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}
