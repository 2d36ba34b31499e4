package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// op describes one route once: how the mux finds it, what the OpenAPI
// document says of it, and how the middleware treats it. The document at
// /openapi.json is generated from the ops registered, and the handlers are
// registered from the same ops, so the two cannot drift apart.
type op struct {
	Pattern     string // method and path, as http.ServeMux takes them
	ID          string // operationId
	Summary     string
	Description string
	Tag         string
	Ops         bool    // operational route: not rate limited
	Idempotent  bool    // honours the Idempotency-Key header
	Params      []param // path, query and header parameters
	Problems    []kind  // problem answers besides 400/413/415/429/500, which are added where they apply

	// Set by the adapters from the handler's types, or by raw routes.
	Status   int      // success status
	Request  *content // request body, if any
	Response *content // success body; nil for none
	Others   []answer // other answers that are not problems, such as a stream's 204
}

// answer is a bodiless answer an op may give besides its success status
// and its problems.
type answer struct {
	Status      int
	Description string
}

// content is a request or response body in the OpenAPI document.
type content struct {
	MediaType   string
	Type        reflect.Type // its JSON schema comes from this type…
	Schema      *schema      // …or is given here
	Description string
}

// param is a path, query or header parameter.
type param struct {
	Name, In, Description string
	Required              bool
	Schema                *schema
}

func (o *op) method() string { m, _, _ := strings.Cut(o.Pattern, " "); return m }
func (o *op) path() string   { _, p, _ := strings.Cut(o.Pattern, " "); return p }

// api is the route table: an http.ServeMux whose unmatched requests get
// problem answers, and the ops it serves.
type api struct {
	mux     *http.ServeMux
	ops     []*op
	log     *slog.Logger
	maxBody int64
	// wrap is applied to every non-operational route (rate limiting).
	wrap func(http.Handler) http.Handler
	// idem runs idempotent requests; nil serves them as ordinary ones.
	idem *idempotency
}

func newAPI(log *slog.Logger, maxBody int64) *api {
	a := &api{mux: http.NewServeMux(), log: log, maxBody: maxBody}
	a.mux.HandleFunc("/", a.fallback)
	return a
}

// register adds o, served by h.
// A route that takes query parameters refuses a query that does not parse
// (a malformed %-escape, say): url.Values would drop the bad pair and the
// route would answer as if it had not been sent.
func (a *api) register(o *op, h http.Handler) {
	pattern := o.Pattern
	query := slices.ContainsFunc(o.Params, func(p param) bool { return p.In == "query" })
	next := h
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if info := routeInfoFrom(r.Context()); info != nil {
			info.pattern = pattern
		}
		if query {
			if _, err := url.ParseQuery(r.URL.RawQuery); err != nil {
				writeProblem(w, r, newProblem(probBadRequest, "the query string does not parse: %v", err))
				return
			}
		}
		next.ServeHTTP(w, r)
	})
	if !o.Ops && a.wrap != nil {
		h = a.wrap(h)
	}
	a.mux.Handle(o.Pattern, h)
	a.ops = append(a.ops, o)
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.mux.ServeHTTP(w, r) }

// fallback answers the requests no route matches: a 405 problem, with the
// methods the path takes in Allow, when some route has the path, and else
// a 404 problem. A client probing paths spends its rate limit like any
// other.
func (a *api) fallback(w http.ResponseWriter, r *http.Request) {
	if allow := a.allowed(r); len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeProblem(w, r, newProblem(probMethod, "%s does not take %s; it takes %s", r.URL.Path, r.Method, strings.Join(allow, ", ")))
		return
	}
	h := http.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, newProblem(probNotFound, "no route has the path %s", r.URL.Path))
	}))
	if a.wrap != nil {
		h = a.wrap(h)
	}
	h.ServeHTTP(w, r)
}

// allowed returns the methods that some route takes for r's path.
func (a *api) allowed(r *http.Request) []string {
	var allow []string
	probe := *r
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		probe.Method = m
		if _, pattern := a.mux.Handler(&probe); pattern != "" && pattern != "/" {
			allow = append(allow, m)
		}
	}
	return allow
}

// none is the In of a route that takes no body and the Out of one that
// answers with no body (204).
type none struct{}

// call is what a handler sees of its request.
type call struct {
	*http.Request
	w http.ResponseWriter
}

// ctx returns the request's context.
func (c *call) ctx() context.Context { return c.Context() }

// pathID returns the path parameter name as a positive integer id, or a
// 400 problem.
func (c *call) pathID(name string) (int64, error) {
	v := c.PathValue(name)
	id, err := strconv.ParseInt(v, 10, 64)
	if err != nil || id < 1 {
		return 0, invalid(fieldError{Field: name, Message: fmt.Sprintf("%q is not a positive integer id", v)})
	}
	return id, nil
}

// handleJSON registers a route whose handler takes In decoded from a JSON
// body (none: no body) and answers status with Out encoded as JSON (none:
// no body). The op's request, response and status come from the types.
func handleJSON[In, Out any](a *api, o op, status int, fn func(c *call, in *In) (Out, error)) {
	inType, outType := reflect.TypeFor[In](), reflect.TypeFor[Out]()
	hasBody := inType != reflect.TypeFor[none]()
	o.Status = status
	if hasBody {
		o.Request = &content{MediaType: "application/json", Type: inType}
	}
	if outType != reflect.TypeFor[none]() {
		o.Response = &content{MediaType: "application/json", Type: outType}
	}
	a.register(&o, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{Request: r, w: w}
		in := new(In)
		if hasBody {
			if _, err := readJSON(w, r, a.maxBody, in); err != nil {
				writeError(w, r, a.log, err)
				return
			}
		}
		respond := func(ctx context.Context) (int, []byte, error) {
			out, err := fn(&call{Request: r.WithContext(ctx), w: w}, in)
			if err != nil {
				return 0, nil, err
			}
			if outType == reflect.TypeFor[none]() {
				return status, nil, nil
			}
			body, err := json.Marshal(out)
			if err != nil {
				return 0, nil, fmt.Errorf("encode %s answer: %w", o.ID, err)
			}
			return status, append(body, '\n'), nil
		}
		var (
			code     int
			body     []byte
			replayed bool
			err      error
		)
		if keys, ok := r.Header[idempotencyHeader]; o.Idempotent && a.idem != nil && ok {
			key := ""
			if len(keys) == 1 {
				key = keys[0] // two keys are refused as an empty one is
			}
			var canonical []byte
			if canonical, err = json.Marshal(in); err == nil {
				code, body, replayed, err = a.idem.do(c.ctx(), r, o.Pattern, key, canonical, respond)
			}
		} else {
			code, body, err = respond(c.ctx())
		}
		if err != nil {
			writeError(w, r, a.log, err)
			return
		}
		if replayed {
			w.Header().Set("Idempotent-Replayed", "true")
		}
		if body == nil {
			w.WriteHeader(code)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(code)
		_, _ = w.Write(body)
	}))
}

// handleRaw registers a route whose handler writes its own answer (streams,
// uploads). The op must describe its request and response itself.
func handleRaw(a *api, o op, h http.HandlerFunc) {
	a.register(&o, h)
}

// writeJSON answers with v encoded as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, err = w.Write(append(body, '\n'))
	return err
}

// readJSON reads r's body, at most maxBody bytes of application/json, into
// dst and returns the bytes read. Everything a client can get wrong is a
// problem: another media type (415), a body too large (413), and empty or
// malformed JSON, trailing data, an unknown field, a missing required field
// or a value of the wrong type (400). Required fields are those without
// omitempty in dst's type, as the OpenAPI document says.
func readJSON(w http.ResponseWriter, r *http.Request, maxBody int64, dst any) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
		if ct == "" {
			ct = "none"
		}
		return nil, newProblem(probMediaType, "the body must be application/json, not %s", ct)
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, newProblem(probTooLarge, "the body is larger than %d bytes", tooBig.Limit)
		}
		return nil, newProblem(probBadRequest, "the body could not be read: %v", err)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, newProblem(probBadRequest, "the body is empty; send a JSON object")
	}
	if err := decodeStrict(raw, dst); err != nil {
		return nil, err
	}
	return raw, nil
}

// isJSON reports whether the media type ct is JSON in UTF-8.
func isJSON(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	return mt == "application/json" || (strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"))
}

// decodeStrict decodes one JSON value from raw into dst, refusing unknown
// fields, trailing data and missing required fields, with a 400 problem
// that names the field.
func decodeStrict(raw []byte, dst any) error {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		// encoding/json decodes null into a struct as nothing at all, which
		// would make null a body with every field at its zero value.
		return newProblem(probBadRequest, "the body is null; send a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return jsonProblem(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return newProblem(probBadRequest, "the body holds more than one JSON value")
	}
	if missing := missingFields(raw, reflect.TypeOf(dst).Elem(), ""); len(missing) > 0 {
		p := newProblem(probBadRequest, "missing required field %s", strings.Join(missing, ", "))
		for _, f := range missing {
			p.Errors = append(p.Errors, fieldError{Field: f, Message: "is required"})
		}
		return p
	}
	return nil
}

// jsonProblem turns an encoding/json error into a 400 problem naming what
// is wrong and where.
func jsonProblem(err error) *problem {
	var (
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
		p       *problem
	)
	switch {
	case errors.As(err, &p):
		return p // from a type's own UnmarshalJSON
	case errors.As(err, &syntax):
		return newProblem(probBadRequest, "malformed JSON at byte %d: %v", syntax.Offset, syntax)
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return newProblem(probBadRequest, "the body must be a JSON %s, not %s", jsonKind(typeErr.Type), typeErr.Value)
		}
		pr := newProblem(probBadRequest, "%s must be %s, not %s", field, jsonKind(typeErr.Type), typeErr.Value)
		pr.Errors = []fieldError{{Field: field, Message: fmt.Sprintf("must be %s, not %s", jsonKind(typeErr.Type), typeErr.Value)}}
		return pr
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return newProblem(probBadRequest, "the JSON body ends too soon")
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if name, ok := strings.CutPrefix(msg, "unknown field "); ok {
		name = strings.Trim(name, `"`)
		pr := newProblem(probBadRequest, "unknown field %q", name)
		pr.Errors = []fieldError{{Field: name, Message: "is not a field of this request"}}
		return pr
	}
	return newProblem(probBadRequest, "the body could not be decoded: %s", msg)
}

// jsonKind names the JSON kind that decodes into t.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Slice, reflect.Array:
		return "an array"
	case reflect.Map, reflect.Struct:
		return "an object"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "a " + t.String()
}

// missingFields returns the dotted names of the required fields of t that
// raw, a JSON value already decoded into t, lacks or sets to null, looking
// into nested objects and arrays.
func missingFields(raw []byte, t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		if t.Implements(reflect.TypeFor[json.Unmarshaler]()) || reflect.PointerTo(t).Implements(reflect.TypeFor[json.Unmarshaler]()) {
			return nil // such a type checks itself
		}
		var obj map[string]json.RawMessage
		if json.Unmarshal(raw, &obj) != nil || obj == nil {
			return nil
		}
		var missing []string
		for _, f := range jsonFields(t) {
			v, ok := obj[f.name]
			if !ok || string(v) == "null" {
				if f.required {
					missing = append(missing, prefix+f.name)
				}
				continue
			}
			missing = append(missing, missingFields(v, f.typ, prefix+f.name+".")...)
		}
		return missing
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return nil
		}
		var items []json.RawMessage
		if json.Unmarshal(raw, &items) != nil {
			return nil
		}
		var missing []string
		for i, it := range items {
			if string(it) == "null" && !nullable(t.Elem()) {
				missing = append(missing, fmt.Sprintf("%s%d", prefix, i)) // a null item is as absent as a null field
				continue
			}
			missing = append(missing, missingFields(it, t.Elem(), fmt.Sprintf("%s%d.", prefix, i))...)
		}
		return missing
	}
	return nil
}

// nullable reports whether encoding/json gives null a meaning in a value
// of type t (nil), rather than leaving the value as it was.
func nullable(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Pointer, reflect.Interface, reflect.Map, reflect.Slice:
		return true
	}
	return false
}

// jsonField is a struct field as encoding/json sees it.
type jsonField struct {
	name     string
	typ      reflect.Type
	required bool // no omitempty or omitzero
	doc      string
	tag      reflect.StructTag
}

// jsonFields returns the exported, JSON-visible fields of struct type t,
// embedded structs flattened.
func jsonFields(t reflect.Type) []jsonField {
	var out []jsonField
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		optional := strings.Contains(","+opts+",", ",omitempty,") || strings.Contains(","+opts+",", ",omitzero,")
		out = append(out, jsonField{name: name, typ: f.Type, required: !optional, doc: f.Tag.Get("doc"), tag: f.Tag})
	}
	return out
}
