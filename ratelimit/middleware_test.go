package ratelimit_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/ratelimit"
)

var ok200 = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })

func serve(h http.Handler, remote string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodGet, "/api", nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Add(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func mustMiddleware(t *testing.T, l ratelimit.Limiter, key ratelimit.KeyFunc, opts ...ratelimit.MiddlewareOption) func(http.Handler) http.Handler {
	t.Helper()
	mw, err := ratelimit.Middleware(l, key, opts...)
	require.NoError(t, err)
	return mw
}

func TestMiddlewareHeadersByteForByte(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g, err := ratelimit.NewGCRA(ratelimit.PerMinute(3), ratelimit.Options{})
		require.NoError(t, err)
		h := mustMiddleware(t, g, ratelimit.KeyByIP(), ratelimit.LegacyHeaders())(ok200)

		for i, want := range []struct{ rl, remaining, reset string }{
			{`"default";r=2;t=20`, "2", "20"},
			{`"default";r=1;t=40`, "1", "40"},
			{`"default";r=0;t=60`, "0", "60"},
		} {
			w := serve(h, "192.0.2.1:1000")
			require.Equal(t, http.StatusOK, w.Code, "request %d", i+1)
			require.Equal(t, http.Header{
				"Content-Type":          {"text/plain; charset=utf-8"},
				"Ratelimit-Policy":      {`"default";q=3;w=60`},
				"Ratelimit":             {want.rl},
				"X-Ratelimit-Limit":     {"3"},
				"X-Ratelimit-Remaining": {want.remaining},
				"X-Ratelimit-Reset":     {want.reset},
			}, w.Header())
			require.Equal(t, "ok", w.Body.String())
		}

		time.Sleep(500 * time.Millisecond) // RetryAfter 19.5 s rounds up to 20
		w := serve(h, "192.0.2.1:1000")
		require.Equal(t, http.StatusTooManyRequests, w.Code)
		body := `{"type":"https://iana.org/assignments/http-problem-types#quota-exceeded","title":"Too Many Requests",` +
			`"status":429,"detail":"Quota \"default\" exceeded; retry after 20 s.","violated-policies":["default"]}` + "\n"
		require.Equal(t, http.Header{
			"Content-Type":           {"application/problem+json"},
			"Content-Length":         {strconv.Itoa(len(body))},
			"X-Content-Type-Options": {"nosniff"},
			"Retry-After":            {"20"},
			"Ratelimit-Policy":       {`"default";q=3;w=60`},
			"Ratelimit":              {`"default";r=0;t=60`},
			"X-Ratelimit-Limit":      {"3"},
			"X-Ratelimit-Remaining":  {"0"},
			"X-Ratelimit-Reset":      {"60"},
		}, w.Header())
		require.Equal(t, body, w.Body.String())

		// Another client is not affected.
		require.Equal(t, http.StatusOK, serve(h, "192.0.2.2:1000").Code)
	})
}

func TestMiddlewareStrictestPolicyDecides(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		burst, err := ratelimit.NewGCRA(ratelimit.PerSecond(2), ratelimit.Options{})
		require.NoError(t, err)
		daily, err := ratelimit.NewGCRA(ratelimit.PerDay(3), ratelimit.Options{})
		require.NoError(t, err)
		h := mustMiddleware(t, burst, ratelimit.KeyByIP(), ratelimit.Name("burst"),
			ratelimit.Policy("daily", daily, nil), ratelimit.LegacyHeaders())(ok200)
		const policy = `"burst";q=2;w=1, "daily";q=3;w=86400`

		w := serve(h, "192.0.2.1:1")
		require.Equal(t, http.StatusOK, w.Code)
		require.Equal(t, policy, w.Header().Get("RateLimit-Policy"))
		require.Equal(t, `"burst";r=1;t=1, "daily";r=2;t=28800`, w.Header().Get("RateLimit"))
		require.Equal(t, "1", w.Header().Get("X-RateLimit-Remaining"))

		w = serve(h, "192.0.2.1:1")
		require.Equal(t, http.StatusOK, w.Code)
		require.Equal(t, `"burst";r=0;t=1, "daily";r=1;t=57600`, w.Header().Get("RateLimit"))

		// The burst policy denies first; the daily quota is not charged.
		w = serve(h, "192.0.2.1:1")
		require.Equal(t, http.StatusTooManyRequests, w.Code)
		require.Equal(t, `"burst";r=0;t=1`, w.Header().Get("RateLimit"))
		require.Equal(t, "1", w.Header().Get("Retry-After"))

		time.Sleep(time.Second)
		w = serve(h, "192.0.2.1:1")
		require.Equal(t, http.StatusOK, w.Code)
		require.Equal(t, `"burst";r=1;t=1, "daily";r=0;t=86399`, w.Header().Get("RateLimit"))

		// Now the daily quota is what denies, until its TAT (24h) comes
		// within its tolerance (24h) of a further 8h: at 8h.
		time.Sleep(time.Second)
		w = serve(h, "192.0.2.1:1")
		require.Equal(t, http.StatusTooManyRequests, w.Code)
		require.Equal(t, `"burst";r=1;t=1, "daily";r=0;t=86398`, w.Header().Get("RateLimit"))
		require.Equal(t, "28798", w.Header().Get("Retry-After"))
		require.Equal(t, "3", w.Header().Get("X-RateLimit-Limit"))
		require.Contains(t, w.Body.String(), `Quota \"daily\" exceeded`)
	})
}

func TestMiddlewareKeysClientsSafely(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g, err := ratelimit.NewGCRA(ratelimit.PerHour(1), ratelimit.Options{})
		require.NoError(t, err)
		h := mustMiddleware(t, g, ratelimit.KeyByIP(netip.MustParsePrefix("10.0.0.0/8")))(ok200)

		require.Equal(t, http.StatusOK, serve(h, "203.0.113.5:1").Code)
		// A spoofed X-Forwarded-For from the same untrusted peer changes nothing.
		w := serve(h, "203.0.113.5:1", "X-Forwarded-For", "198.51.100.77")
		require.Equal(t, http.StatusTooManyRequests, w.Code)

		// Two addresses in one IPv6 /64 share a quota; another /64 does not.
		require.Equal(t, http.StatusOK, serve(h, "[2001:db8:0:1::a]:1").Code)
		require.Equal(t, http.StatusTooManyRequests, serve(h, "[2001:db8:0:1:ffff::b]:1").Code)
		require.Equal(t, http.StatusOK, serve(h, "[2001:db8:0:2::a]:1").Code)

		// Behind a trusted proxy the forwarded client is limited, not the proxy.
		require.Equal(t, http.StatusOK, serve(h, "10.0.0.1:1", "X-Forwarded-For", "198.51.100.1").Code)
		require.Equal(t, http.StatusOK, serve(h, "10.0.0.1:1", "X-Forwarded-For", "198.51.100.2").Code)
		require.Equal(t, http.StatusTooManyRequests, serve(h, "10.0.0.2:1", "X-Forwarded-For", "198.51.100.2").Code)
	})
}

func TestMiddlewareKeyErrorAnswers400(t *testing.T) {
	t.Parallel()
	g, err := ratelimit.NewGCRA(ratelimit.PerHour(100), ratelimit.Options{})
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		key  ratelimit.KeyFunc
		body string
	}{
		{"a missing header", ratelimit.KeyByHeader("X-Api-Key"),
			`{"type":"about:blank","title":"Bad Request","status":400,"detail":"ratelimit: request has no key: header X-Api-Key is missing or empty"}` + "\n"},
		{"an empty key", func(*http.Request) (string, error) { return "", nil },
			`{"type":"about:blank","title":"Bad Request","status":400,"detail":"ratelimit: request has no key: the key function returned an empty key"}` + "\n"},
		{"a key too long to keep", func(*http.Request) (string, error) { return strings.Repeat("x", 257), nil },
			`{"type":"about:blank","title":"Bad Request","status":400,"detail":"ratelimit: the key function returned a key longer than 256 bytes"}` + "\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := mustMiddleware(t, g, tc.key)(ok200)
			w := serve(h, "192.0.2.1:1")
			require.Equal(t, http.StatusBadRequest, w.Code)
			require.Equal(t, "application/problem+json", w.Header().Get("Content-Type"))
			require.Equal(t, tc.body, w.Body.String())
			require.Empty(t, w.Header().Get("RateLimit"))
		})
	}
}

func TestMiddlewareShadowModeRecordsAndBlocksNothing(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g, err := ratelimit.NewGCRA(ratelimit.PerHour(1), ratelimit.Options{})
		require.NoError(t, err)
		var mu sync.Mutex
		var seen []ratelimit.Decision
		record := ratelimit.OnDecision(func(_ *http.Request, d ratelimit.Decision) {
			mu.Lock()
			seen = append(seen, d)
			mu.Unlock()
		})
		h := mustMiddleware(t, g, ratelimit.KeyByHeader("X-Api-Key"), ratelimit.Shadow(), record)(ok200)
		for range 3 {
			w := serve(h, "192.0.2.1:1", "X-Api-Key", "k")
			require.Equal(t, http.StatusOK, w.Code)
			require.Empty(t, w.Header().Get("RateLimit"))
			require.Empty(t, w.Header().Get("RateLimit-Policy"))
		}
		w := serve(h, "192.0.2.1:1") // no key: still served in shadow mode
		require.Equal(t, http.StatusOK, w.Code)

		require.Len(t, seen, 4)
		require.True(t, seen[0].Allowed)
		require.False(t, seen[1].Allowed)
		require.False(t, seen[2].Allowed)
		require.Equal(t, []string{"default"}, seen[1].Policies)
		require.Equal(t, "k", seen[1].Key)
		require.Equal(t, time.Hour, seen[1].Results[0].RetryAfter)
		require.ErrorIs(t, seen[3].Err, ratelimit.ErrNoKey)
	})
}

func TestMiddlewareFailsOpenWhenTheLimiterErrs(t *testing.T) {
	t.Parallel()
	g, err := ratelimit.NewGCRA(ratelimit.PerHour(1), ratelimit.Options{})
	require.NoError(t, err)
	var got ratelimit.Decision
	h := mustMiddleware(t, g, ratelimit.KeyByIP(),
		ratelimit.OnDecision(func(_ *http.Request, d ratelimit.Decision) { got = d }))(ok200)
	// A request whose context is already over makes the limiter fail.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	r := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	require.Equal(t, http.StatusOK, w.Code)
	require.Empty(t, w.Header().Get("RateLimit"))
	require.ErrorIs(t, got.Err, context.Canceled)
}

func TestMiddlewareRejectsBadConfiguration(t *testing.T) {
	t.Parallel()
	g, err := ratelimit.NewGCRA(ratelimit.PerHour(1), ratelimit.Options{})
	require.NoError(t, err)
	key := ratelimit.KeyByIP()
	for _, tc := range []struct {
		name string
		l    ratelimit.Limiter
		key  ratelimit.KeyFunc
		opts []ratelimit.MiddlewareOption
	}{
		{"nil limiter", nil, key, nil},
		{"nil key func", g, nil, nil},
		{"empty policy name", g, key, []ratelimit.MiddlewareOption{ratelimit.Name("")}},
		{"non-printable policy name", g, key, []ratelimit.MiddlewareOption{ratelimit.Name("a\nb")}},
		{"duplicate policy names", g, key, []ratelimit.MiddlewareOption{ratelimit.Policy("default", g, nil)}},
		{"policy with nil limiter", g, key, []ratelimit.MiddlewareOption{ratelimit.Policy("x", nil, nil)}},
		{"shadow without a recorder", g, key, []ratelimit.MiddlewareOption{ratelimit.Shadow()}},
		{"nil option", g, key, []ratelimit.MiddlewareOption{nil}},
		{"empty problem type", g, key, []ratelimit.MiddlewareOption{ratelimit.ProblemType("")}},
		{"nil OnDecision", g, key, []ratelimit.MiddlewareOption{ratelimit.OnDecision(nil)}},
		{"nil OnLimited", g, key, []ratelimit.MiddlewareOption{ratelimit.OnLimited(nil)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ratelimit.Middleware(tc.l, tc.key, tc.opts...)
			require.Error(t, err)
		})
	}
}

// FuzzPolicyHeader: any accepted policy name comes back out of the
// RateLimit-Policy and RateLimit fields as the same RFC 8941 string, with
// well-formed parameters after it.
func FuzzPolicyHeader(f *testing.F) {
	f.Add(`default`, 5)
	f.Add(`a "quoted" \ name`, 1)
	f.Add("tab\there", 100)
	f.Fuzz(func(t *testing.T, name string, rate int) {
		if rate < 1 || rate > 1_000_000 {
			return
		}
		g, err := ratelimit.NewGCRA(ratelimit.PerHour(rate), ratelimit.Options{MaxKeys: 16})
		if err != nil {
			t.Fatal(err)
		}
		mw, err := ratelimit.Middleware(g, ratelimit.KeyByIP(), ratelimit.Name(name))
		if err != nil {
			return // a rejected name is fine; a panic is not
		}
		w := serve(mw(ok200), "192.0.2.1:1")
		for field, params := range map[string]string{
			"RateLimit-Policy": ";q=" + strconv.Itoa(rate) + ";w=3600",
			"RateLimit":        ";r=" + strconv.Itoa(rate-1) + ";t=" + strconv.Itoa((3600+rate-1)/rate),
		} {
			v := w.Header().Get(field)
			got, rest, ok := parseSFString(v)
			if !ok || got != name || rest != params {
				t.Fatalf("%s: %q parses as %q + %q (ok %v), want %q + %q", field, v, got, rest, ok, name, params)
			}
		}
	})
}

// parseSFString reads an RFC 8941 sf-string from the start of s.
func parseSFString(s string) (value, rest string, ok bool) {
	if s == "" || s[0] != '"' {
		return "", s, false
	}
	var b []byte
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			if i+1 == len(s) || (s[i+1] != '"' && s[i+1] != '\\') {
				return "", s, false
			}
			i++
			b = append(b, s[i])
		case c == '"':
			return string(b), s[i+1:], true
		case c < 0x20 || c > 0x7e:
			return "", s, false
		default:
			b = append(b, c)
		}
	}
	return "", s, false
}

func TestMiddlewarePolicyWithItsOwnKey(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		perIP, err := ratelimit.NewGCRA(ratelimit.PerSecond(100), ratelimit.Options{})
		require.NoError(t, err)
		perTenant, err := ratelimit.NewGCRA(ratelimit.PerHour(1), ratelimit.Options{})
		require.NoError(t, err)
		h := mustMiddleware(t, perIP, ratelimit.KeyByIP(),
			ratelimit.Policy("tenant", perTenant, ratelimit.KeyByHeader("X-Tenant")))(ok200)

		require.Equal(t, http.StatusOK, serve(h, "192.0.2.1:1", "X-Tenant", "acme").Code)
		// Another IP, same tenant: the tenant's quota is spent.
		w := serve(h, "192.0.2.2:1", "X-Tenant", "acme")
		require.Equal(t, http.StatusTooManyRequests, w.Code)
		require.Equal(t, `"default";r=99;t=1, "tenant";r=0;t=3600`, w.Header().Get("RateLimit"))
		// No tenant header: 400, not a shared empty tenant.
		require.Equal(t, http.StatusBadRequest, serve(h, "192.0.2.3:1").Code)
	})
}

// BenchmarkMiddleware measures one request through the middleware keyed by
// IP, with the IETF fields written, over 10,000 clients.
func BenchmarkMiddleware(b *testing.B) {
	g, err := ratelimit.NewGCRA(ratelimit.PerSecond(1000), ratelimit.Options{})
	require.NoError(b, err)
	mw, err := ratelimit.Middleware(g, ratelimit.KeyByIP())
	require.NoError(b, err)
	h := mw(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	reqs := make([]*http.Request, 10_000)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, "/", nil)
		reqs[i].RemoteAddr = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}).String() + ":1234"
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		i := 0
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, reqs[i%len(reqs)])
			i++
		}
	})
}

type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}

func TestMiddlewareOnLimitedAnswersDeniedRequests(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		g, err := ratelimit.NewGCRA(ratelimit.PerMinute(1), ratelimit.Options{})
		require.NoError(t, err)
		var calls []ratelimit.Decision
		respond := func(w http.ResponseWriter, r *http.Request, d ratelimit.Decision) {
			calls = append(calls, d)
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte("slow down, " + r.URL.Path))
		}
		h := mustMiddleware(t, g, ratelimit.KeyByIP(), ratelimit.Name("per-ip"),
			ratelimit.ProblemType("https://example.com/ignored"), ratelimit.OnLimited(respond))(ok200)

		require.Equal(t, http.StatusOK, serve(h, "192.0.2.1:1000").Code)
		require.Empty(t, calls, "an admitted request is served, not answered by OnLimited")

		w := serve(h, "192.0.2.1:1000")
		require.Equal(t, http.StatusTooManyRequests, w.Code)
		require.Equal(t, "slow down, /api", w.Body.String())
		require.Equal(t, http.Header{
			"Content-Type":     {"text/plain"},
			"Retry-After":      {"60"},
			"Ratelimit-Policy": {`"per-ip";q=1;w=60`},
			"Ratelimit":        {`"per-ip";r=0;t=60`},
		}, w.Header())
		require.Len(t, calls, 1)
		d := calls[0]
		require.False(t, d.Allowed)
		require.Equal(t, "192.0.2.1", d.Key)
		require.Equal(t, []string{"per-ip"}, d.Policies)
		require.Len(t, d.Results, 1)
		require.False(t, d.Results[0].Allowed)
		require.Equal(t, time.Minute, d.Results[0].RetryAfter)
	})
}
