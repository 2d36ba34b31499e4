package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/ratelimit"
)

// loadtest runs the command with args against nothing but what they name,
// and returns its JSON report.
func loadtest(t *testing.T, ctx context.Context, args ...string) report {
	t.Helper()
	rep, err := loadtestErr(t, ctx, args...)
	require.NoError(t, err)
	return rep
}

// loadtestErr is loadtest for runs that may fail once they have
// reported.
func loadtestErr(t *testing.T, ctx context.Context, args ...string) (report, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(ctx, append([]string{"-json"}, args...), &out, &errOut, false)
	require.NotErrorIs(t, err, errUsage, "stderr: %s", errOut.String())
	var rep report
	require.NoError(t, json.Unmarshal(out.Bytes(), &rep), "stdout: %s\nstderr: %s", out.String(), errOut.String())
	return rep, err
}

// serve starts an httptest server of h, closed when the test ends.
func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// ms converts a duration to the report's milliseconds.
func msOf(d time.Duration) float64 { return float64(d) / 1e6 }

// TestClosedLoopPercentiles serves a known latency distribution, chosen by
// the request's number so that it is exact: 55% of the requests are
// answered at once, 40% after 10ms and 5% after 40ms. With one connection
// the loop sees each request alone, so the median is an immediate answer,
// p90 one of the 10ms ones and p99 one of the 40ms ones. The upper margins
// allow for a busy machine (go test runs packages in parallel) while still
// telling the three kinds of answer apart.
func TestClosedLoopPercentiles(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch i := (n.Add(1) - 1) % 20; {
		case i < 11:
		case i < 19:
			time.Sleep(10 * time.Millisecond)
		default:
			time.Sleep(40 * time.Millisecond)
		}
		fmt.Fprintln(w, "ok")
	})
	rep := loadtest(t, context.Background(), "-c", "1", "-n", "200", "-duration", "0", srv.URL)
	require.EqualValues(t, 200, rep.Answered)
	require.Equal(t, map[string]int64{"200": 200}, rep.Status)
	l := rep.LatencyMs
	require.Less(t, l.P50, msOf(9*time.Millisecond), "p50 is an immediate answer")
	require.GreaterOrEqual(t, l.P90, msOf(10*time.Millisecond)*(1-RelativeError), "p90 is a 10ms answer")
	require.Less(t, l.P90, msOf(35*time.Millisecond), "p90 is a 10ms answer")
	require.GreaterOrEqual(t, l.P99, msOf(40*time.Millisecond)*(1-RelativeError), "p99 is a 40ms answer")
	require.Less(t, l.P99, msOf(100*time.Millisecond), "p99 is a 40ms answer")
	require.GreaterOrEqual(t, l.Max, l.P999)
	require.GreaterOrEqual(t, l.P999, l.P99)
	require.Zero(t, rep.Failed)
}

// arrivals records when each request reached a server.
type arrivals struct {
	mu    sync.Mutex
	times []time.Time
}

func (a *arrivals) add() {
	a.mu.Lock()
	a.times = append(a.times, time.Now())
	a.mu.Unlock()
}

func (a *arrivals) between(from, to time.Time) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	n := 0
	for _, at := range a.times {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// TestOpenLoopArrivalRate checks that requests reach the server at the
// rate asked, evenly, not in bursts: 200/s for 1.5s is 300 requests, every
// one of them accounted for, and each half second of the run holds about
// 100 of them. (A closed loop of 8 connections would send 1,600 a second
// to this server; the margin allows for a busy machine's timers.)
func TestOpenLoopArrivalRate(t *testing.T) {
	t.Parallel()
	var got arrivals
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		got.add()
		time.Sleep(5 * time.Millisecond) // the answers overlap: a closed loop of 1 would fall behind
	})
	start := time.Now()
	rep := loadtest(t, context.Background(), "-rate", "200", "-c", "8", "-duration", "1.5s", srv.URL)
	require.Equal(t, "open", rep.Loop)
	require.EqualValues(t, 300, rep.Answered+rep.Failed+rep.Canceled+rep.Dropped, "every request due in 1.5s at 200/s is accounted for")
	require.LessOrEqual(t, rep.Dropped, int64(15), "a few may be dropped at the end when the machine is busy: the timers of their workers fire after the run's")
	for from := time.Duration(0); from < 1500*time.Millisecond; from += 500 * time.Millisecond {
		n := got.between(start.Add(from), start.Add(from+500*time.Millisecond))
		require.InDelta(t, 100, n, 25, "arrivals from %v to %v", from, from+500*time.Millisecond)
	}
	require.InDelta(t, 200, rep.Throughput, 20)
}

// TestMaxRate checks that -max-rate caps the closed loop's throughput:
// 100 requests per second for one second (and the one token the bucket
// starts with), on 8 connections that could send thousands. A busy machine
// may send fewer, never more.
func TestMaxRate(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {})
	rep := loadtest(t, context.Background(), "-c", "8", "-max-rate", "100", "-duration", "1s", srv.URL)
	require.LessOrEqual(t, rep.Answered, int64(101))
	require.Greater(t, rep.Answered, int64(50))
	require.Equal(t, 100, rep.MaxRate)
}

// TestOpenLoopShowsStalls stalls the server for 300ms in the middle of a
// run. The open loop keeps its schedule: the requests due during the stall
// wait for a connection and are timed from their due time, so about 60 of
// 200 requests see up to 300ms and p90 is far above the server's usual
// answer time. A closed loop against the same stall records it only for
// the few requests in flight, and its p90 hides it (coordinated omission).
func TestOpenLoopShowsStalls(t *testing.T) {
	t.Parallel()
	stalling := func() http.HandlerFunc {
		var mu sync.Mutex
		var first time.Time
		return func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			if first.IsZero() {
				first = time.Now()
			}
			stallAt := first.Add(200 * time.Millisecond)
			mu.Unlock()
			if now := time.Now(); now.After(stallAt) && now.Before(stallAt.Add(300*time.Millisecond)) {
				time.Sleep(time.Until(stallAt.Add(300 * time.Millisecond)))
			}
		}
	}
	open := loadtest(t, context.Background(), "-rate", "200", "-c", "4", "-duration", "1s", serve(t, stalling()).URL)
	require.GreaterOrEqual(t, open.LatencyMs.P90, 100.0, "the stall shows in p90: %+v", open.LatencyMs)
	require.GreaterOrEqual(t, open.LatencyMs.Max, 250.0)
	require.Greater(t, open.Late, int64(30), "requests due during the stall were sent late")

	closed := loadtest(t, context.Background(), "-c", "4", "-duration", "1s", serve(t, stalling()).URL)
	require.GreaterOrEqual(t, closed.LatencyMs.Max, 250.0, "the closed loop saw the stall too")
	require.Less(t, closed.LatencyMs.P90, open.LatencyMs.P90/2, "but its p90 hides it")
}

// TestRateLimitBoundary runs a route limited to 50 requests per hour per
// client: exactly the first 50 pass, and every request after them is
// answered 429; with one connection the first 429 is request 51.
func TestRateLimitBoundary(t *testing.T) {
	t.Parallel()
	for _, c := range []string{"1", "8"} {
		t.Run("-c "+c, func(t *testing.T) {
			t.Parallel()
			lim, err := ratelimit.NewGCRA(ratelimit.PerHour(50), ratelimit.Options{})
			require.NoError(t, err)
			mw, err := ratelimit.Middleware(lim, ratelimit.KeyByIP())
			require.NoError(t, err)
			srv := httptest.NewServer(mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
			t.Cleanup(srv.Close)
			rep := loadtest(t, context.Background(), "-c", c, "-n", "80", "-duration", "0", srv.URL)
			require.Equal(t, map[string]int64{"200": 50, "429": 30}, rep.Status)
			if c == "1" {
				require.EqualValues(t, 51, rep.FirstOf["429"])
			}
		})
	}
}

// TestCleanStop stops runs against a server that never answers: by the
// context (as SIGINT and SIGTERM do) and by -duration. Each returns at
// once with a report that counts the requests in flight as canceled, and
// leaves no goroutine behind (TestMain checks).
func TestCleanStop(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })

	for _, tc := range []struct {
		name string
		args []string
	}{
		{"closed loop", []string{"-c", "16"}},
		{"open loop", []string{"-c", "16", "-rate", "1000"}},
	} {
		t.Run(tc.name+", by the context", func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(300*time.Millisecond, cancel)
			start := time.Now()
			rep, err := loadtestErr(t, ctx, append(tc.args, "-duration", "1h", srv.URL)...)
			require.ErrorIs(t, err, errNoAnswer)
			require.Less(t, time.Since(start), 2*time.Second)
			require.True(t, rep.Interrupted)
			require.EqualValues(t, 16, rep.Canceled, "the 16 requests in flight")
			require.Zero(t, rep.Answered)
			require.Zero(t, rep.Failed)
		})
		t.Run(tc.name+", by -duration", func(t *testing.T) {
			start := time.Now()
			rep, err := loadtestErr(t, context.Background(), append(tc.args, "-duration", "300ms", srv.URL)...)
			require.ErrorIs(t, err, errNoAnswer)
			require.Less(t, time.Since(start), 2*time.Second)
			require.False(t, rep.Interrupted)
			require.EqualValues(t, 16, rep.Canceled)
			if rep.Loop == "open" {
				require.InDelta(t, 300-16, rep.Dropped, 3, "due at 1000/s for 300ms, but only 16 could be in flight")
			}
		})
	}
}

// TestResponseFraming checks that the client reads every way a response
// can end, and keeps its connection when the response allows it.
func TestResponseFraming(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		method  string
		handler http.HandlerFunc
		conns   int64 // connections that 20 requests on 2 workers open
	}{
		{"Content-Length", "GET", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "hello") }, 2},
		{"chunked, with a trailer", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Sum")
			for range 3 {
				fmt.Fprint(w, strings.Repeat("x", 5000))
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Sum", "15000")
		}, 2},
		{"no body", "GET", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }, 2},
		{"HEAD", "HEAD", func(w http.ResponseWriter, r *http.Request) { w.Header().Set("Content-Length", "1000") }, 2},
		{"Connection: close", "GET", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close")
			fmt.Fprint(w, "bye")
		}, 20},
		{"a large body", "GET", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(bytes.Repeat([]byte("y"), 1<<20))
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var conns atomic.Int64
			srv := httptest.NewUnstartedServer(tc.handler)
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			t.Cleanup(srv.Close)
			rep := loadtest(t, context.Background(), "-c", "2", "-n", "20", "-duration", "0", "-method", tc.method, srv.URL+"/x?y=1")
			require.Zero(t, rep.Failed, "%+v", rep.Errors)
			require.EqualValues(t, 20, rep.Answered)
			require.Equal(t, tc.conns, conns.Load())
		})
	}
}

// TestSequence checks that -seq sends every URL in turn per iteration and
// reports the iteration's first failure as its status.
func TestSequence(t *testing.T) {
	t.Parallel()
	var a, b atomic.Int64
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/a":
			a.Add(1)
		case "/b":
			b.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	rep := loadtest(t, context.Background(), "-seq", "-c", "2", "-n", "10", "-duration", "0", srv.URL+"/a", srv.URL+"/b", srv.URL+"/a")
	require.Equal(t, map[string]int64{"503": 10}, rep.Status)
	require.EqualValues(t, 10, a.Load(), "an iteration stops at its first failure")
	require.EqualValues(t, 10, b.Load())

	a.Store(0)
	rep = loadtest(t, context.Background(), "-c", "2", "-n", "10", "-duration", "0", srv.URL+"/a", srv.URL+"/b")
	require.Equal(t, map[string]int64{"200": 5, "503": 5}, rep.Status, "without -seq, the URLs take turns")
}

// TestRequest checks what the server receives: the method, path and
// query, the headers given with -H (Host among them) and the body.
func TestRequest(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, uri, host, agent, token, body string
	}
	got := make(chan seen, 1)
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, r.Host, r.UserAgent(), r.Header.Get("X-Token"), string(b)}
	})
	loadtest(t, context.Background(), "-n", "1", "-c", "1", "-duration", "0", "-method", "PUT",
		"-H", "X-Token: abc", "-H", "Host: api.example", "-body", `{"a":1}`, srv.URL+"/p/q?x=1&y=%20")
	require.Equal(t, seen{"PUT", "/p/q?x=1&y=%20", "api.example", "asynckit-loadtest", "abc", `{"a":1}`}, <-got)
}

// TestFailures checks that requests without an answer are counted by
// kind, and that a run where none was answered is an error.
func TestFailures(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	rep, err := loadtestErr(t, context.Background(), "-c", "2", "-n", "5", "-duration", "0", "http://"+addr+"/")
	require.ErrorIs(t, err, errNoAnswer)
	require.EqualValues(t, 5, rep.Failed)
	require.Equal(t, []errorCount{{Error: "connection refused", Count: 5}}, rep.Errors)

	slow := serve(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/slow" {
			return
		}
		select {
		case <-time.After(time.Second):
		case <-r.Context().Done():
		}
	})
	rep = loadtest(t, context.Background(), "-c", "1", "-n", "3", "-duration", "0", "-timeout", "50ms", slow.URL+"/slow", slow.URL+"/fast")
	require.Equal(t, []errorCount{{Error: "timeout", Count: 2}}, rep.Errors)
	require.EqualValues(t, 1, rep.Answered)
}

// TestFlags checks that -h prints the usage and that every bad flag or
// argument is a usage error that says what is wrong.
func TestFlags(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	require.ErrorIs(t, run(context.Background(), []string{"-h"}, &out, &errOut, false), flag.ErrHelp)
	for _, want := range []string{"Usage: loadtest", "-rate", "-c", "coordinated omission", "-json"} {
		require.Contains(t, errOut.String(), want)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no URL"},
		{[]string{"-c", "0", "http://x/"}, "-c 0"},
		{[]string{"-rate", "-5", "http://x/"}, "-rate -5"},
		{[]string{"-rate", "NaN", "http://x/"}, "-rate NaN"},
		{[]string{"-rate", "10", "-max-rate", "5", "http://x/"}, "-max-rate caps the closed loop"},
		{[]string{"-duration", "0", "http://x/"}, "never end"},
		{[]string{"-timeout", "0s", "http://x/"}, "-timeout"},
		{[]string{"-n", "-1", "http://x/"}, "-n -1"},
		{[]string{"https://x/"}, "only http://"},
		{[]string{"http://u:p@x/"}, "without a user"},
		{[]string{"x/y"}, "only http://"},
		{[]string{"-H", "novalue", "http://x/"}, `"Name: value"`},
		{[]string{"-c", "many", "http://x/"}, "invalid value"},
		{[]string{"-bogus", "http://x/"}, "not defined"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), tc.args, &out, &errOut, false)
			require.ErrorIs(t, err, errUsage)
			require.Contains(t, errOut.String(), tc.want)
			require.Empty(t, out.String())
		})
	}
}

// TestTextReportAndProgress checks the text report and, on a terminal,
// the progress line, which is cleared before the report.
func TestTextReportAndProgress(t *testing.T) {
	t.Parallel()
	srv := serve(t, func(w http.ResponseWriter, r *http.Request) { time.Sleep(time.Millisecond) })
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"-c", "2", "-duration", "300ms", "-progress", "50ms", srv.URL}, &out, &errOut, true)
	require.NoError(t, err)
	for _, want := range []string{"closed loop, 2 connections", "answered", "200 × ", "p50 ", "p99.9 "} {
		require.Contains(t, out.String(), want)
	}
	require.Contains(t, errOut.String(), "answered")
	require.True(t, strings.HasSuffix(errOut.String(), "\r\033[K"), "the progress line is cleared: %q", errOut.String())

	errOut.Reset()
	require.NoError(t, run(context.Background(), []string{"-c", "1", "-n", "3", "-duration", "0", "-progress", "1ms", srv.URL}, &out, &errOut, false))
	require.Empty(t, errOut.String(), "no progress line off a terminal")
}
