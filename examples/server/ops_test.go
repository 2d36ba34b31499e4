package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/faultproxy"
)

func TestOpsRoutes(t *testing.T) {
	t.Parallel()
	forEachDB(t, nil, func(t *testing.T, ts *testServer) {
		t.Run("healthz and readyz answer ok", func(t *testing.T) {
			for _, p := range []string{"/healthz", "/readyz"} {
				r := ts.do("GET", p, nil)
				require.Equal(t, http.StatusOK, r.status)
				var h health
				r.json(t, &h)
				require.Equal(t, "ok", h.Status)
			}
		})
		t.Run("db-pool-status reports the pool", func(t *testing.T) {
			var st poolStatus
			ts.do("GET", "/db-pool-status", nil).json(t, &st)
			require.Positive(t, st.MaxOpen)
			require.NotEmpty(t, st.Database)
		})
		t.Run("metrics count requests by route and code, and the cache", func(t *testing.T) {
			r := ts.do("POST", "/users", map[string]string{"username": "metric", "email": "m@example.com", "full_name": "M"})
			var u user
			r.json(t, &u)
			for range 3 {
				require.Equal(t, http.StatusOK, ts.do("GET", fmt.Sprintf("/users/%d", u.ID), nil).status)
			}
			require.Equal(t, http.StatusNotFound, ts.do("GET", "/users/999999", nil).status)
			m := string(ts.do("GET", "/metrics", nil).body)
			for _, want := range []string{
				`http_requests_total{code="201",method="POST",route="POST /users"} 1`,
				`http_requests_total{code="200",method="GET",route="GET /users/{id}"} 3`,
				`http_requests_total{code="404",method="GET",route="GET /users/{id}"} 1`,
				`http_request_duration_seconds_bucket{method="GET",route="GET /users/{id}",le="+Inf"} 4`,
				`cache_hits_total 2`,
				`cache_loads_total 2`,
				`ratelimit_decisions_total{outcome="allowed"}`,
				`go_goroutines`,
				`go_sql_max_open_connections`,
			} {
				require.Contains(t, m, want)
			}
		})
	})
}

// /readyz answers 503, naming the database, while the database does not
// answer, and ok again once it does; /healthz answers throughout. The
// database's password is never shown or logged.
func TestReadyzNamesTheFailingDatabase(t *testing.T) {
	t.Parallel()
	raw := postgresURL(t)
	u, err := url.Parse(raw)
	require.NoError(t, err)
	proxy, err := faultproxy.New(u.Host)
	require.NoError(t, err)
	t.Cleanup(func() { _ = proxy.Close() }) // after the server's shutdown, which reads the task queue
	u.Host = proxy.Addr()
	u.User = url.UserPassword(u.User.Username(), "s3cret") // trust auth ignores it
	q := u.Query()
	q.Set("connect_timeout", "1")
	u.RawQuery = q.Encode()
	ts := startServer(t, "", map[string]string{"DATABASE_URL": u.String(), "LOG_LEVEL": "info"})
	require.Equal(t, http.StatusOK, ts.do("GET", "/readyz", nil).status)
	pool := ts.do("GET", "/db-pool-status", nil)
	require.NotContains(t, string(pool.body), "s3cret", "the password is never shown")
	require.Contains(t, ts.logs.String(), "asynckit example server listening")
	require.NotContains(t, ts.logs.String(), "s3cret", "the password is never logged")

	proxy.Cut()
	r := ts.do("GET", "/readyz", nil)
	require.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
	p := r.problem(t)
	require.True(t, strings.HasSuffix(p.Type, "not-ready"))
	require.Contains(t, p.Detail, "database")
	require.Equal(t, http.StatusOK, ts.do("GET", "/healthz", nil).status)

	proxy.Restore()
	require.Eventually(t, func() bool { return ts.do("GET", "/readyz", nil).status == http.StatusOK }, 10e9, 50e6)
}
