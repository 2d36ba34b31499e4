package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/asynckit/asynckit/ratelimit"
	"github.com/asynckit/asynckit/taskqueue"
)

// metrics is the server's Prometheus registry and the collectors it
// updates as requests go by. Everything else (cache, pool, tasks) is read
// when /metrics is scraped.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	decisions   *prometheus.CounterVec
	redisErrors *prometheus.CounterVec
	limitStore  *prometheus.CounterVec
	breakerOpen prometheus.Gauge
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "HTTP requests answered, by method, route pattern and status code.",
		}, []string{"method", "route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "http_request_duration_seconds", Help: "Time to answer HTTP requests, by method and route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "route"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ratelimit_decisions_total", Help: "Rate limit decisions: allowed, denied, or error (the request was served).",
		}, []string{"outcome"}),
	}
	m.redisErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "redis_errors_total", Help: "Redis commands that failed or timed out, by what sent them (limits, cache); the server did without their answers.",
	}, []string{"part"})
	m.limitStore = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ratelimit_store_outcomes_total", Help: "How the rate limits in Redis decided: decided (by Redis), or fell back (to this instance's share, while Redis fails).",
	}, []string{"outcome"})
	m.breakerOpen = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ratelimit_breaker_open", Help: "1 while the rate limits' breaker is open: Redis failed and is not asked, and the fallback decides; else 0.",
	})
	m.reg.MustRegister(m.requests, m.latency, m.decisions,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// redisError returns the function that counts the Redis errors of part.
func (m *metrics) redisError(part string) func(error) {
	c := m.redisErrors.WithLabelValues(part)
	return func(error) { c.Inc() }
}

// limitEvent records one decision of the rate limits in Redis; it is
// ratelimit.FailureOptions.Observe.
func (m *metrics) limitEvent(e ratelimit.Event) {
	m.limitStore.WithLabelValues(e.Outcome.String()).Inc()
	if e.Err != nil {
		m.redisErrors.WithLabelValues("limits").Inc()
	}
	if e.BreakerOpen {
		m.breakerOpen.Set(1)
	} else {
		m.breakerOpen.Set(0)
	}
}

// request records one answered request. An event stream is counted, but
// its length is no latency.
func (m *metrics) request(method, route string, code int, d time.Duration, stream bool) {
	m.requests.WithLabelValues(method, route, strconv.Itoa(code)).Inc()
	if !stream {
		m.latency.WithLabelValues(method, route).Observe(d.Seconds())
	}
}

// decision records one rate limit decision; it is ratelimit.Middleware's
// OnDecision hook.
func (m *metrics) decision(_ *http.Request, d ratelimit.Decision) {
	switch {
	case d.Err != nil:
		m.decisions.WithLabelValues("error").Inc()
	case d.Allowed:
		m.decisions.WithLabelValues("allowed").Inc()
	default:
		m.decisions.WithLabelValues("denied").Inc()
	}
}

// watch registers the collectors that read s's parts when scraped.
func (m *metrics) watch(s *server) {
	m.reg.MustRegister(collectors.NewDBStatsCollector(s.store.db, s.store.dialect))
	if s.store.rdb != s.store.db {
		m.reg.MustRegister(collectors.NewDBStatsCollector(s.store.rdb, s.store.dialect+"_readers"))
	}
	if s.redis != nil {
		for _, part := range []string{"limits", "cache"} {
			m.redisErrors.WithLabelValues(part)
		}
		m.limitStore.WithLabelValues(ratelimit.Decided.String())
		m.limitStore.WithLabelValues(ratelimit.FellBack.String())
		m.reg.MustRegister(m.redisErrors, m.limitStore, m.breakerOpen)
	}
	for _, c := range []struct {
		name, help string
		read       func() uint64
	}{
		{"cache_hits_total", "User cache lookups answered from memory.", func() uint64 { return s.users.stats().Hits }},
		{"cache_misses_total", "User cache lookups that found no fresh entry in memory.", func() uint64 { return s.users.stats().Misses }},
		{"cache_loads_total", "User cache loads past memory: from Redis, if the cache has it, else from the database.", func() uint64 { return s.users.stats().Loads }},
		{"cache_load_errors_total", "User cache loads that failed.", func() uint64 { return s.users.stats().LoadErrors }},
		{"cache_coalesced_total", "User cache misses that joined a load in flight.", func() uint64 { return s.users.stats().Coalesced }},
		{"search_cache_hits_total", "User search pages answered from memory.", func() uint64 { return s.users.pages.Stats().Hits }},
		{"search_cache_misses_total", "User search pages loaded from the database.", func() uint64 { return s.users.pages.Stats().Misses }},
	} {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help},
			func() float64 { return float64(c.read()) }))
	}
	m.reg.MustRegister(&taskGauge{runner: s.tasks, log: s.log,
		desc: prometheus.NewDesc("tasks", "Tasks in the queue (with Postgres, the queue every instance shares), by status; finished tasks count until they expire, an hour after they finish.",
			[]string{"status"}, nil),
		kinds: prometheus.NewDesc("tasks_by_kind", "Tasks in the queue, by kind and status.", []string{"kind", "status"}, nil)})
}

// taskGauge reports the task runner's counts by status, and by kind and
// status, read when /metrics is scraped. A runner that does not answer
// within statsTimeout is logged and its counts are left out of that
// scrape, rather than failing it.
type taskGauge struct {
	runner *taskqueue.Runner
	log    *slog.Logger
	desc   *prometheus.Desc
	kinds  *prometheus.Desc
}

func (g *taskGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc; ch <- g.kinds }

func (g *taskGauge) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), statsTimeout)
	defer cancel()
	byKind, err := g.runner.StatsByKind(ctx)
	if err != nil {
		g.log.Warn("metrics: cannot count tasks", "err", err)
		return
	}
	counts := func(st taskqueue.Stats) []int {
		return []int{st.Pending, st.Running, st.Succeeded, st.Failed, st.Canceled}
	}
	total := make([]int, 5)
	for _, kind := range taskKinds {
		for i, n := range counts(byKind[kind]) {
			total[i] += n
			ch <- prometheus.MustNewConstMetric(g.kinds, prometheus.GaugeValue, float64(n), kind, (taskqueue.StatusPending + taskqueue.Status(i)).String())
		}
	}
	for i, n := range total {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, float64(n), (taskqueue.StatusPending + taskqueue.Status(i)).String())
	}
}

// slog2promLogger passes promhttp's errors to the server's log.
type slog2promLogger struct{ log *slog.Logger }

func (l slog2promLogger) Println(v ...any) {
	l.log.Error("metrics", "err", fmt.Sprint(v...))
}
