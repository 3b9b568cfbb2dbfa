//! A private CA and certificates signed by it (`dsf cert`), with `rcgen`: ECDSA P-256
//! keys, random serials, and both server and client use, since a node is a server to
//! clients and a client of its balancer.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, SerialNumber,
};
use std::time::Duration;
use time::OffsetDateTime;

/// A certificate and its private key, PEM-encoded.
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// The private key (PKCS#8).
    pub key: String,
}

/// Why a certificate could not be made.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The CA files do not hold a CA certificate and its key.
    #[error("the CA: {0}")]
    Ca(String),
    /// rcgen refused a name or parameter.
    #[error("{0}")]
    Params(String),
}

fn params_error(e: rcgen::Error) -> IssueError {
    IssueError::Params(e.to_string())
}

/// A random positive 128-bit serial, so that a renewal is told apart from the old one.
fn serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// Valid from an hour ago (clocks of a cluster differ a little) for `days`.
fn validity(params: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + Duration::from_secs(u64::from(days) * 86_400);
}

/// A self-signed CA named `name`, valid for `days`.
pub fn make_ca(name: &str, days: u32) -> Result<Pem, IssueError> {
    let key = KeyPair::generate().map_err(params_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(params_error)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.serial_number = Some(serial());
    validity(&mut params, days);
    let cert = params.self_signed(&key).map_err(params_error)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// A certificate for `name` (its common name, and a DNS name) plus `sans` (IP
/// addresses or DNS names), signed by the CA in `ca`, valid for `days`.
pub fn issue(ca: &Pem, name: &str, sans: &[String], days: u32) -> Result<Pem, IssueError> {
    let ca_key = KeyPair::from_pem(&ca.key).map_err(|e| IssueError::Ca(format!("key: {e}")))?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, &ca_key)
        .map_err(|e| IssueError::Ca(format!("certificate: {e}")))?;
    let key = KeyPair::generate().map_err(params_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(params_error)?;
    params.distinguished_name.push(DnType::CommonName, name);
    let mut names = vec![name.to_owned()];
    names.extend(sans.iter().cloned());
    for n in names {
        let san = match n.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.clone().try_into().map_err(|e| {
                IssueError::Params(format!(
                    "`{n}` is neither an IP address nor a DNS name: {e}"
                ))
            })?),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.serial_number = Some(serial());
    validity(&mut params, days);
    let cert = params.signed_by(&key, &issuer).map_err(params_error)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}
