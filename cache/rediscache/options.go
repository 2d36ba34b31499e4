package rediscache

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asynckit/asynckit/cache"
)

// Default values of [Options].
const (
	DefaultLockPoll    = 5 * time.Millisecond
	DefaultLockPollMax = 100 * time.Millisecond
)

// Options configures a [Cache].
type Options[K comparable, V any] struct {
	// Client is the Redis client, shared with the rest of the program;
	// Close does not close it. Required.
	Client redis.UniversalClient
	// Namespace prefixes every Redis key and the invalidation channel, so
	// that several caches share one Redis: a key of the cache is
	// Namespace, a letter for what it holds, and the key in a Redis
	// Cluster hash tag, as in "myapp:users:v{:42}". No two caches share a
	// Redis key, even when one's Namespace prefixes the other's. Required;
	// it must not contain "{" or "}", which would break both guarantees.
	Namespace string
	// Local configures the in-process tier (see [cache.Options]); its
	// TTL bounds how stale a local copy can be when an invalidation is
	// lost. Defaults to the zero cache.Options, except that a zero
	// Local.TTL becomes TTL (unless Local.RefreshAfter is at least TTL), so
	// that a local copy is not kept for ever: it lives at most TTL from
	// when it was taken, as a value in Redis does from when it was written.
	Local cache.Options[string, V]
	// TTL is the lifetime of a value in Redis, and of a key's generation
	// (see the package documentation): a load that takes longer than TTL
	// stores nothing in Redis. Required: every key written to Redis
	// expires.
	TTL time.Duration
	// Jitter, in [0, 1), shortens each Redis TTL by a random fraction of up
	// to Jitter. Use Local.Jitter for the local tier. Defaults to 0.
	Jitter float64
	// Key turns a key into the string used in Redis and in invalidation
	// messages. It must be injective. Defaults to the string itself for
	// string keys, decimal for integers, String for a fmt.Stringer, and
	// fmt.Sprint otherwise; New refuses the default, and requires Key, for
	// a key type whose fmt.Sprint can give two keys one string: an
	// interface, a struct or array holding strings, interfaces or
	// Stringers, or a pointer to a struct or array.
	Key func(K) string
	// Codec encodes values for Redis. Defaults to [JSON].
	Codec Codec[V]
	// Invalidate, when true, makes Set and Delete publish the key on the
	// Redis channel Namespace+"invalidate", and runs one subscriber
	// goroutine (stopped by Close) that drops the local copies of keys
	// published by any instance. Defaults to false.
	Invalidate bool
	// OnInvalidate, when set, is called by the subscriber after it drops a
	// key published by another instance. It must not block. Defaults to nil.
	OnInvalidate func(key string)
	// LockTTL, when positive, turns on cross-instance single flight: before
	// loading a key missing from Redis, an instance takes a Redis lock
	// (SET NX PX LockTTL with an owner token); the others poll Redis for the
	// value until the lock is released or expires. It should exceed the
	// longest load, or a second instance may load too. Defaults to 0 (off).
	LockTTL time.Duration
	// LockPoll and LockPollMax bound the waits between polls of an
	// instance waiting for another's load; the wait doubles from LockPoll up
	// to LockPollMax. Default to [DefaultLockPoll] and [DefaultLockPollMax].
	LockPoll, LockPollMax time.Duration
	// RedisTimeout, when positive, bounds each Redis command the cache
	// sends, so that a slow Redis makes a lookup fall back to the loader
	// (counting the error) instead of spending the caller's deadline.
	// go-redis honours a context's deadline on the socket only when the
	// client's ContextTimeoutEnabled is set; New refuses RedisTimeout for a
	// *redis.Client, *redis.ClusterClient or *redis.Ring without it.
	// Defaults to 0: a command is bounded by the lookup's context and by
	// the client's own ReadTimeout and WriteTimeout.
	RedisTimeout time.Duration
	// OnError, when set, is called with every Redis or codec error that the
	// cache handles by falling back (op is "get", "generation", "set",
	// "del", "publish", "lock", "unlock", "subscribe" ([ErrResubscribed]),
	// "encode" or "decode"). Such errors are counted in Stats either way. It must not
	// block. Defaults to nil.
	OnError func(op string, err error)
}

func (o *Options[K, V]) validate() error {
	switch {
	case o.Client == nil:
		return errors.New("rediscache: Client is required")
	case o.Namespace == "":
		return errors.New("rediscache: Namespace is required")
	case strings.ContainsAny(o.Namespace, "{}"):
		return fmt.Errorf("rediscache: Namespace %q must not contain { or }", o.Namespace)
	case o.TTL <= 0:
		return errors.New("rediscache: TTL must be positive")
	case o.Jitter < 0 || o.Jitter >= 1 || o.Jitter != o.Jitter:
		return errors.New("rediscache: Jitter must be in [0, 1)")
	case o.LockTTL < 0:
		return errors.New("rediscache: LockTTL must not be negative")
	case o.LockPoll < 0 || o.LockPollMax < 0:
		return errors.New("rediscache: LockPoll and LockPollMax must not be negative")
	case o.LockPoll > 0 && o.LockPollMax > 0 && o.LockPoll > o.LockPollMax:
		return errors.New("rediscache: LockPoll must not exceed LockPollMax")
	case o.Key == nil && !defaultKeyInjective[K]():
		return fmt.Errorf("rediscache: Key is required for key type %v: its default, fmt.Sprint, can give two keys the same Redis key", reflect.TypeFor[K]())
	case o.RedisTimeout < 0:
		return errors.New("rediscache: RedisTimeout must not be negative")
	case o.RedisTimeout > 0 && !contextTimeouts(o.Client):
		return errors.New("rediscache: RedisTimeout needs a client with ContextTimeoutEnabled, or go-redis ignores it")
	}
	return nil
}

// contextTimeouts reports whether client lets a context's deadline bound
// its socket reads and writes. A client type it does not know is trusted.
func contextTimeouts(client redis.UniversalClient) bool {
	switch c := client.(type) {
	case *redis.Client:
		return c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return c.Options().ContextTimeoutEnabled
	}
	return true
}

// defaultKey returns the key formatter for K: the string itself, decimal
// for integers, String for a fmt.Stringer, and fmt.Sprint otherwise. The
// type is switched on once, here; the returned function's conversion to an
// interface does not escape, so formatting a string key does not allocate.
func defaultKey[K comparable]() func(K) string {
	var zero K
	switch any(zero).(type) {
	case string:
		return func(k K) string { return any(k).(string) }
	case int:
		return func(k K) string { return strconv.Itoa(any(k).(int)) }
	case int64:
		return func(k K) string { return strconv.FormatInt(any(k).(int64), 10) }
	case int32:
		return func(k K) string { return strconv.FormatInt(int64(any(k).(int32)), 10) }
	case uint64:
		return func(k K) string { return strconv.FormatUint(any(k).(uint64), 10) }
	case uint32:
		return func(k K) string { return strconv.FormatUint(uint64(any(k).(uint32)), 10) }
	case uint:
		return func(k K) string { return strconv.FormatUint(uint64(any(k).(uint)), 10) }
	case fmt.Stringer:
		return func(k K) string { return any(k).(fmt.Stringer).String() }
	}
	return func(k K) string { return fmt.Sprint(k) }
}

// defaultKeyInjective reports whether defaultKey gives distinct keys of
// type K distinct strings. A fmt.Stringer is trusted to.
func defaultKeyInjective[K comparable]() bool {
	var zero K
	if _, ok := any(zero).(fmt.Stringer); ok {
		return true
	}
	return sprintInjective(reflect.TypeFor[K](), true)
}

// sprintInjective reports whether fmt.Sprint of distinct values of t gives
// distinct strings. A string is, alone; inside a struct or array it is not
// ({"a b", "c"} and {"a", "b c"} print alike). Nested Stringers and errors
// print what their methods say, so they are not trusted; a pointer prints
// its address, except at the top level, where a pointer to a struct or
// array prints what it points to.
func sprintInjective(t reflect.Type, top bool) bool {
	stringer := reflect.TypeFor[fmt.Stringer]()
	errorType := reflect.TypeFor[error]()
	if !top && (t.Implements(stringer) || t.Implements(errorType)) {
		return false
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128,
		reflect.Chan, reflect.UnsafePointer:
		return true
	case reflect.String:
		return top
	case reflect.Pointer:
		k := t.Elem().Kind()
		return !top || (k != reflect.Struct && k != reflect.Array)
	case reflect.Array:
		return sprintInjective(t.Elem(), false)
	case reflect.Struct:
		for f := range t.Fields() {
			if !sprintInjective(f.Type, false) {
				return false
			}
		}
		return true
	}
	return false
}
