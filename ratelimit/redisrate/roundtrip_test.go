package redisrate_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/ratelimit/redisrate"
)

// countHook counts the commands a client sends.
type countHook struct{ n atomic.Int64 }

func (h *countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// commandCalls returns the calls of each command from INFO commandstats.
func commandCalls(t *testing.T, c *redis.Client) map[string]int64 {
	t.Helper()
	info, err := c.Info(context.Background(), "commandstats").Result()
	require.NoError(t, err)
	calls := map[string]int64{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(rest[:strings.IndexByte(rest, ',')], 10, 64)
		require.NoError(t, err)
		calls[strings.TrimPrefix(name, "cmdstat_")] = n
	}
	return calls
}

// TestOneRoundTripPerDecision: every decision of every algorithm is one
// command on the wire (the client's hook counts them) and one EVALSHA on
// the server (INFO commandstats). Other tests share the server, so the
// server-side count is taken again, up to 50 times over a few seconds,
// until a window with no one else's scripts in it shows exactly one
// EVALSHA per decision and no EVAL; others' traffic can only add to the
// count, never hide a missing call.
func TestOneRoundTripPerDecision(t *testing.T) {
	c, prefix := testenv.Redis(t)
	hook := &countHook{}
	c.AddHook(hook)
	ctx := context.Background()
	const decisions = 200
	for _, a := range algorithms {
		t.Run(a.name, func(t *testing.T) {
			l, err := a.new(c, ratelimit.PerMinute(50), redisrate.Options{Prefix: prefix + a.name + ":"})
			require.NoError(t, err)
			_, err = l.AllowN(ctx, "warm", 1) // loads the script if Redis lacks it
			require.NoError(t, err)
			var clean bool
			for attempt := 0; attempt < 50 && !clean; attempt++ {
				if attempt > 0 {
					time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
				}
				before := commandCalls(t, c)
				sent := hook.n.Load()
				for i := range decisions {
					_, err := l.AllowN(ctx, "k"+strconv.Itoa(i%7), 1)
					require.NoError(t, err)
				}
				require.Equal(t, int64(decisions), hook.n.Load()-sent, "commands sent for %d decisions", decisions)
				after := commandCalls(t, c)
				evalsha := after["evalsha"] - before["evalsha"]
				eval := after["eval"] - before["eval"]
				require.GreaterOrEqual(t, evalsha, int64(decisions))
				if evalsha != decisions || eval != 0 {
					t.Logf("attempt %d: %d decisions, server counted %d EVALSHA and %d EVAL", attempt+1, decisions, evalsha, eval)
				}
				clean = evalsha == decisions && eval == 0
				if clean {
					t.Logf("%d decisions: %d commands sent, %d EVALSHA and %d EVAL on the server: 1 round trip each",
						decisions, decisions, evalsha, eval)
				}
			}
			require.True(t, clean, "no window free of other clients' scripts in 50 attempts")
		})
	}
}

// BenchmarkRedisAllow measures decisions against the real Redis with 8 and
// 64 concurrent callers over 10,000 keys, each decision sent on its own
// (batch=0) and batched (batch=64).
func BenchmarkRedisAllow(b *testing.B) {
	for _, a := range algorithms {
		for _, callers := range []int{8, 64} {
			for _, batch := range []int{0, 64} {
				benchmarkRedisAllow(b, a, callers, batch)
			}
		}
	}
}

func benchmarkRedisAllow(b *testing.B, a algorithm, callers, batch int) {
	b.Run(fmt.Sprintf("%s/callers=%d/batch=%d", a.name, callers, batch), func(b *testing.B) {
		c, prefix := testenv.Redis(b)
		l, err := a.new(c, ratelimit.PerSecond(1_000_000), redisrate.Options{Prefix: prefix, Batch: batch})
		if err != nil {
			b.Fatal(err)
		}
		keys := make([]string, 10_000)
		for i := range keys {
			keys[i] = "user:" + strconv.Itoa(i)
		}
		var next atomic.Int64
		b.SetParallelism(max(callers/runtime.GOMAXPROCS(0), 1))
		b.ReportAllocs()
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			i := int(next.Add(7919))
			for pb.Next() {
				if _, err := l.AllowN(context.Background(), keys[i%len(keys)], 1); err != nil {
					b.Error(err)
					return
				}
				i++
			}
		})
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	})
}
