//! Password hashing: argon2id with the cost from `[auth]`, always on the blocking pool.
//!
//! Logins for unknown names verify against a dummy hash of the same cost, so the
//! answer takes as long as a wrong password for a real user and timing does not tell
//! which names exist.

use crate::config::AuthConfig;
use crate::runtime;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use async_lock::OnceCell;
use std::sync::Arc;
use thiserror::Error;

/// Hashing failed (bad parameters; never a wrong password).
#[derive(Debug, Error)]
#[error("password hashing: {0}")]
pub struct HashError(String);

/// Hashes and verifies passwords.
pub struct Passwords {
    /// Cost of new hashes.
    params: Params,
    /// Hash of a random password, verified against for unknown names.
    dummy: OnceCell<Arc<str>>,
}

impl Passwords {
    /// Hasher with the configured cost.
    pub fn new(cfg: &AuthConfig) -> Result<Passwords, HashError> {
        let params = Params::new(
            cfg.argon2_memory_kib,
            cfg.argon2_iterations,
            cfg.argon2_parallelism,
            None,
        )
        .map_err(|e| HashError(e.to_string()))?;
        Ok(Passwords {
            params,
            dummy: OnceCell::new(),
        })
    }

    /// The argon2id parameters, e.g. `m=19456,t=2,p=1`.
    pub fn describe(&self) -> String {
        format!(
            "argon2id m={} KiB, t={}, p={}",
            self.params.m_cost(),
            self.params.t_cost(),
            self.params.p_cost()
        )
    }

    /// A PHC string (`$argon2id$v=19$m=…`) with a fresh random salt.
    pub async fn hash(&self, password: &str) -> Result<String, HashError> {
        let params = self.params.clone();
        let password = password.to_owned();
        runtime::blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            argon2(params)
                .hash_password(password.as_bytes(), &salt)
                .map(|h| h.to_string())
                .map_err(|e| HashError(e.to_string()))
        })
        .await
    }

    /// Whether `password` matches `stored`; with `None` (unknown user) it spends the
    /// same time on a dummy hash and answers `false`.
    pub async fn verify(&self, password: &str, stored: Option<&str>) -> Result<bool, HashError> {
        let (phc, real): (Arc<str>, bool) = match stored {
            Some(h) => (Arc::from(h), true),
            None => (self.dummy().await?, false),
        };
        let password = password.to_owned();
        let params = self.params.clone();
        let ok = runtime::blocking(move || {
            // The cost comes from the stored string, so hashes made with older
            // parameters still verify.
            match PasswordHash::new(&phc) {
                Ok(parsed) => argon2(params)
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
                Err(_) => false,
            }
        })
        .await;
        Ok(ok && real)
    }

    async fn dummy(&self) -> Result<Arc<str>, HashError> {
        self.dummy
            .get_or_try_init(|| async {
                let mut random = [0u8; 16];
                rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut random);
                self.hash(&hex::encode(random)).await.map(Arc::from)
            })
            .await
            .cloned()
    }
}

fn argon2(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Passwords {
        Passwords::new(&AuthConfig {
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            ..AuthConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn hash_is_salted_argon2id_and_verifies() {
        let p = cheap();
        let a = smol::block_on(p.hash("correct horse")).unwrap();
        let b = smol::block_on(p.hash("correct horse")).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(smol::block_on(p.verify("correct horse", Some(&a))).unwrap());
        assert!(!smol::block_on(p.verify("wrong", Some(&a))).unwrap());
        assert!(!smol::block_on(p.verify("correct horse", None)).unwrap());
        assert!(!smol::block_on(p.verify("x", Some("not a hash"))).unwrap());
    }
}
