package main

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

// The tests in this file run three instances of the server on one Postgres
// schema (and one Redis key prefix where they say so), each on its own
// listener, as behind a load balancer, and check that clients cannot tell
// them from one.

// get sends a GET without the test's require, for use from many
// goroutines at once, and reads the whole answer.
func (ts *testServer) get(path string, headers ...string) outcome {
	return ts.attempt("GET", path, nil, headers...)
}

// metric returns the value of the sample of /metrics that starts with
// name (with its labels, if any), or -1 when there is none.
func (ts *testServer) metric(t *testing.T, name string) float64 {
	t.Helper()
	r := ts.do("GET", "/metrics", nil)
	require.Equal(t, http.StatusOK, r.status)
	for line := range strings.SplitSeq(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			require.NoError(t, err, line)
			return f
		}
	}
	return -1
}

// TestClusterSharesOneRateLimit sends 200 requests of one client, spread
// round-robin over three instances that share Redis, with RATE_LIMIT
// 50/min: 50 pass, and the rest get 429 with Retry-After.
func TestClusterSharesOneRateLimit(t *testing.T) {
	t.Parallel()
	// REDIS_TIMEOUT is generous: a decision that fell back to an
	// instance's share on a busy machine would not be counted in Redis.
	cluster := startCluster(t, 3, true, map[string]string{"RATE_LIMIT": "50/min", "RATE_LIMIT_REPLICAS": "3", "REDIS_TIMEOUT": "5s", "LOG_LEVEL": "info"})
	for _, ts := range cluster {
		require.Contains(t, ts.logs.String(), `rate_limit="50/min per client, in redis, falling back to 1/3 of it per instance while Redis fails"`)
	}
	const requests = 200
	results := make([]outcome, requests)
	start := time.Now()
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range 8 {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < requests; i = int(next.Add(1) - 1) {
				results[i] = cluster[i%3].get("/users?limit=1", "X-Client-ID", "round-robin")
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	passed := 0
	for i, r := range results {
		require.NoError(t, r.err)
		switch r.status {
		case http.StatusOK:
			passed++
		case http.StatusTooManyRequests:
			retry, err := strconv.Atoi(r.header.Get("Retry-After"))
			require.NoError(t, err, "request %d: Retry-After %q", i, r.header.Get("Retry-After"))
			require.True(t, retry >= 1 && retry <= 60, "Retry-After %d", retry)
		default:
			t.Fatalf("request %d answered %d: %s", i, r.status, r.body)
		}
	}
	// GCRA gives one request back every 1.2 s: the requests normally take
	// well under that, and then exactly 50 pass.
	refills := int(elapsed / (1200 * time.Millisecond))
	require.GreaterOrEqual(t, passed, 50)
	require.LessOrEqual(t, passed, 50+refills, "in %v", elapsed)
	if refills == 0 {
		require.Equal(t, 50, passed)
	}
	for _, ts := range cluster {
		require.LessOrEqual(t, ts.metric(t, `ratelimit_store_outcomes_total{outcome="fell back"}`), 0.0, "every decision was Redis's")
	}
	t.Logf("%d of %d passed in %v", passed, requests, elapsed)
}

// TestClusterUserCacheIsCoherent updates a user 200 times through one
// instance while readers on the two others fetch it without pause through
// their caches (local copies in front of Redis). A read that starts after
// an update has been answered must see that version or a later one.
func TestClusterUserCacheIsCoherent(t *testing.T) {
	t.Parallel()
	cluster := startCluster(t, 3, true, map[string]string{"REDIS_TIMEOUT": "5s"})
	a := cluster[0]
	path, reads := checkCoherence(t, a, cluster[1:])
	var hits float64
	for _, ts := range cluster[1:] {
		hits += ts.metric(t, "cache_hits_total")
	}
	require.Positive(t, hits, "the readers were served from their caches")
	t.Logf("%d reads during 200 updates, %.0f from memory", reads, hits)

	t.Run("a deleted user is gone from every instance at once", func(t *testing.T) {
		for _, ts := range cluster {
			require.Equal(t, http.StatusOK, ts.do("GET", path, nil).status)
		}
		require.Equal(t, http.StatusNoContent, a.do("DELETE", path, nil).status)
		for _, ts := range cluster {
			require.Equal(t, http.StatusNotFound, ts.do("GET", path, nil).status)
		}
	})
	t.Run("search pages follow writes on every instance at once", func(t *testing.T) {
		for _, ts := range cluster {
			require.Equal(t, http.StatusOK, ts.do("GET", "/users?q=cold", nil).status)
		}
		r := a.do("POST", "/users", map[string]string{"username": "cold", "email": "cold@example.com", "full_name": "Cold"})
		require.Equal(t, http.StatusCreated, r.status)
		for _, ts := range cluster {
			var page struct{ Items []user }
			ts.do("GET", "/users?q=cold", nil).json(t, &page)
			require.Len(t, page.Items, 1, ts.base)
		}
	})
}

// TestClusterUserCacheWithoutRedis runs three instances on Postgres alone:
// each caches users in memory, and a write through one reaches the others
// by NOTIFY, within the bound the documentation gives.
func TestClusterUserCacheWithoutRedis(t *testing.T) {
	t.Parallel()
	cluster := startCluster(t, 3, false, map[string]string{"LOG_LEVEL": "info"})
	a, b := cluster[0], cluster[1]
	for _, ts := range cluster {
		line := ts.logs.String()
		require.Contains(t, line, `cache="memory, invalidated by Postgres NOTIFY"`)
		require.Contains(t, line, `rate_limit="1000000/s per client, in memory, per instance"`, "the startup line says the limits are per instance")
	}
	r := a.do("POST", "/users", map[string]string{"username": "far", "email": "far@example.com", "full_name": "Far 0"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	var u user
	r.json(t, &u)
	path := fmt.Sprintf("/users/%d", u.ID)
	for range 3 {
		require.Equal(t, http.StatusOK, b.do("GET", path, nil).status)
	}
	require.Positive(t, b.metric(t, "cache_hits_total"), "b caches the user")
	for i := 1; i <= 20; i++ {
		r := a.do("PUT", path, map[string]string{"username": "far", "email": "far@example.com", "full_name": fmt.Sprintf("Far %d", i)})
		require.Equal(t, http.StatusOK, r.status)
		var v user
		r.json(t, &v)
		start := time.Now()
		for {
			var got user
			b.do("GET", path, nil).json(t, &got)
			if got.Version >= v.Version {
				break
			}
			require.Less(t, time.Since(start), 2*time.Second, "b still serves version %d of %d", got.Version, v.Version)
			time.Sleep(time.Millisecond)
		}
	}
}

// TestClusterTasks submits a demo task through one instance and follows it
// on another to done, reconnecting to the third halfway with the last id
// it saw; and cancels a running task through an instance that does not
// run it.
func TestClusterTasks(t *testing.T) {
	t.Parallel()
	cluster := startCluster(t, 3, false, map[string]string{"TASK_POLL": "20ms"})
	a, b, c := cluster[0], cluster[1], cluster[2]

	t.Run("a task submitted through A is followed on B and C to done", func(t *testing.T) {
		task := a.submit(t, map[string]any{"kind": "demo", "payload": map[string]int{"steps": 8, "step_ms": 100}})
		s := b.openEvents(t, task.ID)
		var seen []sseEvent
		for len(seen) < 2 {
			if ev := s.next(t); ev.Comment == "" {
				seen = append(seen, ev)
			}
		}
		s.close()
		// The client reconnects, as EventSource does, to another instance.
		s = c.openEvents(t, task.ID, "Last-Event-ID", strconv.FormatUint(seen[len(seen)-1].ID, 10))
		rest := s.untilDone(t)
		require.Greater(t, rest[0].ID, seen[len(seen)-1].ID, "the stream resumes after the last event seen, without repeating it")
		prev := -1
		for _, ev := range append(seen, rest...) {
			got := c.info(t, ev.Data)
			require.Equal(t, task.ID, got.ID)
			require.EqualValues(t, ev.ID, got.Version, "an event's id is the task's version")
			require.GreaterOrEqual(t, got.Progress.Percent, prev, "progress never goes back")
			prev = got.Progress.Percent
		}
		final := c.info(t, rest[len(rest)-1].Data)
		require.Equal(t, taskqueue.StatusSucceeded, final.Status)
		require.JSONEq(t, `{"processed":true,"data":{"steps":8}}`, string(final.Result))
		for _, ts := range cluster {
			var got taskqueue.Info
			ts.do("GET", "/tasks/"+task.ID, nil).json(t, &got)
			require.Equal(t, final.Version, got.Version, "every instance answers for the task")
			r := ts.do("GET", "/tasks/"+task.ID+"/events", nil, "Last-Event-ID", strconv.FormatInt(final.Version, 10))
			require.Equal(t, http.StatusNoContent, r.status, "after done, every instance says nothing more will come")
		}
	})

	t.Run("a running task is cancelled through an instance that does not run it", func(t *testing.T) {
		task := a.submit(t, map[string]any{"kind": "demo", "payload": map[string]int{"steps": 100, "step_ms": 100}})
		s := b.openEvents(t, task.ID)
		for {
			ev := s.next(t)
			if ev.Comment == "" && b.info(t, ev.Data).Status == taskqueue.StatusRunning {
				break
			}
		}
		start := time.Now()
		r := c.do("DELETE", "/tasks/"+task.ID, nil)
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		evs := s.untilDone(t)
		final := b.info(t, evs[len(evs)-1].Data)
		require.Equal(t, taskqueue.StatusCanceled, final.Status)
		require.Less(t, final.Progress.Percent, 100)
		require.Less(t, time.Since(start), 5*time.Second, "the cancel reached the running handler at once")
		var listed struct{ Items []taskqueue.Info }
		c.do("GET", "/tasks?status=canceled", nil).json(t, &listed)
		require.Len(t, listed.Items, 1)
		require.Equal(t, task.ID, listed.Items[0].ID)
	})
}
