//! Password hashing: argon2id with the cost from `[auth]`, always on the blocking pool.
//!
//! argon2's working memory (19 MiB at the default cost) comes from a small set of
//! buffers that are kept and reused, at most `auth.concurrent_hashes` of them, each
//! hash holding one. Allocating it afresh for every hash, on whichever blocking thread
//! runs it, grows the process: the allocator serves a freed block of that size from
//! the thread's arena rather than returning it, and small allocations that land in the
//! hole make the next hash extend the arena again. The buffers make the memory
//! footprint of hashing a fixed bound (`concurrent_hashes × argon2_memory_kib`), and
//! the permit bounds the CPU logins can take.
//!
//! Logins for unknown names verify against a dummy hash of the same cost, so the
//! answer takes as long as a wrong password for a real user and timing does not tell
//! which names exist.

use crate::config::AuthConfig;
use crate::runtime;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use async_lock::{OnceCell, Semaphore};
use std::sync::{Arc, Mutex};
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
    /// argon2 working memory, reused from hash to hash.
    scratch: Arc<Scratch>,
}

/// At most `permits` argon2 runs at a time, each with a buffer from `free`.
struct Scratch {
    permits: Semaphore,
    free: Mutex<Vec<Vec<Block>>>,
}

impl Scratch {
    /// Runs `f` on the blocking pool with a buffer of at least `blocks` blocks.
    async fn with<T: Send + 'static>(
        self: &Arc<Self>,
        blocks: usize,
        f: impl FnOnce(&mut [Block]) -> T + Send + 'static,
    ) -> T {
        let _permit = self.permits.acquire().await;
        let this = Arc::clone(self);
        runtime::blocking(move || {
            let mut buf = this.take();
            if buf.len() < blocks {
                buf.resize(blocks, Block::default());
            }
            let out = f(&mut buf[..blocks]);
            this.kept().push(buf);
            out
        })
        .await
    }

    fn take(&self) -> Vec<Block> {
        self.kept().pop().unwrap_or_default()
    }

    /// The kept buffers; a panic in a hash leaves the list itself intact.
    fn kept(&self) -> std::sync::MutexGuard<'_, Vec<Vec<Block>>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
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
            scratch: Arc::new(Scratch {
                permits: Semaphore::new(cfg.concurrent_hashes.max(1)),
                free: Mutex::new(Vec::new()),
            }),
        })
    }

    /// How many argon2 buffers exist (at most `auth.concurrent_hashes`).
    pub fn buffers(&self) -> usize {
        self.scratch.kept().len()
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
        self.scratch
            .with(params.block_count(), move |memory| {
                let salt = SaltString::generate(&mut OsRng);
                let err = |e: &dyn std::fmt::Display| HashError(e.to_string());
                let mut raw = [0u8; 64];
                let salt_bytes = salt.as_salt().decode_b64(&mut raw).map_err(|e| err(&e))?;
                let len = params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN);
                let mut out = vec![0u8; len];
                argon2(params.clone())
                    .hash_password_into_with_memory(
                        password.as_bytes(),
                        salt_bytes,
                        &mut out,
                        memory,
                    )
                    .map_err(|e| err(&e))?;
                let phc = PasswordHash {
                    algorithm: Algorithm::Argon2id.ident(),
                    version: Some(Version::V0x13.into()),
                    params: ParamsString::try_from(&params).map_err(|e| err(&e))?,
                    salt: Some(salt.as_salt()),
                    hash: Some(Output::new(&out).map_err(|e| err(&e))?),
                };
                Ok(phc.to_string())
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
        // The cost comes from the stored string, so hashes made with older parameters
        // still verify; a string that does not parse verifies nothing.
        let Some(stored) = Stored::parse(&phc) else {
            return Ok(false);
        };
        let password = password.to_owned();
        let ok = self
            .scratch
            .with(stored.blocks, move |memory| {
                stored.matches(password.as_bytes(), memory)
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

/// A stored PHC string, parsed: how to hash, into how much memory, and the result.
struct Stored {
    hasher: Argon2<'static>,
    blocks: usize,
    salt: Vec<u8>,
    expected: Output,
}

impl Stored {
    /// `None` when `phc` is not an argon2 hash with a salt and a result.
    fn parse(phc: &str) -> Option<Stored> {
        let parsed = PasswordHash::new(phc).ok()?;
        let algorithm = Algorithm::try_from(parsed.algorithm).ok()?;
        let params = Params::try_from(&parsed).ok()?;
        let version = parsed.version.map(Version::try_from).transpose().ok()?;
        let mut raw = [0u8; 64];
        let salt = parsed.salt?.decode_b64(&mut raw).ok()?.to_vec();
        Some(Stored {
            blocks: params.block_count(),
            hasher: Argon2::new(algorithm, version.unwrap_or_default(), params),
            salt,
            expected: parsed.hash?,
        })
    }

    /// Whether `password` hashes to the stored result, with `memory` as working
    /// memory. The comparison is constant-time (`Output`'s equality).
    fn matches(&self, password: &[u8], memory: &mut [Block]) -> bool {
        let mut out = vec![0u8; self.expected.len()];
        let hashed = self
            .hasher
            .hash_password_into_with_memory(password, &self.salt, &mut out, memory)
            .is_ok();
        hashed && Output::new(&out).is_ok_and(|o| o == self.expected)
    }
}

fn argon2(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

impl crate::framework::error::IntoApiError for HashError {
    fn into_api_error(self) -> crate::protocol::ApiError {
        crate::framework::error::internal("password hashing", &self)
    }
}

impl From<HashError> for crate::protocol::ApiError {
    fn from(e: HashError) -> Self {
        crate::framework::error::IntoApiError::into_api_error(e)
    }
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

    #[test]
    fn verifies_hashes_made_by_the_reference_implementation() {
        // A stored hash of other parameters and algorithm than the configured ones.
        let reference = Argon2::new(
            Algorithm::Argon2i,
            Version::V0x10,
            Params::new(96, 2, 2, Some(24)).unwrap(),
        );
        let salt = SaltString::generate(&mut OsRng);
        let phc = argon2::PasswordHasher::hash_password(&reference, b"pa55word", &salt)
            .unwrap()
            .to_string();
        let p = cheap();
        assert!(smol::block_on(p.verify("pa55word", Some(&phc))).unwrap());
        assert!(!smol::block_on(p.verify("pa55wore", Some(&phc))).unwrap());
        // And what we make, the reference accepts.
        let ours = smol::block_on(p.hash("pa55word")).unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(argon2::PasswordVerifier::verify_password(
            &Argon2::default(),
            b"pa55word",
            &parsed
        )
        .is_ok());
    }

    #[test]
    fn working_memory_is_reused_and_bounded() {
        let p = Passwords::new(&AuthConfig {
            argon2_memory_kib: 256,
            argon2_iterations: 1,
            concurrent_hashes: 3,
            ..AuthConfig::default()
        })
        .unwrap();
        let stored = smol::block_on(p.hash("correct horse")).unwrap();
        let verified = smol::block_on(async {
            let all = (0..24).map(|i| {
                let guess = if i % 2 == 0 { "correct horse" } else { "wrong" };
                p.verify(guess, Some(&stored))
            });
            futures_lite::future::zip(
                futures_util::future::join_all(all),
                futures_util::future::join_all((0..8).map(|_| p.hash("another"))),
            )
            .await
        });
        let ok = verified
            .0
            .into_iter()
            .filter(|r| *r.as_ref().unwrap())
            .count();
        assert_eq!(ok, 12);
        assert!(verified.1.iter().all(Result::is_ok));
        // 33 hashes, at most three at a time: never more than three buffers.
        let n = p.buffers();
        assert!((1..=3).contains(&n), "{n} buffers");
    }
}
