package main

import (
	"context"
	"fmt"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/asynckit/asynckit/taskqueue"
)

// health is the answer of /healthz and /readyz.
type health struct {
	Status string            `json:"status" enum:"ok|unavailable"`
	Checks map[string]string `json:"checks,omitempty" doc:"Each dependency checked and its state: ok, or the error"`
}

// poolStatus is the answer of /db-pool-status: database/sql's pool
// statistics.
type poolStatus struct {
	Database          string  `json:"database" doc:"Which database, and where"`
	MaxOpen           int     `json:"max_open" doc:"Most connections the pool opens"`
	Open              int     `json:"open"`
	InUse             int     `json:"in_use"`
	Idle              int     `json:"idle"`
	WaitCount         int64   `json:"wait_count" doc:"Times a query waited for a connection"`
	WaitSeconds       float64 `json:"wait_seconds" doc:"Total time spent waiting for connections"`
	MaxIdleClosed     int64   `json:"max_idle_closed"`
	MaxIdleTimeClosed int64   `json:"max_idle_time_closed"`
	MaxLifetimeClosed int64   `json:"max_lifetime_closed"`
}

func (s *server) opsRoutes(a *api) {
	handleJSON(a, op{Pattern: "GET /healthz", ID: "healthz", Tag: "ops", Ops: true, Summary: "Liveness: answers while the process runs"},
		http.StatusOK, func(*call, *none) (health, error) { return health{Status: "ok"}, nil })
	handleRaw(a, op{Pattern: "GET /readyz", ID: "readyz", Tag: "ops", Ops: true, Summary: "Readiness: whether the dependencies answer",
		Description: "503, naming the failing part, while the database or Redis (when REDIS_URL is set) does not answer, or the server is shutting down. " +
			"The service still answers without Redis (limits fall back to each instance's share, users are read from the database): the 503 tells the operator, not the clients.",
		Status: http.StatusOK, Response: &content{MediaType: "application/json", Type: reflect.TypeFor[health]()},
		Problems: []kind{probNotReady}},
		s.readyz)
	handleJSON(a, op{Pattern: "GET /db-pool-status", ID: "dbPoolStatus", Tag: "ops", Ops: true, Summary: "The database connection pool's statistics"},
		http.StatusOK, func(*call, *none) (poolStatus, error) {
			st := s.store.db.Stats()
			return poolStatus{Database: s.store.where, MaxOpen: st.MaxOpenConnections, Open: st.OpenConnections,
				InUse: st.InUse, Idle: st.Idle, WaitCount: st.WaitCount, WaitSeconds: st.WaitDuration.Seconds(),
				MaxIdleClosed: st.MaxIdleClosed, MaxIdleTimeClosed: st.MaxIdleTimeClosed, MaxLifetimeClosed: st.MaxLifetimeClosed}, nil
		})
	handleRaw(a, op{Pattern: "GET /metrics", ID: "metrics", Tag: "ops", Ops: true, Summary: "Prometheus metrics",
		Description: "Requests and latency by route and status, cache hits, misses and loads, rate limit decisions, tasks by status and by kind, the database pool, and with Redis its errors and the rate limits' failure policy (how Redis decided, and whether its breaker is open).",
		Status:      http.StatusOK, Response: &content{MediaType: "text/plain", Schema: &schema{Type: "string"}}},
		promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{ErrorLog: slog2promLogger{s.log}}).ServeHTTP)
	handleRaw(a, op{Pattern: "GET /openapi.json", ID: "openapi", Tag: "ops", Ops: true, Summary: "This API's OpenAPI 3.0 document",
		Status: http.StatusOK, Response: &content{MediaType: "application/json", Schema: &schema{Type: "object"}}},
		func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("Content-Length", strconv.Itoa(len(s.spec)))
			_, _ = w.Write(s.spec)
		})
	handleRaw(a, op{Pattern: "GET /docs", ID: "docs", Tag: "ops", Ops: true, Summary: "This API's documentation, for a browser",
		Status: http.StatusOK, Response: &content{MediaType: "text/html", Schema: &schema{Type: "string"}}},
		s.docs)
	handleRaw(a, op{Pattern: "GET /docs/problems/{slug}", ID: "problemDoc", Tag: "ops", Ops: true, Summary: "What a problem type means",
		Description: "The type of every problem answer points here; the page redirects to its entry in /docs.",
		Params:      []param{{Name: "slug", In: "path", Required: true, Schema: &schema{Type: "string"}}},
		Status:      http.StatusFound, Problems: []kind{probNotFound}},
		func(w http.ResponseWriter, r *http.Request) {
			slug := r.PathValue("slug")
			for _, k := range problemKinds {
				if k.slug == slug {
					http.Redirect(w, r, "/docs#problem-"+slug, http.StatusFound)
					return
				}
			}
			writeProblem(w, r, newProblem(probNotFound, "no problem type is named %q", slug))
		})
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	checks := map[string]string{"database": "ok"}
	var failing []string
	if err := s.store.ping(r.Context()); err != nil {
		checks["database"] = err.Error()
		failing = append(failing, fmt.Sprintf("the database (%s) does not answer: %v", s.store.dialect, err))
	}
	if s.redis != nil {
		checks["redis"] = "ok"
		ctx, cancel := context.WithTimeout(r.Context(), max(s.cfg.RedisTimeout, time.Second))
		err := s.redis.Ping(ctx).Err()
		cancel()
		if err != nil {
			checks["redis"] = err.Error()
			failing = append(failing, fmt.Sprintf("redis (rate limits and the user cache) does not answer: %v", err))
		}
	}
	if len(failing) > 0 {
		p := newProblem(probNotReady, "%s", strings.Join(failing, "; "))
		p.retryAfter = time.Second
		writeProblem(w, r, p)
		return
	}
	if !s.ready.Load() {
		p := newProblem(probNotReady, "the server is starting or shutting down")
		writeProblem(w, r, p)
		return
	}
	_ = writeJSON(w, http.StatusOK, health{Status: "ok", Checks: checks})
}

// schemas returns the schema generator of the document, knowing the JSON
// forms of other packages' types.
func (s *server) schemas() *schemaGen {
	g := newSchemaGen()
	statuses := []any{}
	for st := taskqueue.StatusPending; st.Valid(); st++ {
		statuses = append(statuses, st.String())
	}
	g.override(reflect.TypeFor[taskqueue.Status](), &schema{Type: "string", Enum: statuses})
	documentTasks(g)
	return g
}
