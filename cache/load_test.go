package cache_test

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/cache"
)

func TestGetOrLoadRejectsNilArguments(t *testing.T) {
	c := newCache(t, cache.Options[string, int]{})
	defer c.Close()
	load := func(context.Context, string) (int, error) { return 1, nil }
	//lint:ignore SA1012 a nil context is the bad input under test
	_, err := c.GetOrLoad(nil, "k", load)
	require.ErrorContains(t, err, "cache: nil context")
	_, err = c.GetOrLoad(context.Background(), "k", nil)
	require.ErrorContains(t, err, "cache: nil loader")
	//lint:ignore SA1012 a nil context is the bad input under test
	_, err = c.GetOrLoadMany(nil, []string{"k"}, func(context.Context, []string) (map[string]int, error) { return nil, nil })
	require.ErrorContains(t, err, "cache: nil context")
	_, err = c.GetOrLoadMany(context.Background(), []string{"k"}, nil)
	require.ErrorContains(t, err, "cache: nil bulk loader")
}

func TestStampedeRunsTheLoaderOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[string, string]{})
		defer c.Close()
		var calls atomic.Int32
		load := func(ctx context.Context, k string) (string, error) {
			calls.Add(1)
			time.Sleep(50 * time.Millisecond)
			return "value of " + k, nil
		}
		const n = 1000
		var wg sync.WaitGroup
		results := make([]string, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { results[i], errs[i] = c.GetOrLoad(context.Background(), "hot", load) })
		}
		wg.Wait()
		require.Equal(t, int32(1), calls.Load())
		for i := range n {
			require.NoError(t, errs[i])
			require.Equal(t, "value of hot", results[i])
		}
		st := c.Stats()
		require.Equal(t, uint64(1), st.Loads)
		require.Equal(t, uint64(n-1), st.Coalesced)
		require.Equal(t, uint64(n), st.Misses)
		v, err := c.GetOrLoad(context.Background(), "hot", load)
		require.NoError(t, err)
		require.Equal(t, "value of hot", v)
		require.Equal(t, uint64(1), c.Stats().Hits)
	})
}

func TestWaiterThatCancelsReturnsAtOnceWhileOthersGetTheValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[string, int]{})
		defer c.Close()
		var loadCtxErr atomic.Value
		load := func(ctx context.Context, _ string) (int, error) {
			select {
			case <-time.After(50 * time.Millisecond):
				return 42, nil
			case <-ctx.Done():
				loadCtxErr.Store(ctx.Err())
				return 0, ctx.Err()
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		var quitterErr error
		var quitterAt time.Duration
		start := time.Now()
		var wg sync.WaitGroup
		wg.Go(func() {
			_, quitterErr = c.GetOrLoad(ctx, "k", load)
			quitterAt = time.Since(start)
		})
		var stayers [10]int
		for i := range stayers {
			wg.Go(func() {
				v, err := c.GetOrLoad(context.Background(), "k", load)
				require.NoError(t, err)
				stayers[i] = v
			})
		}
		time.Sleep(10 * time.Millisecond)
		cancel()
		wg.Wait()
		require.ErrorIs(t, quitterErr, context.Canceled)
		require.Equal(t, 10*time.Millisecond, quitterAt, "the quitter returns the moment its ctx ends")
		for _, v := range stayers {
			require.Equal(t, 42, v)
		}
		require.Nil(t, loadCtxErr.Load(), "the shared load was not cancelled")
	})
}

func TestLoadIsCancelledWhenEveryWaiterGivesUp(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[string, int]{})
		defer c.Close()
		cancelled := make(chan error, 1)
		load := func(ctx context.Context, _ string) (int, error) {
			<-ctx.Done()
			cancelled <- ctx.Err()
			return 0, ctx.Err()
		}
		var wg sync.WaitGroup
		for i := range 5 {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i+1)*time.Millisecond)
			defer cancel()
			wg.Go(func() {
				_, err := c.GetOrLoad(ctx, "k", load)
				require.ErrorIs(t, err, context.DeadlineExceeded)
			})
		}
		time.Sleep(4 * time.Millisecond)
		synctest.Wait()
		require.Empty(t, cancelled, "the load goes on while one waiter is left")
		wg.Wait()
		synctest.Wait()
		require.ErrorIs(t, <-cancelled, context.Canceled)

		// The abandoned load's error is not cached: the next caller loads again.
		v, err := c.GetOrLoad(context.Background(), "k", func(context.Context, string) (int, error) { return 7, nil })
		require.NoError(t, err)
		require.Equal(t, 7, v)
	})
}

func TestLoaderPanicIsAnErrorForEveryWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[string, int]{})
		defer c.Close()
		boom := errors.New("boom")
		load := func(context.Context, string) (int, error) {
			time.Sleep(time.Millisecond)
			panic(boom)
		}
		var wg sync.WaitGroup
		errs := make([]error, 20)
		for i := range errs {
			wg.Go(func() { _, errs[i] = c.GetOrLoad(context.Background(), "k", load) })
		}
		wg.Wait()
		for _, err := range errs {
			var pe *cache.PanicError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, boom, pe.Value)
			require.ErrorIs(t, err, boom, "Unwrap exposes an error panic value")
			require.Contains(t, string(pe.Stack), "load_test.go", "the stack points at the loader")
		}
		require.Equal(t, uint64(1), c.Stats().LoadErrors)
	})
}

func TestLoaderErrorIsCachedOnlyWithNegativeTTL(t *testing.T) {
	errDown := errors.New("backend down")
	tests := []struct {
		name        string
		negativeTTL time.Duration
		wantCalls   int32 // after three calls within a second
	}{
		{"without NegativeTTL every call asks the loader", 0, 3},
		{"with NegativeTTL the error is remembered", 5 * time.Second, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCache(t, cache.Options[string, int]{NegativeTTL: tt.negativeTTL})
				defer c.Close()
				var calls atomic.Int32
				load := func(context.Context, string) (int, error) { calls.Add(1); return 0, errDown }
				for range 3 {
					_, err := c.GetOrLoad(context.Background(), "k", load)
					require.ErrorIs(t, err, errDown)
					time.Sleep(300 * time.Millisecond)
				}
				require.Equal(t, tt.wantCalls, calls.Load())
				_, ok := c.Get("k")
				require.False(t, ok, "a cached error is a miss for Get")
				if tt.negativeTTL > 0 {
					time.Sleep(tt.negativeTTL)
					_, err := c.GetOrLoad(context.Background(), "k", load)
					require.ErrorIs(t, err, errDown)
					require.Equal(t, int32(2), calls.Load(), "asked again after NegativeTTL")
				}
			})
		})
	}
}

func TestRefreshAfterServesStaleOnceAndReloadsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[string, int]{TTL: time.Minute, RefreshAfter: 10 * time.Second})
		defer c.Close()
		var version atomic.Int32
		load := func(context.Context, string) (int, error) {
			time.Sleep(100 * time.Millisecond)
			return int(version.Add(1)), nil
		}
		v, err := c.GetOrLoad(context.Background(), "k", load)
		require.NoError(t, err)
		require.Equal(t, 1, v)

		time.Sleep(10 * time.Second)
		// Many callers at once past RefreshAfter: all are answered at once
		// with the old value and only one reload starts.
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				start := time.Now()
				v, err := c.GetOrLoad(context.Background(), "k", load)
				require.NoError(t, err)
				require.Equal(t, 1, v)
				require.Zero(t, time.Since(start), "a stale hit does not wait for the reload")
			})
		}
		wg.Wait()
		synctest.Wait()
		require.Equal(t, int32(1), version.Load(), "the reload is still running")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		v, err = c.GetOrLoad(context.Background(), "k", load)
		require.NoError(t, err)
		require.Equal(t, 2, v, "the reloaded value is served")
		require.Equal(t, int32(2), version.Load(), "reloaded exactly once")
		st := c.Stats()
		require.Equal(t, uint64(1), st.Refreshes)
		require.Equal(t, uint64(50), st.StaleServed)
		require.Equal(t, uint64(2), st.Loads)
	})
}

func TestStaleIfErrorServesTheOldValueWhenAReloadFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[string, string]{TTL: time.Minute, StaleIfError: 30 * time.Second})
		defer c.Close()
		errDown := errors.New("backend down")
		var failing atomic.Bool
		load := func(context.Context, string) (string, error) {
			if failing.Load() {
				return "", errDown
			}
			return "v1", nil
		}
		_, err := c.GetOrLoad(context.Background(), "k", load)
		require.NoError(t, err)
		failing.Store(true)

		time.Sleep(time.Minute)
		v, err := c.GetOrLoad(context.Background(), "k", load)
		require.NoError(t, err, "the failed reload is hidden by the stale value")
		require.Equal(t, "v1", v)
		_, ok := c.Get("k")
		require.False(t, ok, "Get does not serve past TTL")

		time.Sleep(30*time.Second - time.Nanosecond)
		v, err = c.GetOrLoad(context.Background(), "k", load)
		require.NoError(t, err)
		require.Equal(t, "v1", v)

		time.Sleep(time.Nanosecond)
		_, err = c.GetOrLoad(context.Background(), "k", load)
		require.ErrorIs(t, err, errDown, "past StaleIfError the error comes through")
		st := c.Stats()
		require.Equal(t, uint64(2), st.StaleServed)
		require.Equal(t, uint64(3), st.LoadErrors)
	})
}

func TestLoadTimeoutBoundsTheLoad(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[string, int]{LoadTimeout: 2 * time.Second})
		defer c.Close()
		start := time.Now()
		_, err := c.GetOrLoad(context.Background(), "k", func(ctx context.Context, _ string) (int, error) {
			<-ctx.Done()
			return 0, ctx.Err()
		})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.Equal(t, 2*time.Second, time.Since(start))
	})
}

func TestLoaderSeesTheCallersValuesButNotItsDeadline(t *testing.T) {
	type key struct{}
	c := newCache(t, cache.Options[string, string]{})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), key{}, "trace-1"), time.Hour)
	defer cancel()
	v, err := c.GetOrLoad(ctx, "k", func(ctx context.Context, _ string) (string, error) {
		_, hasDeadline := ctx.Deadline()
		return ctx.Value(key{}).(string) + " " + strconv.FormatBool(hasDeadline), nil
	})
	require.NoError(t, err)
	require.Equal(t, "trace-1 false", v)
}

func TestWriteDuringALoadIsNotUndoneByIt(t *testing.T) {
	for _, op := range []string{"Set", "Delete", "Purge"} {
		t.Run(op+" wins over the load in flight", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCache(t, cache.Options[string, string]{})
				defer c.Close()
				done := make(chan string)
				go func() {
					v, _ := c.GetOrLoad(context.Background(), "k", func(context.Context, string) (string, error) {
						time.Sleep(time.Second)
						return "old", nil
					})
					done <- v
				}()
				time.Sleep(time.Millisecond)
				switch op {
				case "Set":
					c.Set("k", "new")
				case "Delete":
					c.Delete("k")
				case "Purge":
					c.Purge()
				}
				require.Equal(t, "old", <-done, "the waiter still gets its load")
				v, ok := c.Get("k")
				if op == "Set" {
					require.True(t, ok)
					require.Equal(t, "new", v)
				} else {
					require.False(t, ok)
				}
			})
		})
	}
}

// A caller that arrives after a Delete or Purge must not join a load that
// began before it: that load may have read the source before the write the
// Delete follows, and joining it would hand an acknowledged write's reader
// the old value.
func TestCallerAfterAWriteDoesNotJoinTheOlderLoad(t *testing.T) {
	for _, op := range []string{"Delete", "Purge"} {
		t.Run("a GetOrLoad after "+op+" runs its own load", func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCache(t, cache.Options[string, string]{})
				defer c.Close()
				var calls atomic.Int32
				loader := func(ctx context.Context, _ string) (string, error) {
					n := calls.Add(1)
					if n == 1 {
						time.Sleep(time.Second) // the old read, still in flight
						return "old", nil
					}
					return "new", nil
				}
				first := make(chan string)
				go func() {
					v, _ := c.GetOrLoad(context.Background(), "k", loader)
					first <- v
				}()
				time.Sleep(time.Millisecond)
				if op == "Delete" {
					c.Delete("k")
				} else {
					c.Purge()
				}
				v, err := c.GetOrLoad(context.Background(), "k", loader)
				require.NoError(t, err)
				require.Equal(t, "new", v, "a caller after the %s got the older load's value", op)
				require.Equal(t, "old", <-first, "the first caller still gets its own load")
				got, ok := c.Get("k")
				require.True(t, ok)
				require.Equal(t, "new", got, "the older load must not overwrite the newer one")
				require.EqualValues(t, 2, calls.Load())
			})
		})
	}
}

func TestCloseCancelsLoadsAndRefreshes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[string, int]{TTL: time.Hour, RefreshAfter: time.Minute})
		c.Set("k", 1)
		time.Sleep(time.Minute)
		refreshCause := make(chan error, 1)
		v, err := c.GetOrLoad(context.Background(), "k", func(ctx context.Context, _ string) (int, error) {
			<-ctx.Done()
			refreshCause <- context.Cause(ctx)
			return 0, ctx.Err()
		})
		require.NoError(t, err)
		require.Equal(t, 1, v)

		waiterErr := make(chan error, 1)
		go func() {
			_, err := c.GetOrLoad(context.Background(), "other", func(ctx context.Context, _ string) (int, error) {
				<-ctx.Done()
				return 0, ctx.Err()
			})
			waiterErr <- err
		}()
		synctest.Wait()
		c.Close()
		require.ErrorIs(t, <-refreshCause, cache.ErrClosed)
		require.ErrorIs(t, <-waiterErr, context.Canceled)
		_, err = c.GetOrLoad(context.Background(), "missing", func(context.Context, string) (int, error) { return 1, nil })
		require.ErrorIs(t, err, cache.ErrClosed)
		v, err = c.GetOrLoad(context.Background(), "k", func(context.Context, string) (int, error) { return 2, nil })
		require.NoError(t, err, "hits are still served after Close")
		require.Equal(t, 1, v)
		c.Close()
	})
}

func TestGetOrLoadManyLoadsOnlyMissingKeysInOneCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[int, string]{})
		defer c.Close()
		c.Set(1, "one")
		c.Set(2, "two")
		var batches [][]int
		bulk := func(_ context.Context, keys []int) (map[int]string, error) {
			batches = append(batches, append([]int(nil), keys...))
			time.Sleep(10 * time.Millisecond)
			out := map[int]string{}
			for _, k := range keys {
				if k != 99 {
					out[k] = "v" + strconv.Itoa(k)
				}
			}
			return out, nil
		}
		// A single GetOrLoad of key 4 arrives while the bulk load runs and
		// shares it.
		single := make(chan string)
		go func() {
			time.Sleep(time.Millisecond)
			v, err := c.GetOrLoad(context.Background(), 4, func(context.Context, int) (string, error) {
				return "", errors.New("must not run")
			})
			require.NoError(t, err)
			single <- v
		}()
		got, err := c.GetOrLoadMany(context.Background(), []int{1, 2, 3, 4, 4, 99}, bulk)
		require.NoError(t, err)
		require.Equal(t, map[int]string{1: "one", 2: "two", 3: "v3", 4: "v4"}, got, "99 was not found")
		require.Equal(t, [][]int{{3, 4, 99}}, batches)
		require.Equal(t, "v4", <-single)

		got, err = c.GetOrLoadMany(context.Background(), []int{3, 4}, bulk)
		require.NoError(t, err)
		require.Equal(t, map[int]string{3: "v3", 4: "v4"}, got)
		require.Len(t, batches, 1, "everything was cached")
		require.Equal(t, uint64(1), c.Stats().Loads)
	})
}

func TestGetOrLoadManyReportsBulkErrorsAndPanics(t *testing.T) {
	errDown := errors.New("down")
	tests := []struct {
		name string
		bulk cache.BulkLoader[int, int]
		is   func(error) bool
	}{
		{"error", func(context.Context, []int) (map[int]int, error) { return nil, errDown }, func(err error) bool { return errors.Is(err, errDown) }},
		{"panic", func(context.Context, []int) (map[int]int, error) { panic("bad") }, func(err error) bool {
			var pe *cache.PanicError
			return errors.As(err, &pe) && pe.Value == "bad"
		}},
	}
	for _, tt := range tests {
		t.Run("bulk "+tt.name+" reaches the caller with the hits", func(t *testing.T) {
			c := newCache(t, cache.Options[int, int]{})
			defer c.Close()
			c.Set(1, 10)
			got, err := c.GetOrLoadMany(context.Background(), []int{1, 2}, tt.bulk)
			require.True(t, tt.is(err), "got %v", err)
			require.Equal(t, map[int]int{1: 10}, got)
			require.Equal(t, uint64(1), c.Stats().LoadErrors)
		})
	}
}

func TestGetOrLoadManyCallerThatCancelsReturnsAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[int, int]{})
		defer c.Close()
		loadErr := make(chan error, 1)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.GetOrLoadMany(ctx, []int{1, 2}, func(ctx context.Context, _ []int) (map[int]int, error) {
			<-ctx.Done()
			loadErr <- ctx.Err()
			return nil, ctx.Err()
		})
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.ErrorIs(t, <-loadErr, context.Canceled, "its load had no other waiter")
	})
}

func TestGetOrLoadManyBulkMayReorderItsKeys(t *testing.T) {
	c := newCache(t, cache.Options[int, int]{})
	defer c.Close()
	got, err := c.GetOrLoadMany(context.Background(), []int{3, 1, 2}, func(_ context.Context, keys []int) (map[int]int, error) {
		slices.Sort(keys)
		slices.Reverse(keys)
		out := map[int]int{}
		for _, k := range keys {
			out[k] = k * 10
		}
		return out, nil
	})
	require.NoError(t, err)
	require.Equal(t, map[int]int{1: 10, 2: 20, 3: 30}, got)
	for k := 1; k <= 3; k++ {
		v, ok := c.Get(k)
		require.True(t, ok)
		require.Equal(t, k*10, v, "key %d stored with its own value", k)
	}
}

func TestGetOrLoadManyAfterCloseIsErrClosed(t *testing.T) {
	c := newCache(t, cache.Options[int, int]{})
	c.Set(1, 10)
	c.Close()
	_, err := c.GetOrLoadMany(context.Background(), []int{1, 2}, func(context.Context, []int) (map[int]int, error) {
		return nil, errors.New("must not run")
	})
	require.ErrorIs(t, err, cache.ErrClosed)
}

// A load whose result a Set made obsolete no longer holds the key: a
// refresh that falls due while it is still in flight starts at once, and
// the obsolete load, when it returns, stores nothing over the refresh.
func TestRefreshDueDuringAnObsoleteLoadIsNotHeldBackByIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCache(t, cache.Options[string, string]{RefreshAfter: time.Second})
		defer c.Close()
		ctx := context.Background()
		unblock := make(chan struct{})
		started := make(chan struct{})
		slow := func(context.Context, string) (string, error) {
			close(started)
			<-unblock
			return "slow", nil
		}
		loadDone := make(chan struct{})
		go func() {
			defer close(loadDone)
			v, err := c.GetOrLoad(ctx, "k", slow)
			require.NoError(t, err)
			require.Equal(t, "slow", v)
		}()
		<-started
		c.Set("k", "set") // the load in flight will not store its result

		time.Sleep(2 * time.Second)
		var reloads atomic.Int32
		reload := func(context.Context, string) (string, error) {
			reloads.Add(1)
			return "reloaded", nil
		}
		v, err := c.GetOrLoad(ctx, "k", reload) // due, while the obsolete load is in flight
		require.NoError(t, err)
		require.Equal(t, "set", v, "a hit due for refresh is served at once")
		synctest.Wait()
		require.Equal(t, int32(1), reloads.Load(), "the refresh does not wait for the obsolete load")

		close(unblock)
		<-loadDone
		v, ok := c.Get("k")
		require.True(t, ok)
		require.Equal(t, "reloaded", v, "the obsolete load stored nothing over the refresh")
	})
}

// OnEvict runs on the goroutine that caused the eviction. When that is a
// load's own goroutine, storing the loaded value in a full cache, a panic
// in OnEvict must not crash the program or strand the waiters: it reaches
// them as a *PanicError, as a loader panic does, and the cache goes on.
// Here the cache holds one entry, and OnEvict panics when it evicts "p"
// and exits its goroutine when it evicts "exit".
func TestOnEvictPanicDuringALoadIsAnErrorForItsWaiters(t *testing.T) {
	boom := errors.New("OnEvict boom")
	cases := []struct {
		name string
		run  func(t *testing.T, c *cache.Cache[string, int])
	}{
		{"every waiter of GetOrLoad gets a *PanicError and the value is stored", func(t *testing.T, c *cache.Cache[string, int]) {
			c.Set("p", 1)
			load := func(context.Context, string) (int, error) {
				time.Sleep(time.Millisecond) // let the waiters gather
				return 2, nil
			}
			var wg sync.WaitGroup
			errs := make([]error, 10)
			for i := range errs {
				wg.Go(func() { _, errs[i] = c.GetOrLoad(context.Background(), "b", load) })
			}
			wg.Wait()
			for _, err := range errs {
				var pe *cache.PanicError
				require.ErrorAs(t, err, &pe)
				require.True(t, pe.OnEvict, "the panic was in OnEvict, not in the loader")
				require.ErrorIs(t, err, boom)
				require.ErrorContains(t, err, "cache: OnEvict panicked")
				require.Contains(t, string(pe.Stack), "load_test.go", "the stack points at OnEvict")
			}
			v, ok := c.Get("b")
			require.True(t, ok, "the loaded value was stored before OnEvict ran")
			require.Equal(t, 2, v)
			require.Equal(t, uint64(1), c.Stats().LoadErrors)
		}},
		{"GetOrLoadMany returns the *PanicError and the value is stored", func(t *testing.T, c *cache.Cache[string, int]) {
			c.Set("p", 1)
			got, err := c.GetOrLoadMany(context.Background(), []string{"b"}, func(context.Context, []string) (map[string]int, error) {
				return map[string]int{"b": 2}, nil
			})
			var pe *cache.PanicError
			require.ErrorAs(t, err, &pe)
			require.True(t, pe.OnEvict)
			require.Empty(t, got)
			v, ok := c.Get("b")
			require.True(t, ok)
			require.Equal(t, 2, v)
		}},
		{"a background refresh with no waiter is contained and counted as a load error", func(t *testing.T, c *cache.Cache[string, int]) {
			c.Set("a", 1)
			time.Sleep(10 * time.Second)
			v, err := c.GetOrLoad(context.Background(), "a", func(context.Context, string) (int, error) {
				time.Sleep(time.Second)
				return 2, nil
			})
			require.NoError(t, err)
			require.Equal(t, 1, v, "served stale while it reloads")
			c.Set("p", 3)           // evicts "a" while its reload runs
			time.Sleep(time.Second) // the reload stores "a", evicting "p"
			synctest.Wait()
			require.Equal(t, uint64(1), c.Stats().LoadErrors)
			v, ok := c.Get("a")
			require.True(t, ok)
			require.Equal(t, 2, v)
		}},
		{"an OnEvict that exits its goroutine does not strand the waiters", func(t *testing.T, c *cache.Cache[string, int]) {
			c.Set("exit", 1)
			v, err := c.GetOrLoad(context.Background(), "b", func(context.Context, string) (int, error) { return 2, nil })
			require.NoError(t, err, "the value was stored; OnEvict ended the goroutine after that")
			require.Equal(t, 2, v)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCache(t, cache.Options[string, int]{MaxEntries: 1, TTL: time.Minute, RefreshAfter: 10 * time.Second,
					OnEvict: func(k string, _ int, r cache.EvictReason) {
						switch {
						case r != cache.ReasonCapacity:
						case k == "p":
							panic(boom)
						case k == "exit":
							runtime.Goexit()
						}
					}})
				defer c.Close()
				tc.run(t, c)
				// The cache still loads.
				c.Purge()
				v, err := c.GetOrLoad(context.Background(), "z", func(context.Context, string) (int, error) { return 26, nil })
				require.NoError(t, err)
				require.Equal(t, 26, v)
			})
		})
	}
}
