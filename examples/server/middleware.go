package main

import (
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/asynckit/asynckit/ratelimit"
)

type ctxKey struct{}

// routeInfo is what the middleware outside the mux knows of a request: its
// id, and the pattern of the route it reached, which that route fills in.
// It is one context value, so that a request costs one WithContext.
type routeInfo struct {
	id      string
	pattern string
}

func routeInfoFrom(ctx context.Context) *routeInfo {
	info, _ := ctx.Value(ctxKey{}).(*routeInfo)
	return info
}

// requestID returns the request's id, or "" outside a request.
func requestID(ctx context.Context) string {
	if info := routeInfoFrom(ctx); info != nil {
		return info.id
	}
	return ""
}

// validRequestID reports whether a client's X-Request-ID may be kept: 1 to
// 128 characters of letters, digits and -_.:
func validRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == ':') {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// observe is the outermost middleware: it gives the request an id (the
// client's X-Request-ID when it is valid), stamps X-Process-Time, recovers
// a panic into a 500 problem (or, once the answer has begun, aborts the
// answer), logs the request (a warning when it is aborted, or slower than
// slow and not an event stream), and reports it to record.
func observe(log *slog.Logger, slow time.Duration, record func(method, route string, code int, d time.Duration, stream bool), next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			id = newRequestID()
		}
		info := &routeInfo{id: id}
		ctx := context.WithValue(r.Context(), ctxKey{}, info)
		r = r.WithContext(ctx)
		rw := &responseWriter{ResponseWriter: w, start: start}
		rw.Header().Set("X-Request-Id", id) // canonical: Set need not copy it
		defer func() {
			v := recover()
			// An answer that has begun cannot become a problem any more: it
			// is cut short, so that the client does not take the part it got
			// for the whole.
			aborted := v == http.ErrAbortHandler || (v != nil && rw.wroteHeader)
			if v != nil && v != http.ErrAbortHandler {
				log.ErrorContext(ctx, "panic serving request", "panic", v, "stack", string(debug.Stack()), "request_id", id)
				if !rw.wroteHeader {
					writeProblem(rw, r, newProblem(probInternal, "the server could not answer this request"))
				}
			}
			d := time.Since(start)
			route := info.pattern
			if route == "" {
				route = "unmatched"
			}
			// An event stream is long by design: its length is neither a
			// latency nor a warning.
			stream := strings.HasPrefix(rw.Header().Get("Content-Type"), "text/event-stream")
			if record != nil {
				record(r.Method, route, rw.code(), d, stream)
			}
			level := slog.LevelInfo
			msg := "request"
			switch {
			case aborted:
				level, msg = slog.LevelWarn, "request aborted"
			case d > slow && !stream:
				level, msg = slog.LevelWarn, "slow request"
			}
			log.LogAttrs(ctx, level, msg,
				slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("route", route),
				slog.Int("status", rw.code()), slog.Int64("bytes", rw.bytes), slog.Duration("duration", d),
				slog.String("remote", r.RemoteAddr), slog.String("request_id", id))
			if aborted {
				panic(http.ErrAbortHandler) // net/http closes the connection, and logs nothing more
			}
		}()
		next.ServeHTTP(rw, r)
	})
}

// responseWriter records the status and size of an answer and stamps
// X-Process-Time, the time from the request's arrival to its header, in
// seconds. It passes Flush on and unwraps for http.ResponseController.
type responseWriter struct {
	http.ResponseWriter
	start       time.Time
	status      int
	bytes       int64
	wroteHeader bool
}

func (w *responseWriter) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.wroteHeader = true
		w.status = code
	}
	w.Header().Set("X-Process-Time", strconv.FormatFloat(time.Since(w.start).Seconds(), 'f', 6, 64))
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(b []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) Flush() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *responseWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// cors answers CORS preflight requests from the allowed origins and adds
// the CORS headers to their other requests. "*" allows any origin.
// Requests from other origins are served without CORS headers, so browsers
// keep their answers from the page.
func cors(origins []string, next http.Handler) http.Handler {
	if len(origins) == 0 {
		return next
	}
	any := slices.Contains(origins, "*")
	const (
		methods = "GET, POST, PUT, DELETE, OPTIONS"
		headers = "Content-Type, Idempotency-Key, X-Client-ID, X-Request-ID, Last-Event-ID"
		expose  = "RateLimit, RateLimit-Policy, Retry-After, X-Request-ID, X-Process-Time, Idempotent-Replayed"
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		h := w.Header()
		h.Add("Vary", "Origin")
		if origin == "" || !(any || slices.Contains(origins, origin)) {
			next.ServeHTTP(w, r)
			return
		}
		if any {
			h.Set("Access-Control-Allow-Origin", "*")
		} else {
			h.Set("Access-Control-Allow-Origin", origin)
		}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", methods)
			h.Set("Access-Control-Allow-Headers", headers)
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", expose)
		next.ServeHTTP(w, r)
	})
}

// gzipMinSize is the smallest answer worth compressing.
const gzipMinSize = 1024

var gzipPool = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(nil, gzip.DefaultCompression)
	return w
}}

// compress gzips answers of gzipMinSize bytes or more for clients that
// accept gzip. Event streams, answers that are already encoded and
// answers without a body are left alone. A handler that flushes before
// gzipMinSize bytes are written gets the rest uncompressed, so streams are
// never held back.
func compress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Accept-Encoding")
		if !acceptsGzip(r.Header.Get("Accept-Encoding")) || r.Method == http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		gw := &gzipWriter{ResponseWriter: w}
		served := false
		defer func() {
			if served {
				gw.close()
			} else {
				gw.release() // a panic: what is held back must not pass for a whole answer
			}
		}()
		next.ServeHTTP(gw, r)
		served = true
	})
}

// acceptsGzip reports whether an Accept-Encoding value admits gzip.
func acceptsGzip(v string) bool {
	for part := range strings.SplitSeq(v, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), "gzip") {
			continue
		}
		q := strings.TrimSpace(params)
		if qv, ok := strings.CutPrefix(q, "q="); ok {
			f, err := strconv.ParseFloat(qv, 64)
			return err == nil && f > 0
		}
		return true
	}
	return false
}

type gzipWriter struct {
	http.ResponseWriter
	gz      *gzip.Writer
	buf     []byte
	status  int
	decided bool // whether to compress has been decided
	headed  bool // the header has gone to the client
}

func (g *gzipWriter) WriteHeader(code int) {
	if g.status != 0 || code < 200 {
		if code < 200 {
			g.ResponseWriter.WriteHeader(code)
		}
		return
	}
	g.status = code
	h := g.Header()
	cl, _ := strconv.Atoi(h.Get("Content-Length"))
	switch {
	case code == http.StatusNoContent || code == http.StatusNotModified,
		h.Get("Content-Encoding") != "",
		strings.HasPrefix(h.Get("Content-Type"), "text/event-stream"),
		h.Get("Content-Length") != "" && cl < gzipMinSize:
		g.decide(false)
	case cl >= gzipMinSize && h["Content-Type"] != nil:
		g.decide(true) // else the first bytes are needed to type it
	}
}

// decide sends the header, compressed or not, and any bytes held back.
func (g *gzipWriter) decide(gz bool) {
	g.decided = true
	if gz {
		h := g.Header()
		if _, typed := h["Content-Type"]; !typed {
			// net/http types an untyped answer by its first bytes, but not
			// once it is encoded: those would be gzip's.
			h.Set("Content-Type", http.DetectContentType(g.buf))
		}
		h.Del("Content-Length")
		h.Set("Content-Encoding", "gzip")
		g.gz = gzipPool.Get().(*gzip.Writer)
		g.gz.Reset(g.ResponseWriter)
	}
	if g.status == 0 {
		g.status = http.StatusOK
	}
	g.ResponseWriter.WriteHeader(g.status)
	g.headed = true
	if len(g.buf) > 0 {
		_, _ = g.write(g.buf)
		g.buf = nil
	}
}

func (g *gzipWriter) write(b []byte) (int, error) {
	if g.gz != nil {
		return g.gz.Write(b)
	}
	return g.ResponseWriter.Write(b)
}

func (g *gzipWriter) Write(b []byte) (int, error) {
	if g.status == 0 {
		g.WriteHeader(http.StatusOK)
	}
	if g.decided {
		return g.write(b)
	}
	g.buf = append(g.buf, b...)
	if len(g.buf) >= gzipMinSize {
		g.decide(true)
	}
	return len(b), nil
}

func (g *gzipWriter) Flush() {
	if !g.decided {
		g.decide(false)
	}
	if g.gz != nil {
		_ = g.gz.Flush()
	}
	_ = http.NewResponseController(g.ResponseWriter).Flush()
}

func (g *gzipWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// close ends the answer: it sends what is held back, uncompressed if it is
// short, and finishes the gzip stream.
func (g *gzipWriter) close() {
	if g.status == 0 && len(g.buf) == 0 {
		return // nothing was written: net/http sends an empty 200
	}
	if !g.decided {
		g.Header().Set("Content-Length", strconv.Itoa(len(g.buf)))
		g.decide(false)
	}
	if g.gz != nil {
		_ = g.gz.Close()
		g.gz.Reset(nil)
		gzipPool.Put(g.gz)
		g.gz = nil
	}
}

// release drops what close would send, for an answer that was never
// finished.
func (g *gzipWriter) release() {
	g.buf = nil
	if g.gz != nil {
		g.gz.Reset(nil)
		gzipPool.Put(g.gz)
		g.gz = nil
	}
}

// clientKeyFunc returns the key that identifies a request's client, for
// rate limits and idempotency keys: "id:" and the X-Client-ID header when
// it is sent, else "ip:" and the client's address (X-Forwarded-For is
// believed only from trusted proxies). An X-Client-ID that is not 1 to 128
// visible ASCII characters is an error, which the rate limiter answers
// with 400.
func clientKeyFunc(trusted []netip.Prefix) ratelimit.KeyFunc {
	byIP := ratelimit.KeyByIP(trusted...)
	return func(r *http.Request) (string, error) {
		if v, ok := r.Header["X-Client-Id"]; ok {
			id := ""
			if len(v) == 1 {
				id = v[0]
			}
			if id == "" || len(id) > 128 || strings.ContainsFunc(id, func(c rune) bool { return c <= ' ' || c > '~' }) {
				return "", fmt.Errorf("X-Client-ID must be 1 to 128 visible ASCII characters")
			}
			return "id:" + id, nil
		}
		ip, err := byIP(r)
		if err != nil {
			return "", err
		}
		return "ip:" + ip, nil
	}
}

// requireClientKey answers a request whose client key cannot be found (an
// X-Client-ID that is not valid, say) with a 400 problem of this API's own
// kind, documented at its type, before it reaches next; the rate limiter
// would answer it with an about:blank problem that names nothing.
func requireClientKey(key ratelimit.KeyFunc, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := key(r); err != nil {
			writeProblem(w, r, newProblem(probBadRequest, "%v", err))
			return
		}
		next.ServeHTTP(w, r)
	})
}
