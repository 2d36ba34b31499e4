package redisrate

import "github.com/redis/go-redis/v9"

// The scripts share these conventions. KEYS[1] is the one key a decision
// touches, so every script is single-slot and works on Redis Cluster. Time
// is Redis's own (TIME, in microseconds), never the caller's, so instances
// with skewed clocks still share one exact limit; Redis 7 replicates
// scripts by their effects, which is what makes reading TIME before a
// write allowed. Every write sets its key's expiry in the same script, so
// no key is ever left without a TTL. Numbers written back are formatted
// with %d, because Lua's default number formatting keeps only 14 digits.
// Each returns {allowed, remaining, retry_after_us, reset_after_us},
// except gcraScript, which returns the one number they follow from.

// gcraScript: ARGV = tau (burst × interval) µs, increment (n × interval)
// µs. The key holds the TAT in µs. It returns TAT − now after an admission
// (at least the increment, so above 0) and −(TAT − now) after a denial
// (below 0, since a denied TAT lies more than tau − increment ≥ 0 ahead);
// Limiter.gcraResult derives the Result from that and the limit. One
// integer costs Redis less to build and send, and the client less to
// read, than a table of four: this script is the hot path of the package,
// and Redis, single-threaded, often shares its machine with the callers.
// Arithmetic on TIME's strings and ARGV coerces them to numbers without
// tonumber, which comparisons would not.
var gcraScript = redis.NewScript(`
local t = redis.call('TIME')
local now = t[1] * 1000000 + t[2]
local tat = tonumber(redis.call('GET', KEYS[1]))
if not tat or tat < now then tat = now end
local d = tat - now + ARGV[2]
if d > tonumber(ARGV[1]) then
  return now - tat
end
redis.call('SET', KEYS[1], string.format('%d', now + d), 'PX', math.ceil(d / 1000))
return d
`)

// logScript: ARGV = period µs, rate, n. The key is a sorted set of
// admissions scored by their time; a member's name is its time and its
// rank, unique even for several admissions in one microsecond.
var logScript = redis.NewScript(`
local period = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now - period))
local count = redis.call('ZCARD', KEYS[1])
if count + n > rate then
  local leave = redis.call('ZRANGE', KEYS[1], count + n - rate - 1, count + n - rate - 1, 'WITHSCORES')
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  return {0, rate - count, tonumber(leave[2]) + period - now, tonumber(newest[2]) + period - now}
end
local now_s = string.format('%d', now)
for i = 1, n do
  redis.call('ZADD', KEYS[1], now_s, now_s .. '-' .. (count + i))
end
redis.call('PEXPIRE', KEYS[1], math.ceil(period / 1000))
return {1, rate - count - n, 0, period}
`)

// windowScript: ARGV = period µs, rate, n. The key is a hash of the current
// window's start and the previous and current windows' counts. Products
// stay below 2^53 (NewSlidingWindow checks rate × period), so the double
// arithmetic is exact.
var windowScript = redis.NewScript(`
local p = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local h = redis.call('HMGET', KEYS[1], 'start', 'prev', 'curr')
local start, prev, curr = tonumber(h[1]), tonumber(h[2]) or 0, tonumber(h[3]) or 0
if not start then start, prev, curr = now, 0, 0 end
local k = math.floor((now - start) / p)
if k > 0 then
  if k == 1 then prev = curr else prev = 0 end
  curr = 0
  start = start + k * p
end
local e = now - start
local weighted = math.ceil(prev * (p - e) / p)
if curr + n + weighted <= rate then
  curr = curr + n
  redis.call('HSET', KEYS[1], 'start', string.format('%d', start), 'prev', prev, 'curr', curr)
  redis.call('PEXPIRE', KEYS[1], math.ceil((start + 2 * p - now) / 1000))
  return {1, rate - curr - weighted, 0, start + 2 * p - now}
end
local retry
if curr + n <= rate then
  retry = p - math.floor((rate - curr - n) * p / prev) - e
else
  retry = p - e + p - math.floor((rate - n) * p / curr)
end
local reset = 0
if curr > 0 then reset = 2 * p - e elseif prev > 0 then reset = p - e end
return {0, math.max(rate - curr - weighted, 0), retry, reset}
`)

// concScript: ARGV = lease µs, max, n, holder. The key is a sorted set of
// holders scored by when their lease runs out. An empty holder name takes
// n anonymous slots (AllowN); otherwise one slot named holder.
var concScript = redis.NewScript(`
local lease = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%d', now))
local held = redis.call('ZCARD', KEYS[1])
if held + n > max then
  local free = redis.call('ZRANGE', KEYS[1], held + n - max - 1, held + n - max - 1, 'WITHSCORES')
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  return {0, max - held, tonumber(free[2]) - now, tonumber(last[2]) - now}
end
local exp = string.format('%d', now + lease)
if ARGV[4] ~= '' then
  redis.call('ZADD', KEYS[1], exp, ARGV[4])
else
  for i = 1, n do
    redis.call('ZADD', KEYS[1], exp, 'a-' .. exp .. '-' .. (held + i))
  end
end
redis.call('PEXPIRE', KEYS[1], math.ceil(lease / 1000))
return {1, max - held - n, 0, lease}
`)

// releaseScript: ARGV = holder. Frees the holder's slot if it still has
// one; a lease that ran out, and was perhaps reused, is left alone.
var releaseScript = redis.NewScript(`
return redis.call('ZREM', KEYS[1], ARGV[1])
`)
