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

use rand::RngCore;
use redis::aio::ConnectionLike;
use redis::{RedisResult, Script};
use std::sync::LazyLock;
use std::time::Duration;

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

/// Appends the value, generation and lock keys of `key` to `cmd`, in that order (a
/// guarded read's three keys), written through `buf`: the command copies each
/// argument, so no string is made per key.
pub fn guard_key_args(cmd: &mut redis::Cmd, key: &str, buf: &mut Vec<u8>) {
    for suffix in [b":v", b":g", b":w"] {
        buf.clear();
        buf.extend_from_slice(b"dsf:{");
        buf.extend_from_slice(key.as_bytes());
        buf.push(b'}');
        buf.extend_from_slice(suffix);
        cmd.arg(&buf[..]);
    }
}

/// The key of the set of writes holding the lock of cache key `key`.
pub fn holders_key(key: &str) -> String {
    format!("dsf:{{{key}}}:ws")
}

/// A guarded fill. `KEYS[1]` value, `KEYS[2]` generation, `KEYS[3]` lock; `ARGV[1]`
/// "1" if a generation was seen, `ARGV[2]` that generation, `ARGV[3]` the value,
/// `ARGV[4]` the TTL in ms. Refused (0) when the generation changed or a write holds
/// the lock.
pub static FILL: LazyLock<Script> = LazyLock::new(|| Script::new(FILL_LUA));

/// How long a generation key outlives the last invalidation of its key.
pub const GENERATION_TTL: Duration = Duration::from_secs(600);

/// The four keys ([`FILL`]'s three and the holders) that [`FENCE`], [`RELEASE`] and
/// [`INVALIDATE`] take for cache key `key`, and their first two arguments: a fresh
/// random generation and [`GENERATION_TTL`] in ms.
pub fn write_keys_and_args(key: &str) -> ([String; 4], [String; 2]) {
    let mut nonce = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut nonce);
    (
        [
            value_key(key),
            generation_key(key),
            lock_key(key),
            holders_key(key),
        ],
        [
            hex::encode(nonce),
            (GENERATION_TTL.as_millis() as u64).to_string(),
        ],
    )
}

/// Runs [`FILL`] for cache key `key` on `conn`: stores `value` for `ttl` if the key's
/// generation is still `seen` and no write holds its lock. Returns whether it stored.
pub async fn fill<C: ConnectionLike>(
    conn: &mut C,
    key: &str,
    seen: Option<&str>,
    value: &str,
    ttl: Duration,
) -> RedisResult<bool> {
    let n: i64 = FILL
        .key(value_key(key))
        .key(generation_key(key))
        .key(lock_key(key))
        .arg(if seen.is_some() { "1" } else { "0" })
        .arg(seen.unwrap_or(""))
        .arg(value)
        .arg(ttl.as_millis().max(1) as u64)
        .invoke_async(conn)
        .await?;
    Ok(n == 1)
}

/// The Lua source of [`FILL`] (sent with `EVAL` where a pipeline needs it).
pub const FILL_LUA: &str = r"if redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local g = redis.call('GET', KEYS[2])
if (ARGV[1] == '0' and g == false) or (ARGV[1] == '1' and g == ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[3], 'PX', ARGV[4])
  return 1
end
return 0";

/// The fence before a store write. `KEYS[1..3]` as [`FILL`], `KEYS[4]` the holders;
/// `ARGV[1]` a fresh generation, `ARGV[2]` the generation TTL in ms, `ARGV[3]` the
/// lock hold in ms, `ARGV[4]` the write's token. Sets the generation, drops the value,
/// adds the token to the holders and makes lock and holders live at least `ARGV[3]`
/// ms from now (never shorter than they already would).
pub static FENCE: LazyLock<Script> = LazyLock::new(|| Script::new(FENCE_LUA));

/// The Lua source of [`FENCE`] (sent with `EVAL` where a pipeline needs it).
pub const FENCE_LUA: &str = r"redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('SADD', KEYS[4], ARGV[4])
local t = redis.call('PTTL', KEYS[3])
local hold = tonumber(ARGV[3])
if t < hold then
  t = hold
end
redis.call('SET', KEYS[3], '1', 'PX', t)
redis.call('PEXPIRE', KEYS[4], t)
return 1";

/// The invalidation after a fenced write that has finished: as [`INVALIDATE`], and
/// the write's token leaves the holders; the lock goes when none is left. `KEYS` as
/// [`FENCE`]; `ARGV[1..2]` as [`FENCE`], `ARGV[3]` the write's token.
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| Script::new(RELEASE_LUA));

/// The Lua source of [`RELEASE`] (sent with `EVAL` where a pipeline needs it).
pub const RELEASE_LUA: &str = r"redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
redis.call('SREM', KEYS[4], ARGV[3])
if redis.call('SCARD', KEYS[4]) == 0 then
  redis.call('DEL', KEYS[3])
end
return 1";

/// A plain invalidation: a fresh generation and no value; the lock is left to its
/// TTL. Used for redelivery, where an earlier attempt may already have released.
/// `KEYS[1..2]` and `ARGV[1..2]` as [`FENCE`].
pub static INVALIDATE: LazyLock<Script> = LazyLock::new(|| Script::new(INVALIDATE_LUA));

/// The Lua source of [`INVALIDATE`] (sent with `EVAL` where a pipeline needs it).
pub const INVALIDATE_LUA: &str = r"redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[1])
return 1";

/// Number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// The Redis Cluster hash slot of a Redis key: CRC16 (XMODEM) of its hash tag — the
/// text between the first `{` and the next `}`, when that is not empty — or of the
/// whole key, modulo [`SLOTS`].
pub fn slot(redis_key: &[u8]) -> u16 {
    let hashed = redis_key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &redis_key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(redis_key);
    crc16_xmodem(hashed) % SLOTS
}

/// The slot that holds every Redis key of cache key `key` (all four share its tag,
/// as long as `key` is not empty and does not begin with `}`; every cache key of the
/// node begins with a fixed prefix such as `bl:` or `s:`).
pub fn cache_slot(key: &str) -> u16 {
    slot(value_key(key).as_bytes())
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &b in data {
        crc ^= u16::from(b) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::cluster_routing::{Route, SlotAddr};

    #[test]
    fn guard_key_args_are_the_three_key_functions() {
        let mut cmd = redis::cmd("MGET");
        let mut buf = Vec::new();
        for k in ["bl:a", "s:ff", "x{y}"] {
            guard_key_args(&mut cmd, k, &mut buf);
        }
        let args: Vec<Vec<u8>> = cmd
            .args_iter()
            .filter_map(|a| match a {
                redis::Arg::Simple(b) => Some(b.to_vec()),
                _ => None,
            })
            .collect();
        let want: Vec<Vec<u8>> = std::iter::once(b"MGET".to_vec())
            .chain(["bl:a", "s:ff", "x{y}"].iter().flat_map(|k| {
                [value_key(k), generation_key(k), lock_key(k)].map(String::into_bytes)
            }))
            .collect();
        assert_eq!(args, want);
    }

    #[test]
    fn slots_match_redis_cluster() {
        // Values from the Redis Cluster specification and `CLUSTER KEYSLOT`.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"bar"), 5061);
        assert_eq!(slot(b"{user1000}.following"), slot(b"user1000"));
        assert_ne!(slot(b"foo{}{bar}"), slot(b"bar"));
        // The client routes by the same function.
        for k in ["dsf:{bl:a}:v", "x", "{}", "a{b}c", "a{}b{c}"] {
            assert_eq!(
                Route::with_key(k, SlotAddr::Master),
                Route::new(slot(k.as_bytes()), SlotAddr::Master),
                "{k}"
            );
        }
    }

    /// Fence, fill and invalidation are single-slot scripts: on a Redis Cluster all
    /// four keys of one entry must hash to one slot, whatever the entry's key holds.
    #[test]
    fn the_keys_of_one_entry_share_one_cluster_slot() {
        for key in [
            "bl:a",
            "bl:ID-1",
            "bl:}x",
            "bl:{x}",
            "bl:{",
            "bl:}{",
            "bl:",
            "s:0123456789abcdef",
            "bl:名前",
        ] {
            let s = cache_slot(key);
            for k in [
                value_key(key),
                generation_key(key),
                lock_key(key),
                holders_key(key),
            ] {
                assert_eq!(slot(k.as_bytes()), s, "{k} of {key}");
            }
        }
        // Different entries spread over the slots.
        let spread: std::collections::HashSet<u16> =
            (0..100).map(|i| cache_slot(&format!("bl:{i}"))).collect();
        assert!(spread.len() > 90, "{}", spread.len());
    }

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
