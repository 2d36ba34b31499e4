package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	legacyrouter "github.com/getkin/kin-openapi/routers/legacy"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asynckit/asynckit/internal/testenv"
)

// runServerEnv, set to 1 in a child process's environment, makes the test
// binary run the server's main instead of the tests, so that tests can
// start the server as a real process without building it.
const runServerEnv = "ASYNCKIT_TEST_RUN_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(runServerEnv) == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// databases are the databases every end-to-end test runs against: SQLite
// always, Postgres when DATABASE_URL names one (see internal/testenv).
var databases = []string{"sqlite", "postgres"}

// forEachDB runs fn as a subtest per database, each with a server of its
// own configured by env.
func forEachDB(t *testing.T, env map[string]string, fn func(t *testing.T, ts *testServer)) {
	t.Helper()
	for _, db := range databases {
		t.Run(db, func(t *testing.T) {
			t.Parallel()
			fn(t, startServer(t, db, env))
		})
	}
}

// testServer is a server started by run on a real listener, and a client
// that checks every answer against the server's OpenAPI document.
type testServer struct {
	t      *testing.T
	base   string
	client *http.Client
	env    map[string]string
	logs   *syncBuffer
	stop   func() error
	doc    *openapi3.T
}

// startServer starts the server with the environment a test needs on top
// of the defaults below, on database db ("sqlite" or "postgres", which
// gets a fresh schema of its own; "" for whatever env says), and stops it,
// checking that it shut down cleanly, when the test ends. A DATABASE_URL
// gets the task queue in its own schema, unless env names TASKS_SCHEMA.
func startServer(t *testing.T, db string, env map[string]string) *testServer {
	t.Helper()
	vars := map[string]string{
		"ADDR":       "127.0.0.1:0",
		"DB_PATH":    filepath.Join(t.TempDir(), "test.db"),
		"RATE_LIMIT": "1000000/s",
		"LOG_LEVEL":  "warn",
		"UPLOAD_DIR": filepath.Join(t.TempDir(), "uploads"),
	}
	if db == "postgres" {
		vars["DATABASE_URL"] = postgresURL(t)
	}
	for k, v := range env {
		vars[k] = v
	}
	if u := vars["DATABASE_URL"]; u != "" && env["TASKS_SCHEMA"] == "" {
		vars["TASKS_SCHEMA"] = urlSchema(t, u) // the task queue of this test's own
	}
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, nil, func(k string) string { return vars[k] }, logs, func(a string) { addr <- a })
	}()
	ts := &testServer{t: t, env: vars, logs: logs}
	select {
	case a := <-addr:
		ts.base = "http://" + a
	case err := <-done:
		cancel()
		t.Fatalf("server did not start: %v\n%s", err, logs)
	}
	var once sync.Once
	var stopErr error
	ts.stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case stopErr = <-done:
			case <-time.After(30 * time.Second):
				stopErr = fmt.Errorf("server did not stop within 30s")
			}
		})
		return stopErr
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 64}
	ts.client = &http.Client{Transport: &validatingTransport{ts: ts, next: transport}, Timeout: time.Minute}
	t.Cleanup(func() {
		transport.CloseIdleConnections()
		if err := ts.stop(); err != nil {
			t.Errorf("server shutdown: %v", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs)
		}
	})
	ts.doc = loadDocument(t, ts)
	return ts
}

// postgresURL returns DATABASE_URL pointed at a fresh schema of the test's
// own (dropped when it ends), or skips the test as internal/testenv says.
func postgresURL(t *testing.T) string {
	cfg := testenv.PostgresConfig(t)
	u, err := url.Parse(os.Getenv(testenv.EnvPostgres))
	require.NoError(t, err)
	q := u.Query()
	q.Set("search_path", cfg.RuntimeParams["search_path"])
	u.RawQuery = q.Encode()
	return u.String()
}

// urlSchema returns the search_path of a DATABASE_URL that postgresURL
// made: the test's schema.
func urlSchema(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	require.NoError(t, err)
	schema := u.Query().Get("search_path")
	require.NotEmpty(t, schema, "%s has no search_path", raw)
	return schema
}

// startCluster starts n servers on clusterEnv(t, redis, env): n instances
// of one service, each on its own listener and with its own UPLOAD_DIR,
// as behind a load balancer.
func startCluster(t *testing.T, n int, redis bool, env map[string]string) []*testServer {
	t.Helper()
	shared := clusterEnv(t, redis, env)
	servers := make([]*testServer, n)
	for i := range servers {
		servers[i] = startServer(t, "", shared)
	}
	return servers
}

// clusterEnv returns the environment of instances that share one Postgres
// schema (and so one task queue) and, when redis is set, one Redis key
// prefix, with env on top.
func clusterEnv(t *testing.T, redis bool, env map[string]string) map[string]string {
	t.Helper()
	shared := map[string]string{"DATABASE_URL": postgresURL(t)}
	if redis {
		_, prefix := testenv.Redis(t)
		shared["REDIS_URL"] = os.Getenv(testenv.EnvRedis)
		shared["REDIS_PREFIX"] = prefix
	}
	for k, v := range env {
		shared[k] = v
	}
	shared["TASKS_SCHEMA"] = urlSchema(t, shared["DATABASE_URL"])
	return shared
}

// loadDocument fetches /openapi.json and checks that it is a valid OpenAPI
// document.
func loadDocument(t *testing.T, ts *testServer) *openapi3.T {
	t.Helper()
	resp, err := http.Get(ts.base + "/openapi.json")
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	doc, err := openapi3.NewLoader().LoadFromData(raw)
	require.NoError(t, err)
	require.NoError(t, doc.Validate(context.Background()), "the OpenAPI document is invalid")
	return doc
}

func init() {
	openapi3filter.RegisterBodyDecoder("application/problem+json", openapi3filter.JSONBodyDecoder)
}

// validatingTransport checks every answer against the OpenAPI document:
// its status must be documented for the route, and its headers and body
// must match. Streamed bodies (NDJSON, server-sent events) are checked
// by the tests that read them.
type validatingTransport struct {
	ts   *testServer
	next http.RoundTripper
	once sync.Once
	rt   routers.Router
}

func (v *validatingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := v.next.RoundTrip(req)
	if err != nil || v.ts.doc == nil {
		return resp, err
	}
	v.once.Do(func() {
		v.rt, err = legacyrouter.NewRouter(v.ts.doc)
		if err != nil {
			v.ts.t.Errorf("openapi router: %v", err)
		}
	})
	if v.rt == nil {
		return resp, nil
	}
	route, params, ferr := v.rt.FindRoute(req)
	if ferr == nil && !sameTemplatePath(route.Path, req.URL.Path, params) {
		// The legacy router takes /users/ for /users, and /users for
		// /users/{id} with an empty id; net/http's mux serves neither.
		ferr = routers.ErrPathNotFound
	}
	if ferr != nil {
		// No operation: the answer must be a 404 or 405 problem, or a 429,
		// since probing for paths spends a client's quota too.
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed && resp.StatusCode != http.StatusTooManyRequests {
			v.ts.t.Errorf("%s %s has no operation in the document but was answered %d", req.Method, req.URL.Path, resp.StatusCode)
		}
		return resp, nil
	}
	ct := resp.Header.Get("Content-Type")
	streamed := strings.HasPrefix(ct, "text/event-stream") || strings.HasPrefix(ct, "application/x-ndjson")
	var body []byte
	if !streamed {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		resp.Body = io.NopCloser(bytes.NewReader(body))
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 resp.StatusCode,
		Header:                 resp.Header,
		Body:                   io.NopCloser(bytes.NewReader(body)),
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, ExcludeResponseBody: streamed, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(req.Context(), in); err != nil {
		v.ts.t.Errorf("%s %s answered %d, which the OpenAPI document does not allow: %v\nbody: %s", req.Method, req.URL, resp.StatusCode, err, body)
	}
	return resp, nil
}

// sameTemplatePath reports whether path is template with its parameters
// replaced by params, none of them empty.
func sameTemplatePath(template, path string, params map[string]string) bool {
	for name, v := range params {
		if v == "" {
			return false
		}
		template = strings.ReplaceAll(template, "{"+name+"}", v)
	}
	return template == path
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into v, failing the test if it does not decode.
func (r *response) json(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), "body: %s", r.body)
}

// problem decodes a problem body, checking its media type and members.
func (r *response) problem(t *testing.T) problem {
	t.Helper()
	require.Equal(t, problemContentType, r.header.Get("Content-Type"), "body: %s", r.body)
	var p problem
	r.json(t, &p)
	require.Equal(t, r.status, p.Status)
	require.True(t, strings.HasPrefix(p.Type, problemTypePrefix), "type %q", p.Type)
	require.NotEmpty(t, p.Title)
	require.NotEmpty(t, p.Detail)
	return p
}

// do sends a request and reads the whole answer. body, when not nil, is
// sent as JSON (a string or []byte as it is). headers are pairs.
func (ts *testServer) do(method, path string, body any, headers ...string) *response {
	ts.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		require.NoError(ts.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, ts.base+path, rd)
	require.NoError(ts.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := ts.client.Do(req)
	require.NoError(ts.t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(ts.t, err)
	return &response{status: resp.StatusCode, header: resp.Header, body: raw}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for the log.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
