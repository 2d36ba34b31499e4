package redisrate

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/ratelimit"
)

// TestGCRAResultFollowsFromOneNumber checks how a GCRA reply, TAT − now
// after an admission or −(TAT − now) after a denial, becomes a Result,
// for 10 a second with a burst of 5: an interval of 100ms, tau 500ms.
func TestGCRAResultFollowsFromOneNumber(t *testing.T) {
	lim := ratelimit.Limit{Rate: 10, Period: time.Second, Burst: 5}
	// Reading a reply needs no server: the limiter never uses its client.
	l, err := NewGCRA((*redis.Client)(nil), lim, Options{})
	require.NoError(t, err)
	ms := time.Millisecond
	cases := []struct {
		name  string
		reply any
		n     int
		want  ratelimit.Result
	}{
		{"the first admission leaves four", int64(100_000), 1, ratelimit.Result{Allowed: true, Limit: lim, Remaining: 4, ResetAfter: 100 * ms}},
		{"an admission that fills the bucket leaves none", int64(500_000), 1, ratelimit.Result{Allowed: true, Limit: lim, Remaining: 0, ResetAfter: 500 * ms}},
		{"part of an interval left does not count", int64(250_000), 2, ratelimit.Result{Allowed: true, Limit: lim, Remaining: 2, ResetAfter: 250 * ms}},
		{"a denial on a full bucket waits one interval", int64(-500_000), 1, ratelimit.Result{Limit: lim, Remaining: 0, RetryAfter: 100 * ms, ResetAfter: 500 * ms}},
		{"a denial of two waits until two fit", int64(-450_000), 2, ratelimit.Result{Limit: lim, Remaining: 0, RetryAfter: 150 * ms, ResetAfter: 450 * ms}},
		{"a denial of five with one spent", int64(-100_000), 5, ratelimit.Result{Limit: lim, Remaining: 4, RetryAfter: 100 * ms, ResetAfter: 100 * ms}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := l.gcraResult(c.reply, c.n)
			require.NoError(t, err)
			require.Equal(t, c.want, got)
		})
	}
	for _, reply := range []any{int64(0), "1", []any{int64(1)}, nil} {
		_, err := l.gcraResult(reply, 1)
		require.ErrorContains(t, err, "want a non-zero integer", "reply %#v", reply)
	}
}
