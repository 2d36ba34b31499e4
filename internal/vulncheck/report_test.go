package main

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The messages govulncheck -format json writes, trimmed to what the verdict
// reads: a reached advisory in golang.org/x/text (found at module, package
// and symbol level, the last with its call path), one in the standard
// library, and one only required.
const (
	streamConfig = `{"config":{"protocol_version":"v1.0.0","scanner_name":"govulncheck","scanner_version":"v1.10.0","go_version":"go1.26.8","scan_level":"symbol","scan_mode":"source"}}`
	streamText   = `
{"osv":{"id":"GO-2022-1059","summary":"Denial of service via crafted Accept-Language header in golang.org/x/text/language"}}
{"finding":{"osv":"GO-2022-1059","fixed_version":"v0.3.8","trace":[{"module":"golang.org/x/text","version":"v0.3.7"}]}}
{"finding":{"osv":"GO-2022-1059","fixed_version":"v0.3.8","trace":[{"module":"golang.org/x/text","version":"v0.3.7","package":"golang.org/x/text/language"}]}}
{"finding":{"osv":"GO-2022-1059","fixed_version":"v0.3.8","trace":[
	{"module":"golang.org/x/text","version":"v0.3.7","package":"golang.org/x/text/language","function":"ParseAcceptLanguage","position":{"filename":"language/parse.go","offset":5495,"line":158,"column":6}},
	{"module":"example.com/scratch","package":"example.com/scratch","function":"main","position":{"filename":"main.go","offset":129,"line":11,"column":46}}]}}`
	streamStdlib = `
{"osv":{"id":"GO-2026-6599","summary":"Reset context tracking on consecutive template expressions in html/template"}}
{"finding":{"osv":"GO-2026-6599","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8"}]}}
{"finding":{"osv":"GO-2026-6599","fixed_version":"v1.26.9","trace":[
	{"module":"stdlib","version":"v1.26.8","package":"html/template","function":"Execute","receiver":"*Template","position":{"filename":"src/html/template/template.go","line":120,"column":20}},
	{"module":"example.com/scratch","package":"example.com/scratch","function":"main","position":{"filename":"main.go","line":14,"column":9}}]}}`
	streamRequired = `
{"osv":{"id":"GO-2026-5970","summary":"Infinite loop on invalid input in golang.org/x/text"}}
{"finding":{"osv":"GO-2026-5970","fixed_version":"v0.39.0","trace":[{"module":"golang.org/x/text","version":"v0.3.7"}]}}`
)

func parseString(t *testing.T, stream string) *scanResult {
	t.Helper()
	r, err := parseScan(strings.NewReader(stream))
	require.NoError(t, err)
	r.Dir = "scratch"
	return r
}

// verdict reports on r as the command does and returns the text and whether
// the check failed.
func verdict(r *scanResult) (string, bool) {
	var b strings.Builder
	report(&b, r)
	failed := summarize(&b, []*scanResult{r}, time.Second)
	return b.String(), failed
}

func TestVerdict(t *testing.T) {
	t.Parallel()

	t.Run("a reached advisory in a module fails, with its fix and call path", func(t *testing.T) {
		t.Parallel()
		r := parseString(t, streamConfig+streamText+streamStdlib+streamRequired)
		require.Equal(t, []string{"GO-2022-1059"}, r.Failing())
		require.Equal(t, []string{"GO-2026-6599"}, r.Stdlib())
		require.Equal(t, []string{"GO-2026-5970"}, r.NotCalled)

		out, failed := verdict(r)
		require.True(t, failed)
		require.Contains(t, out, "GO-2022-1059  golang.org/x/text@v0.3.7, fixed in v0.3.8 (FAILS")
		require.Contains(t, out, "Denial of service via crafted Accept-Language header")
		require.Contains(t, out, "example.com/scratch.main (main.go:11:46)\n      → golang.org/x/text/language.ParseAcceptLanguage (language/parse.go:158:6)")
		require.Contains(t, out, "FAIL: 1 advisory reached outside the standard library: scratch: GO-2022-1059")
	})

	t.Run("a reached advisory in the standard library is printed with the Go release that fixes it, and passes", func(t *testing.T) {
		t.Parallel()
		out, failed := verdict(parseString(t, streamConfig+streamStdlib+streamRequired))
		require.False(t, failed)
		require.Contains(t, out, "GO-2026-6599  standard library html/template@go1.26.8, fixed in go1.26.9 (reported only")
		require.Contains(t, out, "→ html/template.Template.Execute (src/html/template/template.go:120:20)")
		require.Contains(t, out, "standard library of go1.26.8: 1 advisory reached (GO-2026-6599); Go 1.26.9 fixes them all")
		require.Contains(t, out, "ok: no vulnerability reached outside the standard library")
	})

	t.Run("an advisory for code that is only required passes and is listed", func(t *testing.T) {
		t.Parallel()
		out, failed := verdict(parseString(t, streamConfig+streamRequired))
		require.False(t, failed)
		require.Contains(t, out, "no vulnerability is reached")
		require.Contains(t, out, "in the build but not reached: GO-2026-5970")
	})

	t.Run("output that is not govulncheck's JSON is an error", func(t *testing.T) {
		t.Parallel()
		_, err := parseScan(strings.NewReader("govulncheck: loading packages: no go.mod\n"))
		require.Error(t, err)
	})
}

func TestDistinctTracesShortestFirst(t *testing.T) {
	t.Parallel()
	vuln := &frame{Module: "m", Package: "m/p", Function: "F"}
	long := []*frame{vuln, {Package: "a", Function: "g"}, {Package: "a", Function: "main"}}
	short := []*frame{vuln, {Package: "a", Function: "main"}}
	got := distinctTraces([]finding{{Trace: long}, {Trace: short}, {Trace: long}})
	require.Equal(t, [][]*frame{short, long}, got)
}
