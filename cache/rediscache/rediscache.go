package rediscache

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asynckit/asynckit/cache"
)

// ErrResubscribed is passed to Options.OnError, with op "subscribe", when
// the invalidation subscription comes back after its connection was lost.
// Invalidations published meanwhile were missed, so the instance has
// dropped every local copy.
var ErrResubscribed = errors.New("rediscache: invalidation subscription reconnected; local tier purged")

// unlockTimeout bounds the release of a lock, which runs even when the
// load's own context has ended.
const unlockTimeout = time.Second

// unlockScript deletes the lock only if this owner still holds it, so an
// instance whose lock expired never releases the next owner's.
var unlockScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// generationScript returns the generation of a key (KEYS[1]), a token that
// Delete replaces, creating it as ARGV[1] if there is none, and makes it
// live ARGV[2] ms from now. A load reads it before its loader runs.
var generationScript = redis.NewScript(`
local g = redis.call("GET", KEYS[1])
if g then
	redis.call("PEXPIRE", KEYS[1], ARGV[2])
	return g
end
redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
return ARGV[1]`)

// storeScript writes a loaded value (ARGV[2]) to KEYS[1] for ARGV[3] ms,
// but only if the key's generation, KEYS[2], is still ARGV[1], the one the
// load read before its loader ran; with ARGV[4] == "1" over any value
// there, and otherwise only where there is none (NX). It returns 1 if it
// wrote.
var storeScript = redis.NewScript(`
if redis.call("GET", KEYS[2]) ~= ARGV[1] then
	return 0
end
if ARGV[4] == "1" then
	redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3])
	return 1
end
if redis.call("SET", KEYS[1], ARGV[2], "PX", ARGV[3], "NX") then
	return 1
end
return 0`)

// deleteScript deletes the value KEYS[1] and gives the key a new
// generation, KEYS[2] = ARGV[1] for ARGV[2] ms, in one step, so that no
// load that read the old generation writes a value back.
var deleteScript = redis.NewScript(`
redis.call("DEL", KEYS[1])
redis.call("SET", KEYS[2], ARGV[1], "PX", ARGV[2])
return 1`)

// Cache is a two-tier cache: an in-process [cache.Cache] in front of Redis,
// shared by every instance that uses the same Namespace. Create one with
// [New]. All methods are safe for concurrent use.
type Cache[K comparable, V any] struct {
	client       redis.UniversalClient
	ns           string
	local        *cache.Cache[string, V]
	localRefresh bool // Local.RefreshAfter is set: every hit goes through GetOrLoad
	ttl          time.Duration
	jitter       float64
	key          func(K) string
	codec        Codec[V]
	invalidate   bool
	onInvalidate func(string)
	lockTTL      time.Duration
	redisTimeout time.Duration
	poll         time.Duration
	pollMax      time.Duration
	onError      func(string, error)
	id           string // this instance, to skip its own invalidations

	pubsub    *redis.PubSub
	done      chan struct{} // closed when the subscriber has returned
	closeOnce sync.Once
	closeErr  error

	// gen counts local drops and writes, so that a Get that read Redis
	// while one ran does not keep what it read.
	gen atomic.Uint64
	// loading holds the keys this instance is loading (at most one load
	// per key, by the local tier's single flight), so that a drop of the
	// key stops the load from writing what it read back to Redis.
	loadingMu sync.Mutex
	loading   map[string]*load

	redisHits, redisMisses, errs, loads, lockWaits, invalidations atomic.Uint64
}

// Stats is a snapshot of a [Cache]'s counters.
type Stats struct {
	// Local is the in-process tier's statistics. Its Loads count lookups
	// that went past the local tier (to Redis, then maybe to the loader).
	Local cache.Stats
	// RedisHits and RedisMisses count lookups that reached Redis, once
	// each: a hit when Redis answered (at once, or after waiting for
	// another instance's load), a miss when the lookup went on to the
	// loader. A lookup whose first Redis read failed counts in Errors.
	RedisHits, RedisMisses uint64
	// Errors counts Redis and codec errors, and resubscriptions after a
	// lost connection ([ErrResubscribed]), each also passed to OnError.
	Errors uint64
	// Loads counts calls of the caller's loader.
	Loads uint64
	// LockWaits counts loads that waited for another instance's load.
	LockWaits uint64
	// Invalidations counts keys dropped locally on another instance's
	// message.
	Invalidations uint64
}

// New returns a two-tier cache. With Options.Invalidate it subscribes to
// the invalidation channel before returning, so no message published after
// New returns is missed, and starts the subscriber goroutine that Close
// stops; ctx bounds that subscription. Invalid options are an error.
func New[K comparable, V any](ctx context.Context, opts Options[K, V]) (*Cache[K, V], error) {
	if ctx == nil {
		return nil, errors.New("rediscache: nil context")
	}
	if err := opts.validate(); err != nil {
		return nil, err
	}
	localOpts := opts.Local
	if localOpts.TTL == 0 && localOpts.RefreshAfter < opts.TTL {
		// A local copy lives no longer than a value in Redis does.
		localOpts.TTL = opts.TTL
	}
	local, err := cache.New(localOpts)
	if err != nil {
		return nil, fmt.Errorf("rediscache: Local: %w", err)
	}
	c := &Cache[K, V]{
		client:       opts.Client,
		ns:           opts.Namespace,
		local:        local,
		localRefresh: opts.Local.RefreshAfter > 0,
		ttl:          opts.TTL,
		jitter:       opts.Jitter,
		key:          opts.Key,
		codec:        opts.Codec,
		invalidate:   opts.Invalidate,
		onInvalidate: opts.OnInvalidate,
		lockTTL:      opts.LockTTL,
		redisTimeout: opts.RedisTimeout,
		poll:         opts.LockPoll,
		pollMax:      opts.LockPollMax,
		onError:      opts.OnError,
		id:           token(),
		loading:      make(map[string]*load),
	}
	if c.key == nil {
		c.key = defaultKey[K]()
	}
	if c.codec == nil {
		c.codec = JSON[V]{}
	}
	if c.poll == 0 {
		c.poll = DefaultLockPoll
	}
	if c.pollMax == 0 {
		c.pollMax = max(DefaultLockPollMax, c.poll)
	}
	if c.invalidate {
		ps := c.client.Subscribe(ctx, c.channel())
		if _, err := ps.Receive(ctx); err != nil {
			_ = ps.Close()
			local.Close()
			return nil, fmt.Errorf("rediscache: subscribe to %s: %w", c.channel(), err)
		}
		c.pubsub = ps
		c.done = make(chan struct{})
		go c.subscribe(ps.ChannelWithSubscriptions())
	}
	return c, nil
}

// What a Redis key of the cache holds: the first letter after the
// Namespace.
const (
	kindValue      = "v" // the encoded value
	kindLock       = "l" // the owner token of the cross-instance lock
	kindGeneration = "g" // the generation, which Delete replaces
)

// redisKey returns the Redis key of kind for the string key skey in the
// namespace ns: ns, the kind's letter, and skey inside a hash tag after a
// colon, as in "myapp:users:v{:42}". The encoding is injective: ns holds no
// brace (New refuses one), so the first "{" ends ns and the kind, the last
// "}" ends skey, and no two (ns, kind, skey) share a key, however their
// namespaces prefix each other. The hash tag puts every key of one skey in
// one Redis Cluster slot, so that a script may touch several, and it is
// never empty, which would make Redis hash the whole key.
func redisKey(ns, kind, skey string) string { return ns + kind + "{:" + skey + "}" }

func (c *Cache[K, V]) valueKey(skey string) string { return redisKey(c.ns, kindValue, skey) }
func (c *Cache[K, V]) lockKey(skey string) string  { return redisKey(c.ns, kindLock, skey) }
func (c *Cache[K, V]) genKey(skey string) string   { return redisKey(c.ns, kindGeneration, skey) }
func (c *Cache[K, V]) channel() string             { return c.ns + "invalidate" }

// GetOrLoad returns key's value from the local tier, else from Redis, else
// from loader, writing what it loads to both tiers. Concurrent misses of a
// key in this instance share one lookup (see [cache.Cache.GetOrLoad] for
// the context and panic rules); with Options.LockTTL, misses across
// instances share one loader call. A Redis error is counted and reported to
// OnError, and the lookup goes on to the loader: it never fails a read the
// loader can serve. A nil ctx or loader is an error.
func (c *Cache[K, V]) GetOrLoad(ctx context.Context, key K, loader cache.Loader[K, V]) (V, error) {
	var zero V
	if ctx == nil {
		return zero, errors.New("rediscache: nil context")
	}
	if loader == nil {
		return zero, errors.New("rediscache: nil loader")
	}
	skey := c.key(key)
	if !c.localRefresh {
		// A local hit needs no loader: skip building the closure below.
		if v, ok := c.local.Get(skey); ok {
			return v, nil
		}
	}
	return c.local.GetOrLoad(ctx, skey, func(ctx context.Context, skey string) (V, error) {
		l := c.track(skey)
		defer c.untrack(skey, l)
		v, found, err := c.fromRedis(ctx, skey)
		if found {
			c.redisHits.Add(1)
			return v, nil
		}
		if err == nil && c.lockTTL > 0 {
			return c.loadLocked(ctx, l, key, skey, loader)
		}
		if err == nil {
			c.redisMisses.Add(1)
		}
		return c.loadAndStore(ctx, l, key, skey, loader, corrupt(err))
	})
}

// Get returns key's value from the local tier or Redis, without loading.
// A value found in Redis is kept locally, unless a write or invalidation of
// the local tier ran while Redis was read. A Redis error is returned (and
// counted); a missing key is (zero, false, nil). A nil ctx is an error.
func (c *Cache[K, V]) Get(ctx context.Context, key K) (V, bool, error) {
	var zero V
	if ctx == nil {
		return zero, false, errors.New("rediscache: nil context")
	}
	skey := c.key(key)
	if v, ok := c.local.Get(skey); ok {
		return v, true, nil
	}
	gen := c.gen.Load()
	v, found, err := c.fromRedis(ctx, skey)
	switch {
	case found:
		c.redisHits.Add(1)
	case err == nil:
		c.redisMisses.Add(1)
	}
	if found {
		c.local.Set(skey, v)
		// An invalidation or a write of this instance that ran while Redis
		// was read may have dropped its copy before the Set above: drop
		// what was read rather than keep a value that may be stale.
		if c.gen.Load() != gen {
			c.local.Delete(skey)
		}
	}
	return v, found, err
}

// Set writes value to Redis and to the local tier, and with
// Options.Invalidate tells the other instances to drop their copies. If the
// Redis write fails, the local copy is dropped too and the error returned.
func (c *Cache[K, V]) Set(ctx context.Context, key K, value V) error {
	if ctx == nil {
		return errors.New("rediscache: nil context")
	}
	skey := c.key(key)
	if err := c.toRedis(ctx, skey, value); err != nil {
		c.drop(skey)
		return err
	}
	c.gen.Add(1)
	c.local.Set(skey, value)
	return c.publish(ctx, skey)
}

// Delete removes key from Redis and from the local tier, and with
// Options.Invalidate from the local tier of every other instance, typically
// within milliseconds. In the same step as it removes the value from Redis
// it gives the key a new generation, so that no load that began before it,
// on any instance, writes the value it read back to Redis, whether or not
// that instance has heard of the Delete. Redis is cleared before the local
// copy, so a concurrent load on this instance cannot bring the old value
// back either. It returns the first Redis error, after trying both the
// delete and the broadcast.
func (c *Cache[K, V]) Delete(ctx context.Context, key K) error {
	if ctx == nil {
		return errors.New("rediscache: nil context")
	}
	skey := c.key(key)
	var first error
	rctx, cancel := c.bound(ctx)
	err := deleteScript.Run(rctx, c.client, []string{c.valueKey(skey), c.genKey(skey)}, token(), c.generationTTL()).Err()
	cancel()
	if err != nil {
		first = c.fail("del", err)
	}
	// Only now drop the local copy: a load of key that read Redis before
	// the DEL is marked dropped by this Delete and does not store what it
	// read, and one that reads Redis after it finds nothing.
	c.drop(skey)
	if err := c.publish(ctx, skey); err != nil && first == nil {
		first = err
	}
	return first
}

// Stats returns the counters of both tiers.
func (c *Cache[K, V]) Stats() Stats {
	return Stats{
		Local:         c.local.Stats(),
		RedisHits:     c.redisHits.Load(),
		RedisMisses:   c.redisMisses.Load(),
		Errors:        c.errs.Load(),
		Loads:         c.loads.Load(),
		LockWaits:     c.lockWaits.Load(),
		Invalidations: c.invalidations.Load(),
	}
}

// Close stops the subscriber and the local tier's loads and waits for
// them. It does not close the Redis client. It is idempotent; later calls
// return the first call's result.
func (c *Cache[K, V]) Close() error {
	c.closeOnce.Do(func() {
		if c.pubsub != nil {
			c.closeErr = c.pubsub.Close()
			<-c.done
		}
		c.local.Close()
	})
	return c.closeErr
}

// fromRedis reads skey from Redis. found is false on a miss and on any
// error; err is the Redis or codec error, already counted. The caller
// counts the lookup as a Redis hit or miss.
func (c *Cache[K, V]) fromRedis(ctx context.Context, skey string) (v V, found bool, err error) {
	rctx, cancel := c.bound(ctx)
	b, err := c.client.Get(rctx, c.valueKey(skey)).Bytes()
	cancel()
	switch {
	case errors.Is(err, redis.Nil):
		return v, false, nil
	case err != nil:
		return v, false, c.fail("get", err)
	}
	v, err = c.codec.Unmarshal(b)
	if err != nil {
		return v, false, c.fail("decode", decodeError{err})
	}
	return v, true, nil
}

// decodeError marks a value in Redis that the codec cannot decode, which a
// load may overwrite.
type decodeError struct{ err error }

func (e decodeError) Error() string { return e.err.Error() }
func (e decodeError) Unwrap() error { return e.err }

// corrupt reports whether err, from fromRedis, is a value that could not
// be decoded.
func corrupt(err error) bool {
	var d decodeError
	return errors.As(err, &d)
}

// toRedis writes v under skey with the jittered TTL, over any value there.
func (c *Cache[K, V]) toRedis(ctx context.Context, skey string, v V) error {
	b, err := c.codec.Marshal(v)
	if err != nil {
		return c.fail("encode", err)
	}
	rctx, cancel := c.bound(ctx)
	defer cancel()
	if err := c.client.Set(rctx, c.valueKey(skey), b, c.valueTTL()).Err(); err != nil {
		return c.fail("set", err)
	}
	return nil
}

// valueTTL returns the lifetime of a value written now: TTL shortened by
// up to Jitter, and at least a millisecond.
func (c *Cache[K, V]) valueTTL() time.Duration {
	ttl := c.ttl
	if c.jitter > 0 {
		ttl -= time.Duration(rand.Float64() * c.jitter * float64(ttl))
	}
	return max(ttl, time.Millisecond)
}

// generationTTL is how long, in milliseconds, a generation lives after a
// load reads it or a Delete replaces it: TTL, the longest a value lives. A
// generation that expires under a load only makes that load store nothing.
func (c *Cache[K, V]) generationTTL() int64 { return max(c.ttl.Milliseconds(), 1) }

// generation returns skey's generation in Redis, creating it if there is
// none, for a load about to call its loader.
func (c *Cache[K, V]) generation(ctx context.Context, skey string) (string, error) {
	rctx, cancel := c.bound(ctx)
	defer cancel()
	gen, err := generationScript.Run(rctx, c.client, []string{c.genKey(skey)}, token(), c.generationTTL()).Text()
	if err != nil {
		return "", c.fail("generation", err)
	}
	return gen, nil
}

// storeLoaded writes a loaded v under skey with the jittered TTL, if skey's
// generation is still gen: with replace over any value there, and
// otherwise only where there is none.
func (c *Cache[K, V]) storeLoaded(ctx context.Context, skey, gen string, v V, replace bool) error {
	b, err := c.codec.Marshal(v)
	if err != nil {
		return c.fail("encode", err)
	}
	rctx, cancel := c.bound(ctx)
	defer cancel()
	flag := "0"
	if replace {
		flag = "1"
	}
	keys := []string{c.valueKey(skey), c.genKey(skey)}
	if err := storeScript.Run(rctx, c.client, keys, gen, b, c.valueTTL().Milliseconds(), flag).Err(); err != nil {
		return c.fail("set", err)
	}
	return nil
}

// load is one load of a key by this instance; dropped is set when the key
// is deleted or invalidated while it runs.
type load struct{ dropped atomic.Bool }

// track registers a load of skey.
func (c *Cache[K, V]) track(skey string) *load {
	l := new(load)
	c.loadingMu.Lock()
	c.loading[skey] = l
	c.loadingMu.Unlock()
	return l
}

// untrack removes l, unless a newer load of skey replaced it.
func (c *Cache[K, V]) untrack(skey string, l *load) {
	c.loadingMu.Lock()
	if c.loading[skey] == l {
		delete(c.loading, skey)
	}
	c.loadingMu.Unlock()
}

// loadAndStore calls loader and writes its value to Redis; a failed write
// is counted but the value is still returned. The write does not replace a
// value already in Redis (NX): one written meanwhile, by a Set or by
// another instance's load, is at least as new as what this load read.
// With replace, as for a value that could not be decoded, it does. No
// write happens if the key was deleted or invalidated during the load:
// what the loader read may predate the change behind that. Redis itself
// sees to that for a Delete on any instance, by the generation read before
// the loader runs; this instance's own drops (an invalidation heard, or a
// resubscription) stop the write before it is sent. When the generation
// cannot be read, nothing is written.
func (c *Cache[K, V]) loadAndStore(ctx context.Context, l *load, key K, skey string, loader cache.Loader[K, V], replace bool) (V, error) {
	gen, genErr := c.generation(ctx, skey)
	c.loads.Add(1)
	v, err := loader(ctx, key)
	if err != nil {
		return v, err
	}
	if genErr == nil && !l.dropped.Load() {
		_ = c.storeLoaded(ctx, skey, gen, v, replace)
	}
	return v, nil
}

// loadLocked loads skey under a Redis lock so that one instance loads it
// while the others poll Redis for the value with growing waits. A Redis
// error while locking or polling makes this instance load on its own.
func (c *Cache[K, V]) loadLocked(ctx context.Context, l *load, key K, skey string, loader cache.Loader[K, V]) (V, error) {
	var zero V
	owner, lkey := token(), c.lockKey(skey)
	wait := c.poll
	waited := false
	var timer *time.Timer
	for {
		rctx, cancel := c.bound(ctx)
		ok, err := c.client.SetNX(rctx, lkey, owner, c.lockTTL).Result()
		cancel()
		if err != nil {
			_ = c.fail("lock", err)
			c.redisMisses.Add(1)
			return c.loadAndStore(ctx, l, key, skey, loader, false)
		}
		if ok {
			defer c.unlock(ctx, lkey, owner)
			// A previous owner may have stored the value between our miss
			// and this lock: one more GET is cheaper than a second load.
			v, found, err := c.fromRedis(ctx, skey)
			if found {
				c.redisHits.Add(1)
				return v, nil
			}
			c.redisMisses.Add(1)
			return c.loadAndStore(ctx, l, key, skey, loader, corrupt(err))
		}
		if !waited {
			waited = true
			c.lockWaits.Add(1)
		}
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-timer.C:
		}
		wait = min(wait*2, c.pollMax)
		v, found, err := c.fromRedis(ctx, skey)
		if found {
			c.redisHits.Add(1)
			return v, nil
		}
		if err != nil {
			c.redisMisses.Add(1)
			return c.loadAndStore(ctx, l, key, skey, loader, corrupt(err))
		}
	}
}

// unlock releases lkey if owner still holds it, even when ctx has ended.
func (c *Cache[K, V]) unlock(ctx context.Context, lkey, owner string) {
	timeout := unlockTimeout
	if c.redisTimeout > 0 {
		timeout = c.redisTimeout
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	if err := unlockScript.Run(ctx, c.client, []string{lkey}, owner).Err(); err != nil {
		_ = c.fail("unlock", err)
	}
}

// publish broadcasts skey's invalidation when Options.Invalidate is on.
func (c *Cache[K, V]) publish(ctx context.Context, skey string) error {
	if !c.invalidate {
		return nil
	}
	rctx, cancel := c.bound(ctx)
	defer cancel()
	if err := c.client.Publish(rctx, c.channel(), c.id+" "+skey).Err(); err != nil {
		return c.fail("publish", err)
	}
	return nil
}

// subscribe drops the local copy of every key another instance publishes,
// until Close closes the subscription and with it ch. The confirmation of
// the first subscription was read by New, so a confirmation seen here
// means go-redis has reconnected and subscribed again: messages published
// in between were lost, so every local copy is dropped, no load in flight
// writes back to Redis, and the gap is reported as [ErrResubscribed].
func (c *Cache[K, V]) subscribe(ch <-chan any) {
	defer close(c.done)
	for m := range ch {
		switch m := m.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				c.dropAll()
				_ = c.fail("subscribe", ErrResubscribed)
			}
		case *redis.Message:
			from, skey, ok := strings.Cut(m.Payload, " ")
			if !ok || from == c.id {
				continue
			}
			c.drop(skey)
			c.invalidations.Add(1)
			if c.onInvalidate != nil {
				c.onInvalidate(skey)
			}
		}
	}
}

// bound returns ctx limited to RedisTimeout, for one Redis command.
func (c *Cache[K, V]) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.redisTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.redisTimeout)
}

// drop removes skey from the local tier, first telling any [Cache.Get]
// reading Redis meanwhile not to keep what it read.
func (c *Cache[K, V]) drop(skey string) {
	c.gen.Add(1)
	c.loadingMu.Lock()
	if l := c.loading[skey]; l != nil {
		l.dropped.Store(true)
	}
	c.loadingMu.Unlock()
	c.local.Delete(skey)
}

// dropAll empties the local tier and stops every load in flight from
// writing back to Redis, as if every key had been invalidated.
func (c *Cache[K, V]) dropAll() {
	c.gen.Add(1)
	c.loadingMu.Lock()
	for _, l := range c.loading {
		l.dropped.Store(true)
	}
	c.loadingMu.Unlock()
	c.local.Purge()
}

// fail counts err, reports it to OnError, and returns it wrapped with op.
func (c *Cache[K, V]) fail(op string, err error) error {
	c.errs.Add(1)
	if c.onError != nil {
		c.onError(op, err)
	}
	return fmt.Errorf("rediscache: %s: %w", op, err)
}

// token returns 16 random bytes in hex: a lock owner or an instance ID.
func token() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}
