//! The Redis side of the guarded cache protocol: key names and the Lua scripts that
//! make each step one atomic command (see [`super::redis`] for the argument).
//!
//! A cache key `K` lives in four Redis keys that share the hash tag `{K}`, so they sit
//! on one server (and one cluster slot): the value `dsf:{K}:v`, the generation
//! `dsf:{K}:g`, the write lock `dsf:{K}:w` (a plain string, so one `MGET` reads all
//! three) and the set of writes holding it, `dsf:{K}:ws`, each named by a random
//! token. Lock and set share one TTL, the longest hold any fence asked for: a writer
//! that never comes back to release only delays the expiry, never shortens another's,
//! and a release delivered late (after its lock expired and a new write took the key)
//! removes only its own token, so it cannot lift the new writer's lock.

use redis::Script;
use std::sync::LazyLock;

/// The value key of cache key `key`.
pub fn value_key(key: &str) -> String {
    format!("dsf:{{{key}}}:v")
}

/// The generation key of cache key `key`.
pub fn generation_key(key: &str) -> String {
    format!("dsf:{{{key}}}:g")
}

/// The write-lock key of cache key `key`.
pub fn lock_key(key: &str) -> String {
    format!("dsf:{{{key}}}:w")
}

/// The key of the set of writes holding the lock of cache key `key`.
pub fn holders_key(key: &str) -> String {
    format!("dsf:{{{key}}}:ws")
}

/// A guarded fill. `KEYS[1]` value, `KEYS[2]` generation, `KEYS[3]` lock; `ARGV[1]`
/// "1" if a generation was seen, `ARGV[2]` that generation, `ARGV[3]` the value,
/// `ARGV[4]` the TTL in ms. Refused (0) when the generation changed or a write holds
/// the lock.
pub static FILL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local g = redis.call('GET', KEYS[2])
if (ARGV[1] == '0' and g == false) or (ARGV[1] == '1' and g == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  return 1
end
return 0",
    )
});

/// The fence before a store write. `KEYS[1..3]` as [`FILL`], `KEYS[4]` the holders;
/// `ARGV[1]` a fresh generation, `ARGV[2]` the generation TTL in ms, `ARGV[3]` the
/// lock hold in ms, `ARGV[4]` the write's token. Sets the generation, drops the value,
/// adds the token to the holders and makes lock and holders live at least `ARGV[3]`
/// ms from now (never shorter than they already would).
pub static FENCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('SADD', KEYS[4], ARGV[4])
local t = redis.call('PTTL', KEYS[3])
local hold = tonumber(ARGV[3])
if t < hold then
  t = hold
end
redis.call('SET', KEYS[3], '1', 'PX', t)
redis.call('PEXPIRE', KEYS[4], t)
return 1",
    )
});

/// The invalidation after a fenced write that has finished: as [`INVALIDATE`], and
/// the write's token leaves the holders; the lock goes when none is left. `KEYS` as
/// [`FENCE`]; `ARGV[1..2]` as [`FENCE`], `ARGV[3]` the write's token.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[4], ARGV[3])
if redis.call('SCARD', KEYS[4]) == 0 then
  redis.call('DEL', KEYS[3])
end
return 1",
    )
});

/// A plain invalidation: a fresh generation and no value; the lock is left to its
/// TTL. Used for redelivery, where an earlier attempt may already have released.
/// `KEYS[1..2]` and `ARGV[1..2]` as [`FENCE`].
pub static INVALIDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
return 1",
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_a_hash_tag_and_never_collide() {
        assert_eq!(value_key("bl:a"), "dsf:{bl:a}:v");
        assert_eq!(generation_key("bl:a"), "dsf:{bl:a}:g");
        assert_eq!(lock_key("bl:a"), "dsf:{bl:a}:w");
        assert_ne!(value_key("x}:g"), generation_key("x"));
        assert_ne!(lock_key("x}:v"), value_key("x"));
        assert_eq!(holders_key("bl:a"), "dsf:{bl:a}:ws");
    }
}
