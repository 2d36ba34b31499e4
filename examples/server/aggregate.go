package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/asynckit/asynckit/fanout"
)

const (
	// maxUpstreamBody is the most of an upstream's body that GET /aggregate
	// reads; a longer body is that upstream's failure, so that one upstream
	// cannot make an aggregate hold megabytes.
	maxUpstreamBody = 64 << 10
	// aggregateLimit is how many upstreams one aggregate asks at once.
	aggregateLimit = 8
	// maxDemoLatency bounds the latency_ms of the demo upstream, in
	// milliseconds, so that a request cannot hold a handler for long.
	maxDemoLatency = 10_000
)

// upstreamResult is what one upstream answered to GET /aggregate.
type upstreamResult struct {
	Upstream string          `json:"upstream" doc:"The upstream's URL, as configured but for its password"`
	Status   int             `json:"status" doc:"The upstream's HTTP status; 0 when it did not answer" min:"0" max:"599"`
	Ms       float64         `json:"ms" doc:"How long the upstream took, from the request to the end of its body, in milliseconds" min:"0"`
	Body     json.RawMessage `json:"body,omitempty" doc:"The upstream's body, when it succeeded: its JSON as it is, or a body that is not JSON as a string"`
	Error    string          `json:"error,omitempty" doc:"Why the upstream failed: a connection error, no answer within AGGREGATE_TIMEOUT, a status other than 2xx, or a body over 64 KiB"`
}

// aggregateOutput is the answer of GET /aggregate.
type aggregateOutput struct {
	Results []upstreamResult `json:"results" doc:"One per upstream, in the configured order"`
}

// demoUpstream is the answer of the built-in demo upstream.
type demoUpstream struct {
	Upstream  string `json:"upstream" doc:"The name in the path"`
	LatencyMs int    `json:"latency_ms" doc:"How long the answer was held back, in milliseconds" min:"0" max:"10000"`
}

// aggregator calls the upstreams of GET /aggregate with an HTTP client of
// its own, whose connections are kept between aggregates and closed by
// close.
type aggregator struct {
	upstreams []string
	labels    []string // the upstreams as results name them: without passwords
	timeout   time.Duration
	transport *http.Transport
	client    *http.Client
	trace     *tracer // nil when tracing is off
}

// newAggregator returns the aggregator of cfg's upstreams, or, when there
// are none, of the demo upstreams served at self, the server's own base
// URL, so that the route works offline.
func newAggregator(cfg *config, self string) *aggregator {
	ups := cfg.Upstreams
	if len(ups) == 0 {
		ups = []string{
			self + "/demo/upstream/fast?latency_ms=20",
			self + "/demo/upstream/slow?latency_ms=300",
			self + "/demo/upstream/flaky?latency_ms=50&fail_rate=0.3",
		}
	}
	labels := make([]string, len(ups))
	for i, u := range ups {
		labels[i] = redactURL(u)
	}
	selfHost := ""
	if u, err := url.Parse(self); err == nil {
		selfHost = u.Host
	}
	t := &http.Transport{
		// The server itself, and anything on loopback, is never reached
		// through a proxy from the environment: a proxy cannot reach them,
		// or would reach its own instead. Other upstreams honour
		// HTTPS_PROXY and NO_PROXY as any Go client does.
		Proxy: func(r *http.Request) (*url.URL, error) {
			if r.URL.Host == selfHost || isLoopback(r.URL.Hostname()) {
				return nil, nil
			}
			return http.ProxyFromEnvironment(r)
		},
		DialContext:       (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2: true,
		// UPSTREAM_CONNS bounds what one instance asks of an upstream host:
		// under a burst, calls queue here rather than pile onto it.
		// Each may stay open between aggregates, so that a steady load
		// does not open a connection per call.
		MaxIdleConns:           len(ups) * cfg.UpstreamConns,
		MaxIdleConnsPerHost:    cfg.UpstreamConns,
		MaxConnsPerHost:        cfg.UpstreamConns,
		IdleConnTimeout:        90 * time.Second,
		TLSHandshakeTimeout:    5 * time.Second,
		ExpectContinueTimeout:  time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &aggregator{
		upstreams: ups,
		labels:    labels,
		timeout:   cfg.AggregateTimeout,
		transport: t,
		client: &http.Client{
			Transport: t,
			// An upstream's redirect is its answer, reported as it is:
			// following it would call a URL nobody configured.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

// isLoopback reports whether host names this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// close closes the client's idle connections. It is called once no
// aggregate runs any more, after the HTTP server has drained.
func (g *aggregator) close() { g.transport.CloseIdleConnections() }

// aggregate asks the upstreams concurrently, at most aggregateLimit at a time
// and each within the timeout, and returns one result per upstream in
// their order. An upstream's failure is its result's error, never the
// aggregate's.
func (g *aggregator) aggregate(ctx context.Context, requestID string) aggregateOutput {
	settled := fanout.Settle(ctx, g.upstreams, func(ctx context.Context, u string) (upstreamResult, error) {
		return g.fetch(ctx, u, requestID)
	}, fanout.Limit(aggregateLimit), fanout.Timeout(g.timeout))
	out := aggregateOutput{Results: make([]upstreamResult, len(settled))}
	for i, r := range settled {
		res := r.Value
		res.Upstream = g.labels[i] // also for an upstream that never started
		if r.Err != nil {
			res.Body = nil
			res.Error = g.describe(r.Err)
		}
		out.Results[i] = res
	}
	return out
}

// errUpstreamStatus marks an upstream's answer with a status other than 2xx.
var errUpstreamStatus = errors.New("upstream answered")

// fetch calls one upstream. The result it returns, even with an error,
// holds the status, if one came, and the time taken.
func (g *aggregator) fetch(ctx context.Context, u, requestID string) (res upstreamResult, err error) {
	start := time.Now()
	defer func() { res.Ms = float64(time.Since(start).Microseconds()) / 1000 }()
	if g.trace != nil {
		var span trace.Span
		ctx, span = g.trace.start(ctx, "GET upstream", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
			semconv.HTTPRequestMethodGet, semconv.URLFull(redactURL(u))))
		defer func() {
			if res.Status != 0 {
				span.SetAttributes(semconv.HTTPResponseStatusCode(res.Status))
			}
			if err != nil {
				fail(span, err)
			}
			span.End()
		}()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return res, err
	}
	g.trace.inject(ctx, req.Header)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "asynckit-example-aggregate")
	if requestID != "" {
		req.Header.Set("X-Request-ID", requestID) // one id across the services, for the logs
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return res, err
	}
	defer resp.Body.Close()
	res.Status = resp.StatusCode
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamBody+1))
	if err != nil {
		return res, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return res, fmt.Errorf("%w %d %s", errUpstreamStatus, resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	if len(body) > maxUpstreamBody {
		return res, fmt.Errorf("the body is larger than %d KiB", maxUpstreamBody>>10)
	}
	if isJSON(resp.Header.Get("Content-Type")) && json.Valid(body) && utf8.Valid(body) {
		res.Body = body
	} else {
		res.Body, _ = json.Marshal(string(body)) // a string always marshals
	}
	return res, nil
}

// describe says why an upstream failed, without the URL that its result
// already names.
func (g *aggregator) describe(err error) string {
	var (
		urlErr *url.Error
		pe     *fanout.PanicError
	)
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Sprintf("no answer within %v", g.timeout)
	case errors.As(err, &pe):
		return "the call panicked" // the stack is no business of the client's
	case errors.As(err, &urlErr):
		return urlErr.Err.Error()
	}
	return err.Error()
}

// aggregateRoutes registers GET /aggregate and the demo upstream it calls
// by default.
func (s *server) aggregateRoutes(a *api) {
	handleJSON(a, op{Pattern: "GET /aggregate", ID: "aggregate", Tag: "aggregate", Summary: "Call every upstream at once and gather their answers",
		Description: "Calls the configured upstreams (UPSTREAMS; by default three demo upstreams of this server: fast, slow and flaky) concurrently, " +
			"at most 8 at a time and each within AGGREGATE_TIMEOUT, and answers with one result per upstream in the configured order. " +
			"An upstream that fails (no connection, no answer in time, a status other than 2xx, a body over 64 KiB) has an error in its result; " +
			"the aggregate itself still answers 200."},
		http.StatusOK, func(c *call, _ *none) (aggregateOutput, error) {
			return s.agg.aggregate(c.ctx(), requestID(c.ctx())), nil
		})
	handleJSON(a, op{Pattern: "GET /demo/upstream/{name}", ID: "demoUpstream", Tag: "aggregate", Ops: true,
		Summary: "A demo upstream for GET /aggregate, with chosen latency and failure rate",
		Description: "Answers after latency_ms milliseconds, or, with probability fail_rate, with a 503 problem. " +
			"It is an operational route, not rate limited, so that an aggregate does not spend its client's quota.",
		Params: []param{
			{Name: "name", In: "path", Required: true, Description: "Any name, echoed in the answer",
				Schema: &schema{Type: "string", MinLength: ptr(1), MaxLength: ptr(64)}},
			{Name: "latency_ms", In: "query", Description: "How long to wait before answering, 0 to 10000 ms. Defaults to 0.",
				Schema: &schema{Type: "integer", Minimum: ptr(0.0), Maximum: ptr(float64(maxDemoLatency))}},
			{Name: "fail_rate", In: "query", Description: "The probability, 0 to 1, of answering 503 instead. Defaults to 0.",
				Schema: &schema{Type: "number", Minimum: ptr(0.0), Maximum: ptr(1.0)}},
		},
		Problems: []kind{probValidation, probUnavailable}},
		http.StatusOK, demoUpstreamHandler)
}

// demoUpstreamHandler is GET /demo/upstream/{name}: it waits latency_ms,
// then fails with probability fail_rate. A client that goes away ends the
// wait.
func demoUpstreamHandler(c *call, _ *none) (demoUpstream, error) {
	name := c.PathValue("name")
	q := c.URL.Query()
	var errs []fieldError
	if name == "" || len(name) > 64 {
		errs = append(errs, fieldError{Field: "name", Message: "must be 1 to 64 bytes"})
	}
	latency := 0
	if v := q.Get("latency_ms"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxDemoLatency {
			errs = append(errs, fieldError{Field: "latency_ms", Message: fmt.Sprintf("must be a whole number of milliseconds from 0 to %d", maxDemoLatency)})
		}
		latency = n
	}
	failRate := 0.0
	if v := q.Get("fail_rate"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || !(f >= 0 && f <= 1) { // NaN too
			errs = append(errs, fieldError{Field: "fail_rate", Message: "must be a number from 0 to 1"})
		}
		failRate = f
	}
	if len(errs) > 0 {
		return demoUpstream{}, invalid(errs...)
	}
	if latency > 0 {
		t := time.NewTimer(time.Duration(latency) * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.ctx().Done():
			return demoUpstream{}, c.ctx().Err()
		}
	}
	if failRate > 0 && rand.Float64() < failRate {
		p := newProblem(probUnavailable, "the demo upstream %q failed, as it does with probability %g", name, failRate)
		p.retryAfter = time.Second
		return demoUpstream{}, p
	}
	return demoUpstream{Upstream: name, LatencyMs: latency}, nil
}
