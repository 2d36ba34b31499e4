package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Bounds of the stamps that wait to be recorded in Redis.
const (
	// stampRetry is how often stamps that Redis did not take are sent
	// again.
	stampRetry = 500 * time.Millisecond
	// maxStampsPending is the most users whose stamps wait for Redis; past
	// it, some are given up (and logged), their copies left to expire.
	maxStampsPending = 100_000
)

// markScript records writes to users: each user's stamp becomes the
// larger of its stamp and the version written, with its expiry renewed,
// and the generation of search pages moves on. The keys share one hash
// tag, so that Redis Cluster keeps them in one slot.
var markScript = redis.NewScript(`
for i = 2, #KEYS do
	local v = tonumber(ARGV[i])
	local cur = tonumber(redis.call('GET', KEYS[i]) or '0')
	if v > cur then
		redis.call('SET', KEYS[i], ARGV[i], 'PX', ARGV[1])
	else
		redis.call('PEXPIRE', KEYS[i], ARGV[1])
	end
end
return redis.call('INCR', KEYS[1])
`)

// userStamps keeps, in Redis, the newest version of each user written in
// the last stampTTL (see userCache), and the generation of search pages.
type userStamps struct {
	client  redis.UniversalClient
	prefix  string
	timeout time.Duration
	onError func(error)
	log     *slog.Logger

	mu      sync.Mutex
	pending map[int64]int64 // versions Redis has not taken yet, by user
	kick    chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newUserStamps(client redis.UniversalClient, prefix string, timeout time.Duration, onError func(error), log *slog.Logger) *userStamps {
	st := &userStamps{client: client, prefix: prefix + "{users}:", timeout: timeout, onError: onError, log: log,
		pending: map[int64]int64{}, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	st.wg.Add(1)
	go st.retry()
	return st
}

func (st *userStamps) key(id int64) string { return st.prefix + "v:" + strconv.FormatInt(id, 10) }

func (st *userStamps) genKey() string { return st.prefix + "gen" }

// get returns user id's stamp: 0 when it has none.
func (st *userStamps) get(ctx context.Context, id int64) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	v, err := st.client.Get(ctx, st.key(id)).Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		st.onError(fmt.Errorf("user stamp: %w", err))
	}
	return v, err
}

// generation returns the generation of search pages.
func (st *userStamps) generation(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, st.timeout)
	defer cancel()
	v, err := st.client.Get(ctx, st.genKey()).Uint64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		st.onError(fmt.Errorf("search generation: %w", err))
	}
	return v, err
}

// mark records changes in one round trip. What Redis does not take waits
// for the retries.
func (st *userStamps) mark(ctx context.Context, changes []userChange) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), st.timeout)
	defer cancel()
	if err := st.send(ctx, changes); err != nil {
		st.onError(fmt.Errorf("user stamps: %w", err))
		st.log.Warn("cannot record user writes in Redis; retrying every second, and other instances may serve the older users until then",
			"users", len(changes), "err", err)
		st.keep(changes)
	}
}

func (st *userStamps) send(ctx context.Context, changes []userChange) error {
	keys := make([]string, 1, len(changes)+1)
	args := make([]any, 1, len(changes)+1)
	keys[0], args[0] = st.genKey(), stampTTL.Milliseconds()
	for _, ch := range changes {
		keys = append(keys, st.key(ch.id))
		args = append(args, ch.version)
	}
	return markScript.Run(ctx, st.client, keys, args...).Err()
}

// keep adds changes to those waiting for Redis.
func (st *userStamps) keep(changes []userChange) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, ch := range changes {
		if v, ok := st.pending[ch.id]; !ok || ch.version > v {
			st.pending[ch.id] = ch.version
		}
	}
	if n := len(st.pending) - maxStampsPending; n > 0 {
		st.log.Error("too many user writes wait for Redis; giving some up, whose older copies may be served until they expire", "users", n)
		for id := range st.pending {
			if n == 0 {
				break
			}
			delete(st.pending, id)
			n--
		}
	}
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// retry sends the waiting stamps every stampRetry while there are any,
// until close.
func (st *userStamps) retry() {
	defer st.wg.Done()
	for {
		select {
		case <-st.kick:
		case <-st.stop:
			return
		}
		t := time.NewTicker(stampRetry)
		for waiting := true; waiting; {
			select {
			case <-t.C:
			case <-st.stop:
				t.Stop()
				return
			}
			st.mu.Lock()
			changes := make([]userChange, 0, min(len(st.pending), 1000))
			for id, v := range st.pending {
				if len(changes) == cap(changes) {
					break
				}
				changes = append(changes, userChange{id, v})
			}
			st.mu.Unlock()
			ctx, cancel := context.WithTimeout(context.Background(), st.timeout)
			err := st.send(ctx, changes)
			cancel()
			st.mu.Lock()
			if err == nil {
				for _, ch := range changes {
					if st.pending[ch.id] == ch.version {
						delete(st.pending, ch.id)
					}
				}
				st.log.Info("recorded user writes in Redis that had waited for it", "users", len(changes))
			}
			waiting = len(st.pending) > 0
			st.mu.Unlock()
		}
		t.Stop()
	}
}

// close stops the retries. Stamps still waiting are lost with the
// process; the copies they would have stopped expire within userTTL plus
// userLocalTTL.
func (st *userStamps) close() {
	close(st.stop)
	st.wg.Wait()
}
