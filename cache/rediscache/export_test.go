package rediscache

// ValueKey and LockKey are the Redis keys of skey's value and lock in the
// namespace ns, for tests that look into Redis.
func ValueKey(ns, skey string) string { return redisKey(ns, kindValue, skey) }
func LockKey(ns, skey string) string  { return redisKey(ns, kindLock, skey) }

// DeleteScriptHash is the SHA1 of the script Delete runs.
var DeleteScriptHash = deleteScript.Hash()
