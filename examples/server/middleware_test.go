package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// wrapped serves h behind observe and compress, as the server does, on a
// real loopback server, and returns its URL, a client that leaves gzip
// to the test, and the log.
func wrapped(t *testing.T, h http.Handler) (string, *http.Client, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	srv := httptest.NewServer(observe(log, time.Second, nil, compress(h)))
	transport := &http.Transport{DisableCompression: true}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		srv.Close()
	})
	return srv.URL, &http.Client{Transport: transport, Timeout: 10 * time.Second}, logs
}

// get sends a GET with the headers given as pairs, and reads the answer.
func get(t *testing.T, c *http.Client, url string, headers ...string) *response {
	t.Helper()
	return request(t, c, "GET", url, headers...)
}

// request sends a request without a body with the headers given as pairs,
// and reads the answer.
func request(t *testing.T, c *http.Client, method, url string, headers ...string) *response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return &response{status: resp.StatusCode, header: resp.Header, body: body}
}

// gunzip returns the bytes that gzip data b holds.
func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	require.NoError(t, err)
	out, err := io.ReadAll(zr)
	require.NoError(t, err)
	return out
}

// TestCompress checks when compress gzips an answer, and that what it
// sends decodes to what the handler wrote.
func TestCompress(t *testing.T) {
	t.Parallel()
	big := []byte(strings.Repeat(`{"name":"ada","email":"ada@example.com"},`, 100)) // 4 KiB
	small := []byte(`{"name":"ada"}`)
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(big)
	})
	mux.HandleFunc("/big-in-pieces", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		for i := 0; i < len(big); i += 100 {
			_, _ = w.Write(big[i:min(i+100, len(big))])
		}
	})
	mux.HandleFunc("/big-with-length", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(big)
	})
	mux.HandleFunc("/big-untyped", func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("<!doctype html><html><body>" + strings.Repeat("<p>hello</p>", 200) + "</body></html>"))
	})
	mux.HandleFunc("/big-encoded", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Encoding", "br")
		_, _ = w.Write(big)
	})
	mux.HandleFunc("/small", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(small)
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	url, c, _ := wrapped(t, mux)

	t.Run("an answer of 1 KiB or more is gzipped and decodes to the same bytes", func(t *testing.T) {
		for _, path := range []string{"/big", "/big-in-pieces", "/big-with-length"} {
			r := get(t, c, url+path, "Accept-Encoding", "gzip")
			require.Equal(t, "gzip", r.header.Get("Content-Encoding"), path)
			require.Equal(t, "application/json", r.header.Get("Content-Type"), path)
			require.Contains(t, r.header.Values("Vary"), "Accept-Encoding", path)
			require.Less(t, len(r.body), len(big), path)
			require.Equal(t, big, gunzip(t, r.body), path)
		}
		r := get(t, c, url+"/big-with-length", "Accept-Encoding", "gzip")
		require.Equal(t, http.StatusCreated, r.status, "the status is kept")
	})
	t.Run("gzip is chosen however the client spells it", func(t *testing.T) {
		for _, ae := range []string{"gzip", "GZIP", "br, gzip;q=0.5", "deflate, gzip ; q=1"} {
			r := get(t, c, url+"/big", "Accept-Encoding", ae)
			require.Equal(t, "gzip", r.header.Get("Content-Encoding"), ae)
		}
	})
	t.Run("a client that does not accept gzip gets the bytes as they are", func(t *testing.T) {
		for _, ae := range []string{"", "identity", "br", "gzip;q=0", "x-gzip-not"} {
			r := get(t, c, url+"/big", "Accept-Encoding", ae)
			require.Empty(t, r.header.Get("Content-Encoding"), ae)
			require.Equal(t, big, r.body, ae)
			require.Contains(t, r.header.Values("Vary"), "Accept-Encoding", "a cache must not give this answer to a client that accepts gzip")
		}
	})
	t.Run("a small answer is not compressed and keeps its length", func(t *testing.T) {
		r := get(t, c, url+"/small", "Accept-Encoding", "gzip")
		require.Empty(t, r.header.Get("Content-Encoding"))
		require.Equal(t, small, r.body)
		require.Equal(t, strconv.Itoa(len(small)), r.header.Get("Content-Length"))
		require.Contains(t, r.header.Values("Vary"), "Accept-Encoding")
	})
	t.Run("an answer without a Content-Type is typed by its bytes, not by their gzip", func(t *testing.T) {
		r := get(t, c, url+"/big-untyped", "Accept-Encoding", "gzip")
		require.Equal(t, "gzip", r.header.Get("Content-Encoding"))
		require.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"))
	})
	t.Run("an answer already encoded, an empty one and a HEAD are left alone", func(t *testing.T) {
		r := get(t, c, url+"/big-encoded", "Accept-Encoding", "gzip")
		require.Equal(t, "br", r.header.Get("Content-Encoding"))
		require.Equal(t, big, r.body)
		r = get(t, c, url+"/empty", "Accept-Encoding", "gzip")
		require.Equal(t, http.StatusNoContent, r.status)
		require.Empty(t, r.header.Get("Content-Encoding"))
		r = request(t, c, "HEAD", url+"/big", "Accept-Encoding", "gzip")
		require.Empty(t, r.header.Get("Content-Encoding"))
	})
}

// TestCompressNeverHoldsBackAnEventStream reads a stream event by event,
// the handler writing each only once the one before has been read.
func TestCompressNeverHoldsBackAnEventStream(t *testing.T) {
	t.Parallel()
	next := make(chan struct{})
	const events = 5
	url, c, _ := wrapped(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range events {
			// Each event is larger than gzipMinSize, so that only the
			// stream's type keeps it from being compressed.
			fmt.Fprintf(w, "id: %d\ndata: %s\n\n", i, strings.Repeat("x", 2*gzipMinSize))
			http.NewResponseController(w).Flush()
			select {
			case <-next: // the client has read this event
			case <-r.Context().Done():
				return
			}
		}
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	require.NoError(t, err)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Empty(t, resp.Header.Get("Content-Encoding"))
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	require.NotEmpty(t, resp.Header.Get("X-Process-Time"))
	rd := bufio.NewReader(resp.Body)
	for i := range events {
		// The handler waits for this read before it writes the next event,
		// so an event held back anywhere would stall here until ctx ends.
		id, err := rd.ReadString('\n')
		require.NoError(t, err, "event %d did not arrive", i)
		require.Equal(t, fmt.Sprintf("id: %d\n", i), id)
		data, err := rd.ReadString('\n')
		require.NoError(t, err)
		require.Len(t, data, len("data: \n")+2*gzipMinSize)
		blank, err := rd.ReadString('\n')
		require.NoError(t, err)
		require.Equal(t, "\n", blank)
		next <- struct{}{}
	}
	_, err = rd.ReadByte()
	require.ErrorIs(t, err, io.EOF)
}

// TestCompressFlushesEarlyAnswersUncompressed checks that a flush before
// gzipMinSize bytes sends the whole answer as it is.
func TestCompressFlushesEarlyAnswersUncompressed(t *testing.T) {
	t.Parallel()
	url, c, _ := wrapped(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = w.Write([]byte("{}\n"))
		http.NewResponseController(w).Flush()
		_, _ = w.Write(bytes.Repeat([]byte("{}\n"), 1000))
	}))
	r := get(t, c, url, "Accept-Encoding", "gzip")
	require.Empty(t, r.header.Get("Content-Encoding"))
	require.Len(t, r.body, 3003)
}

// TestObserve checks request ids, X-Process-Time, the access log and its
// warnings, and panics, on observe around test handlers.
func TestObserve(t *testing.T) {
	t.Parallel()
	var (
		mu       sync.Mutex
		recorded []string
	)
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	mux := http.NewServeMux()
	mux.HandleFunc("/id", func(w http.ResponseWriter, r *http.Request) {
		if info := routeInfoFrom(r.Context()); info != nil {
			info.pattern = "/id"
		}
		_, _ = io.WriteString(w, requestID(r.Context()))
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(250 * time.Millisecond)
		_, _ = io.WriteString(w, "done")
	})
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		panic("the handler is broken")
	})
	mux.HandleFunc("/panic-after-writing", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("partial answer"))
		panic("the handler broke midway")
	})
	mux.HandleFunc("/panic-after-flushing", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("partial answer"))
		http.NewResponseController(w).Flush()
		panic("the handler broke midway")
	})
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	// 200ms leaves a fast request on a loaded machine well below the limit.
	srv := httptest.NewServer(observe(log, 200*time.Millisecond, func(method, route string, code int, d time.Duration, _ bool) {
		mu.Lock()
		defer mu.Unlock()
		recorded = append(recorded, fmt.Sprintf("%s %s %d", method, route, code))
	}, compress(mux)))
	srv.Config.ErrorLog = slog.NewLogLogger(log.Handler(), slog.LevelWarn)
	transport := &http.Transport{}
	c := &http.Client{Transport: transport, Timeout: 10 * time.Second}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		srv.Close()
	})

	t.Run("a valid X-Request-ID is kept, in the answer and for the handler", func(t *testing.T) {
		for _, id := range []string{"abc-123", "A.b_c:d", strings.Repeat("x", 128)} {
			r := get(t, c, srv.URL+"/id", "X-Request-ID", id)
			require.Equal(t, id, r.header.Get("X-Request-ID"))
			require.Equal(t, id, string(r.body))
		}
	})
	t.Run("an invalid X-Request-ID is replaced, and a missing one made", func(t *testing.T) {
		seen := map[string]bool{}
		for _, id := range []string{"", "has space", "semi;colon", strings.Repeat("x", 129), "é"} {
			r := get(t, c, srv.URL+"/id", "X-Request-ID", id)
			got := r.header.Get("X-Request-ID")
			require.Regexp(t, `^[0-9a-f]{24}$`, got, "for %q", id)
			require.Equal(t, got, string(r.body))
			require.False(t, seen[got], "request ids repeat")
			seen[got] = true
		}
		r := get(t, c, srv.URL+"/id")
		require.Regexp(t, `^[0-9a-f]{24}$`, r.header.Get("X-Request-ID"))
	})
	t.Run("X-Process-Time says how long the answer took, in seconds", func(t *testing.T) {
		r := get(t, c, srv.URL+"/slow")
		d, err := strconv.ParseFloat(r.header.Get("X-Process-Time"), 64)
		require.NoError(t, err, r.header.Get("X-Process-Time"))
		require.GreaterOrEqual(t, d, 0.25)
		require.Less(t, d, 5.0)
		r = get(t, c, srv.URL+"/nowhere")
		require.NotEmpty(t, r.header.Get("X-Process-Time"), "on an error answer too")
	})
	t.Run("a request slower than the limit is a warning, a fast one is not", func(t *testing.T) {
		r := get(t, c, srv.URL+"/slow", "X-Request-ID", "slow-one")
		require.Equal(t, http.StatusOK, r.status)
		require.Eventually(t, func() bool { return strings.Contains(logs.String(), `level=WARN msg="slow request"`) }, time.Second, 5*time.Millisecond)
		line := logLine(logs.String(), "request_id=slow-one")
		require.Contains(t, line, `level=WARN msg="slow request" method=GET path=/slow`)
		get(t, c, srv.URL+"/id", "X-Request-ID", "fast-one")
		require.Contains(t, logLine(logs.String(), "request_id=fast-one"), "level=INFO msg=request")
	})
	t.Run("the route and status of every request are recorded", func(t *testing.T) {
		get(t, c, srv.URL+"/id")
		get(t, c, srv.URL+"/nowhere")
		mu.Lock()
		defer mu.Unlock()
		require.Contains(t, recorded, "GET /id 200")
		require.Contains(t, recorded, "GET unmatched 404")
	})
	t.Run("a panic is a 500 problem, logged with its stack, and the server serves on", func(t *testing.T) {
		r := get(t, c, srv.URL+"/panic", "X-Request-ID", "panicky", "Accept-Encoding", "gzip")
		require.Equal(t, http.StatusInternalServerError, r.status)
		p := r.problem(t)
		require.Equal(t, problemTypePrefix+"internal-error", p.Type)
		require.Equal(t, "panicky", p.RequestID)
		require.NotContains(t, string(r.body), "broken", "the panic is no business of the client's")
		line := logLine(logs.String(), `msg="panic serving request"`)
		require.Contains(t, line, "level=ERROR")
		require.Contains(t, line, `panic="the handler is broken"`)
		require.Contains(t, line, "middleware_test.go", "the stack is logged")
		require.Contains(t, line, "request_id=panicky")
		r = get(t, c, srv.URL+"/id")
		require.Equal(t, http.StatusOK, r.status)
	})
	t.Run("a panic after the answer began cuts the answer short", func(t *testing.T) {
		for _, tc := range []struct{ path, encoding string }{
			{"/panic-after-writing", "identity"}, {"/panic-after-flushing", "identity"}, {"/panic-after-flushing", "gzip"},
		} {
			req, err := http.NewRequest("GET", srv.URL+tc.path, nil)
			require.NoError(t, err)
			req.Header.Set("Accept-Encoding", tc.encoding)
			resp, err := c.Do(req)
			if err == nil {
				_, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			require.Error(t, err, "%s (%s): the client must not take a broken answer for a whole one", tc.path, tc.encoding)
			require.Equal(t, http.StatusOK, get(t, c, srv.URL+"/id").status)
		}
		require.Contains(t, logs.String(), `panic="the handler broke midway"`)
		require.Contains(t, logs.String(), `level=WARN msg="request aborted" method=GET path=/panic-after-flushing`)
	})
	t.Run("a panic while gzip holds the answer back is still a 500 problem", func(t *testing.T) {
		r := get(t, c, srv.URL+"/panic-after-writing", "Accept-Encoding", "gzip")
		require.Equal(t, http.StatusInternalServerError, r.status)
		r.problem(t)
		require.NotContains(t, string(r.body), "partial answer")
	})
	t.Run("http.ErrAbortHandler aborts quietly", func(t *testing.T) {
		before := strings.Count(logs.String(), "panic serving request")
		_, err := c.Get(srv.URL + "/abort")
		require.Error(t, err)
		require.Equal(t, before, strings.Count(logs.String(), "panic serving request"))
	})
}

// logLine returns the line of the log that contains s, or "".
func logLine(log, s string) string {
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	return ""
}

// TestRequestIDThroughTheServer checks that the server's answers, problems
// included, carry the request id.
func TestRequestIDThroughTheServer(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", nil)
	r := ts.do("GET", "/users/999999", nil, "X-Request-ID", "trace-me")
	require.Equal(t, "trace-me", r.header.Get("X-Request-ID"))
	require.Equal(t, "trace-me", r.problem(t).RequestID, "a problem carries the request id, for the logs")
	require.NotEmpty(t, r.header.Get("X-Process-Time"))
	r = ts.do("GET", "/healthz", nil, "X-Request-ID", "not valid!")
	require.Regexp(t, `^[0-9a-f]{24}$`, r.header.Get("X-Request-ID"))
}

// TestSlowRequestsAreLogged checks SLOW_REQUEST in the server's log.
func TestSlowRequestsAreLogged(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", map[string]string{"SLOW_REQUEST": "200ms"})
	ts.do("GET", "/demo/upstream/x?latency_ms=250", nil, "X-Request-ID", "slow-1")
	ts.do("GET", "/healthz", nil, "X-Request-ID", "fast-1")
	require.Eventually(t, func() bool { return logLine(ts.logs.String(), "request_id=slow-1") != "" }, time.Second, 5*time.Millisecond)
	line := logLine(ts.logs.String(), "request_id=slow-1")
	require.Contains(t, line, `level=WARN msg="slow request" method=GET path=/demo/upstream/x route="GET /demo/upstream/{name}" status=200`)
	require.Empty(t, logLine(ts.logs.String(), "request_id=fast-1"), "LOG_LEVEL=warn: a fast request is not")
}

// TestCORS checks CORS_ORIGINS: preflights and headers for allowed,
// other and any origins.
func TestCORS(t *testing.T) {
	t.Parallel()
	const app = "https://app.example.com"
	ts := startServer(t, "sqlite", map[string]string{"CORS_ORIGINS": app + ", http://localhost:3000"})
	// A preflight is CORS's, not an operation of the API, so the document
	// does not describe it: it is sent past the validating client.
	preflight := func(origin, method string) *response {
		return request(t, unchecked(ts), "OPTIONS", ts.base+"/users", "Origin", origin, "Access-Control-Request-Method", method,
			"Access-Control-Request-Headers", "content-type, idempotency-key")
	}
	t.Run("a preflight from an allowed origin is 204 with the allow headers", func(t *testing.T) {
		r := preflight(app, "POST")
		require.Equal(t, http.StatusNoContent, r.status)
		require.Empty(t, r.body)
		require.Equal(t, app, r.header.Get("Access-Control-Allow-Origin"))
		require.Contains(t, r.header.Get("Access-Control-Allow-Methods"), "POST")
		require.Contains(t, r.header.Get("Access-Control-Allow-Methods"), "DELETE")
		require.Contains(t, r.header.Get("Access-Control-Allow-Headers"), "Content-Type")
		require.Contains(t, r.header.Get("Access-Control-Allow-Headers"), "Idempotency-Key")
		require.Contains(t, r.header.Get("Access-Control-Allow-Headers"), "X-Client-ID")
		require.NotEmpty(t, r.header.Get("Access-Control-Max-Age"))
		require.Contains(t, r.header.Values("Vary"), "Origin")
		require.Equal(t, "http://localhost:3000", preflight("http://localhost:3000", "GET").header.Get("Access-Control-Allow-Origin"))
	})
	t.Run("an allowed origin's request gets its origin and the exposed headers", func(t *testing.T) {
		r := ts.do("GET", "/users", nil, "Origin", app)
		require.Equal(t, http.StatusOK, r.status)
		require.Equal(t, app, r.header.Get("Access-Control-Allow-Origin"))
		for _, h := range []string{"RateLimit", "Retry-After", "X-Request-ID", "Idempotent-Replayed"} {
			require.Contains(t, r.header.Get("Access-Control-Expose-Headers"), h)
		}
		require.Contains(t, r.header.Values("Vary"), "Origin")
	})
	t.Run("another origin gets no CORS headers", func(t *testing.T) {
		for _, origin := range []string{"https://evil.example.com", "https://app.example.com.evil.com", "http://app.example.com", "null"} {
			r := preflight(origin, "POST")
			require.NotEqual(t, http.StatusNoContent, r.status, origin)
			r.problem(t)
			r2 := ts.do("GET", "/users", nil, "Origin", origin)
			require.Equal(t, http.StatusOK, r2.status)
			for _, r := range []*response{r, r2} {
				for k := range r.header {
					require.False(t, strings.HasPrefix(k, "Access-Control-"), "%s got %s", origin, k)
				}
				require.Contains(t, r.header.Values("Vary"), "Origin", "a cache must not give one origin's answer to another")
			}
		}
	})
	t.Run("a request without Origin gets no CORS headers", func(t *testing.T) {
		r := ts.do("GET", "/users", nil)
		require.Empty(t, r.header.Get("Access-Control-Allow-Origin"))
	})
	t.Run("* allows any origin", func(t *testing.T) {
		ts := startServer(t, "sqlite", map[string]string{"CORS_ORIGINS": "*"})
		r := request(t, unchecked(ts), "OPTIONS", ts.base+"/accounts", "Origin", "https://anyone.example", "Access-Control-Request-Method", "POST")
		require.Equal(t, http.StatusNoContent, r.status)
		require.Equal(t, "*", r.header.Get("Access-Control-Allow-Origin"))
		r = ts.do("GET", "/healthz", nil, "Origin", "https://anyone.example")
		require.Equal(t, "*", r.header.Get("Access-Control-Allow-Origin"))
	})
	t.Run("without CORS_ORIGINS there are no CORS headers", func(t *testing.T) {
		ts := startServer(t, "sqlite", nil)
		r := ts.do("OPTIONS", "/users", nil, "Origin", app, "Access-Control-Request-Method", "POST")
		require.Equal(t, http.StatusMethodNotAllowed, r.status)
		require.Empty(t, r.header.Get("Access-Control-Allow-Origin"))
	})
}

// unchecked returns a client of ts that does not check answers against
// the document.
func unchecked(ts *testServer) *http.Client {
	return &http.Client{Transport: ts.client.Transport.(*validatingTransport).next, Timeout: 10 * time.Second}
}

// rateLimitField matches the RateLimit header of RATE_LIMIT=5/min, and
// rateLimitPolicy is its RateLimit-Policy.
var (
	rateLimitField  = regexp.MustCompile(`^"per-client";r=(\d+);t=(\d+)$`)
	rateLimitPolicy = `"per-client";q=5;w=60`
)

// TestRateLimit checks RATE_LIMIT per client, its 429, and the routes it
// leaves alone.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", map[string]string{"RATE_LIMIT": "5/min"})
	for i := range 5 {
		r := ts.do("GET", "/users", nil, "X-Client-ID", "alice")
		require.Equal(t, http.StatusOK, r.status, "request %d", i+1)
		require.Equal(t, rateLimitPolicy, r.header.Get("RateLimit-Policy"))
		m := rateLimitField.FindStringSubmatch(r.header.Get("RateLimit"))
		require.NotNil(t, m, r.header.Get("RateLimit"))
		require.Equal(t, strconv.Itoa(4-i), m[1], "remaining after request %d", i+1)
	}
	t.Run("the 6th request of a client is 429 with Retry-After, RateLimit and a problem", func(t *testing.T) {
		r := ts.do("GET", "/users", nil, "X-Client-ID", "alice")
		require.Equal(t, http.StatusTooManyRequests, r.status)
		retry, err := strconv.Atoi(r.header.Get("Retry-After"))
		require.NoError(t, err)
		require.True(t, retry >= 1 && retry <= 60, "Retry-After %d", retry)
		require.Equal(t, rateLimitPolicy, r.header.Get("RateLimit-Policy"))
		m := rateLimitField.FindStringSubmatch(r.header.Get("RateLimit"))
		require.NotNil(t, m, r.header.Get("RateLimit"))
		require.Equal(t, "0", m[1])
		p := r.problem(t)
		require.Equal(t, problemTypePrefix+"rate-limited", p.Type)
		require.Contains(t, string(r.body), `"violated-policies":["per-client"]`)
		require.Equal(t, "/users", p.Instance, "a 429 names its request as every problem does")
		require.NotEmpty(t, p.RequestID)
		require.Equal(t, r.header.Get("X-Request-ID"), p.RequestID)
		require.Equal(t, fmt.Sprintf("quota %q exceeded; retry after %d s", "per-client", retry), p.Detail)
	})
	t.Run("every route of the client is limited, unknown paths too", func(t *testing.T) {
		for _, path := range []string{"/users/1", "/aggregate", "/no-such-path"} {
			r := ts.do("GET", path, nil, "X-Client-ID", "alice")
			require.Equal(t, http.StatusTooManyRequests, r.status, path)
		}
		r := ts.do("POST", "/users", userInput{Username: "ann", Email: "ann@example.com", FullName: "Ann"}, "X-Client-ID", "alice")
		require.Equal(t, http.StatusTooManyRequests, r.status)
	})
	t.Run("another client is not affected", func(t *testing.T) {
		for _, id := range []string{"bob", "ALICE", "alice2"} {
			r := ts.do("GET", "/users", nil, "X-Client-ID", id)
			require.Equal(t, http.StatusOK, r.status, id)
		}
		r := ts.do("GET", "/users", nil) // by its address
		require.Equal(t, http.StatusOK, r.status)
	})
	t.Run("operational routes are never limited", func(t *testing.T) {
		for range 10 {
			for _, path := range []string{"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/db-pool-status", "/demo/upstream/x", "/docs/problems/rate-limited"} {
				r := ts.do("GET", path, nil, "X-Client-ID", "alice")
				require.Less(t, r.status, 400, path)
				require.Empty(t, r.header.Get("RateLimit"), path)
			}
		}
	})
	t.Run("the decisions are counted in /metrics", func(t *testing.T) {
		r := ts.do("GET", "/metrics", nil)
		require.Regexp(t, `ratelimit_decisions_total\{outcome="denied"\} [1-9]`, string(r.body))
		require.Regexp(t, `ratelimit_decisions_total\{outcome="allowed"\} [1-9]`, string(r.body))
	})
}

// TestRateLimitBehindAProxy checks that X-Forwarded-For names the client
// only when it comes from TRUSTED_PROXIES.
func TestRateLimitBehindAProxy(t *testing.T) {
	t.Parallel()
	t.Run("from a trusted proxy, each forwarded address has its own quota", func(t *testing.T) {
		ts := startServer(t, "sqlite", map[string]string{"RATE_LIMIT": "2/min", "TRUSTED_PROXIES": "127.0.0.0/8"})
		for range 2 {
			require.Equal(t, http.StatusOK, ts.do("GET", "/users", nil, "X-Forwarded-For", "203.0.113.7").status)
		}
		require.Equal(t, http.StatusTooManyRequests, ts.do("GET", "/users", nil, "X-Forwarded-For", "203.0.113.7").status)
		require.Equal(t, http.StatusOK, ts.do("GET", "/users", nil, "X-Forwarded-For", "203.0.113.8").status)
		require.Equal(t, http.StatusOK, ts.do("GET", "/users", nil, "X-Forwarded-For", "198.51.100.1, 203.0.113.9").status,
			"the rightmost untrusted hop is the client")
		r := ts.do("GET", "/users", nil, "X-Forwarded-For", "unknown")
		require.Equal(t, http.StatusBadRequest, r.status)
		require.Equal(t, problemTypePrefix+"bad-request", r.problem(t).Type)
	})
	t.Run("from anyone else, X-Forwarded-For is not believed", func(t *testing.T) {
		ts := startServer(t, "sqlite", map[string]string{"RATE_LIMIT": "2/min"})
		for i, ip := range []string{"203.0.113.1", "203.0.113.2"} {
			require.Equal(t, http.StatusOK, ts.do("GET", "/users", nil, "X-Forwarded-For", ip).status, i)
		}
		require.Equal(t, http.StatusTooManyRequests, ts.do("GET", "/users", nil, "X-Forwarded-For", "203.0.113.3").status)
	})
}
