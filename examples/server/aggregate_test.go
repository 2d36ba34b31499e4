package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAggregateOfTheDemoUpstreams checks the default aggregate, which runs
// offline, and that its calls do not spend the client's quota.
func TestAggregateOfTheDemoUpstreams(t *testing.T) {
	t.Parallel()
	// Two requests a minute: if the demo upstreams were limited, the three
	// calls of one aggregate would spend the client's quota.
	ts := startServer(t, "sqlite", map[string]string{"RATE_LIMIT": "2/min"})
	for range 2 {
		r := ts.do("GET", "/aggregate", nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var out aggregateOutput
		r.json(t, &out)
		require.Len(t, out.Results, 3)
		for i, want := range []string{"/demo/upstream/fast?latency_ms=20", "/demo/upstream/slow?latency_ms=300", "/demo/upstream/flaky?latency_ms=50&fail_rate=0.3"} {
			require.Equal(t, ts.base+want, out.Results[i].Upstream, "results come in the upstreams' order")
		}
		fast, slow, flaky := out.Results[0], out.Results[1], out.Results[2]
		require.Equal(t, http.StatusOK, fast.Status)
		require.JSONEq(t, `{"upstream":"fast","latency_ms":20}`, string(fast.Body))
		require.Empty(t, fast.Error)
		require.GreaterOrEqual(t, fast.Ms, 20.0)
		require.Equal(t, http.StatusOK, slow.Status)
		require.GreaterOrEqual(t, slow.Ms, 300.0)
		if flaky.Status == http.StatusOK {
			require.JSONEq(t, `{"upstream":"flaky","latency_ms":50}`, string(flaky.Body))
		} else {
			require.Equal(t, http.StatusServiceUnavailable, flaky.Status)
			require.Equal(t, "upstream answered 503 Service Unavailable", flaky.Error)
			require.Nil(t, flaky.Body, "a failed upstream has an error, not a body")
		}
	}
}

// TestAggregateReportsEachUpstreamsFailure aggregates upstreams that fail
// in every way, and checks that each has its result while the route
// answers 200.
func TestAggregateReportsEachUpstreamsFailure(t *testing.T) {
	t.Parallel()
	var (
		mu  sync.Mutex
		ids []string
	)
	mux := http.NewServeMux()
	mux.HandleFunc("/json", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ids = append(ids, r.Header.Get("X-Request-ID"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = w.Write([]byte("{\n  \"ok\": true, \"list\": [1, 2]\n}\n"))
	})
	mux.HandleFunc("/auth", func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"user":%q,"password_ok":%t}`, user, pass == "s3cret")
	})
	mux.HandleFunc("/null", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte("null"))
	})
	mux.HandleFunc("/text", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(`42 is "not" JSON here`))
	})
	mux.HandleFunc("/mislabelled", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"broken":`))
	})
	mux.HandleFunc("/large", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`"` + strings.Repeat("x", maxUpstreamBody) + `"`))
	})
	mux.HandleFunc("/exactly-64k", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`"` + strings.Repeat("x", maxUpstreamBody-2) + `"`))
	})
	mux.HandleFunc("/error", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"message":"boom"}`, http.StatusInternalServerError)
	})
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/json", http.StatusFound)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done(): // the aggregate gave up, and closed the connection
		case <-time.After(10 * time.Second):
		}
	})
	up := httptest.NewServer(mux)
	t.Cleanup(up.Close)
	// An address that refuses connections: a listener closed at once.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "http://" + ln.Addr().String() + "/"
	require.NoError(t, ln.Close())

	paths := []string{"/json", "/null", "/text", "/mislabelled", "/large", "/exactly-64k", "/error", "/redirect", "/hang"}
	var list []string
	for _, p := range paths {
		list = append(list, up.URL+p)
	}
	list = append(list, refused, strings.Replace(up.URL, "http://", "http://agg:s3cret@", 1)+"/auth")
	ts := startServer(t, "sqlite", map[string]string{"UPSTREAMS": strings.Join(list, ","), "AGGREGATE_TIMEOUT": "500ms"})

	start := time.Now()
	r := ts.do("GET", "/aggregate", nil, "X-Request-ID", "trace-1")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Less(t, time.Since(start), 5*time.Second, "a hanging upstream is given up after AGGREGATE_TIMEOUT")
	var out aggregateOutput
	r.json(t, &out)
	require.Len(t, out.Results, len(list))
	byPath := map[string]upstreamResult{}
	for i, res := range out.Results {
		if i < len(list)-1 {
			require.Equal(t, list[i], res.Upstream)
		}
		require.GreaterOrEqual(t, res.Ms, 0.0)
		if i < len(paths) {
			byPath[paths[i]] = res
		}
	}

	t.Run("a JSON body is embedded as JSON", func(t *testing.T) {
		res := byPath["/json"]
		require.Equal(t, 200, res.Status)
		require.JSONEq(t, `{"ok":true,"list":[1,2]}`, string(res.Body))
		require.Empty(t, res.Error)
		require.JSONEq(t, `null`, string(byPath["/null"].Body))
		require.Equal(t, 200, byPath["/null"].Status)
	})
	t.Run("a body that is not JSON is embedded as a string", func(t *testing.T) {
		require.Equal(t, `"42 is \"not\" JSON here"`, string(byPath["/text"].Body))
		require.Equal(t, `"{\"broken\":"`, string(byPath["/mislabelled"].Body))
	})
	t.Run("a body over 64 KiB is an error, one of 64 KiB is not", func(t *testing.T) {
		require.Equal(t, 200, byPath["/large"].Status)
		require.Equal(t, "the body is larger than 64 KiB", byPath["/large"].Error)
		require.Nil(t, byPath["/large"].Body)
		require.Empty(t, byPath["/exactly-64k"].Error)
		require.Len(t, byPath["/exactly-64k"].Body, maxUpstreamBody)
	})
	t.Run("a status other than 2xx is an error, a redirect is not followed", func(t *testing.T) {
		require.Equal(t, 500, byPath["/error"].Status)
		require.Equal(t, "upstream answered 500 Internal Server Error", byPath["/error"].Error)
		require.Equal(t, 302, byPath["/redirect"].Status)
		require.Equal(t, "upstream answered 302 Found", byPath["/redirect"].Error)
	})
	t.Run("an upstream that does not answer in time has status 0", func(t *testing.T) {
		res := byPath["/hang"]
		require.Equal(t, 0, res.Status)
		require.Equal(t, "no answer within 500ms", res.Error)
		require.GreaterOrEqual(t, res.Ms, 500.0)
	})
	t.Run("an upstream that refuses connections has status 0", func(t *testing.T) {
		res := out.Results[len(list)-2]
		require.Equal(t, 0, res.Status)
		require.Contains(t, res.Error, "refused")
	})
	t.Run("an upstream's password is sent to it, and not shown in its result", func(t *testing.T) {
		res := out.Results[len(list)-1]
		require.JSONEq(t, `{"user":"agg","password_ok":true}`, string(res.Body))
		require.Equal(t, strings.Replace(up.URL, "http://", "http://agg:xxxxx@", 1)+"/auth", res.Upstream)
		require.NotContains(t, string(r.body), "s3cret")
	})
	t.Run("the request id goes to the upstreams", func(t *testing.T) {
		mu.Lock()
		defer mu.Unlock()
		require.Equal(t, []string{"trace-1"}, ids)
	})
}

// TestDemoUpstream checks latency_ms and fail_rate, and that a client
// going away ends the wait.
func TestDemoUpstream(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", map[string]string{"LOG_LEVEL": "info"}) // the access log shows when a request ends
	t.Run("answers its name after latency_ms", func(t *testing.T) {
		start := time.Now()
		r := ts.do("GET", "/demo/upstream/solo?latency_ms=50", nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
		var got demoUpstream
		r.json(t, &got)
		require.Equal(t, demoUpstream{Upstream: "solo", LatencyMs: 50}, got)
	})
	t.Run("fail_rate 1 always fails with a 503 problem", func(t *testing.T) {
		r := ts.do("GET", "/demo/upstream/down?fail_rate=1", nil)
		require.Equal(t, http.StatusServiceUnavailable, r.status)
		require.Equal(t, "1", r.header.Get("Retry-After"))
		r.problem(t)
	})
	t.Run("fail_rate 0 never fails", func(t *testing.T) {
		for range 20 {
			require.Equal(t, http.StatusOK, ts.do("GET", "/demo/upstream/up?fail_rate=0", nil).status)
		}
	})
	t.Run("a client that goes away ends the wait", func(t *testing.T) {
		client := &http.Client{Timeout: 100 * time.Millisecond}
		start := time.Now()
		_, err := client.Get(ts.base + "/demo/upstream/gone?latency_ms=10000")
		require.Error(t, err)
		client.CloseIdleConnections()
		require.Eventually(t, func() bool { return strings.Contains(ts.logs.String(), "path=/demo/upstream/gone") },
			2*time.Second, 10*time.Millisecond, "the handler still waits")
		require.Less(t, time.Since(start), 5*time.Second)
	})
	t.Run("the answer is valid JSON of the documented shape", func(t *testing.T) {
		r := ts.do("GET", "/demo/upstream/a.b-c_d", nil)
		require.Equal(t, http.StatusOK, r.status)
		var m map[string]any
		require.NoError(t, json.Unmarshal(r.body, &m))
		require.Equal(t, map[string]any{"upstream": "a.b-c_d", "latency_ms": 0.0}, m)
	})
}

// TestAggregateNeverProxiesTheServerItself checks the upstream client's
// proxy choice: whatever HTTP_PROXY says, a request to the server's own
// address or to loopback goes straight there.
func TestAggregateNeverProxiesTheServerItself(t *testing.T) {
	t.Parallel()
	g := newAggregator(&config{AggregateTimeout: time.Second}, "http://10.1.2.3:8080")
	defer g.close()
	for _, u := range []string{"http://10.1.2.3:8080/demo/upstream/fast", "http://127.0.0.1:9/", "http://localhost:8080/x", "http://[::1]:80/"} {
		req, err := http.NewRequest("GET", u, nil)
		require.NoError(t, err)
		proxy, err := g.transport.Proxy(req)
		require.NoError(t, err)
		require.Nil(t, proxy, u)
	}
	require.Equal(t, []string{
		"http://10.1.2.3:8080/demo/upstream/fast?latency_ms=20",
		"http://10.1.2.3:8080/demo/upstream/slow?latency_ms=300",
		"http://10.1.2.3:8080/demo/upstream/flaky?latency_ms=50&fail_rate=0.3",
	}, g.upstreams, "without UPSTREAMS, the demo upstreams of the server itself")
}

// TestUpstreamConnsBoundsCallsToOneHost checks that UPSTREAM_CONNS bounds
// the calls one instance has open to an upstream host, however many
// aggregates run at once, and that raising it lets them all through.
func TestUpstreamConnsBoundsCallsToOneHost(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		conns    string
		min, max int64
	}{
		{"2", 1, 2},
		{"12", 4, 12}, // 4 aggregates of 3 calls each
	} {
		t.Run("UPSTREAM_CONNS="+tc.conns, func(t *testing.T) {
			t.Parallel()
			var inFlight, peak atomic.Int64
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := inFlight.Add(1)
				defer inFlight.Add(-1)
				for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
				}
				time.Sleep(200 * time.Millisecond)
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{}`))
			}))
			t.Cleanup(up.Close)
			list := []string{up.URL + "/a", up.URL + "/b", up.URL + "/c"}
			ts := startServer(t, "sqlite", map[string]string{"UPSTREAMS": strings.Join(list, ","), "UPSTREAM_CONNS": tc.conns})

			var wg sync.WaitGroup
			for range 4 {
				wg.Go(func() {
					r := ts.do("GET", "/aggregate", nil)
					assert.Equal(t, http.StatusOK, r.status, "%s", r.body)
				})
			}
			wg.Wait()
			require.GreaterOrEqual(t, peak.Load(), tc.min)
			require.LessOrEqual(t, peak.Load(), tc.max, "calls open at once to the one upstream host")
		})
	}
}
