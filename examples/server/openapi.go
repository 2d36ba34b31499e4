package main

import (
	"encoding"
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// schema is an OpenAPI 3.0 schema object, as much of it as this API needs.
type schema struct {
	Ref                  string             `json:"$ref,omitempty"`
	Type                 string             `json:"type,omitempty"`
	Format               string             `json:"format,omitempty"`
	Description          string             `json:"description,omitempty"`
	Nullable             bool               `json:"nullable,omitempty"`
	Enum                 []any              `json:"enum,omitempty"`
	Minimum              *float64           `json:"minimum,omitempty"`
	Maximum              *float64           `json:"maximum,omitempty"`
	MinLength            *int               `json:"minLength,omitempty"`
	MaxLength            *int               `json:"maxLength,omitempty"`
	Pattern              string             `json:"pattern,omitempty"`
	MinItems             *int               `json:"minItems,omitempty"`
	MaxItems             *int               `json:"maxItems,omitempty"`
	Items                *schema            `json:"items,omitempty"`
	Properties           map[string]*schema `json:"properties,omitempty"`
	Required             []string           `json:"required,omitempty"`
	AdditionalProperties any                `json:"additionalProperties,omitempty"`
	AllOf                []*schema          `json:"allOf,omitempty"`
	OneOf                []*schema          `json:"oneOf,omitempty"`
	Discriminator        *discriminator     `json:"discriminator,omitempty"`
	Example              any                `json:"example,omitempty"`
}

type discriminator struct {
	PropertyName string            `json:"propertyName"`
	Mapping      map[string]string `json:"mapping,omitempty"`
}

// schemaProvider is implemented by types that describe themselves, such as
// a request that is one of several shapes.
type schemaProvider interface {
	openAPISchema(g *schemaGen) *schema
}

// schemaGen turns Go types into schemas, collecting every named struct
// type as a component so that it is described once and referred to.
type schemaGen struct {
	components map[string]*schema
	names      map[reflect.Type]string
	overrides  map[reflect.Type]*schema
}

func newSchemaGen() *schemaGen {
	return &schemaGen{components: map[string]*schema{}, names: map[reflect.Type]string{}, overrides: map[reflect.Type]*schema{}}
}

// override describes values of type t with s instead of what reflection
// would find, for types of other packages with a richer JSON form (an
// enumeration encoded as text, say).
func (g *schemaGen) override(t reflect.Type, s *schema) { g.overrides[t] = s }

var (
	timeType       = reflect.TypeFor[time.Time]()
	rawMessageType = reflect.TypeFor[json.RawMessage]()
	textMarshaler  = reflect.TypeFor[encoding.TextMarshaler]()
	providerType   = reflect.TypeFor[schemaProvider]()
)

// of returns the schema of values of type t.
func (g *schemaGen) of(t reflect.Type) *schema {
	if s, ok := g.overrides[t]; ok {
		c := *s
		return &c
	}
	if t.Implements(providerType) {
		return reflect.Zero(t).Interface().(schemaProvider).openAPISchema(g)
	}
	switch {
	case t == timeType:
		return &schema{Type: "string", Format: "date-time"}
	case t == rawMessageType:
		return &schema{Description: "Any JSON value", Nullable: true} // null is a JSON value too
	case t.Kind() != reflect.Pointer && t.Implements(textMarshaler):
		return &schema{Type: "string"}
	}
	switch t.Kind() {
	case reflect.Pointer:
		s := g.of(t.Elem())
		if s.Ref != "" {
			return &schema{AllOf: []*schema{s}, Nullable: true}
		}
		s.Nullable = true
		return s
	case reflect.Bool:
		return &schema{Type: "boolean"}
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64:
		return &schema{Type: "integer", Format: "int64"}
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return &schema{Type: "integer", Format: "int32"}
	case reflect.Float32, reflect.Float64:
		return &schema{Type: "number"}
	case reflect.String:
		return &schema{Type: "string"}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return &schema{Type: "string", Format: "byte"}
		}
		return &schema{Type: "array", Items: g.of(t.Elem())}
	case reflect.Map:
		return &schema{Type: "object", AdditionalProperties: g.of(t.Elem())}
	case reflect.Interface:
		return &schema{Description: "Any JSON value"}
	case reflect.Struct:
		return g.ref(t)
	}
	panic(fmt.Sprintf("openapi: no schema for %s", t))
}

// ref returns a reference to the component describing struct type t,
// describing it first if needed.
func (g *schemaGen) ref(t reflect.Type) *schema {
	name, ok := g.names[t]
	if !ok {
		name = componentName(t)
		for taken := true; taken; {
			taken = false
			for other, n := range g.names {
				if n == name && other != t {
					name += "_"
					taken = true
				}
			}
		}
		g.names[t] = name
		g.components[name] = &schema{} // placeholder, for recursive types
		g.components[name] = g.object(t)
	}
	return &schema{Ref: "#/components/schemas/" + name}
}

// object describes struct type t: its JSON fields, the ones without
// omitempty required, and no others allowed.
func (g *schemaGen) object(t reflect.Type) *schema {
	s := &schema{Type: "object", Properties: map[string]*schema{}, AdditionalProperties: false}
	for _, f := range jsonFields(t) {
		fs := g.of(f.typ)
		if err := applyTags(fs, f.tag); err != nil {
			panic(fmt.Sprintf("openapi: %s.%s: %v", t.Name(), f.name, err))
		}
		s.Properties[f.name] = fs
		if f.required {
			s.Required = append(s.Required, f.name)
		}
	}
	return s
}

// applyTags adds a field's documentation and constraints from its struct
// tags: doc, enum (values separated by |), min, max, minLength, maxLength,
// pattern, minItems, maxItems, format and example.
func applyTags(s *schema, tag reflect.StructTag) error {
	target := s
	if s.Ref != "" {
		// Siblings of $ref are ignored in OpenAPI 3.0: wrap it.
		*s = schema{AllOf: []*schema{{Ref: s.Ref}}}
	}
	if v := tag.Get("doc"); v != "" {
		target.Description = v
	}
	if v := tag.Get("enum"); v != "" {
		for _, e := range strings.Split(v, "|") {
			target.Enum = append(target.Enum, e)
		}
	}
	if v := tag.Get("format"); v != "" {
		target.Format = v
	}
	if v := tag.Get("pattern"); v != "" {
		if _, err := regexp.Compile(v); err != nil {
			return err
		}
		target.Pattern = v
	}
	if v := tag.Get("example"); v != "" {
		var ex any
		if err := json.Unmarshal([]byte(v), &ex); err != nil {
			ex = v
		}
		target.Example = ex
	}
	for _, n := range []struct {
		name string
		dst  **float64
	}{{"min", &target.Minimum}, {"max", &target.Maximum}} {
		if v := tag.Get(n.name); v != "" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return fmt.Errorf("tag %s: %w", n.name, err)
			}
			*n.dst = &f
		}
	}
	for _, n := range []struct {
		name string
		dst  **int
	}{{"minLength", &target.MinLength}, {"maxLength", &target.MaxLength}, {"minItems", &target.MinItems}, {"maxItems", &target.MaxItems}} {
		if v := tag.Get(n.name); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("tag %s: %w", n.name, err)
			}
			*n.dst = &i
		}
	}
	return nil
}

// componentName names a struct type's component: its Go name with an
// upper-case first letter, and for an instance of a generic type the
// names of its type arguments after "Of" (Page[user] is PageOfUser).
func componentName(t reflect.Type) string {
	name := t.Name()
	base, args, generic := strings.Cut(name, "[")
	out := exportName(base)
	if generic {
		for _, a := range strings.Split(strings.TrimSuffix(args, "]"), ",") {
			a = a[strings.LastIndexAny(a, "./")+1:]
			out += "Of" + exportName(a)
		}
	}
	return out
}

func exportName(s string) string {
	if s == "" {
		return "Anonymous"
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// document builds the OpenAPI 3.0 document of the ops registered on a.
func (a *api) document(g *schemaGen, version string) map[string]any {
	paths := map[string]map[string]any{}
	problemRef := g.of(reflect.TypeFor[problem]())
	tags := []string{}
	for _, o := range a.ops {
		if o.Tag != "" && !slices.Contains(tags, o.Tag) {
			tags = append(tags, o.Tag)
		}
		operation := map[string]any{
			"operationId": o.ID,
			"summary":     o.Summary,
		}
		if o.Description != "" {
			operation["description"] = o.Description
		}
		if o.Tag != "" {
			operation["tags"] = []string{o.Tag}
		}
		params := slices.Clone(o.Params)
		if o.Idempotent {
			params = append(params, param{Name: idempotencyHeader, In: "header",
				Description: "Makes a retry of this request safe: a request repeated with the same key (per client, for 24 hours) is not run again but answered with the first one's status and body, plus Idempotent-Replayed: true.",
				Schema:      &schema{Type: "string", MinLength: ptr(1), MaxLength: ptr(maxIdempotencyKey)}})
		}
		if !o.Ops {
			params = append(params, param{Name: "X-Client-ID", In: "header",
				Description: "Identifies the client for rate limiting and idempotency keys; without it the client is its IP address.",
				Schema:      &schema{Type: "string", MinLength: ptr(1), MaxLength: ptr(128)}})
		}
		if len(params) > 0 {
			ps := make([]map[string]any, 0, len(params))
			for _, p := range params {
				ps = append(ps, map[string]any{"name": p.Name, "in": p.In, "description": p.Description,
					"required": p.Required || p.In == "path", "schema": p.Schema})
			}
			operation["parameters"] = ps
		}
		if o.Request != nil {
			operation["requestBody"] = map[string]any{
				"required":    true,
				"description": o.Request.Description,
				"content":     map[string]any{o.Request.MediaType: map[string]any{"schema": g.contentSchema(o.Request)}},
			}
		}
		responses := map[string]any{}
		ok := map[string]any{"description": http.StatusText(o.Status)}
		if o.Response != nil {
			if o.Response.Description != "" {
				ok["description"] = o.Response.Description
			}
			ok["content"] = map[string]any{o.Response.MediaType: map[string]any{"schema": g.contentSchema(o.Response)}}
		}
		if o.Idempotent {
			ok["headers"] = map[string]any{"Idempotent-Replayed": map[string]any{
				"description": "true when this answer is the stored answer to an earlier request with the same Idempotency-Key",
				"schema":      &schema{Type: "string", Enum: []any{"true"}}}}
		}
		responses[strconv.Itoa(o.Status)] = ok
		for _, other := range o.Others {
			responses[strconv.Itoa(other.Status)] = map[string]any{"description": other.Description}
		}
		problems := slices.Clone(o.Problems)
		if len(params) > 0 || o.Request != nil { // a bad X-Client-ID or Idempotency-Key too
			problems = append(problems, probBadRequest)
		}
		if o.Request != nil {
			problems = append(problems, probTooLarge, probMediaType)
		}
		problems = append(problems, probInternal) // a panic anywhere is a 500
		if !o.Ops {
			problems = append(problems, probRateLimited, probUnavailable)
		}
		if o.Idempotent {
			problems = append(problems, probKeyInUse, probKeyReused)
		}
		for _, k := range problems {
			code := strconv.Itoa(k.status)
			r, seen := responses[code].(map[string]any)
			if !seen {
				r = map[string]any{"description": k.title,
					"content": map[string]any{problemContentType: map[string]any{"schema": problemRef}}}
				if k.status == http.StatusTooManyRequests || k.status == http.StatusServiceUnavailable || k.status == http.StatusConflict {
					r["headers"] = map[string]any{"Retry-After": map[string]any{
						"description": "Seconds to wait before retrying", "schema": &schema{Type: "integer"}}}
				}
				responses[code] = r
			} else if !strings.Contains(r["description"].(string), k.title) {
				r["description"] = r["description"].(string) + "; " + k.title
			}
		}
		operation["responses"] = responses
		path := o.path()
		if paths[path] == nil {
			paths[path] = map[string]any{}
		}
		paths[path][strings.ToLower(o.method())] = operation
	}
	tagList := make([]map[string]any, 0, len(tags))
	for _, t := range tags {
		tagList = append(tagList, map[string]any{"name": t})
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info": map[string]any{
			"title":   "asynckit example service",
			"version": version,
			"description": "Users, accounts and transfers, background tasks and file processing, " +
				"assembled from the asynckit packages. Every error is an application/problem+json object (RFC 9457).",
		},
		"tags":       tagList,
		"paths":      paths,
		"components": map[string]any{"schemas": g.components},
	}
}

// contentSchema returns c's schema, from its type or as given.
func (g *schemaGen) contentSchema(c *content) *schema {
	if c.Schema != nil {
		return c.Schema
	}
	return g.of(c.Type)
}

func ptr[T any](v T) *T { return &v }
