//! The in-process cache: bounded, with TTLs, the default when no Redis is configured.
//!
//! # Coherence
//!
//! Entries are tagged with the cache's *generation* at the time their miss was seen
//! (before the store read), and an entry is served only while the generation is
//! unchanged. Every invalidation advances the generation, so it voids every entry at
//! once: coarse, but writes are rare next to reads, and it needs no per-key state.
//! A reader whose store read raced a write holds the old generation, so whatever it
//! puts back is dead on arrival — the race described in [`super`] cannot serve a
//! stale value.
//!
//! With a generation file (the embedded store passes `data_dir/cache.generation`), the
//! generation is that file's length: an invalidation appends one byte (`O_APPEND` makes
//! concurrent appends from several processes all land) and a read costs one `fstat`.
//! So nodes in different processes on one data folder see each other's writes at
//! once, which an in-memory counter could not give. The file grows by a byte per
//! write and is never truncated while nodes run (a shrink could repeat an old length).

use super::{Cache, CacheError, CacheStats, Guard, GuardState, Lookup};
use crate::runtime::BoxFuture;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Number of independently locked shards (a power of two).
const SHARDS: usize = 16;

/// The in-process cache.
pub struct LocalCache {
    /// Key-hashed shards, each its own lock, so loop threads rarely contend.
    shards: Vec<Mutex<HashMap<String, Slot>>>,
    /// Entries per shard before eviction.
    per_shard: usize,
    /// Where the generation lives.
    generation: Generation,
    /// Counters.
    stats: CacheStats,
}

/// One cached value.
struct Slot {
    value: String,
    expires: Instant,
    generation: u64,
}

/// The generation: a shared file's length, or a counter when there is no file.
enum Generation {
    /// Shared with other processes through the file system.
    File(File),
    /// This process only.
    Memory(AtomicU64),
}

impl Generation {
    fn current(&self) -> Result<u64, CacheError> {
        match self {
            Generation::File(f) => f
                .metadata()
                .map(|m| m.len())
                .map_err(|e| CacheError::Other(format!("generation file: {e}"))),
            Generation::Memory(n) => Ok(n.load(Ordering::Acquire)),
        }
    }

    fn advance(&self) -> Result<(), CacheError> {
        match self {
            Generation::File(f) => {
                // `&File` writes need no lock: each append is one write(2) call.
                let mut f: &File = f;
                f.write_all(b".")
                    .map_err(|e| CacheError::Other(format!("generation file: {e}")))
            }
            Generation::Memory(n) => {
                n.fetch_add(1, Ordering::AcqRel);
                Ok(())
            }
        }
    }
}

impl LocalCache {
    /// A cache of about `capacity` entries, coherent within this process only.
    pub fn new(capacity: usize) -> LocalCache {
        Self::build(capacity, Generation::Memory(AtomicU64::new(0)))
    }

    /// A cache of about `capacity` entries, coherent with every process that uses the
    /// same generation file.
    pub fn shared(capacity: usize, generation_file: &Path) -> std::io::Result<LocalCache> {
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(generation_file)?;
        Ok(Self::build(capacity, Generation::File(f)))
    }

    fn build(capacity: usize, generation: Generation) -> LocalCache {
        LocalCache {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
            generation,
            stats: CacheStats::default(),
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, Slot>> {
        let i = xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as usize & (SHARDS - 1);
        self.shards[i].lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get_now(&self, key: &str) -> Result<Lookup, CacheError> {
        let generation = self.generation.current()?;
        let now = Instant::now();
        if let Some(slot) = self.shard(key).get(key) {
            if slot.generation == generation && slot.expires > now {
                CacheStats::bump(&self.stats.hits);
                return Ok(Lookup::Hit(slot.value.clone()));
            }
        }
        CacheStats::bump(&self.stats.misses);
        Ok(Lookup::Miss(Guard(GuardState::Local(generation))))
    }

    fn fill_now(&self, key: &str, guard: Guard, value: &str, ttl: Duration) -> bool {
        let GuardState::Local(generation) = guard.0 else {
            return false;
        };
        // Not needed for safety (reads check the generation), but it keeps dead entries
        // from taking room.
        if self.generation.current().ok() != Some(generation) {
            CacheStats::bump(&self.stats.stale_fills);
            return false;
        }
        let now = Instant::now();
        let mut shard = self.shard(key);
        if shard.len() >= self.per_shard && !shard.contains_key(key) {
            shard.retain(|_, s| s.generation == generation && s.expires > now);
            // Still full: drop an arbitrary tenth (hash order is effectively random).
            if shard.len() >= self.per_shard {
                let drop: Vec<String> = shard
                    .keys()
                    .take(self.per_shard / 10 + 1)
                    .cloned()
                    .collect();
                for k in drop {
                    shard.remove(&k);
                }
            }
        }
        shard.insert(
            key.to_owned(),
            Slot {
                value: value.to_owned(),
                expires: now + ttl,
                generation,
            },
        );
        true
    }
}

impl Cache for LocalCache {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Lookup, CacheError>> {
        let r = self.get_now(key);
        if r.is_err() {
            CacheStats::bump(&self.stats.errors);
        }
        Box::pin(std::future::ready(r))
    }

    fn fill<'a>(
        &'a self,
        key: &'a str,
        guard: Guard,
        value: &'a str,
        ttl: Duration,
    ) -> BoxFuture<'a, Result<bool, CacheError>> {
        Box::pin(std::future::ready(
            Ok(self.fill_now(key, guard, value, ttl)),
        ))
    }

    fn invalidate<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), CacheError>> {
        let r = self.generation.advance();
        if r.is_ok() {
            self.shard(key).remove(key);
        } else {
            CacheStats::bump(&self.stats.errors);
        }
        Box::pin(std::future::ready(r))
    }

    fn stats(&self) -> &CacheStats {
        &self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn miss(c: &LocalCache, k: &str) -> Guard {
        match smol::block_on(c.get(k)).unwrap() {
            Lookup::Miss(g) => g,
            Lookup::Hit(v) => panic!("unexpected hit {v}"),
        }
    }

    #[test]
    fn fill_then_hit_and_ttl() {
        let c = LocalCache::new(100);
        let g = miss(&c, "a");
        assert!(smol::block_on(c.fill("a", g, "1", Duration::from_secs(60))).unwrap());
        assert_eq!(smol::block_on(c.get("a")).unwrap(), Lookup::Hit("1".into()));
        let g = miss(&c, "b");
        smol::block_on(c.fill("b", g, "2", Duration::ZERO)).unwrap();
        miss(&c, "b");
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_never_served() {
        let c = LocalCache::new(100);
        let g = miss(&c, "k"); // reader: miss, then (slowly) reads the store
        smol::block_on(c.invalidate("k")).unwrap(); // writer commits, invalidates
        smol::block_on(c.fill("k", g, "old", Duration::from_secs(60))).unwrap();
        miss(&c, "k");
        assert_eq!(CacheStats::get(&c.stats().stale_fills), 1);
    }

    #[test]
    fn processes_sharing_a_generation_file_see_each_others_invalidations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gen");
        let a = LocalCache::shared(100, &path).unwrap();
        let b = LocalCache::shared(100, &path).unwrap();
        let g = miss(&a, "k");
        smol::block_on(a.fill("k", g, "v", Duration::from_secs(60))).unwrap();
        assert_eq!(smol::block_on(a.get("k")).unwrap(), Lookup::Hit("v".into()));
        smol::block_on(b.invalidate("k")).unwrap();
        miss(&a, "k");
    }

    #[test]
    fn stays_bounded() {
        let c = LocalCache::new(160);
        for i in 0..10_000 {
            let k = format!("k{i}");
            let g = miss(&c, &k);
            smol::block_on(c.fill(&k, g, "v", Duration::from_secs(60))).unwrap();
        }
        let total: usize = c.shards.iter().map(|s| s.lock().unwrap().len()).sum();
        assert!(total <= 160, "{total}");
    }
}
