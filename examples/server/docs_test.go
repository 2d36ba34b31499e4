package main

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/stretchr/testify/require"
)

func init() {
	openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
}

// idAttr and hashHref find the anchors of a page and its links to them.
var (
	idAttr   = regexp.MustCompile(`\sid="([^"]+)"`)
	hashHref = regexp.MustCompile(`\shref="#([^"]*)"`)
)

// TestDocsPage checks that /docs renders the served document whole: every
// operation, schema and problem type at its anchor, and no link that leads
// nowhere.
func TestDocsPage(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", nil)
	r := ts.do("GET", "/docs", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Equal(t, "text/html; charset=utf-8", r.header.Get("Content-Type"))
	require.Contains(t, r.header.Get("Content-Security-Policy"), "default-src 'none'", "the page runs no script")
	page := string(r.body)
	require.Less(t, len(page), 256<<10, "the page stays small")
	require.NotContains(t, page, "<script")
	require.NotRegexp(t, `(src|href)="(https?:)?//`, page, "the page loads nothing from elsewhere")

	ids := map[string]bool{}
	for _, m := range idAttr.FindAllStringSubmatch(page, -1) {
		require.False(t, ids[m[1]], "the id %q is used twice", m[1])
		ids[m[1]] = true
	}
	t.Run("every operation has an anchor, with its method, path and summary", func(t *testing.T) {
		n := 0
		for path, item := range ts.doc.Paths.Map() {
			for method, o := range item.Operations() {
				n++
				require.True(t, ids[o.OperationID], "no anchor for %s", o.OperationID)
				section := page[strings.Index(page, `id="`+o.OperationID+`"`):]
				section = section[:strings.Index(section, "</section>")]
				require.Contains(t, section, method+`</span> <span class="path">`+path+"</span>")
				require.Contains(t, section, escaped(o.Summary))
				for _, p := range o.Parameters {
					require.Contains(t, section, "<code>"+p.Value.Name+"</code>")
				}
				for code := range o.Responses.Map() {
					require.Contains(t, section, "<code>"+code+"</code>")
				}
			}
		}
		require.Greater(t, n, 15)
	})
	t.Run("every component and every problem type has an anchor", func(t *testing.T) {
		for name := range ts.doc.Components.Schemas {
			require.True(t, ids["schema-"+name], "no anchor for schema %s", name)
		}
		for _, k := range problemKinds {
			require.True(t, ids["problem-"+k.slug], "no anchor for problem %s", k.slug)
			require.Contains(t, page, escaped(k.about))
		}
	})
	t.Run("every link within the page leads to an anchor", func(t *testing.T) {
		links := hashHref.FindAllStringSubmatch(page, -1)
		require.NotEmpty(t, links)
		for _, m := range links {
			require.True(t, ids[m[1]], "the link #%s leads nowhere", m[1])
		}
	})
	t.Run("schemas show their properties, constraints and descriptions", func(t *testing.T) {
		in := page[strings.Index(page, `id="schema-UserInput"`):]
		in = in[:strings.Index(in, "</table>")]
		require.Contains(t, in, "<code>username</code> <span class=\"req\">required</span>")
		require.Contains(t, in, "matches ^[a-z0-9][a-z0-9._-]{2,31}$")
		require.Contains(t, in, "at most 254 characters")
		require.Contains(t, in, "An address such as ada@example.com")
		out := page[strings.Index(page, `id="schema-PageOfUser"`):]
		out = out[:strings.Index(out, "</table>")]
		require.Contains(t, out, `array of <a href="#schema-User">User</a>`)
	})
	t.Run("a problem answer links to its problem type", func(t *testing.T) {
		section := page[strings.Index(page, `id="createUser"`):]
		section = section[:strings.Index(section, "</section>")]
		require.Contains(t, section, `<a href="#problem-validation-error">Invalid input</a>; <a href="#problem-bad-request">Bad request</a>`)
		require.Contains(t, section, `<a href="#problem-conflict">Conflict</a>`)
	})
	t.Run("the tags are sections, in the document's order", func(t *testing.T) {
		last := -1
		for _, tag := range ts.doc.Tags {
			i := strings.Index(page, `<h2 id="tag-`+tag.Name+`">`)
			require.Greater(t, i, last, "tag %s", tag.Name)
			last = i
		}
	})
	t.Run("the tags of the page are balanced", func(t *testing.T) {
		for _, el := range []string{"table", "section", "ul", "p", "h3", "code", "span", "a"} {
			open := regexp.MustCompile(`<`+el+`[\s>]`).FindAllStringIndex(page, -1)
			require.Equal(t, len(open), strings.Count(page, "</"+el+">"), "<%s>", el)
		}
	})
}

// escaped escapes s as html/template does in text.
func escaped(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// TestProblemTypesRedirectToTheirEntry follows the type of every problem
// to its entry in /docs.
func TestProblemTypesRedirectToTheirEntry(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", nil)
	page := string(ts.do("GET", "/docs", nil).body)
	noRedirect := *ts.client
	noRedirect.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	for _, k := range problemKinds {
		resp, err := noRedirect.Get(ts.base + problemTypePrefix + k.slug)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusFound, resp.StatusCode, k.slug)
		loc := resp.Header.Get("Location")
		doc, anchor, ok := strings.Cut(loc, "#")
		require.True(t, ok, loc)
		require.Equal(t, "/docs", doc)
		require.Contains(t, page, ` id="`+anchor+`"`, "%s redirects to a missing anchor", k.slug)
	}
	r := ts.do("GET", problemTypePrefix+"no-such-problem", nil)
	require.Equal(t, http.StatusNotFound, r.status)
	r.problem(t)
}

// TestDocsEscapeTheDocument renders a document full of markup and checks
// that none of it reaches the page as markup.
func TestDocsEscapeTheDocument(t *testing.T) {
	t.Parallel()
	evil := `<script>alert("x")</script>`
	spec := []byte(`{"info":{"title":"T","version":"1","description":` + quote(evil) + `},
		"tags":[{"name":"x\"><b>"}],
		"paths":{"/a/{id}":{"get":{"operationId":"getA","summary":` + quote(evil) + `,"tags":["x\"><b>"],
			"parameters":[{"name":"id","in":"path","required":true,"description":` + quote(evil) + `,"schema":{"type":"string","pattern":"<i>"}}],
			"responses":{"200":{"description":"ok","content":{"application/json":{"schema":{"$ref":"#/components/schemas/A\"><b>"}}}}}}}},
		"components":{"schemas":{"A\"><b>":{"type":"object","properties":{"<p>":{"type":"string","description":` + quote(evil) + `}}}}}}`)
	out, err := renderDocs(spec, []*op{{Pattern: "GET /a/{id}"}}, []kind{{slug: `s"><b>`, title: evil, status: 400, about: evil}})
	require.NoError(t, err)
	page := string(out)
	require.NotContains(t, page, "<script")
	require.NotContains(t, page, "<b>")
	require.NotContains(t, page, "<i>")
	require.NotContains(t, page, "<p>\"")
	require.Contains(t, page, "&lt;script&gt;")
}

// quote returns s as a JSON string, for the few characters the test uses.
func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }
