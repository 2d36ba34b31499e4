package ratelimittest_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/ratelimit/ratelimittest"
)

// broken limiters each get one thing wrong, wrapping a correct GCRA.
var broken = map[string]func(g *ratelimit.GCRA) ratelimit.Limiter{
	"admits past the burst": func(g *ratelimit.GCRA) ratelimit.Limiter {
		var mu sync.Mutex
		extra := map[string]bool{}
		return limiterFunc(func(ctx context.Context, key string, n int) (ratelimit.Result, error) {
			res, err := g.AllowN(ctx, key, n)
			mu.Lock()
			defer mu.Unlock()
			if err == nil && !res.Allowed && !extra[key] {
				extra[key] = true
				res.Allowed, res.RetryAfter = true, 0
			}
			return res, err
		})
	},
	"RetryAfter too short": func(g *ratelimit.GCRA) ratelimit.Limiter {
		return limiterFunc(func(ctx context.Context, key string, n int) (ratelimit.Result, error) {
			res, err := g.AllowN(ctx, key, n)
			res.RetryAfter /= 2
			return res, err
		})
	},
	"ignores the cost": func(g *ratelimit.GCRA) ratelimit.Limiter {
		return limiterFunc(func(ctx context.Context, key string, n int) (ratelimit.Result, error) {
			if n > 0 && n <= g.Limit().Burst {
				n = 1
			}
			return g.AllowN(ctx, key, n)
		})
	},
	"denies instead of rejecting a cost above the burst": func(g *ratelimit.GCRA) ratelimit.Limiter {
		return limiterFunc(func(ctx context.Context, key string, n int) (ratelimit.Result, error) {
			if n > g.Limit().Burst {
				return ratelimit.Result{Limit: g.Limit()}, nil
			}
			return g.AllowN(ctx, key, n)
		})
	},
}

type limiterFunc func(ctx context.Context, key string, n int) (ratelimit.Result, error)

func (f limiterFunc) AllowN(ctx context.Context, key string, n int) (ratelimit.Result, error) {
	return f(ctx, key, n)
}

const brokenEnv = "RATELIMITTEST_BROKEN"

// TestRunFailsForBrokenLimiters proves the suite can fail: it runs the
// suite, in a child process, against limiters that each get one thing
// wrong, and requires every run to fail.
func TestRunFailsForBrokenLimiters(t *testing.T) {
	if name := os.Getenv(brokenEnv); name != "" {
		ratelimittest.Run(t, ratelimittest.Config{
			New: func(t *testing.T, lim ratelimit.Limit) (ratelimit.Limiter, error) {
				g, err := ratelimit.NewGCRA(lim, ratelimit.Options{})
				if err != nil {
					return nil, err
				}
				return broken[name](g), nil
			},
			Synctest: true,
		})
		return
	}
	for name := range broken {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestRunFailsForBrokenLimiters$", "-test.count=1")
			cmd.Env = append(os.Environ(), brokenEnv+"="+name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a limiter that %s:\n%s", name, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestRunFailsForBrokenLimiters/") {
				t.Fatalf("the child did not fail a check:\n%s", out)
			}
			t.Logf("caught by:%s", failedChecks(string(out)))
		})
	}
}

// failedChecks lists the checks a child run failed.
func failedChecks(out string) string {
	var b strings.Builder
	for line := range strings.SplitSeq(out, "\n") {
		if _, name, ok := strings.Cut(line, "--- FAIL: TestRunFailsForBrokenLimiters/"); ok {
			b.WriteString("\n  " + name)
		}
	}
	return b.String()
}
