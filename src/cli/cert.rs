//! `dsf cert ca` and `dsf cert issue`: a private CA and certificates signed by it.

use clap::{Args, Subcommand};
use dsf::tls::issue::{self, Pem};
use std::path::{Path, PathBuf};

/// `dsf cert`.
#[derive(Debug, Args)]
pub struct CertArgs {
    /// What to make.
    #[command(subcommand)]
    pub action: CertAction,
}

/// What `dsf cert` makes.
#[derive(Debug, Subcommand)]
pub enum CertAction {
    /// A private CA: OUT/ca.pem (give it to every process as tls.ca / tls.client_ca)
    /// and OUT/ca.key (keep it off the servers).
    Ca {
        /// Folder to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// The CA's common name.
        #[arg(long, default_value = "dsf private CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// A certificate and key signed by the CA in --ca: OUT/NAME.pem and OUT/NAME.key.
    Issue {
        /// Folder holding ca.pem and ca.key (made by `dsf cert ca`).
        #[arg(long)]
        ca: PathBuf,
        /// Common name and first DNS name; for a node, its id (node.id).
        #[arg(long)]
        name: String,
        /// More names: an IP address or DNS name others reach it by; repeatable.
        #[arg(long)]
        san: Vec<String>,
        /// Folder to write into (created if missing).
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

/// Runs `dsf cert`.
pub fn run(args: CertArgs) -> anyhow::Result<()> {
    match args.action {
        CertAction::Ca { out, name, days } => {
            let ca = issue::make_ca(&name, days)?;
            let (cert, key) = write(&out, "ca", &ca)?;
            println!("CA certificate {}", cert.display());
            println!("CA key {}", key.display());
        }
        CertAction::Issue {
            ca,
            name,
            san,
            out,
            days,
        } => {
            let ca = read_ca(&ca)?;
            let pem = issue::issue(&ca, &name, &san, days)?;
            let (cert, key) = write(&out, &name, &pem)?;
            println!("certificate {}", cert.display());
            println!("key {}", key.display());
        }
    }
    Ok(())
}

/// Reads DIR/ca.pem and DIR/ca.key.
pub fn read_ca(dir: &Path) -> anyhow::Result<Pem> {
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("{}: {e} (made by `dsf cert ca`?)", path.display()))
    };
    Ok(Pem {
        cert: read("ca.pem")?,
        key: read("ca.key")?,
    })
}

/// Writes OUT/NAME.pem and OUT/NAME.key (the key readable by its owner only).
pub fn write(out: &Path, name: &str, pem: &Pem) -> anyhow::Result<(PathBuf, PathBuf)> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(out).map_err(|e| anyhow::anyhow!("{}: {e}", out.display()))?;
    let cert = out.join(format!("{name}.pem"));
    let key = out.join(format!("{name}.key"));
    std::fs::write(&cert, &pem.cert).map_err(|e| anyhow::anyhow!("{}: {e}", cert.display()))?;
    let _ = std::fs::remove_file(&key);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&key)
        .and_then(|mut f| f.write_all(pem.key.as_bytes()))
        .map_err(|e| anyhow::anyhow!("{}: {e}", key.display()))?;
    Ok((cert, key))
}
