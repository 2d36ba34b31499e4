package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

// BenchmarkGetUser measures GET /users/{id} answered from the cache, through
// everything the server puts in front of it (request id, access log,
// metrics, CORS, gzip check, rate limit, routing, the cache lookup, JSON),
// against a bare net/http handler that writes the same JSON. Each runs
// in-process on a recorder (the server's own cost) and over loopback HTTP
// with keep-alive (what a client sees). asynckit-traced is the server with
// tracing on, exporting to a no-op exporter.
func BenchmarkGetUser(b *testing.B) {
	s, u, want := benchServer(b, nil)
	// The same server with tracing on, exporting to nowhere: the cost of
	// a request's span (the cache hit makes no other).
	traced, _, wantTraced := benchServer(b, tracetest.NewNoopExporter())
	bare := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(u)
	})
	handlers := []struct {
		name    string
		handler http.Handler
		want    string
	}{{"asynckit", s.handler, want}, {"bare", bare, want}, {"asynckit-traced", traced.handler, wantTraced}}

	for _, h := range handlers {
		b.Run("handler/"+h.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w := httptest.NewRecorder()
					h.handler.ServeHTTP(w, httptest.NewRequest("GET", "/users/1", nil))
					if w.Code != http.StatusOK || w.Body.String() != h.want {
						b.Errorf("answered %d %s", w.Code, w.Body)
						return
					}
				}
			})
		})
	}
	for _, h := range handlers {
		b.Run("loopback/"+h.name, func(b *testing.B) {
			srv := httptest.NewServer(h.handler)
			defer srv.Close()
			transport := &http.Transport{MaxIdleConnsPerHost: 64}
			defer transport.CloseIdleConnections()
			client := &http.Client{Transport: transport}
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(srv.URL + "/users/1")
					if err != nil {
						b.Error(err)
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || string(body) != h.want {
						b.Errorf("answered %d %s", resp.StatusCode, body)
						return
					}
				}
			})
		})
	}
}

// benchServer starts a server on a SQLite file of its own, tracing into
// exp when it is not nil, and creates user 1, which it returns with the
// server's JSON of it.
func benchServer(b *testing.B, exp sdktrace.SpanExporter) (*server, user, string) {
	env := map[string]string{
		"DB_PATH":    filepath.Join(b.TempDir(), "bench.db"),
		"RATE_LIMIT": "1000000/s",
	}
	cfg, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	cfg.spanExporter = exp
	log := slog.New(slog.NewTextHandler(io.Discard, nil)) // every request is logged, as in production
	ctx := context.Background()
	s, err := newServer(ctx, cfg, log, "http://127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.close(ctx) })

	w := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/users", strings.NewReader(`{"username":"ada","email":"ada@example.com","full_name":"Ada Lovelace"}`))
	req.Header.Set("Content-Type", "application/json")
	s.handler.ServeHTTP(w, req)
	if w.Code != http.StatusCreated {
		b.Fatalf("create: %d %s", w.Code, w.Body)
	}
	var u user
	if err := json.Unmarshal(w.Body.Bytes(), &u); err != nil {
		b.Fatal(err)
	}
	return s, u, w.Body.String()
}
