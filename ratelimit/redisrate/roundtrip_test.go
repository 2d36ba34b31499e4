package redisrate_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
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

// monitor is a raw MONITOR connection to Redis: it sees every command the
// server runs, from every client, with the client's address.
type monitor struct {
	conn net.Conn
	r    *bufio.Reader
}

func startMonitor(t *testing.T, addr string) *monitor {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	m := &monitor{conn: conn, r: bufio.NewReader(conn)}
	_, err = conn.Write([]byte("MONITOR\r\n"))
	require.NoError(t, err)
	require.Equal(t, "+OK", m.line(t))
	return m
}

func (m *monitor) line(t *testing.T) string {
	t.Helper()
	require.NoError(t, m.conn.SetReadDeadline(time.Now().Add(30*time.Second)))
	l, err := m.r.ReadString('\n')
	require.NoError(t, err)
	return strings.TrimRight(l, "\r\n")
}

// scripts reads the monitor until the client at addr sends ECHO marker,
// and counts the EVALSHA and EVAL commands that client ran before it.
// A connection's commands reach the monitor in the order they ran, so
// when the marker arrives every earlier command of the client has too.
func (m *monitor) scripts(t *testing.T, addr, marker string) (evalsha, eval int) {
	t.Helper()
	for {
		l := m.line(t) // +<time> [<db> <addr>] "<command>" "<arg>" …
		_, rest, ok := strings.Cut(l, " [")
		if !ok {
			continue
		}
		client, rest, _ := strings.Cut(rest, "] ")
		if _, from, _ := strings.Cut(client, " "); from != addr {
			continue
		}
		cmd, args, _ := strings.Cut(rest, " ")
		switch strings.ToLower(strings.Trim(cmd, `"`)) {
		case "evalsha":
			evalsha++
		case "eval":
			eval++
		case "echo":
			if strings.Trim(args, `"`) == marker {
				return evalsha, eval
			}
		}
	}
}

// TestOneRoundTripPerDecision: every decision of every algorithm is one
// command on the wire (the client's hook counts them) and one EVALSHA on
// the server, and never an EVAL. The server's side is read through
// MONITOR, counting only the commands of the test's own connection, so
// other clients of the shared server cannot blur the count.
func TestOneRoundTripPerDecision(t *testing.T) {
	shared, prefix := testenv.Redis(t)
	opts := *shared.Options()
	opts.PoolSize, opts.MinIdleConns, opts.MaxIdleConns = 1, 0, 1 // one connection: one address to watch
	c := redis.NewClient(&opts)
	t.Cleanup(func() { c.Close() })
	hook := &countHook{}
	c.AddHook(hook)
	ctx := context.Background()
	info, err := c.Do(ctx, "CLIENT", "INFO").Text()
	require.NoError(t, err)
	addr := ""
	for _, field := range strings.Fields(info) {
		if v, ok := strings.CutPrefix(field, "addr="); ok {
			addr = v
		}
	}
	require.NotEmpty(t, addr)
	mon := startMonitor(t, opts.Addr)
	const decisions = 200
	for _, a := range algorithms {
		t.Run(a.name, func(t *testing.T) {
			l, err := a.new(c, ratelimit.PerMinute(50), redisrate.Options{Prefix: prefix + a.name + ":"})
			require.NoError(t, err)
			_, err = l.AllowN(ctx, "warm", 1) // loads the script if Redis lacks it
			require.NoError(t, err)
			require.NoError(t, c.Echo(ctx, a.name+"-start").Err())
			mon.scripts(t, addr, a.name+"-start")
			sent := hook.n.Load()
			for i := range decisions {
				_, err := l.AllowN(ctx, "k"+strconv.Itoa(i%7), 1)
				require.NoError(t, err)
			}
			require.Equal(t, int64(decisions), hook.n.Load()-sent, "commands sent for %d decisions", decisions)
			require.NoError(t, c.Echo(ctx, a.name+"-end").Err())
			evalsha, eval := mon.scripts(t, addr, a.name+"-end")
			require.Equal(t, decisions, evalsha, "EVALSHA run for %d decisions", decisions)
			require.Zero(t, eval, "EVAL run: the script was sent whole")
			t.Logf("%d decisions: %d commands sent, %d EVALSHA and %d EVAL on the server: 1 round trip each",
				decisions, decisions, evalsha, eval)
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
