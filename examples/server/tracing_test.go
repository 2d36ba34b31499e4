package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// span is what the tests check of a finished span, from the in-memory
// exporter or from OTLP as a collector receives it.
type span struct {
	instance string // service.instance.id of the server that made it
	name     string
	kind     trace.SpanKind
	traceID  string
	id       string
	parent   string // "" for a root
	attrs    map[string]string
}

func (s span) String() string {
	return fmt.Sprintf("%s %q (%s) %s←%s", s.instance, s.name, s.kind, s.id, s.parent)
}

// spansOf converts the in-memory exporter's spans.
func spansOf(stubs tracetest.SpanStubs) []span {
	out := make([]span, 0, len(stubs))
	for _, s := range stubs {
		sp := span{name: s.Name, kind: s.SpanKind, traceID: s.SpanContext.TraceID().String(), id: s.SpanContext.SpanID().String(), attrs: map[string]string{}}
		if s.Parent.IsValid() {
			sp.parent = s.Parent.SpanID().String()
		}
		for _, a := range s.Attributes {
			sp.attrs[string(a.Key)] = a.Value.String()
		}
		if s.Resource != nil {
			if v, ok := s.Resource.Set().Value("service.instance.id"); ok {
				sp.instance = v.String()
			}
		}
		out = append(out, sp)
	}
	return out
}

// keptSpans is an in-memory exporter whose spans outlive the provider's
// Shutdown, which would otherwise clear them.
type keptSpans struct{ *tracetest.InMemoryExporter }

func (keptSpans) Shutdown(context.Context) error { return nil }

// traceOf returns the spans of one trace, and checks that they form one
// tree: one root, and every other span's parent is among them.
func traceOf(t *testing.T, all []span, traceID string) (root span, spans []span) {
	t.Helper()
	ids := map[string]bool{}
	for _, s := range all {
		if s.traceID == traceID {
			spans = append(spans, s)
			ids[s.id] = true
		}
	}
	roots := 0
	for _, s := range spans {
		if s.parent == "" {
			root = s
			roots++
			continue
		}
		require.True(t, ids[s.parent], "span %v has its parent outside the trace: %v", s, spans)
	}
	require.Equal(t, 1, roots, "one root in %v", spans)
	return root, spans
}

func named(spans []span, name string) []span {
	var out []span
	for _, s := range spans {
		if s.name == name {
			out = append(out, s)
		}
	}
	return out
}

func childrenOf(spans []span, parent span) []span {
	var out []span
	for _, s := range spans {
		if s.parent == parent.id {
			out = append(out, s)
		}
	}
	return out
}

// descends reports whether s is parent or below it in spans.
func descends(spans []span, s, parent span) bool {
	byID := map[string]span{}
	for _, x := range spans {
		byID[x.id] = x
	}
	for ; s.id != ""; s = byID[s.parent] {
		if s.id == parent.id {
			return true
		}
	}
	return false
}

// startTraced starts a server on Postgres, tracing into an in-memory
// exporter, with newServer itself so that the test can flush its spans.
func startTraced(t *testing.T) (*server, string, *tracetest.InMemoryExporter) {
	t.Helper()
	dbURL := postgresURL(t)
	vars := map[string]string{
		"DB_PATH": filepath.Join(t.TempDir(), "test.db"), "DATABASE_URL": dbURL, "TASKS_SCHEMA": urlSchema(t, dbURL),
		"RATE_LIMIT": "1000000/s", "UPLOAD_DIR": filepath.Join(t.TempDir(), "uploads"),
	}
	cfg, err := parseConfig(nil, func(k string) string { return vars[k] }, io.Discard)
	require.NoError(t, err)
	exp := tracetest.NewInMemoryExporter()
	cfg.spanExporter = keptSpans{exp}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	self := baseURL(ln.Addr())
	s, err := newServer(context.Background(), cfg, slog.New(slog.DiscardHandler), self)
	require.NoError(t, err)
	require.NotNil(t, s.trace)
	require.Equal(t, "on, exporting to in process", s.trace.describe())
	srv := &httptest.Server{Listener: ln, Config: &http.Server{Handler: s.handler}}
	srv.Start()
	require.NoError(t, s.start())
	t.Cleanup(func() {
		srv.Close()
		require.NoError(t, s.close(context.Background()))
	})
	return s, self, exp
}

func postJSON(t *testing.T, url, body string, want int, out any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, want, resp.StatusCode, "%s", b)
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out))
	}
}

func getJSON(t *testing.T, url string, want int, out any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, want, resp.StatusCode, "%s", b)
	if out != nil {
		require.NoError(t, json.Unmarshal(b, out))
	}
}

// waitTask polls a task until it has finished, and requires that it
// succeeded.
func waitTask(t *testing.T, base, id string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		var info struct{ Status string }
		getJSON(t, base+"/tasks/"+id, http.StatusOK, &info)
		if info.Status == "succeeded" {
			return
		}
		require.NotContains(t, []string{"failed", "canceled"}, info.Status)
		require.True(t, time.Now().Before(deadline), "task %s still %s", id, info.Status)
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTracingFollowsARequestIntoItsTask submits a task through one request
// and finds one trace holding the request's span, the SQL that stored the
// task, and the task's run. It then checks the other spans the server
// makes: cache loads with their query, and the fan-out of GET /aggregate,
// whose upstream calls carry the trace to the upstreams.
func TestTracingFollowsARequestIntoItsTask(t *testing.T) {
	t.Parallel()
	s, base, exp := startTraced(t)

	var info struct{ ID string }
	postJSON(t, base+"/tasks", `{"kind":"demo","payload":{"steps":1,"step_ms":0}}`, http.StatusAccepted, &info)
	waitTask(t, base, info.ID)
	require.NoError(t, s.trace.provider.ForceFlush(context.Background()))
	all := spansOf(exp.GetSpans())

	var submits []span
	for _, sp := range all {
		if sp.name == "POST /tasks" {
			submits = append(submits, sp)
		}
	}
	require.Len(t, submits, 1, "one span of the request: %v", all)
	req := submits[0]
	require.Equal(t, trace.SpanKindServer, req.kind)
	require.Equal(t, "/tasks", req.attrs["http.route"])
	require.Equal(t, "202", req.attrs["http.response.status_code"])
	root, spans := traceOf(t, all, req.traceID)
	require.Equal(t, req.id, root.id, "the request is the trace's root")

	var inserts []span
	for _, sp := range spans {
		if sp.kind == trace.SpanKindClient && sp.attrs["db.system.name"] == "postgresql" &&
			strings.Contains(sp.attrs["db.query.text"], "INSERT INTO") && strings.Contains(sp.attrs["db.query.text"], ".tasks") {
			inserts = append(inserts, sp)
		}
	}
	require.Len(t, inserts, 1, "the SQL that stored the task: %v", spans)
	require.True(t, descends(spans, inserts[0], req))

	runs := named(spans, "task demo")
	require.Len(t, runs, 1, "the task's run: %v", spans)
	require.Equal(t, req.id, runs[0].parent, "the run is a child of the request")
	require.Equal(t, trace.SpanKindConsumer, runs[0].kind)
	require.Equal(t, info.ID, runs[0].attrs["task.id"])
	require.Equal(t, "1", runs[0].attrs["task.attempt"])

	t.Run("a cache load is a span, with its query", func(t *testing.T) {
		var u struct{ ID int64 }
		postJSON(t, base+"/users", `{"username":"traced","email":"traced@example.com","full_name":"T"}`, http.StatusCreated, &u)
		s.users.drop([]int64{u.ID})
		exp.Reset()
		getJSON(t, fmt.Sprintf("%s/users/%d", base, u.ID), http.StatusOK, nil)
		getJSON(t, fmt.Sprintf("%s/users/%d", base, u.ID), http.StatusOK, nil) // from the cache: no load
		require.NoError(t, s.trace.provider.ForceFlush(context.Background()))
		all := spansOf(exp.GetSpans())
		loads := named(all, "user cache load")
		require.Len(t, loads, 1, "%v", all)
		gets := named(all, "GET /users/{id}")
		require.Len(t, gets, 2)
		_, spans := traceOf(t, all, loads[0].traceID)
		require.Contains(t, []string{gets[0].id, gets[1].id}, loads[0].parent, "the load is a child of the request that missed")
		queries := childrenOf(spans, loads[0])
		require.NotEmpty(t, queries, "the load's query: %v", spans)
		require.Equal(t, "postgres SELECT", queries[0].name)
		for _, get := range gets {
			if get.id != loads[0].parent {
				_, hit := traceOf(t, all, get.traceID)
				require.Len(t, hit, 1, "a hit makes no span but the request's: %v", hit)
			}
		}
	})

	t.Run("each upstream call of an aggregate is a span, continued by the upstream", func(t *testing.T) {
		exp.Reset()
		getJSON(t, base+"/aggregate", http.StatusOK, nil)
		require.NoError(t, s.trace.provider.ForceFlush(context.Background()))
		all := spansOf(exp.GetSpans())
		aggs := named(all, "GET /aggregate")
		require.Len(t, aggs, 1, "%v", all)
		_, spans := traceOf(t, all, aggs[0].traceID)
		calls := named(spans, "GET upstream")
		require.Len(t, calls, 3, "one per demo upstream: %v", spans)
		for _, c := range calls {
			require.Equal(t, aggs[0].id, c.parent)
			require.Equal(t, trace.SpanKindClient, c.kind)
			served := childrenOf(spans, c)
			require.Len(t, served, 1, "the upstream joined the trace: %v", spans)
			require.Equal(t, "GET /demo/upstream/{name}", served[0].name)
		}
	})
}

// collector is an OpenTelemetry collector as far as the tests need one:
// it takes OTLP over HTTP (protobuf) at /v1/traces and keeps the spans.
type collector struct {
	URL   string
	mu    sync.Mutex
	spans []span
}

func newCollector(t *testing.T) *collector {
	c := &collector{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/traces" || r.Method != http.MethodPost {
			http.NotFound(w, r)
			return
		}
		var body io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			zr, err := gzip.NewReader(r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			body = zr
		}
		b, err := io.ReadAll(body)
		var req coltracepb.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		c.add(&req)
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(srv.Close)
	c.URL = srv.URL
	return c
}

func (c *collector) add(req *coltracepb.ExportTraceServiceRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rs := range req.ResourceSpans {
		instance := ""
		for _, a := range rs.GetResource().GetAttributes() {
			if a.Key == "service.instance.id" {
				instance = a.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				sp := span{instance: instance, name: s.Name, kind: kindOf(s.Kind), traceID: hex.EncodeToString(s.TraceId),
					id: hex.EncodeToString(s.SpanId), attrs: map[string]string{}}
				if len(s.ParentSpanId) > 0 && !bytes.Equal(s.ParentSpanId, make([]byte, 8)) {
					sp.parent = hex.EncodeToString(s.ParentSpanId)
				}
				for _, a := range s.Attributes {
					if v := a.GetValue(); v.GetStringValue() != "" {
						sp.attrs[a.Key] = v.GetStringValue()
					} else {
						sp.attrs[a.Key] = fmt.Sprint(v.GetIntValue())
					}
				}
				c.spans = append(c.spans, sp)
			}
		}
	}
}

func kindOf(k tracepb.Span_SpanKind) trace.SpanKind {
	switch k {
	case tracepb.Span_SPAN_KIND_SERVER:
		return trace.SpanKindServer
	case tracepb.Span_SPAN_KIND_CLIENT:
		return trace.SpanKindClient
	case tracepb.Span_SPAN_KIND_CONSUMER:
		return trace.SpanKindConsumer
	case tracepb.Span_SPAN_KIND_PRODUCER:
		return trace.SpanKindProducer
	}
	return trace.SpanKindInternal
}

func (c *collector) all() []span {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]span(nil), c.spans...)
}

// TestClusterTaskRunIsAChildOfItsRequest runs two instances on one
// Postgres queue that export by OTLP over HTTP to one collector, submits
// tasks through A, and finds the runs on B in the traces of A's requests,
// as children of the request that submitted each. The spans reach the
// collector because each instance flushes them as it shuts down.
func TestClusterTaskRunIsAChildOfItsRequest(t *testing.T) {
	t.Parallel()
	coll := newCollector(t) // stopped after the instances, by Cleanup's order
	env := clusterEnv(t, false, map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": coll.URL, "LOG_LEVEL": "info"})
	a := startServer(t, "", withEnv(env, "WORKERS", "1"))
	b := startServer(t, "", withEnv(env, "WORKERS", "8"))
	for _, ts := range []*testServer{a, b} {
		require.Contains(t, ts.logs.String(), `tracing="on, exporting to otlp `+coll.URL+`/v1/traces"`)
	}

	// A runs one task at a time, B eight: most of these run on B.
	const tasks = 12
	ids := make([]string, tasks)
	for i := range ids {
		r := a.do("POST", "/tasks", map[string]any{"kind": "demo", "payload": map[string]int{"steps": 2, "step_ms": 50}})
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		var info struct{ ID string }
		r.json(t, &info)
		ids[i] = info.ID
	}
	for _, id := range ids {
		waitTask(t, b.base, id)
	}
	require.NoError(t, a.stop())
	require.NoError(t, b.stop())

	all := coll.all()
	requests := map[string]span{} // by trace
	for _, sp := range all {
		if sp.name == "POST /tasks" {
			require.Equal(t, a.base, sp.instance, "submitted through A")
			requests[sp.traceID] = sp
		}
	}
	require.Len(t, requests, tasks, "one trace per submission")
	onB := 0
	ran := map[string]bool{}
	for _, sp := range all {
		if sp.name != "task demo" {
			continue
		}
		req, ok := requests[sp.traceID]
		require.True(t, ok, "run %v is in the trace of a submission", sp)
		require.Equal(t, req.id, sp.parent, "run %v is a child of the request that submitted it", sp)
		ran[sp.attrs["task.id"]] = true
		if sp.instance == b.base {
			onB++
		}
	}
	require.Len(t, ran, tasks, "every task's run was traced")
	require.Positive(t, onB, "some tasks ran on B")
	t.Logf("%d of %d tasks ran on B; %d spans in all", onB, tasks, len(all))
}

// withEnv returns a copy of env with name set to value.
func withEnv(env map[string]string, name, value string) map[string]string {
	out := make(map[string]string, len(env)+1)
	for k, v := range env {
		out[k] = v
	}
	out[name] = value
	return out
}

// TestTracingOffAddsNothing checks that without the variable the server
// has no tracer, and its handler is what it would be without tracing.
func TestTracingOffAddsNothing(t *testing.T) {
	t.Parallel()
	cfg, err := parseConfig(nil, env("DB_PATH", filepath.Join(t.TempDir(), "off.db")), io.Discard)
	require.NoError(t, err)
	s, err := newServer(context.Background(), cfg, slog.New(slog.DiscardHandler), "http://127.0.0.1:0")
	require.NoError(t, err)
	defer s.close(context.Background())
	require.Nil(t, s.trace)
	require.Nil(t, s.agg.trace)
	require.Equal(t, "off (set OTEL_EXPORTER_OTLP_ENDPOINT to turn it on)", s.trace.describe())
	require.Nil(t, s.trace.submitOptions(context.Background()))
	next := http.NotFoundHandler()
	require.Equal(t, fmt.Sprintf("%p", next), fmt.Sprintf("%p", s.trace.requests(next)), "no middleware")
}

func TestQueryOperation(t *testing.T) {
	t.Parallel()
	for sql, want := range map[string]string{
		"SELECT 1":                        "SELECT",
		"\n\tinsert into t values ($1)":   "INSERT",
		"WITH x AS (SELECT 1) SELECT *":   "WITH",
		"(SELECT 1) UNION (SELECT 2)":     "SELECT",
		"begin":                           "BEGIN",
		"":                                "QUERY",
		"-- comment\nSELECT 1":            "QUERY",
		"SELECT pg_advisory_xact_lock(1)": "SELECT",
	} {
		require.Equal(t, want, queryOperation(sql), "%q", sql)
	}
}

var _ sdktrace.SpanExporter = keptSpans{}
