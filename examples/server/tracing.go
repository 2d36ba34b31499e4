package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/asynckit/asynckit/cache"
	"github.com/asynckit/asynckit/taskqueue"
)

// Tracing, when OTEL_EXPORTER_OTLP_ENDPOINT is set, records a span for
// each request, each Postgres query made on behalf of a request or a
// task, each load of the user cache, each upstream call of
// GET /aggregate, and each task run, and sends them by OTLP over HTTP.
//
// A task's trace context travels with it through the task store, as the
// W3C traceparent (and tracestate) in the task's taskqueue.Metadata, so a
// task run on any instance is a child of the request that submitted it.
// Incoming requests join the trace of a traceparent header, and the
// upstream calls of GET /aggregate send one.
//
// SQLite queries get no spans of their own: its driver has no hook for a
// tracer, and its queries run in-process in microseconds, inside the
// spans of the request, cache load or task that made them. Postgres
// queries are traced through pgx's QueryTracer. Queries that belong to no
// trace (the task queue's claims, sweeps and rescues) are not traced, so
// that they do not flood the backend with traces of one span each.
//
// Without the variable the tracer is nil: no exporter, no provider, no
// middleware, and every method below returns at its first line.

// tracer is the server's tracing; nil when tracing is off.
type tracer struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	prop     propagation.TextMapPropagator
	where    string // where spans go, for the startup line
}

// tracerName is the instrumentation scope of every span the server makes.
const tracerName = "github.com/asynckit/asynckit/examples/server"

// newTracer returns the tracer that cfg asks for, or nil when it asks for
// none. The exporter is OTLP over HTTP to cfg.OTLPEndpoint, unless
// cfg.spanExporter is set (tests and benchmarks). instance names this
// instance in the spans' resource.
func newTracer(cfg *config, instance string) (*tracer, error) {
	exp := cfg.spanExporter
	where := "in process"
	if exp == nil {
		if cfg.OTLPEndpoint == "" {
			return nil, nil
		}
		// The variable is a base URL, to which OTLP/HTTP adds the signal's
		// path; the exporter's other OTEL_EXPORTER_OTLP_* variables
		// (headers, timeout, compression) apply as the exporter reads them.
		endpoint := strings.TrimSuffix(cfg.OTLPEndpoint, "/") + "/v1/traces"
		var err error
		if exp, err = otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(endpoint)); err != nil {
			return nil, fmt.Errorf("tracing: %w", err)
		}
		where = "otlp " + redactURL(endpoint)
	}
	res := resource.NewWithAttributes(semconv.SchemaURL,
		semconv.ServiceName("asynckit-example"),
		semconv.ServiceInstanceID(instance))
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	)
	return &tracer{
		provider: tp,
		tracer:   tp.Tracer(tracerName),
		prop:     propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		where:    where,
	}, nil
}

// describe says whether tracing is on and where spans go, for the
// startup line.
func (t *tracer) describe() string {
	if t == nil {
		return "off (set OTEL_EXPORTER_OTLP_ENDPOINT to turn it on)"
	}
	return "on, exporting to " + t.where
}

// start starts a span named name as a child of the span in ctx. With
// tracing off it returns ctx and the non-recording span of ctx, at the
// cost of a nil check.
func (t *tracer) start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if t == nil {
		return ctx, trace.SpanFromContext(ctx)
	}
	return t.tracer.Start(ctx, name, opts...)
}

// traceFlushTimeout bounds the export of the last spans at shutdown.
const traceFlushTimeout = 5 * time.Second

// shutdown exports the spans still buffered and stops the exporter. It is
// the last step of the server's shutdown, so the spans of the shutdown's
// own work (tasks interrupted, say) are sent too.
func (t *tracer) shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("flush traces: %w", err)
	}
	return nil
}

// fail records err on span and marks it failed.
func fail(span trace.Span, err error) {
	span.RecordError(err)
	span.SetStatus(codes.Error, err.Error())
}

// requests is the middleware that makes a server span of each request,
// inside observe: it joins the caller's trace when the request carries a
// traceparent, is named after the route that served it, and is marked
// failed for a 5xx. A panic reaches observe, which answers it, with the
// span ended and failed.
func (t *tracer) requests(next http.Handler) http.Handler {
	if t == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := t.prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := t.tracer.Start(ctx, r.Method, trace.WithSpanKind(trace.SpanKindServer), trace.WithAttributes(
			semconv.HTTPRequestMethodKey.String(r.Method),
			semconv.URLPath(r.URL.Path),
			semconv.ClientAddress(hostOf(r.RemoteAddr)),
			attribute.String("http.request.id", requestID(ctx)),
		))
		ended := false
		defer func() {
			if !ended {
				span.SetStatus(codes.Error, "panic")
				span.End()
			}
		}()
		next.ServeHTTP(w, r.WithContext(ctx))
		if info := routeInfoFrom(ctx); info != nil && info.pattern != "" {
			span.SetName(info.pattern)
			if _, route, ok := strings.Cut(info.pattern, " "); ok {
				span.SetAttributes(semconv.HTTPRoute(route))
			}
		}
		code := http.StatusOK
		if rw, ok := w.(*responseWriter); ok {
			code = rw.code()
		}
		span.SetAttributes(semconv.HTTPResponseStatusCode(code))
		if code >= 500 {
			span.SetStatus(codes.Error, http.StatusText(code))
		}
		ended = true
		span.End()
	})
}

// hostOf returns the host of a host:port address, or addr as it is.
func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

// inject writes the trace context of ctx into h, for an outgoing request.
func (t *tracer) inject(ctx context.Context, h http.Header) {
	if t == nil {
		return
	}
	t.prop.Inject(ctx, propagation.HeaderCarrier(h))
}

// submitOptions returns the options that carry the trace context of ctx
// into a task: its traceparent and tracestate as the task's metadata.
// None when tracing is off or ctx is in no trace.
func (t *tracer) submitOptions(ctx context.Context) []taskqueue.SubmitOption {
	if t == nil || !trace.SpanContextFromContext(ctx).IsValid() {
		return nil
	}
	md := make(map[string]string, 2)
	propagation.TraceContext{}.Inject(ctx, propagation.MapCarrier(md))
	return []taskqueue.SubmitOption{taskqueue.Metadata(md)}
}

// submit submits a task with the trace context of ctx in its metadata, so
// that its runs are children of the span in ctx wherever they run.
func (s *server) submit(ctx context.Context, kind string, payload any, opts ...taskqueue.SubmitOption) (taskqueue.Info, error) {
	return s.tasks.Submit(ctx, kind, payload, append(opts, s.trace.submitOptions(ctx)...)...)
}

// traceTask wraps the handler of kind so that each attempt runs in a span,
// a child of the trace the task was submitted in (see submitOptions), or
// the root of a trace of its own.
func traceTask[P, R any](t *tracer, kind string, fn func(context.Context, *taskqueue.Job, P) (R, error)) func(context.Context, *taskqueue.Job, P) (R, error) {
	if t == nil {
		return fn
	}
	return func(ctx context.Context, job *taskqueue.Job, p P) (res R, err error) {
		if md := job.Metadata(); md != nil {
			ctx = propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier(md))
		}
		ctx, span := t.tracer.Start(ctx, "task "+kind, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
			attribute.String("task.id", job.ID()),
			attribute.String("task.kind", kind),
			attribute.Int("task.attempt", job.Attempt()),
			attribute.Int("task.max_attempts", job.MaxAttempts()),
		))
		defer func() {
			if v := recover(); v != nil {
				span.SetStatus(codes.Error, fmt.Sprint("panic: ", v))
				span.End()
				panic(v) // the Runner makes it a failed attempt, with its stack
			}
			if err != nil {
				fail(span, err)
			}
			span.End()
		}()
		return fn(ctx, job, p)
	}
}

// traceLoad wraps a cache loader so that each load, a miss that reads
// the database, is a span.
func traceLoad[K comparable, V any](t *tracer, name string, load cache.Loader[K, V]) cache.Loader[K, V] {
	if t == nil {
		return load
	}
	return func(ctx context.Context, k K) (v V, err error) {
		ctx, span := t.tracer.Start(ctx, name, trace.WithAttributes(attribute.String("cache.key", fmt.Sprint(k))))
		defer func() {
			if err != nil {
				fail(span, err)
			}
			span.End()
		}()
		return load(ctx, k)
	}
}

// maxQueryText bounds the SQL text a query span records.
const maxQueryText = 2048

// queryTracer makes a span of each Postgres query made inside a trace. Its
// arguments are not recorded: they hold users' data.
type queryTracer struct{ t *tracer }

var _ pgx.QueryTracer = queryTracer{}

// TraceQueryStart implements pgx.QueryTracer.
func (q queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ctx
	}
	text := data.SQL
	if len(text) > maxQueryText {
		text = text[:maxQueryText] + "…"
	}
	op := queryOperation(data.SQL)
	ctx, span := q.t.tracer.Start(ctx, "postgres "+op, trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		semconv.DBSystemNamePostgreSQL,
		semconv.DBOperationName(op),
		semconv.DBQueryText(text),
	))
	return context.WithValue(ctx, querySpanKey{}, span)
}

// querySpanKey marks the ctx of a query that TraceQueryStart traced, so
// that TraceQueryEnd ends that span and never the request's or task's.
type querySpanKey struct{}

// TraceQueryEnd implements pgx.QueryTracer.
func (q queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryEndData) {
	span, ok := ctx.Value(querySpanKey{}).(trace.Span)
	if !ok {
		return
	}
	if data.Err != nil {
		fail(span, data.Err)
	} else {
		span.SetAttributes(attribute.Int64("db.response.affected_rows", data.CommandTag.RowsAffected()))
	}
	span.End()
}

// queryOperation returns the first keyword of a statement, upper case:
// SELECT, INSERT, WITH, BEGIN.
func queryOperation(sql string) string {
	sql = strings.TrimLeft(sql, " \t\r\n(")
	end := strings.IndexFunc(sql, func(r rune) bool { return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') })
	if end < 0 {
		end = len(sql)
	}
	if end == 0 {
		return "QUERY"
	}
	return strings.ToUpper(sql[:end])
}
