package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// The OpenAPI document as /docs reads it back: only what the page shows.
type (
	// oaDocument is the whole document.
	oaDocument struct {
		Info struct {
			Title, Version, Description string
		} `json:"info"`
		Tags       []struct{ Name string } `json:"tags"`
		Paths      map[string]map[string]*oaOperation
		Components struct {
			Schemas map[string]*schema `json:"schemas"`
		} `json:"components"`
	}
	// oaOperation is one operation of a path.
	oaOperation struct {
		OperationID string `json:"operationId"`
		Summary     string `json:"summary"`
		Description string `json:"description"`
		Tags        []string
		Parameters  []struct {
			Name, In, Description string
			Required              bool
			Schema                *schema
		} `json:"parameters"`
		RequestBody *struct {
			Description string
			Required    bool
			Content     map[string]struct{ Schema *schema }
		} `json:"requestBody"`
		Responses map[string]struct {
			Description string
			Headers     map[string]struct {
				Description string
				Schema      *schema
			}
			Content map[string]struct{ Schema *schema }
		} `json:"responses"`
	}
)

// The page's view of the document: everything in the order and the words
// it is shown in, so that the template only lays it out.
type (
	// docsView is the whole page.
	docsView struct {
		Title, Version, Description string
		Tags                        []tagView
		Schemas                     []componentView
		Problems                    []problemView
	}
	// tagView is a section: the operations of one tag.
	tagView struct {
		Name string
		Ops  []opView
	}
	// opView is one operation, anchored at its ID.
	opView struct {
		ID, Method, Path, Summary, Description string
		Params                                 []paramView
		Request                                *bodyView
		Responses                              []responseView
	}
	// paramView is a parameter, or a response header.
	paramView struct {
		Name, In, Description string
		Required              bool
		Shape                 shapeView
	}
	// bodyView is a request body, in each of its media types.
	bodyView struct {
		Description string
		Contents    []contentView
	}
	// responseView is the answer of one status.
	responseView struct {
		Status      string
		Description []typePart // the titles of problems link to their entries
		Headers     []paramView
		Contents    []contentView
	}
	// contentView is a body of one media type.
	contentView struct {
		MediaType string
		Shape     shapeView
	}
	// shapeView is a schema in words: its type, which may link to
	// components, its constraints, and the properties of an object that
	// is not a component.
	shapeView struct {
		Type        []typePart
		Constraints []string
		Props       []propView
	}
	// typePart is a piece of a type's name.
	typePart struct {
		Text, Anchor string // Anchor, when set, is the id the text links to
	}
	// propView is a property of an object.
	propView struct {
		Name, Description string
		Required          bool
		Shape             shapeView
	}
	// componentView is a component schema, anchored at schema-<Name>.
	componentView struct {
		Name, Description string
		Shape             shapeView
		Variants          [][]typePart // the shapes of a oneOf
		Discriminator     string
	}
	// problemView is an entry of the problem catalogue, anchored at
	// problem-<Slug>.
	problemView struct {
		Slug, Title, About string
		Status             int
	}
)

// renderDocs renders the OpenAPI document spec as one HTML page: the
// operations by tag in the order ops registered them, every component
// schema, and the problem catalogue kinds. Every operation, component and
// problem has an anchor (its operationId, schema-<name>, problem-<slug>)
// so that links, and the type of every problem answer, can point into it.
// The page needs no script and nothing from elsewhere.
func renderDocs(spec []byte, ops []*op, kinds []kind) ([]byte, error) {
	var doc oaDocument
	if err := json.Unmarshal(spec, &doc); err != nil {
		return nil, fmt.Errorf("docs: read the OpenAPI document: %w", err)
	}
	v := docsView{Title: doc.Info.Title, Version: doc.Info.Version, Description: doc.Info.Description}
	byTag := map[string]*tagView{}
	for _, t := range doc.Tags {
		v.Tags = append(v.Tags, tagView{Name: t.Name})
	}
	for i := range v.Tags {
		byTag[v.Tags[i].Name] = &v.Tags[i]
	}
	for _, o := range ops {
		oa := doc.Paths[o.path()][strings.ToLower(o.method())]
		if oa == nil {
			return nil, fmt.Errorf("docs: %s is not in the OpenAPI document", o.Pattern)
		}
		tag := "other"
		if len(oa.Tags) > 0 {
			tag = oa.Tags[0]
		}
		if byTag[tag] == nil {
			v.Tags = append(v.Tags, tagView{Name: tag})
			for i := range v.Tags {
				byTag[v.Tags[i].Name] = &v.Tags[i]
			}
		}
		byTag[tag].Ops = append(byTag[tag].Ops, operationView(o.method(), o.path(), oa, kinds))
	}
	for _, name := range sortedKeys(doc.Components.Schemas) {
		s := doc.Components.Schemas[name]
		c := componentView{Name: name, Description: s.Description, Shape: shapeOf(s)}
		for _, alt := range s.OneOf {
			c.Variants = append(c.Variants, shapeOf(alt).Type)
		}
		if s.Discriminator != nil {
			c.Discriminator = s.Discriminator.PropertyName
		}
		v.Schemas = append(v.Schemas, c)
	}
	for _, k := range kinds {
		v.Problems = append(v.Problems, problemView{Slug: k.slug, Title: k.title, About: k.about, Status: k.status})
	}
	var buf bytes.Buffer
	if err := docsTemplate.Execute(&buf, v); err != nil {
		return nil, fmt.Errorf("docs: %w", err)
	}
	return buf.Bytes(), nil
}

// operationView puts operation oa of method and path in words, its
// responses in status order and its media types in name order.
func operationView(method, path string, oa *oaOperation, kinds []kind) opView {
	v := opView{ID: oa.OperationID, Method: method, Path: path, Summary: oa.Summary, Description: oa.Description}
	for _, p := range oa.Parameters {
		v.Params = append(v.Params, paramView{Name: p.Name, In: p.In, Description: p.Description, Required: p.Required, Shape: shapeOf(p.Schema)})
	}
	if rb := oa.RequestBody; rb != nil {
		v.Request = &bodyView{Description: rb.Description}
		for _, mt := range sortedKeys(rb.Content) {
			v.Request.Contents = append(v.Request.Contents, contentView{MediaType: mt, Shape: shapeOf(rb.Content[mt].Schema)})
		}
	}
	for _, code := range sortedKeys(oa.Responses) {
		r := oa.Responses[code]
		rv := responseView{Status: code, Description: describeResponse(code, r.Description, kinds)}
		for _, h := range sortedKeys(r.Headers) {
			rv.Headers = append(rv.Headers, paramView{Name: h, Description: r.Headers[h].Description, Shape: shapeOf(r.Headers[h].Schema)})
		}
		for _, mt := range sortedKeys(r.Content) {
			rv.Contents = append(rv.Contents, contentView{MediaType: mt, Shape: shapeOf(r.Content[mt].Schema)})
		}
		v.Responses = append(v.Responses, rv)
	}
	return v
}

// describeResponse returns a response's description with each problem
// title in it, as the document joins them with "; ", linked to the entry
// of its problem type.
func describeResponse(code, desc string, kinds []kind) []typePart {
	var parts []typePart
	for i, title := range strings.Split(desc, "; ") {
		if i > 0 {
			parts = append(parts, typePart{Text: "; "})
		}
		part := typePart{Text: title}
		for _, k := range kinds {
			if k.title == title && strconv.Itoa(k.status) == code {
				part.Anchor = "problem-" + k.slug
			}
		}
		parts = append(parts, part)
	}
	return parts
}

// shapeOf puts schema s in words. A reference becomes a link to its
// component; an object that is no component lists its properties, the
// required ones first in the order the document requires them.
func shapeOf(s *schema) shapeView {
	if s == nil {
		return shapeView{Type: []typePart{{Text: "any"}}}
	}
	var v shapeView
	switch {
	case s.Ref != "":
		name := strings.TrimPrefix(s.Ref, "#/components/schemas/")
		v.Type = []typePart{{Text: name, Anchor: "schema-" + name}}
	case len(s.AllOf) == 1:
		v = shapeOf(s.AllOf[0])
	case len(s.OneOf) > 0:
		v.Type = []typePart{{Text: "one of "}}
		for i, alt := range s.OneOf {
			if i > 0 {
				v.Type = append(v.Type, typePart{Text: " | "})
			}
			v.Type = append(v.Type, shapeOf(alt).Type...)
		}
	case s.Type == "array":
		item := shapeOf(s.Items)
		v.Type = append([]typePart{{Text: "array of "}}, item.Type...)
		v.Props = item.Props
		v.Constraints = append(v.Constraints, item.Constraints...)
	case s.Type == "object" && s.AdditionalProperties != nil && s.AdditionalProperties != false:
		v.Type = []typePart{{Text: "object of "}}
		if ap := additional(s.AdditionalProperties); ap != nil {
			v.Type = append(v.Type, shapeOf(ap).Type...)
		} else {
			v.Type = append(v.Type, typePart{Text: "any"})
		}
	case s.Type != "":
		text := s.Type
		if s.Format != "" {
			text += " (" + s.Format + ")"
		}
		v.Type = []typePart{{Text: text}}
	default:
		v.Type = []typePart{{Text: "any JSON value"}}
	}
	if s.Nullable {
		v.Type = append(v.Type, typePart{Text: " or null"})
	}
	v.Constraints = append(v.Constraints, constraints(s)...)
	if len(s.Properties) > 0 {
		v.Props = nil
		names := slices.Clone(s.Required)
		for _, n := range sortedKeys(s.Properties) {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		for _, n := range names {
			p := s.Properties[n]
			if p == nil {
				continue
			}
			desc := p.Description
			if desc == "" && len(p.AllOf) == 1 {
				desc = p.AllOf[0].Description
			}
			v.Props = append(v.Props, propView{Name: n, Description: desc, Required: slices.Contains(s.Required, n), Shape: shapeOf(p)})
		}
	}
	return v
}

// additional returns the schema of an additionalProperties value read
// back from JSON, or nil when it allows anything.
func additional(v any) *schema {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var s schema
	if json.Unmarshal(raw, &s) != nil {
		return nil
	}
	return &s
}

// constraints lists what a value of s must be besides its type.
func constraints(s *schema) []string {
	var out []string
	num := func(f *float64) string { return strconv.FormatFloat(*f, 'f', -1, 64) }
	if len(s.Enum) > 0 {
		vals := make([]string, len(s.Enum))
		for i, e := range s.Enum {
			b, _ := json.Marshal(e)
			vals[i] = string(b)
		}
		out = append(out, "one of "+strings.Join(vals, ", "))
	}
	switch {
	case s.Minimum != nil && s.Maximum != nil:
		out = append(out, "from "+num(s.Minimum)+" to "+num(s.Maximum))
	case s.Minimum != nil:
		out = append(out, "at least "+num(s.Minimum))
	case s.Maximum != nil:
		out = append(out, "at most "+num(s.Maximum))
	}
	bounds := func(what string, lo, hi *int) {
		switch {
		case lo != nil && hi != nil:
			out = append(out, fmt.Sprintf("%d to %d %s", *lo, *hi, what))
		case lo != nil:
			out = append(out, fmt.Sprintf("at least %d %s", *lo, what))
		case hi != nil:
			out = append(out, fmt.Sprintf("at most %d %s", *hi, what))
		}
	}
	bounds("characters", s.MinLength, s.MaxLength)
	bounds("items", s.MinItems, s.MaxItems)
	if s.Pattern != "" {
		out = append(out, "matches "+s.Pattern)
	}
	if s.Example != nil {
		b, _ := json.Marshal(s.Example)
		out = append(out, "example: "+string(b))
	}
	return out
}

// sortedKeys returns m's keys in order, for a page that reads the same
// on every start.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// docs serves the page rendered at start.
func (s *server) docs(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(s.docHTML)))
	// The page is static HTML and CSS: forbid everything else, so that
	// nothing in the document could ever run as script.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = w.Write(s.docHTML)
}

// docsTemplate lays out a docsView. Everything it prints goes through
// html/template's escaping; nothing is marked safe.
var docsTemplate = template.Must(template.New("docs").Funcs(template.FuncMap{
	"lower": strings.ToLower,
}).Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}} {{.Version}}</title>
<style>
body{font:15px/1.5 system-ui,sans-serif;margin:0 auto;max-width:60rem;padding:0 1rem 4rem;color:#1b1b1b}
h1{margin-top:1.5rem}h2{border-bottom:2px solid #ddd;margin-top:2.5rem}
h3{margin:2rem 0 .3rem}h4{margin:1rem 0 .3rem;font-size:1rem}
code,.path{font-family:ui-monospace,monospace;font-size:.92em}
table{border-collapse:collapse;width:100%;margin:.3rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;vertical-align:top}
th{background:#f5f5f5;font-weight:600}
.m{display:inline-block;min-width:4.2em;padding:0 .4em;border-radius:3px;color:#fff;font:600 .8em ui-monospace,monospace;text-align:center}
.m-get{background:#1f6feb}.m-post{background:#1a7f37}.m-put{background:#9a6700}.m-delete{background:#cf222e}.m-patch{background:#8250df}
.req{color:#cf222e;font-size:.85em}.c{color:#555;font-size:.9em}
nav ul{columns:2;padding-left:1.2rem}section.op{border-left:3px solid #eee;padding-left:.8rem}
a{color:#0550ae}
</style>
</head>
<body>
<h1>{{.Title}} <small class="c">{{.Version}}</small></h1>
<p>{{.Description}}</p>
<p>The machine-readable document is <a href="/openapi.json">/openapi.json</a>.</p>
<nav>
<h2>Contents</h2>
<ul>
{{- range .Tags}}
<li><a href="#tag-{{.Name}}">{{.Name}}</a><ul>{{range .Ops}}<li><a href="#{{.ID}}"><span class="path">{{.Method}} {{.Path}}</span></a></li>{{end}}</ul></li>
{{- end}}
<li><a href="#schemas">Schemas</a></li>
<li><a href="#problems">Problem types</a></li>
</ul>
</nav>
{{- define "type"}}{{range .}}{{if .Anchor}}<a href="#{{.Anchor}}">{{.Text}}</a>{{else}}{{.Text}}{{end}}{{end}}{{end}}
{{- define "shape"}}<code>{{template "type" .Type}}</code>{{range .Constraints}}<br><span class="c">{{.}}</span>{{end}}{{end}}
{{- define "props"}}
<table><tr><th>Property</th><th>Type</th><th>Description</th></tr>
{{- range .}}
<tr><td><code>{{.Name}}</code>{{if .Required}} <span class="req">required</span>{{end}}</td><td>{{template "shape" .Shape}}</td><td>{{.Description}}{{if .Shape.Props}}{{template "props" .Shape.Props}}{{end}}</td></tr>
{{- end}}
</table>
{{- end}}
{{- define "contents"}}{{range .}}
<p><code>{{.MediaType}}</code>: {{template "shape" .Shape}}</p>{{if .Shape.Props}}{{template "props" .Shape.Props}}{{end}}
{{- end}}{{end}}
{{- range .Tags}}
<h2 id="tag-{{.Name}}">{{.Name}}</h2>
{{- range .Ops}}
<section class="op">
<h3 id="{{.ID}}"><span class="m m-{{lower .Method}}">{{.Method}}</span> <span class="path">{{.Path}}</span></h3>
<p><strong>{{.Summary}}</strong> <span class="c">({{.ID}})</span></p>
{{- if .Description}}<p>{{.Description}}</p>{{end}}
{{- if .Params}}
<h4>Parameters</h4>
<table><tr><th>Name</th><th>In</th><th>Type</th><th>Description</th></tr>
{{- range .Params}}
<tr><td><code>{{.Name}}</code>{{if .Required}} <span class="req">required</span>{{end}}</td><td>{{.In}}</td><td>{{template "shape" .Shape}}</td><td>{{.Description}}</td></tr>
{{- end}}
</table>
{{- end}}
{{- with .Request}}
<h4>Request body <span class="req">required</span></h4>
{{- if .Description}}<p>{{.Description}}</p>{{end}}
{{- template "contents" .Contents}}
{{- end}}
<h4>Responses</h4>
<table><tr><th>Status</th><th>Description</th></tr>
{{- range .Responses}}
<tr><td><code>{{.Status}}</code></td><td>{{template "type" .Description}}
{{- range .Headers}}<br>Header <code>{{.Name}}</code>: {{template "shape" .Shape}} <span class="c">{{.Description}}</span>{{end}}
{{- template "contents" .Contents}}</td></tr>
{{- end}}
</table>
</section>
{{- end}}
{{- end}}
<h2 id="schemas">Schemas</h2>
{{- range .Schemas}}
<h3 id="schema-{{.Name}}">{{.Name}}</h3>
{{- if .Description}}<p>{{.Description}}</p>{{end}}
{{- if .Variants}}
<p>One of{{if .Discriminator}}, told apart by <code>{{.Discriminator}}</code>{{end}}:</p>
<ul>{{range .Variants}}<li><code>{{template "type" .}}</code></li>{{end}}</ul>
{{- else if .Shape.Props}}
{{- template "props" .Shape.Props}}
{{- else}}
<p>{{template "shape" .Shape}}</p>
{{- end}}
{{- end}}
<h2 id="problems">Problem types</h2>
<p>Every error answer is an <code>application/problem+json</code> object (RFC 9457) whose <code>type</code> is <code>/docs/problems/</code> and one of these names; <a href="#schema-Problem">Problem</a> describes its members.</p>
{{- range .Problems}}
<h3 id="problem-{{.Slug}}"><code>{{.Slug}}</code>: {{.Status}} {{.Title}}</h3>
<p>{{.About}}</p>
{{- end}}
</body>
</html>
`))
