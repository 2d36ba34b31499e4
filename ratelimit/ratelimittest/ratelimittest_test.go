package ratelimittest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/ratelimit/ratelimittest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunPassesForGCRA(t *testing.T) {
	ratelimittest.Run(t, ratelimittest.Config{
		New: func(t *testing.T, lim ratelimit.Limit) (ratelimit.Limiter, error) {
			return ratelimit.NewGCRA(lim, ratelimit.Options{})
		},
		Synctest: true,
	})
}
