package ratelimit

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DefaultProblemType is the problem "type" of a 429 answer: the
// quota-exceeded type that draft-ietf-httpapi-ratelimit-headers registers.
const DefaultProblemType = "https://iana.org/assignments/http-problem-types#quota-exceeded"

// Decision is what the middleware decided for one request, given to the
// [OnDecision] hook.
type Decision struct {
	// Key is the key the middleware's own key function returned, if it
	// was called and succeeded.
	Key string
	// Allowed reports whether every policy that was asked admitted the
	// request. In shadow mode the request is served either way.
	Allowed bool
	// Policies are the names of the policies asked, in order, and Results
	// their results. Asking stops at the first policy that denies.
	Policies []string
	Results  []Result
	// Err is a key function's or a limiter's error, if any.
	Err error
}

// MiddlewareOption configures [Middleware].
type MiddlewareOption func(*middleware) error

// Policy adds a further named quota to the middleware, with its own limiter
// and, if key is not nil, its own key function (else the middleware's).
// Policies are asked in the order given, after the first, and the first to
// deny decides; so put short windows before long ones, or a request
// refused by a per-second burst would still be charged to a daily quota.
// A request that passes is charged to every policy.
func Policy(name string, l Limiter, key KeyFunc) MiddlewareOption {
	return func(m *middleware) error {
		if l == nil {
			return fmt.Errorf("ratelimit: policy %q has a nil limiter", name)
		}
		return m.add(name, l, key)
	}
}

// Name names the middleware's first policy in the RateLimit headers.
// Defaults to "default". A name must be 1 to 64 printable ASCII characters.
func Name(name string) MiddlewareOption {
	return func(m *middleware) error {
		if err := checkPolicyName(name); err != nil {
			return err
		}
		m.policies[0].name = name
		return nil
	}
}

// LegacyHeaders adds X-RateLimit-Limit, X-RateLimit-Remaining and
// X-RateLimit-Reset (delta seconds, not a timestamp) for the deciding
// policy, for clients that predate the IETF fields.
func LegacyHeaders() MiddlewareOption {
	return func(m *middleware) error { m.legacy = true; return nil }
}

// OnDecision calls record for every request's decision, after it is taken
// and before the handler runs. record must be safe for concurrent use.
func OnDecision(record func(r *http.Request, d Decision)) MiddlewareOption {
	return func(m *middleware) error {
		if record == nil {
			return errors.New("ratelimit: OnDecision with a nil func")
		}
		m.record = record
		return nil
	}
}

// Shadow makes the middleware decide and record but block nothing: every
// request is served, without RateLimit headers, and key function errors do
// not answer 400. Use it with [OnDecision] to see what a new limit would do
// before enforcing it; Shadow without OnDecision is an error.
func Shadow() MiddlewareOption {
	return func(m *middleware) error { m.shadow = true; return nil }
}

// ProblemType sets the "type" URI of the 429 problem body. Defaults to
// [DefaultProblemType].
func ProblemType(uri string) MiddlewareOption {
	return func(m *middleware) error {
		if uri == "" {
			return errors.New("ratelimit: empty problem type")
		}
		m.problemType = uri
		return nil
	}
}

// OnLimited answers each denied request with respond instead of the
// default problem body, for a service whose error answers carry more (a
// request id, its own problem types) or another format. When respond is
// called, the middleware has set the RateLimit fields and Retry-After on
// w's header; respond writes the status, normally 429, and the body. d is
// the request's decision: the last of d.Policies denied it, and the last
// of d.Results says when to retry. respond must be safe for concurrent
// use. [ProblemType] has no effect beside it.
func OnLimited(respond func(w http.ResponseWriter, r *http.Request, d Decision)) MiddlewareOption {
	return func(m *middleware) error {
		if respond == nil {
			return errors.New("ratelimit: OnLimited with a nil func")
		}
		m.limited = respond
		return nil
	}
}

type policy struct {
	name string
	l    Limiter
	key  KeyFunc // nil: the middleware's key function, called once per request
}

type middleware struct {
	key         KeyFunc
	policies    []policy
	legacy      bool
	shadow      bool
	record      func(*http.Request, Decision)
	limited     func(http.ResponseWriter, *http.Request, Decision) // nil: the problem body
	problemType string
	policyField string // the RateLimit-Policy field value, fixed
}

func (m *middleware) add(name string, l Limiter, key KeyFunc) error {
	if err := checkPolicyName(name); err != nil {
		return err
	}
	m.policies = append(m.policies, policy{name: name, l: l, key: key})
	return nil
}

func checkPolicyName(name string) error {
	if name == "" || len(name) > 64 {
		return fmt.Errorf("ratelimit: policy name %q must be 1 to 64 characters", name)
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 || name[i] > 0x7e {
			return fmt.Errorf("ratelimit: policy name %q must be printable ASCII", name)
		}
	}
	return nil
}

// limited is the optional interface of limiters that report their Limit
// without a request, used to write RateLimit-Policy.
type limited interface{ Limit() Limit }

// Middleware returns net/http middleware that limits each request under
// the key that key returns, with l, and any further [Policy]s.
//
// Every response carries the IETF draft-ietf-httpapi-ratelimit-headers-10
// fields: `RateLimit-Policy` lists each policy's quota (q = Rate, w = Period
// in seconds, rounded up) and `RateLimit` each asked policy's remaining
// units (r) and seconds until its quota is whole again (t, rounded up):
//
//	RateLimit-Policy: "default";q=100;w=60
//	RateLimit: "default";r=42;t=17
//
// A denied request gets 429 Too Many Requests, `Retry-After` in whole
// seconds (the deciding RetryAfter, rounded up) and an
// application/problem+json body whose type is [DefaultProblemType], naming
// the policy that denied it in the draft's "violated-policies" member
// ([OnLimited] answers otherwise). A key
// function error, an empty key or one longer than [MaxKeyLen] gets 400 with
// a problem body: it never limits everyone under one key.
//
// When a limiter returns an error (its store is down), the request is
// served without RateLimit fields, and OnDecision sees the error: an
// outage of the limiter's store must not become an outage of the service.
// Wrap the limiter with [WithFailurePolicy] to choose otherwise.
//
// Middleware returns an error for a nil limiter or key function, a bad
// option, or a policy whose limiter does not report its Limit (a Limit()
// method, which every limiter in asynckit has).
func Middleware(l Limiter, key KeyFunc, opts ...MiddlewareOption) (func(http.Handler) http.Handler, error) {
	if l == nil || key == nil {
		return nil, errors.New("ratelimit: Middleware needs a limiter and a key function")
	}
	m := &middleware{policies: []policy{{name: "default", l: l}}, key: key, problemType: DefaultProblemType}
	for _, o := range opts {
		if o == nil {
			return nil, errors.New("ratelimit: nil MiddlewareOption")
		}
		if err := o(m); err != nil {
			return nil, err
		}
	}
	if m.shadow && m.record == nil {
		return nil, errors.New("ratelimit: Shadow needs OnDecision, or nothing would see the decisions")
	}
	var b strings.Builder
	seen := map[string]bool{}
	for i := range m.policies {
		p := &m.policies[i]
		if seen[p.name] {
			return nil, fmt.Errorf("ratelimit: two policies named %q", p.name)
		}
		seen[p.name] = true
		ll, ok := p.l.(limited)
		if !ok {
			return nil, fmt.Errorf("ratelimit: policy %q: limiter %T has no Limit() method", p.name, p.l)
		}
		lim := ll.Limit()
		if i > 0 {
			b.WriteString(", ")
		}
		writeSFString(&b, p.name)
		fmt.Fprintf(&b, ";q=%d;w=%d", lim.Rate, ceilSeconds(lim.Period))
	}
	m.policyField = b.String()
	return func(next http.Handler) http.Handler {
		if next == nil {
			next = http.NotFoundHandler()
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(w, r, next) })
	}, nil
}

func (m *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	d := Decision{Allowed: true}
	var keyErr, limErr error
	var mainKey string
	for i, p := range m.policies {
		var key string
		var err error
		switch {
		case p.key != nil:
			key, err = p.key(r)
		case i == 0 || mainKey == "":
			key, err = m.key(r)
			mainKey = key
			if err == nil {
				d.Key = key
			}
		default:
			key = mainKey
		}
		if err == nil && key == "" {
			err = fmt.Errorf("%w: the key function returned an empty key", ErrNoKey)
		}
		if err == nil && len(key) > MaxKeyLen {
			err = fmt.Errorf("ratelimit: the key function returned a key longer than %d bytes", MaxKeyLen)
		}
		if err != nil {
			keyErr = err
			break
		}
		res, err := p.l.AllowN(r.Context(), key, 1)
		if err != nil {
			limErr = fmt.Errorf("ratelimit: policy %q: %w", p.name, err)
			break
		}
		d.Policies = append(d.Policies, p.name)
		d.Results = append(d.Results, res)
		if !res.Allowed {
			d.Allowed = false
			break
		}
	}
	d.Err = errors.Join(keyErr, limErr)
	if m.record != nil {
		m.record(r, d)
	}
	switch {
	case m.shadow:
		next.ServeHTTP(w, r)
		return
	case keyErr != nil:
		writeProblem(w, problem{Type: "about:blank", Title: "Bad Request", Status: http.StatusBadRequest, Detail: keyErr.Error()})
		return
	case limErr != nil:
		next.ServeHTTP(w, r) // fail open: see Middleware
		return
	}
	h := w.Header()
	// The names are written in canonical form so that Set need not
	// allocate a canonical copy of them on every request.
	h.Set("Ratelimit-Policy", m.policyField)
	h.Set("Ratelimit", m.rateLimitField(d))
	decider := d.Results[len(d.Results)-1]
	if d.Allowed {
		for _, res := range d.Results {
			if res.Remaining < decider.Remaining {
				decider = res
			}
		}
	}
	if m.legacy {
		h.Set("X-Ratelimit-Limit", strconv.Itoa(decider.Limit.Rate))
		h.Set("X-Ratelimit-Remaining", strconv.Itoa(decider.Remaining))
		h.Set("X-Ratelimit-Reset", strconv.FormatInt(ceilSeconds(decider.ResetAfter), 10))
	}
	if d.Allowed {
		next.ServeHTTP(w, r)
		return
	}
	retry := ceilSeconds(decider.RetryAfter)
	h.Set("Retry-After", strconv.FormatInt(retry, 10))
	if m.limited != nil {
		m.limited(w, r, d)
		return
	}
	name := d.Policies[len(d.Policies)-1]
	writeProblem(w, problem{
		Type: m.problemType, Title: "Too Many Requests", Status: http.StatusTooManyRequests,
		Detail:           fmt.Sprintf("Quota %q exceeded; retry after %d s.", name, retry),
		ViolatedPolicies: []string{name},
	})
}

func (m *middleware) rateLimitField(d Decision) string {
	b := make([]byte, 0, 48*len(d.Results))
	for i, res := range d.Results {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = appendSFString(b, d.Policies[i])
		b = append(b, ";r="...)
		b = strconv.AppendInt(b, int64(res.Remaining), 10)
		b = append(b, ";t="...)
		b = strconv.AppendInt(b, ceilSeconds(res.ResetAfter), 10)
	}
	return string(b)
}

// ceilSeconds rounds d up to whole seconds; negative d is 0.
func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// writeSFString writes s as an RFC 8941 structured-field string.
func writeSFString(b *strings.Builder, s string) {
	b.Write(appendSFString(nil, s))
}

func appendSFString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}
