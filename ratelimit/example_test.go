package ratelimit_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/asynckit/asynckit/ratelimit"
)

// Per-IP limiting of an HTTP API behind a load balancer at 10.0.0.0/8: the
// client address comes from X-Forwarded-For only when the load balancer
// sent the request.
func ExampleMiddleware() {
	lim, err := ratelimit.NewGCRA(ratelimit.PerMinute(2), ratelimit.Options{MaxKeys: 100_000})
	if err != nil {
		panic(err)
	}
	mw, err := ratelimit.Middleware(lim, ratelimit.KeyByIP(netip.MustParsePrefix("10.0.0.0/8")))
	if err != nil {
		panic(err)
	}
	api := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	}))

	for range 3 {
		r := httptest.NewRequest(http.MethodGet, "/hello", nil)
		r.RemoteAddr = "10.1.2.3:51000" // the load balancer
		r.Header.Set("X-Forwarded-For", "198.51.100.7")
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		fmt.Printf("%d %s %s", w.Code, w.Header().Get("RateLimit-Policy"), w.Header().Get("RateLimit"))
		if retry := w.Header().Get("Retry-After"); retry != "" {
			fmt.Print(" retry after ", retry)
		}
		fmt.Println()
	}
	// Output:
	// 200 "default";q=2;w=60 "default";r=1;t=30
	// 200 "default";q=2;w=60 "default";r=0;t=60
	// 429 "default";q=2;w=60 "default";r=0;t=60 retry after 30
}

// A service whose error answers all carry its own fields answers denied
// requests itself; the middleware has already set Retry-After and the
// RateLimit fields.
func ExampleOnLimited() {
	lim, err := ratelimit.NewGCRA(ratelimit.PerMinute(1), ratelimit.Options{})
	if err != nil {
		panic(err)
	}
	respond := func(w http.ResponseWriter, r *http.Request, d ratelimit.Decision) {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(http.StatusTooManyRequests)
		fmt.Fprintf(w, `{"type":"/problems/rate-limited","status":429,"instance":%q,"request_id":%q,"policy":%q}`+"\n",
			r.URL.Path, r.Header.Get("X-Request-ID"), d.Policies[len(d.Policies)-1])
	}
	mw, err := ratelimit.Middleware(lim, ratelimit.KeyByIP(), ratelimit.Name("per-ip"), ratelimit.OnLimited(respond))
	if err != nil {
		panic(err)
	}
	api := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "hello")
	}))

	for range 2 {
		r := httptest.NewRequest(http.MethodGet, "/hello", nil)
		r.RemoteAddr = "198.51.100.7:51000"
		r.Header.Set("X-Request-ID", "req-42")
		w := httptest.NewRecorder()
		api.ServeHTTP(w, r)
		fmt.Print(w.Code, " Retry-After=", w.Header().Get("Retry-After"), " ", w.Body.String())
	}
	// Output:
	// 200 Retry-After= hello
	// 429 Retry-After=60 {"type":"/problems/rate-limited","status":429,"instance":"/hello","request_id":"req-42","policy":"per-ip"}
}

// An outbound API client that may call a partner 5 times a second per
// account: TokenBucket.Wait queues each call until its token is due.
func ExampleTokenBucket_Wait() {
	lim, err := ratelimit.NewTokenBucket(ratelimit.PerSecond(5).WithBurst(1), ratelimit.Options{})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	for i := range 3 {
		if err := lim.Wait(ctx, "account-42"); err != nil {
			fmt.Println("gave up:", err)
			return
		}
		due := time.Duration(i) * 200 * time.Millisecond // one call per 200ms
		fmt.Printf("call %d, due at %v: on time %v\n", i+1, due, time.Since(start) >= due)
	}
	// Output:
	// call 1, due at 0s: on time true
	// call 2, due at 200ms: on time true
	// call 3, due at 400ms: on time true
}
