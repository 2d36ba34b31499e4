package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/asynckit/asynckit/cache"
	"github.com/asynckit/asynckit/cache/rediscache"
	"github.com/asynckit/asynckit/pagination"
	"github.com/asynckit/asynckit/txn"
)

// Lifetimes of the user cache's entries.
const (
	// userTTL is how long a user stays cached: in memory without Redis,
	// and in Redis with it.
	userTTL = 5 * time.Minute
	// userLocalTTL is how long an instance keeps a user it took from
	// Redis.
	userLocalTTL = time.Minute
	// userLoadTimeout bounds a load of a user from the database.
	userLoadTimeout = 5 * time.Second
	// stampTTL is how long a user's stamp outlives its last write in
	// Redis. A copy of a user lives at most userLoadTimeout + userTTL +
	// userLocalTTL from the read that made it, so every copy older than a
	// write expires before the write's stamp does.
	stampTTL = 10 * time.Minute
	// pageTTL is how long a page of a user search is cached.
	pageTTL = 30 * time.Second
	// redisGrace is how long an instance reads users from the database
	// after it last saw Redis fail, or saw its invalidations come back
	// after an outage: long enough for the stamps that other instances
	// could not record meanwhile to reach Redis (they retry every
	// stampRetry).
	redisGrace = 4*stampRetry + time.Second
)

// userCache holds users by id and pages of user searches, and keeps them
// coherent with the database, whatever instance writes. Every user write
// calls written inside its transaction; what that does, and how reads
// check what they find, depends on where the cache lives.
//
// In memory, with one instance (SQLite): the write deletes the users'
// entries after its transaction commits, before it is answered, and moves
// the search pages to a new generation, which their keys include. A load
// that began before the write cannot store its older result over the
// deletion (see cache.Cache.Delete). A read that starts after a write has
// been answered never sees the user as it was before it.
//
// In memory, with several instances on Postgres and no Redis: the same,
// and the write also sends the users' ids by NOTIFY in its transaction, so
// each instance, listening, deletes its entries when the write commits.
// Another instance may serve the older user for the time the notification
// takes to arrive, typically a few milliseconds. While an instance's
// listening connection is down it reads users from the database, and when
// it is back it drops every entry; a connection that dies without a word
// is found out within notePing plus its timeout, about 7 seconds, which
// bounds the staleness in that case.
//
// With Redis: users are cached in a rediscache tier (a local copy in front
// of Redis, shared by every instance, with invalidation by pub/sub), and
// Redis is also the point of coherence. The pub/sub invalidation reaches
// other instances only after the write is answered, so it cannot keep
// them from serving an older copy in the meantime; instead every write
// records, after its commit and before its answer, each user's new version
// as a stamp in Redis (the largest wins, and a deleted user's is a
// tombstone), and every read first reads the user's stamp: a copy older
// than its stamp, from either tier, is not served; the user is read from
// the database and the stale copy deleted. So a read that starts after a
// write has been answered never sees the user as it was, on any instance,
// at the cost of one Redis round trip per read. The same goes for search
// pages: the write moves a generation counter in Redis, which each search
// reads.
//
// When Redis does not answer, reads go to the database and do not touch
// the cache, and they keep doing so for redisGrace after the instance last
// saw Redis fail (or, idle, saw its invalidation subscription come back
// after losing it). A write whose stamp cannot be recorded is still
// answered (it has committed); its stamp is retried every stampRetry until
// Redis takes it, well within that grace. What this cannot cover is an
// instance that lost Redis while the others kept it: until its stamps
// reach Redis, the others may serve copies made before its writes; about
// half a second once it reaches Redis again, or, if it stops first, until
// the copies expire (userTTL plus userLocalTTL).
type userCache struct {
	where string // where the cache lives, for the startup line
	off   bool   // USER_CACHE=off: every read goes to the database
	log   *slog.Logger
	load  cache.Loader[int64, user] // reads a user from the database

	local  *cache.Cache[int64, user]      // without Redis
	shared *rediscache.Cache[int64, user] // with Redis
	stamps *userStamps                    // with Redis
	notes  *userNotes                     // on Postgres without Redis

	pages   *cache.Cache[pageKey, pagination.Page[user]]
	gen     atomic.Uint64 // the pages' generation, without Redis
	seenGen atomic.Uint64 // the highest generation read from Redis
	// distrust is when, in Unix nanoseconds, the cache may be trusted
	// again after Redis failed (see redisGrace).
	distrust atomic.Int64
}

// pageKey identifies one page of a user search in one generation.
type pageKey struct {
	gen   uint64
	q     string
	after int64
	limit int
}

// userChange is a write to one user: its id and its version after the
// write (1 for a user created, tombstone for one deleted).
type userChange struct {
	id      int64
	version int64
}

// tombstone is the version a deleted user's stamp holds: above any
// version a user can have, and exact in Redis's Lua numbers.
const tombstone = int64(1) << 52

// userCacheDeps is what a user cache is built on.
type userCacheDeps struct {
	load    cache.Loader[int64, user]
	db      *sql.DB // the database; LISTEN/NOTIFY when postgres is set
	pg      bool    // db is Postgres
	redis   redis.UniversalClient
	prefix  string        // of Redis keys
	timeout time.Duration // of each Redis command
	onError func(error)   // a Redis error the cache did without
	log     *slog.Logger
	off     bool // reads bypass the cache, which is still built and invalidated
}

func newUserCache(ctx context.Context, d userCacheDeps) (c *userCache, err error) {
	c = &userCache{load: d.load, log: d.log}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if c.pages, err = cache.New(cache.Options[pageKey, pagination.Page[user]]{MaxEntries: 1_000, TTL: pageTTL, LoadTimeout: userLoadTimeout}); err != nil {
		return nil, err
	}
	switch {
	case d.redis != nil:
		failed := func(err error) {
			c.distrust.Store(time.Now().Add(redisGrace).UnixNano())
			if err != nil {
				d.onError(err)
			}
		}
		c.where = "redis, with a local tier checked against Redis on each read"
		c.shared, err = rediscache.New(ctx, rediscache.Options[int64, user]{
			Client: d.redis, Namespace: d.prefix + "users:", TTL: userTTL, Jitter: 0.1,
			Local:      cache.Options[string, user]{MaxEntries: 10_000, TTL: userLocalTTL, Jitter: 0.1, LoadTimeout: userLoadTimeout},
			Invalidate: true, RedisTimeout: d.timeout,
			OnError: func(op string, err error) {
				if errors.Is(err, rediscache.ErrResubscribed) {
					failed(nil) // invalidations were missed: so may stamps have been
					return
				}
				failed(fmt.Errorf("user cache: %s: %w", op, err))
			},
		})
		if err != nil {
			return nil, fmt.Errorf("user cache: %w", err)
		}
		c.stamps = newUserStamps(d.redis, d.prefix, d.timeout, failed, d.log)
	default:
		c.where = "memory"
		c.local, err = cache.New(cache.Options[int64, user]{MaxEntries: 10_000, TTL: userTTL, Jitter: 0.1, LoadTimeout: userLoadTimeout})
		if err != nil {
			return nil, err
		}
		if d.pg {
			c.where = "memory, invalidated by Postgres NOTIFY"
			if c.notes, err = newUserNotes(ctx, d.db, c.dropAll, c.drop, d.log); err != nil {
				return nil, fmt.Errorf("user cache: %w", err)
			}
		}
	}
	if d.off {
		c.off, c.where = true, "off: every read goes to the database"
	}
	return c, nil
}

// get returns user id, from the cache when it may be trusted.
func (c *userCache) get(ctx context.Context, id int64) (user, error) {
	switch {
	case c.off:
		return c.load(ctx, id)
	case c.shared != nil:
		return c.getShared(ctx, id)
	case c.notes != nil && !c.notes.listening():
		return c.load(ctx, id) // invalidations would be missed
	}
	return c.local.GetOrLoad(ctx, id, c.load)
}

// getShared reads the user's stamp, then the user from the two tiers, and
// serves what it found only if it is at least as new as the stamp.
func (c *userCache) getShared(ctx context.Context, id int64) (user, error) {
	if c.distrusted() {
		return c.load(ctx, id)
	}
	floor, err := c.stamps.get(ctx, id)
	if err != nil {
		return c.load(ctx, id) // nothing to check a copy against
	}
	u, err := c.shared.GetOrLoad(ctx, id, c.load)
	switch {
	case err == nil && u.Version >= floor:
		return u, nil
	case errors.Is(err, errUserNotFound) && (floor == 0 || floor == tombstone):
		return u, err // errors are not cached: the loader has just said so
	case err != nil && !errors.Is(err, errUserNotFound):
		return u, err
	}
	// A copy older than the stamp: its invalidation has not reached this
	// instance yet, or a load that began before the write stored it in
	// Redis after the write deleted it. (A "not found" with a stamp comes
	// from a load that began before the user was created.)
	if err := c.shared.Delete(ctx, id); err != nil {
		c.log.Debug("cannot drop a stale cached user", "user", id, "err", err)
	}
	return c.load(ctx, id)
}

// generation returns the generation that search pages are cached under,
// and false when pages must not be cached now.
func (c *userCache) generation(ctx context.Context) (uint64, bool) {
	switch {
	case c.off:
		return 0, false
	case c.shared != nil:
		if c.distrusted() {
			return 0, false
		}
		g, err := c.stamps.generation(ctx)
		if err != nil {
			return 0, false
		}
		for {
			seen := c.seenGen.Load()
			if g >= seen {
				if c.seenGen.CompareAndSwap(seen, g) {
					return g, true
				}
				continue
			}
			// Redis lost the counter (a restart without persistence):
			// pages cached under the generations it counts again are
			// stale.
			if c.seenGen.CompareAndSwap(seen, g) {
				c.pages.Purge()
			}
			return g, true
		}
	case c.notes != nil && !c.notes.listening():
		return 0, false
	}
	return c.gen.Load(), true
}

// distrusted reports whether Redis failed within redisGrace.
func (c *userCache) distrusted() bool { return time.Now().UnixNano() < c.distrust.Load() }

// written records writes to users inside the transaction in ctx: with
// Postgres and no Redis, a NOTIFY that other instances receive when it
// commits; and, once it has committed and before the write is answered,
// the invalidation of this instance's copies (and with Redis, the stamps).
func (c *userCache) written(ctx context.Context, db *sql.DB, changes ...userChange) error {
	if c.notes != nil {
		if err := c.notes.notify(ctx, txn.From(ctx, db), changes); err != nil {
			return err
		}
	}
	return txn.AfterCommit(ctx, func(ctx context.Context) { c.invalidate(ctx, changes) })
}

// invalidate drops what changes made stale.
func (c *userCache) invalidate(ctx context.Context, changes []userChange) {
	if c.shared == nil {
		ids := make([]int64, len(changes))
		for i, ch := range changes {
			ids[i] = ch.id
		}
		c.drop(ids)
		return
	}
	ctx = context.WithoutCancel(ctx) // a client that went away does not stop the invalidation
	c.stamps.mark(ctx, changes)
	for _, ch := range changes {
		if ch.version == 1 {
			continue // a new user: no copy of it was ever made
		}
		if err := c.shared.Delete(ctx, ch.id); err != nil {
			c.log.Warn("cannot drop a cached user; its stamp keeps it from being served", "user", ch.id, "err", err)
		}
	}
}

// drop deletes the local copies of users ids and moves the search pages to
// a new generation.
func (c *userCache) drop(ids []int64) {
	for _, id := range ids {
		c.local.Delete(id)
	}
	c.gen.Add(1)
}

// dropAll deletes every local copy, for when invalidations may have been
// missed.
func (c *userCache) dropAll() {
	c.local.Purge()
	c.gen.Add(1)
}

// stats returns the counters of the tier this instance holds in memory.
func (c *userCache) stats() cache.Stats {
	if c.shared != nil {
		return c.shared.Stats().Local
	}
	return c.local.Stats()
}

func (c *userCache) close() {
	if c.notes != nil {
		c.notes.close()
	}
	if c.stamps != nil {
		c.stamps.close()
	}
	if c.shared != nil {
		_ = c.shared.Close()
	}
	if c.local != nil {
		c.local.Close()
	}
	if c.pages != nil {
		c.pages.Close()
	}
}
