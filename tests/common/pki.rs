//! A private CA made with `openssl`, so the tests show DSF working with a standard
//! PKI and not only with certificates of its own making (`dsf cert`).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl Issued {
    /// `cert` as a string argument.
    pub fn cert(&self) -> &str {
        self.cert.to_str().unwrap()
    }

    /// `key` as a string argument.
    pub fn key(&self) -> &str {
        self.key.to_str().unwrap()
    }

    /// The certificate's serial, as `openssl x509 -serial` prints it (upper-case hex).
    pub fn serial(&self) -> String {
        let out = openssl(
            Path::new("."),
            &["x509", "-in", self.cert(), "-noout", "-serial"],
        );
        out.trim().trim_start_matches("serial=").to_owned()
    }
}

/// A CA in a temporary folder.
pub struct Pki {
    /// Holds every file.
    pub dir: tempfile::TempDir,
    /// The CA certificate (the bundle clients and the balancer trust).
    pub ca: PathBuf,
    ca_key: PathBuf,
    /// `openssl ca` keeps a database in the folder: one issue at a time.
    lock: std::sync::Mutex<()>,
}

fn openssl(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed (Debian package `openssl`)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Pki {
    /// A new CA named `name`.
    pub fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let ca_key = dir.path().join("ca.key");
        openssl(
            dir.path(),
            &[
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                ca_key.to_str().unwrap(),
                "-out",
                ca.to_str().unwrap(),
                "-days",
                "30",
                "-subj",
                &format!("/CN={name}"),
            ],
        );
        std::fs::write(dir.path().join("index.txt"), "").unwrap();
        std::fs::write(dir.path().join("serial"), "1000\n").unwrap();
        std::fs::write(
            dir.path().join("ca.cnf"),
            "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = .\n\
             serial = serial\ndefault_md = sha256\npolicy = any\ncopy_extensions = copy\n\
             unique_subject = no\n[any]\ncommonName = supplied\n",
        )
        .unwrap();
        Pki {
            dir,
            ca,
            ca_key,
            lock: std::sync::Mutex::new(()),
        }
    }

    /// The CA bundle as a string argument.
    pub fn ca(&self) -> &str {
        self.ca.to_str().unwrap()
    }

    /// Issues a certificate with common name `cn`, DNS names `cn` and `localhost` and
    /// IP 127.0.0.1, valid now for a few days; `file` names the files.
    pub fn issue(&self, file: &str, cn: &str) -> Issued {
        self.issue_dated(file, cn, None)
    }

    /// Like [`issue`](Self::issue), valid only during January 2020 (expired).
    pub fn issue_expired(&self, file: &str, cn: &str) -> Issued {
        self.issue_dated(file, cn, Some(("20200101000000Z", "20200201000000Z")))
    }

    fn issue_dated(&self, file: &str, cn: &str, dates: Option<(&str, &str)>) -> Issued {
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let d = self.dir.path();
        let key = d.join(format!("{file}.key"));
        let csr = d.join(format!("{file}.csr"));
        let cert = d.join(format!("{file}.pem"));
        let ext = d.join(format!("{file}.ext"));
        openssl(
            d,
            &[
                "req",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                key.to_str().unwrap(),
                "-out",
                csr.to_str().unwrap(),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        std::fs::write(
            &ext,
            format!(
                "subjectAltName=DNS:{cn},DNS:localhost,IP:127.0.0.1\n\
                 basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n\
                 extendedKeyUsage=serverAuth,clientAuth\n"
            ),
        )
        .unwrap();
        let (start, end) = dates.unwrap_or(("", ""));
        let mut args = vec![
            "ca",
            "-batch",
            "-notext",
            "-config",
            "ca.cnf",
            "-cert",
            self.ca.to_str().unwrap(),
            "-keyfile",
            self.ca_key.to_str().unwrap(),
            "-in",
            csr.to_str().unwrap(),
            "-out",
            cert.to_str().unwrap(),
            "-extfile",
            ext.to_str().unwrap(),
        ];
        if dates.is_some() {
            args.extend_from_slice(&["-startdate", start, "-enddate", end]);
        } else {
            args.extend_from_slice(&["-days", "5"]);
        }
        openssl(d, &args);
        Issued { cert, key }
    }
}
