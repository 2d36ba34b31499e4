package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/asynckit/asynckit/ratelimit"
)

// problem is an RFC 9457 problem details object: the body of every error
// answer, and the error type handlers return to choose one. Its Type is a
// relative URI, /docs/problems/<slug>, that /docs documents.
type problem struct {
	Type      string       `json:"type" doc:"URI reference naming the kind of problem; /docs/problems/{slug} describes it"`
	Title     string       `json:"title" doc:"Short summary of the kind of problem"`
	Status    int          `json:"status" doc:"HTTP status code"`
	Detail    string       `json:"detail,omitempty" doc:"What went wrong with this request"`
	Instance  string       `json:"instance,omitempty" doc:"The path of the request"`
	RequestID string       `json:"request_id,omitempty" doc:"The request's X-Request-ID, for the logs"`
	Errors    []fieldError `json:"errors,omitempty" doc:"One entry per invalid field or row"`

	ViolatedPolicies []string `json:"violated-policies,omitempty" doc:"For rate-limited: the quotas spent (draft-ietf-httpapi-ratelimit-headers)"`

	retryAfter time.Duration // sets Retry-After when positive
}

// fieldError says what is wrong with one field of the input, or of one row
// of a bulk input.
type fieldError struct {
	Index   *int   `json:"index,omitempty" doc:"Position of the row in a bulk input"`
	Field   string `json:"field,omitempty" doc:"JSON name of the field, dotted for nested fields"`
	Message string `json:"message" doc:"What is wrong with it"`
}

func (p *problem) Error() string { return p.Title + ": " + p.Detail }

// kind is one entry of the catalogue of problems this API answers with.
type kind struct {
	slug, title string
	status      int
	about       string
}

// The catalogue. /docs lists it, and every problem's type points into it.
var (
	probBadRequest     = kind{"bad-request", "Bad request", 400, "The request could not be read: malformed JSON, a value of the wrong type, an unknown field, or a missing one."}
	probValidation     = kind{"validation-error", "Invalid input", 400, "The request was read but a value is not acceptable; errors lists each one."}
	probInvalidCursor  = kind{"invalid-cursor", "Invalid cursor", 400, "The cursor was not issued by this service for this listing, or has been altered. Start again from the first page."}
	probNotFound       = kind{"not-found", "Not found", 404, "No resource has this id, or no route has this path."}
	probMethod         = kind{"method-not-allowed", "Method not allowed", 405, "The path exists but not with this method; the Allow header lists the methods it takes."}
	probConflict       = kind{"conflict", "Conflict", 409, "The request conflicts with the current state, such as a username that is already taken."}
	probKeyInUse       = kind{"idempotency-key-in-use", "Idempotency key in use", 409, "Another request with this Idempotency-Key is still being processed. Retry after the Retry-After delay to receive its answer."}
	probTaskFinished   = kind{"task-finished", "Task already finished", 409, "The task has already reached a terminal status and cannot be cancelled."}
	probTooLarge       = kind{"payload-too-large", "Payload too large", 413, "The request body is larger than the server accepts (MAX_BODY for JSON, MAX_UPLOAD for files)."}
	probMediaType      = kind{"unsupported-media-type", "Unsupported media type", 415, "The request body has a Content-Type this route does not take."}
	probInsufficient   = kind{"insufficient-funds", "Insufficient funds", 422, "The source account's balance is smaller than the amount. Nothing was transferred."}
	probBalanceLimit   = kind{"balance-limit", "Balance limit exceeded", 422, "The transfer would take the destination account's balance past the largest balance an account may hold. Nothing was transferred."}
	probKeyReused      = kind{"idempotency-key-reused", "Idempotency key reused", 422, "The Idempotency-Key was first used with a different request (method, route or body). Nothing was done; use a new key for a new request."}
	probInvalidRows    = kind{"invalid-rows", "Invalid rows", 422, "Some rows of a bulk request are invalid; errors lists them by index. Nothing was written."}
	probRateLimited    = kind{"rate-limited", "Too many requests", 429, "The client's rate limit (RATE_LIMIT per X-Client-ID, else per IP address) is spent. Retry-After says when to come back, RateLimit how much is left and RateLimit-Policy what the quota is; violated-policies names the quota spent. Nothing was done."}
	probQueueFull      = kind{"queue-full", "Task queue full", 503, "The task queue holds as many waiting tasks as it may. Retry after the Retry-After delay."}
	probUploadSpace    = kind{"upload-space-full", "Upload space full", 503, "The files waiting to be processed take all the space uploads may use (UPLOAD_SPACE). Retry after the Retry-After delay."}
	probNotReady       = kind{"not-ready", "Not ready", 503, "A dependency of the service is not answering."}
	probUnavailable    = kind{"unavailable", "Service unavailable", 503, "The service is shutting down or overloaded. Retry after the Retry-After delay."}
	probInternal       = kind{"internal-error", "Internal error", 500, "The server failed to answer; the request id finds the cause in its log. Nothing the client sent caused it."}
	problemKinds       = []kind{probBadRequest, probValidation, probInvalidCursor, probNotFound, probMethod, probConflict, probKeyInUse, probTaskFinished, probTooLarge, probMediaType, probInsufficient, probBalanceLimit, probKeyReused, probInvalidRows, probRateLimited, probQueueFull, probUploadSpace, probNotReady, probUnavailable, probInternal}
	problemTypePrefix  = "/docs/problems/"
	problemContentType = "application/problem+json"
)

// newProblem returns a problem of kind k with a detail.
func newProblem(k kind, format string, args ...any) *problem {
	return &problem{Type: problemTypePrefix + k.slug, Title: k.title, Status: k.status, Detail: fmt.Sprintf(format, args...)}
}

// invalid returns a validation problem listing errs.
func invalid(errs ...fieldError) *problem {
	p := newProblem(probValidation, "%d invalid field(s)", len(errs))
	if len(errs) == 1 {
		p.Detail = errs[0].Field + ": " + errs[0].Message
	}
	p.Errors = errs
	return p
}

// writeProblem writes p as the answer to r.
func writeProblem(w http.ResponseWriter, r *http.Request, p *problem) {
	out := *p
	out.Instance = r.URL.Path
	out.RequestID = requestID(r.Context())
	if p.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((p.retryAfter+time.Second-1)/time.Second)))
	}
	body, err := json.Marshal(&out)
	if err != nil { // cannot happen: every field marshals
		body = []byte(`{"type":"about:blank","title":"Internal error","status":500}`)
		out.Status = 500
	}
	h := w.Header()
	h.Set("Content-Type", problemContentType)
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Del("Content-Encoding")
	w.WriteHeader(out.Status)
	_, _ = w.Write(append(body, '\n'))
}

// rateLimited answers a request that the rate limit denied, as every
// other problem is answered (with its instance and request id); the
// limiter's middleware has set Retry-After and the RateLimit fields.
func rateLimited(w http.ResponseWriter, r *http.Request, d ratelimit.Decision) {
	name := d.Policies[len(d.Policies)-1]
	p := newProblem(probRateLimited, "quota %q exceeded; retry after %s s", name, w.Header().Get("Retry-After"))
	p.ViolatedPolicies = []string{name}
	writeProblem(w, r, p)
}

// writeError answers r with err: the problem it is, or else a 500 whose
// cause is logged under the request's id. A request whose client went away
// gets no answer worth writing; it is logged at debug level.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var p *problem
	switch {
	case errors.As(err, &p):
	case r.Context().Err() != nil && errors.Is(err, context.Canceled):
		log.DebugContext(r.Context(), "client went away", "err", err, "request_id", requestID(r.Context()))
		p = newProblem(probUnavailable, "the request was cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		log.WarnContext(r.Context(), "request timed out", "err", err, "request_id", requestID(r.Context()))
		p = newProblem(probUnavailable, "the request took too long")
		p.retryAfter = time.Second
	default:
		log.ErrorContext(r.Context(), "request failed", "err", err, "method", r.Method, "path", r.URL.Path, "request_id", requestID(r.Context()))
		p = newProblem(probInternal, "the server could not answer this request")
	}
	writeProblem(w, r, p)
}
