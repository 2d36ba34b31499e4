package ratelimit

import (
	"errors"
	"fmt"
	"runtime"
)

// Options configures an in-memory limiter. The zero Options is ready to use.
type Options struct {
	// MaxKeys is a hard cap on the keys a limiter keeps state for. When a new
	// key arrives and the limiter is full, the least recently used key of the
	// new key's shard is dropped, so a flood of distinct keys cannot grow
	// memory without bound. Dropping a key forgets what it spent: that key
	// starts afresh. Each key costs about 150 to 250 bytes, by limiter,
	// plus its own bytes (and a SlidingLog 8 bytes per unit of Rate).
	// A limiter keeps a key's string as given, not a copy, as a Go map
	// does: a key sliced out of a larger string keeps all of that string
	// alive while the key is held, so pass strings.Clone(key) in that case.
	// Defaults to 100,000.
	MaxKeys int
	// Shards is the number of independently locked parts the key space is
	// split into, a power of two. More shards means less lock contention
	// (GCRA takes a shard's lock only for a new key).
	// LRU order is kept per shard, not globally. Each shard costs about 300
	// bytes when empty. Defaults to 64 × GOMAXPROCS rounded down to a power
	// of two, at most 1024 and at most MaxKeys/8 (at least 1): with many
	// shards, two cores rarely want the same lock's cache line at once.
	Shards int
}

// DefaultMaxKeys is the key cap used when Options.MaxKeys is zero.
const DefaultMaxKeys = 100_000

// maxShards bounds Options.Shards.
const maxShards = 1 << 16

// resolve returns o with its defaults filled in, or an error for a negative
// or malformed field.
func (o Options) resolve() (Options, error) {
	if o.MaxKeys < 0 {
		return o, fmt.Errorf("ratelimit: MaxKeys %d must not be negative", o.MaxKeys)
	}
	if o.Shards < 0 {
		return o, fmt.Errorf("ratelimit: Shards %d must not be negative", o.Shards)
	}
	if o.Shards > maxShards {
		return o, fmt.Errorf("ratelimit: Shards %d is more than %d", o.Shards, maxShards)
	}
	if o.Shards&(o.Shards-1) != 0 {
		return o, fmt.Errorf("ratelimit: Shards %d must be a power of two", o.Shards)
	}
	if o.MaxKeys == 0 {
		o.MaxKeys = DefaultMaxKeys
	}
	if o.Shards > o.MaxKeys {
		return o, errors.New("ratelimit: Shards must not exceed MaxKeys")
	}
	if o.Shards == 0 {
		want := min(64*runtime.GOMAXPROCS(0), 1024, max(o.MaxKeys/8, 1))
		o.Shards = 1
		for o.Shards*2 <= want {
			o.Shards *= 2
		}
	}
	return o, nil
}
