package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/testenv"
)

// scratchMain calls the function of GO-2022-1059 (golang.org/x/text before
// v0.3.8) and, to show that the standard library does not fail the check,
// html/template's Execute, which GO-2026-6599 affects before Go 1.26.9.
const scratchMain = `package main

import (
	"fmt"
	"html/template"
	"os"

	"golang.org/x/text/language"
)

func main() {
	tags, _, err := language.ParseAcceptLanguage(os.Getenv("ACCEPT_LANGUAGE"))
	fmt.Println(tags, err)
	t := template.Must(template.New("").Parse("<p>{{.}}</p>"))
	_ = t.Execute(os.Stdout, os.Args)
}
`

// TestScratchModule runs the check the way CI does, over a module made for
// the test that requires golang.org/x/text v0.3.7 and calls
// language.ParseAcceptLanguage: it must fail and name GO-2022-1059 with the
// call path, and pass once the module is upgraded to v0.3.8, the fix.
//
// It needs the Go module proxy (or a module cache and a vulncheck cache that
// already hold everything): for x/text, for vulndb and for govulncheck. When
// a download fails it is skipped, saying so, unless ASYNCKIT_REQUIRE_SERVICES=1,
// as in CI, where it fails instead. It is skipped in -short mode.
func TestScratchModule(t *testing.T) {
	if testing.Short() {
		t.Skip("vulncheck: the scratch-module test runs govulncheck twice; skipped in -short mode")
	}
	ctx := context.Background()
	cache := defaultCacheDir()

	// Everything that needs the module proxy happens through online, before
	// and between the checks, so that the checks themselves run offline.
	_, err := ensureDatabase(ctx, cache, vulndbVersion, t.Logf)
	online(t, "build the vulnerability database", err)
	_, err = ensureGovulncheck(ctx, cache, govulncheckVersion, t.Logf)
	online(t, "install govulncheck", err)

	scratch := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(scratch, "go.mod"), []byte("module example.com/scratch\n\ngo 1.26\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(scratch, "main.go"), []byte(scratchMain), 0o644))
	online(t, "go get golang.org/x/text@v0.3.7", goGet(ctx, scratch, "golang.org/x/text@v0.3.7"))

	code, out := runCheck(t, scratch)
	require.Equal(t, 1, code, "the check must fail on x/text v0.3.7:\n%s", out)
	require.Contains(t, out, "GO-2022-1059  golang.org/x/text@v0.3.7, fixed in v0.3.8 (FAILS")
	require.Contains(t, out, "Denial of service via crafted Accept-Language header")
	require.Contains(t, out, "example.com/scratch.main (main.go:12:")
	require.Contains(t, out, "→ golang.org/x/text/language.ParseAcceptLanguage")
	require.Contains(t, out, "FAIL: 1 advisory reached outside the standard library: "+scratch+": GO-2022-1059")

	online(t, "go get golang.org/x/text@v0.3.8", goGet(ctx, scratch, "golang.org/x/text@v0.3.8"))

	code, out = runCheck(t, scratch)
	require.Equal(t, 0, code, "the check must pass on x/text v0.3.8:\n%s", out)
	require.NotContains(t, out, "GO-2022-1059")
	require.Contains(t, out, "ok: no vulnerability reached outside the standard library")
	if compareVersions(strings.TrimPrefix(runtime.Version(), "go"), "1.26.9") < 0 {
		// With this toolchain the standard library finding is certain, so
		// the pass above is a pass despite it.
		require.Contains(t, out, "GO-2026-6599  standard library html/template@"+runtime.Version()+", fixed in go1.26.9 (reported only")
	}
}

// runCheck runs the command over dir with the default cache and returns its exit
// status and everything it wrote.
func runCheck(t *testing.T, dir string) (int, string) {
	t.Helper()
	var out strings.Builder
	code := run(context.Background(), []string{dir}, &out, &out)
	t.Logf("go run ./internal/vulncheck %s: exit status %d\n%s", dir, code, out.String())
	return code, out.String()
}

func goGet(ctx context.Context, dir, query string) error {
	cmd := goCommand(ctx, dir, "get", query)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go get %s: %w\n%s", query, err, out)
	}
	return nil
}

// online ends the test when a step that needs the Go module proxy failed:
// skipped, unless services are required.
func online(t *testing.T, step string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if testenv.Required() {
		t.Fatalf("vulncheck: %s (this needs the Go module proxy, and %s=1): %v", step, testenv.EnvRequire, err)
	}
	t.Skipf("vulncheck: %s failed, so the Go module proxy seems out of reach; %s=1 makes this a failure: %v", step, testenv.EnvRequire, err)
}
