package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/taskqueue"
)

// TestClusterTransfers sends the 2,000 concurrent transfers of
// TestConcurrentTransfersConserveMoney to three instances, each duplicate
// to another instance than its first copy: money is conserved and each
// Idempotency-Key moved money once.
func TestClusterTransfers(t *testing.T) {
	t.Parallel()
	concurrentTransfers(t, startCluster(t, 3, true, nil))
}

// startProcess runs the server as a real process, with env on top of a
// bare environment, and returns its base URL and the process, which is
// killed when the test ends if it still runs.
func startProcess(t *testing.T, env map[string]string) (string, *exec.Cmd) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0])
	// GORACE: a binary built with -race otherwise sleeps a second at exit.
	cmd.Env = []string{runServerEnv + "=1", "PATH=" + os.Getenv("PATH"), "HOME=" + dir, "GORACE=atexit_sleep_ms=0",
		"ADDR=127.0.0.1:0", "DB_PATH=" + filepath.Join(dir, "server.db"), "UPLOAD_DIR=" + filepath.Join(dir, "uploads"), "LOG_LEVEL=info"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	exited := make(chan struct{})
	var (
		mu  sync.Mutex
		log []string
	)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			log = append(log, sc.Text())
			mu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			mu.Lock()
			t.Logf("process log:\n%s", strings.Join(log, "\n"))
			mu.Unlock()
		}
	})
	addr := regexp.MustCompile(`addr=(http://[0-9.:]+)`)
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l := <-lines:
			if m := addr.FindStringSubmatch(l); m != nil {
				return m[1], cmd
			}
		case <-exited:
			t.Fatal("the server exited before listening")
		case <-timeout:
			t.Fatal("the server did not start")
		}
	}
}

// TestClusterTaskOfAKilledInstanceFinishesElsewhere runs a demo task on an
// instance that is a real process, kills it with SIGKILL halfway, and
// sees the task run again, and finish, on another instance once its
// lease has lapsed.
func TestClusterTaskOfAKilledInstanceFinishesElsewhere(t *testing.T) {
	t.Parallel()
	const lease = time.Second
	env := clusterEnv(t, false, map[string]string{"TASK_LEASE": lease.String(), "WORKERS": "1", "TASK_POLL": "50ms"})
	base, cmd := startProcess(t, env)
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Post(base+"/tasks", "application/json", strings.NewReader(`{"kind":"demo","payload":{"steps":20,"step_ms":100}}`))
	require.NoError(t, err)
	var task taskqueue.Info
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&task))
	resp.Body.Close()
	require.Eventually(t, func() bool {
		resp, err := client.Get(base + "/tasks/" + task.ID)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var got taskqueue.Info
		return json.NewDecoder(resp.Body).Decode(&got) == nil && got.Status == taskqueue.StatusRunning && got.Progress.Percent >= 10
	}, 20*time.Second, 10*time.Millisecond, "the process runs the task")

	// Another instance, which could not have claimed the task: it was
	// running already.
	b := startServer(t, "", env)
	killed := time.Now()
	require.NoError(t, cmd.Process.Kill())
	s := b.openEvents(t, task.ID)
	evs := s.untilDone(t)
	final := b.info(t, evs[len(evs)-1].Data)
	took := time.Since(killed)
	require.Equal(t, taskqueue.StatusSucceeded, final.Status, final.Error)
	require.Equal(t, 2, final.Attempt, "the attempt of the killed instance was counted, and a second one ran")
	require.JSONEq(t, `{"processed":true,"data":{"steps":20}}`, string(final.Result))
	require.Less(t, took, lease+15*time.Second)
	t.Logf("the task finished on another instance %v after the kill", took)
}

// TestClusterRedisCut cuts the three instances' link to Redis while
// requests flow, and restores it. Meanwhile nothing answers 500, reads are
// served from the database, writes go through, /readyz names Redis, and
// each instance limits a client to its share of RATE_LIMIT (Fallback with
// RATE_LIMIT_REPLICAS); afterwards Redis decides the limits again and the
// cache serves users again, coherently.
func TestClusterRedisCut(t *testing.T) {
	t.Parallel()
	base, prefix := testenv.Redis(t)
	_, proxy := testenv.RedisThroughProxy(t, base, nil)
	cluster := startCluster(t, 3, false, map[string]string{
		"REDIS_URL": fmt.Sprintf("redis://%s/%d", proxy.Addr(), base.Options().DB), "REDIS_PREFIX": prefix,
		"RATE_LIMIT": "300/min", "RATE_LIMIT_REPLICAS": "3", "REDIS_TIMEOUT": "250ms"})
	a, b, c := cluster[0], cluster[1], cluster[2]
	r := a.do("POST", "/users", map[string]string{"username": "cut", "email": "cut@example.com", "full_name": "Cut 0"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	var u user
	r.json(t, &u)
	path := fmt.Sprintf("/users/%d", u.ID)

	// Readers on every instance, each request under a client of its own so
	// that their limits never bind, and a writer through A.
	var (
		acked    atomic.Int64
		requests atomic.Int64
		mu       sync.Mutex
		bad      []string
		wg       sync.WaitGroup
		n        atomic.Int64
	)
	acked.Store(u.Version)
	stop := make(chan struct{})
	ack := func(v int64) {
		for cur := acked.Load(); v > cur && !acked.CompareAndSwap(cur, v); cur = acked.Load() {
		}
	}
	fail := func(format string, args ...any) {
		mu.Lock()
		bad = append(bad, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	for i := range 6 {
		ts := cluster[i%3]
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				floor := acked.Load()
				got := ts.get(path, "X-Client-ID", fmt.Sprintf("reader-%d", n.Add(1)))
				var v user
				if got.err != nil || got.status != http.StatusOK || json.Unmarshal(got.body, &v) != nil || v.Version < floor {
					fail("%s: GET %s answered %d %s (%v), version %d after %d", ts.base, path, got.status, got.body, got.err, v.Version, floor)
				}
				requests.Add(1)
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Go(func() {
		for i := 1; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			got := a.attempt("PUT", path, map[string]string{"username": "cut", "email": "cut@example.com", "full_name": fmt.Sprintf("Cut %d", i)},
				"X-Client-ID", fmt.Sprintf("writer-%d", i))
			var v user
			if got.err != nil || got.status != http.StatusOK || json.Unmarshal(got.body, &v) != nil {
				fail("%s: PUT %s answered %d %s (%v)", a.base, path, got.status, got.body, got.err)
				continue
			}
			ack(v.Version)
		}
	})
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	time.Sleep(300 * time.Millisecond)

	proxy.Cut()
	t.Run("while Redis is cut", func(t *testing.T) {
		for _, ts := range cluster {
			r := ts.do("GET", "/readyz", nil)
			require.Equal(t, http.StatusServiceUnavailable, r.status)
			require.Contains(t, r.problem(t).Detail, "redis")
		}
		t.Run("a write goes through and every instance serves it", func(t *testing.T) {
			v := a.put(t, path, "Cut during")
			ack(v.Version)
			for _, ts := range cluster {
				var got user
				ts.do("GET", path, nil).json(t, &got)
				require.GreaterOrEqual(t, got.Version, v.Version, ts.base)
			}
		})
		t.Run("each instance admits a client's share of the limit", func(t *testing.T) {
			start := time.Now()
			passed := 0
			for range 150 {
				r := b.do("GET", "/users?limit=1", nil, "X-Client-ID", "during-the-cut")
				switch r.status {
				case http.StatusOK:
					passed++
				case http.StatusTooManyRequests:
					require.NotEmpty(t, r.header.Get("Retry-After"))
				default:
					t.Fatalf("answered %d: %s", r.status, r.body)
				}
			}
			// 300/min with 3 replicas: each request costs 3 of a burst of
			// 300, and 5 units come back each second.
			refills := int(time.Since(start).Seconds() * 5 / 3)
			require.GreaterOrEqual(t, passed, 100)
			require.LessOrEqual(t, passed, 100+refills+1)
			require.Positive(t, b.metric(t, `ratelimit_store_outcomes_total{outcome="fell back"}`))
			require.Equal(t, 1.0, b.metric(t, "ratelimit_breaker_open"))
			require.Positive(t, b.metric(t, `redis_errors_total{part="limits"}`))
		})
		time.Sleep(300 * time.Millisecond) // requests flow without Redis a while longer
	})

	proxy.Restore()
	t.Run("once Redis is back", func(t *testing.T) {
		for _, ts := range cluster {
			require.Eventually(t, func() bool { return ts.do("GET", "/readyz", nil).status == http.StatusOK }, 10*time.Second, 20*time.Millisecond)
		}
		t.Run("Redis decides the limits again", func(t *testing.T) {
			for _, ts := range cluster {
				before := ts.metric(t, `ratelimit_store_outcomes_total{outcome="decided"}`)
				require.Eventually(t, func() bool {
					ts.do("GET", "/users?limit=1", nil, "X-Client-ID", "after-the-cut")
					return ts.metric(t, "ratelimit_breaker_open") == 0 && ts.metric(t, `ratelimit_store_outcomes_total{outcome="decided"}`) > before
				}, 10*time.Second, 50*time.Millisecond, ts.base)
			}
		})
		t.Run("users are served from the cache again, and coherently", func(t *testing.T) {
			// Each instance reads from the database for redisGrace after
			// it last saw Redis fail, or saw its invalidations resubscribe.
			hits := c.metric(t, "cache_hits_total")
			deadline := time.Now().Add(redisGrace + 15*time.Second)
			for c.metric(t, "cache_hits_total") <= hits {
				require.True(t, time.Now().Before(deadline), "the cache was not used again")
				v := a.put(t, path, "After the cut")
				ack(v.Version)
				for _, ts := range cluster[1:] {
					for range 3 {
						var got user
						ts.do("GET", path, nil).json(t, &got)
						require.GreaterOrEqual(t, got.Version, v.Version, ts.base)
					}
				}
				time.Sleep(100 * time.Millisecond)
			}
		})
	})
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, bad)
	t.Logf("%d reads while Redis went and came back", requests.Load())
}

// put replaces the user at path's full name and returns the user.
func (ts *testServer) put(t *testing.T, path, name string) user {
	t.Helper()
	r := ts.do("PUT", path, map[string]string{"username": "cut", "email": "cut@example.com", "full_name": name})
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var v user
	r.json(t, &v)
	return v
}
