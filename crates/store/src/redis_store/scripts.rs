//! The Lua scripts behind every operation that reads and writes more than one
//! key or condition. Redis runs a script atomically, so a check and the write it
//! guards cannot interleave with another client. All keys a script touches are
//! passed in `KEYS` and share one hash tag (see [`super::keys`]).

use redis::Script;
use std::time::Duration;

/// KEYS: lease, fence. ARGV: ttl_ms. Returns the new token, or nil if the lease is held.
const ACQUIRE: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
return token
"#;

/// KEYS: lease. ARGV: token, ttl_ms. Returns 1 if the lease was still ours and is extended.
const RENEW: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"#;

/// KEYS: lease. ARGV: token. Deletes the lease only if it is still ours.
const RELEASE: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// KEYS: meta. ARGV: owner, agent, now_ms. Creates the meta hash if absent and
/// returns its fields in `META_FIELDS` order, then 1 if it created it (else 0).
const ENSURE: &str = r#"
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'agent', ARGV[2],
    'created_unix_ms', ARGV[3], 'updated_unix_ms', ARGV[3], 'message_count', 0)
  created = 1
end
local fields = redis.call('HMGET', KEYS[1], 'owner', 'agent', 'created_unix_ms', 'updated_unix_ms', 'message_count')
fields[6] = created
return fields
"#;

/// KEYS: lease, fence, turn, meta, history. ARGV: ttl_ms, history_limit.
/// Takes the lease as `ACQUIRE` (nil if it is held) and reads, under it, what a
/// turn starts from: `{token, turn_json or nil, {meta fields in META_FIELDS
/// order, all nil if the session does not exist}, {history entries, oldest first}}`.
const BEGIN: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
  return false
end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], token, 'PX', ARGV[1])
local committed = redis.call('GET', KEYS[3])
local fields = redis.call('HMGET', KEYS[4], 'owner', 'agent', 'created_unix_ms', 'updated_unix_ms', 'message_count')
local history = {}
local limit = tonumber(ARGV[2])
if limit > 0 then
  history = redis.call('LRANGE', KEYS[5], -limit, -1)
end
return {token, committed, fields, history}
"#;

/// KEYS: lease, turn, history, meta.
/// ARGV: token, reply_json, ttl_secs, owner, agent, now_ms, release (1/0), message_json...
/// With `release` 1, a commit (or a duplicate) also ends the lease.
///
/// Returns `{'fenced'}`, `{'dup', reply_json, owner, updated_ms}`,
/// `{'ok', owner, updated_ms}` or `{'corrupt', reason}`. Everything that could
/// make a write fail is checked before the first write, because Redis does not
/// roll back a script that errors half way.
const COMMIT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {'fenced'}
end
local function indexed()
  local m = redis.call('HMGET', KEYS[4], 'owner', 'updated_unix_ms')
  return m[1] or '', m[2] or '0'
end
local release = ARGV[7] == '1'
local prev = redis.call('GET', KEYS[2])
if prev then
  local owner, updated = indexed()
  if release then
    redis.call('DEL', KEYS[1])
  end
  return {'dup', prev, owner, updated}
end
local history_type = redis.call('TYPE', KEYS[3]).ok
if history_type ~= 'list' and history_type ~= 'none' then
  return {'corrupt', KEYS[3] .. ' is a ' .. history_type .. ', not a list'}
end
local meta_type = redis.call('TYPE', KEYS[4]).ok
if meta_type ~= 'hash' and meta_type ~= 'none' then
  return {'corrupt', KEYS[4] .. ' is a ' .. meta_type .. ', not a hash'}
end
local count = redis.call('HGET', KEYS[4], 'message_count')
if count and not string.match(count, '^%d+$') then
  return {'corrupt', KEYS[4] .. ' has message_count ' .. count}
end
for i = 8, #ARGV do
  redis.call('RPUSH', KEYS[3], ARGV[i])
end
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
if meta_type == 'none' then
  redis.call('HSET', KEYS[4], 'owner', ARGV[4], 'agent', ARGV[5],
    'created_unix_ms', ARGV[6], 'updated_unix_ms', ARGV[6], 'message_count', 0)
end
-- Clocks of different workers may disagree; updated_unix_ms never goes back.
local updated = tonumber(redis.call('HGET', KEYS[4], 'updated_unix_ms') or '0') or 0
if tonumber(ARGV[6]) > updated then
  redis.call('HSET', KEYS[4], 'updated_unix_ms', ARGV[6])
end
redis.call('HINCRBY', KEYS[4], 'message_count', #ARGV - 7)
if release then
  redis.call('DEL', KEYS[1])
end
local owner, updated_now = indexed()
return {'ok', owner, updated_now}
"#;

/// KEYS: meta, history. Clears the history and the count, keeps the rest of
/// the meta. Returns 1 if the meta existed.
const RESET: &str = r#"
local existed = redis.call('EXISTS', KEYS[1])
redis.call('DEL', KEYS[2])
if existed == 1 then
  redis.call('HSET', KEYS[1], 'message_count', 0)
end
return existed
"#;

/// KEYS: user usage, tenant usage (one hash tag). ARGV: tokens, ttl_secs.
/// Adds `tokens` to both daily counters and returns `{user_total, tenant_total}`
/// (one command instead of a six-command MULTI block on every committed turn).
const ADD_USAGE: &str = r#"
local u = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
local t = redis.call('INCRBY', KEYS[2], ARGV[1])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return {u, t}
"#;

/// The scripts, hashed once; `invoke_async` loads a script on `NOSCRIPT`.
pub(crate) struct Scripts {
    pub(crate) acquire: Script,
    pub(crate) begin: Script,
    pub(crate) renew: Script,
    pub(crate) release: Script,
    pub(crate) ensure: Script,
    pub(crate) commit: Script,
    pub(crate) reset: Script,
    pub(crate) add_usage: Script,
}

impl Scripts {
    pub(crate) fn new() -> Scripts {
        Scripts {
            acquire: Script::new(ACQUIRE),
            begin: Script::new(BEGIN),
            renew: Script::new(RENEW),
            release: Script::new(RELEASE),
            ensure: Script::new(ENSURE),
            commit: Script::new(COMMIT),
            reset: Script::new(RESET),
            add_usage: Script::new(ADD_USAGE),
        }
    }
}

/// A TTL in whole milliseconds, at least 1 (Redis rejects `PX 0`).
pub(crate) fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_to_at_least_one_millisecond() {
        assert_eq!(millis(Duration::from_micros(10)), 1);
        assert_eq!(millis(Duration::from_millis(1500)), 1500);
    }
}
