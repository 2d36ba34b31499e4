// Command vulncheck is the vulnerability check of asynckit's CI. It runs
// govulncheck over modules against a copy of the Go vulnerability database
// that it builds from the golang.org/x/vulndb module, which the Go module
// proxy serves even where the database's own host cannot be reached.
//
//	go run ./internal/vulncheck               # the root module and bench/
//	go run ./internal/vulncheck DIR...        # the modules in DIR...
//
// govulncheck reports only the vulnerabilities that the code can reach; it
// runs as `govulncheck -test ./...` in each module, so tests, examples and
// benchmarks count as code (bench/ has no other). A reached vulnerability in
// a module other than the standard library fails the check (exit status 1),
// printed with the version that fixes it and the call paths into it. A
// reached vulnerability in the standard library is printed with the Go
// release that fixes it but does not fail, since the toolchain is the
// machine's, not the module's. Advisories for code that is in the build but
// never reached are listed by id. Exit status 2 means that the check itself
// could not run.
//
// # Versions
//
// The database is vulndb at [vulndbVersion] and the analysis is govulncheck at
// [govulncheckVersion]; the flags -vulndb and -govulncheck try others. vulndb
// has no release tags, so its versions are pseudo-versions, one per commit:
// `go list -m golang.org/x/vulndb@latest` prints the newest. Bumping it is a
// one-line change of the constant, and takes in every advisory published
// since.
//
// # Cache
//
// The database is built once per vulndb version, into CACHE/vulndb/VERSION/:
// index/db.json, index/modules.json and index/vulns.json, and ID/<id>.json
// for each advisory, the layout that `govulncheck -db file://…` reads.
// govulncheck is installed once per version and Go release, into
// CACHE/govulncheck/. CACHE is -cache, by default asynckit/vulncheck in the
// user's cache folder (~/.cache on Linux). A folder there is only ever seen
// complete, so concurrent runs are safe; deleting CACHE starts again, and
// folders of versions no longer pinned can be deleted by hand.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// The pinned versions. To take in newer advisories, set vulndbVersion to what
// `go list -m golang.org/x/vulndb@latest` prints.
const (
	vulndbVersion      = "v0.0.0-20261105234957-e22db6528018"
	govulncheckVersion = "v1.10.0"
)

// defaultDirs are the modules checked when none is named: the root module
// and the bench/ module, relative to the root. One without a go.mod is
// left out.
var defaultDirs = []string{".", "bench"}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// config is what one run checks, and with what.
type config struct {
	Dirs               []string
	CacheDir           string
	VulndbVersion      string
	GovulncheckVersion string
}

// run is the command: it parses args, checks each module and writes the
// report to stdout and progress to stderr. It returns the exit status: 0 when
// no module reaches a vulnerability outside the standard library, 1 when one
// does, 2 when the check could not be made.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("vulncheck", flag.ContinueOnError)
	fset.SetOutput(stderr)
	cfg := config{}
	fset.StringVar(&cfg.CacheDir, "cache", "", "cache `folder` for the database and govulncheck (default asynckit/vulncheck in the user's cache folder)")
	fset.StringVar(&cfg.VulndbVersion, "vulndb", vulndbVersion, "golang.org/x/vulndb `version` to build the database from")
	fset.StringVar(&cfg.GovulncheckVersion, "govulncheck", govulncheckVersion, "golang.org/x/vuln `version` whose govulncheck runs")
	fset.Usage = func() {
		fmt.Fprintf(stderr, "usage: go run ./internal/vulncheck [flags] [module dir...]  (default: %s)\n", strings.Join(defaultDirs, " "))
		fset.PrintDefaults()
	}
	if err := fset.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	cfg.Dirs = fset.Args()
	if len(cfg.Dirs) == 0 {
		for _, dir := range defaultDirs {
			if exists(filepath.Join(dir, "go.mod")) {
				cfg.Dirs = append(cfg.Dirs, dir)
			}
		}
		if len(cfg.Dirs) == 0 {
			fmt.Fprintln(stderr, "vulncheck: no go.mod here; run it from the repository's root, or name the module folders")
			return 2
		}
	}
	if cfg.CacheDir == "" {
		cfg.CacheDir = defaultCacheDir()
	}
	failed, err := check(ctx, cfg, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "vulncheck: %v\n", err)
		return 2
	}
	if failed {
		return 1
	}
	return 0
}

// defaultCacheDir is asynckit/vulncheck in the user's cache folder, or in the
// temporary folder when there is no home.
func defaultCacheDir() string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "asynckit", "vulncheck")
}

// check runs the whole check and reports whether it failed.
func check(ctx context.Context, cfg config, stdout, stderr io.Writer) (failed bool, err error) {
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "vulncheck: "+format+"\n", args...)
	}
	start := time.Now()
	dbDir, err := ensureDatabase(ctx, cfg.CacheDir, cfg.VulndbVersion, logf)
	if err != nil {
		return false, err
	}
	bin, err := ensureGovulncheck(ctx, cfg.CacheDir, cfg.GovulncheckVersion, logf)
	if err != nil {
		return false, err
	}
	fmt.Fprintf(stdout, "govulncheck %s, database %s@%s (%s)\n", cfg.GovulncheckVersion, vulndbModule, cfg.VulndbVersion, dbDir)

	var results []*scanResult
	for _, dir := range cfg.Dirs {
		res, err := scan(ctx, bin, dbDir, dir)
		if err != nil {
			return false, err
		}
		report(stdout, res)
		results = append(results, res)
	}
	return summarize(stdout, results, time.Since(start)), nil
}

// report writes what govulncheck found in one module: the advisories its
// code reaches, failing ones first, and the ids of those it does not reach.
func report(w io.Writer, r *scanResult) {
	fmt.Fprintf(w, "\n== %s (govulncheck -test ./...)\n", r.Dir)
	for _, id := range r.Failing() {
		writeAdvisory(w, r, id, "FAILS: reached in a required module", 3)
	}
	for _, id := range r.Stdlib() {
		writeAdvisory(w, r, id, "reported only: the toolchain is the machine's", 1)
	}
	if len(r.Called) == 0 {
		fmt.Fprintln(w, "no vulnerability is reached")
	}
	if len(r.NotCalled) > 0 {
		fmt.Fprintf(w, "\nin the build but not reached: %s\n", strings.Join(r.NotCalled, " "))
	}
}

// writeAdvisory writes one reached advisory: where it is, what fixes it, and
// up to maxTraces of the call paths govulncheck found into it, shortest
// first, each from the caller in the module down to the vulnerable symbol.
// The vulnerable symbols of the other paths are named after them.
func writeAdvisory(w io.Writer, r *scanResult, id, verdict string, maxTraces int) {
	traces := distinctTraces(r.Called[id])
	top := traces[0][0]
	where := top.Module + "@" + top.Version
	if r.Called[id][0].stdlib() {
		where = "standard library " + top.Package + "@" + goRelease(top.Version)
	}
	fixed := r.Called[id][0].FixedVersion
	if r.Called[id][0].stdlib() {
		fixed = goRelease(fixed)
	}
	if fixed == "" {
		fixed = "no release yet"
	}
	fmt.Fprintf(w, "\n%s  %s, fixed in %s (%s)\n", id, where, fixed, verdict)
	if s := r.Summaries[id]; s != "" {
		fmt.Fprintf(w, "    %s\n", s)
	}
	fmt.Fprintf(w, "    https://pkg.go.dev/vuln/%s\n", id)
	for i, t := range traces[:min(maxTraces, len(traces))] {
		fmt.Fprintf(w, "    call path #%d:\n", i+1)
		for j, fr := range slices.Backward(t) {
			arrow := "  "
			if j < len(t)-1 {
				arrow = "→ "
			}
			fmt.Fprintf(w, "      %s%s%s\n", arrow, symbol(fr), pos(fr))
		}
	}
	if rest := traces[min(maxTraces, len(traces)):]; len(rest) > 0 {
		var syms []string
		for _, t := range rest {
			if s := symbol(t[0]); !slices.Contains(syms, s) {
				syms = append(syms, s)
			}
		}
		const maxNames = 8
		names := strings.Join(syms[:min(maxNames, len(syms))], ", ")
		if len(syms) > maxNames {
			names += fmt.Sprintf(" and %d more", len(syms)-maxNames)
		}
		fmt.Fprintf(w, "    %d more %s, into %s\n", len(rest), plural(len(rest), "call path", "call paths"), names)
	}
}

// distinctTraces returns the different traces of fs, shortest first (then in
// the order of their text, so the report is stable). govulncheck reports a
// path once per vulnerable symbol, and -test repeats some for the test
// variant of a package.
func distinctTraces(fs []finding) [][]*frame {
	seen := map[string]bool{}
	var out [][]*frame
	for _, f := range fs {
		key := traceKey(f.Trace)
		if !seen[key] {
			seen[key] = true
			out = append(out, f.Trace)
		}
	}
	slices.SortStableFunc(out, func(a, b []*frame) int {
		if len(a) != len(b) {
			return len(a) - len(b)
		}
		return strings.Compare(traceKey(a), traceKey(b))
	})
	return out
}

func traceKey(t []*frame) string {
	var b strings.Builder
	for _, f := range t {
		b.WriteString(symbol(f) + pos(f) + "\n")
	}
	return b.String()
}

// symbol returns a frame's function as package.Function or
// package.Receiver.Method.
func symbol(f *frame) string {
	s := f.Package + "."
	if f.Receiver != "" {
		s += strings.TrimPrefix(f.Receiver, "*") + "."
	}
	return s + f.Function
}

// pos returns " (file:line:col)" for a frame that has a position.
func pos(f *frame) string {
	if f.Position == nil || f.Position.Filename == "" {
		return ""
	}
	return fmt.Sprintf(" (%s:%d:%d)", f.Position.Filename, f.Position.Line, f.Position.Column)
}

// summarize writes the verdict over every module and reports whether the
// check failed.
func summarize(w io.Writer, results []*scanResult, took time.Duration) (failed bool) {
	var failing, stdlib []string
	goFix, unfixed := "", false
	for _, r := range results {
		for _, id := range r.Failing() {
			failing = append(failing, r.Dir+": "+id)
		}
		for _, id := range r.Stdlib() {
			if !slices.Contains(stdlib, id) {
				stdlib = append(stdlib, id)
			}
			fixed := goRelease(r.Called[id][0].FixedVersion)
			if fixed == "" {
				unfixed = true
			} else if compareVersions(strings.TrimPrefix(fixed, "go"), strings.TrimPrefix(goFix, "go")) > 0 {
				goFix = fixed
			}
		}
	}
	fmt.Fprintln(w)
	if len(stdlib) > 0 {
		slices.Sort(stdlib)
		fmt.Fprintf(w, "standard library of %s: %d %s reached (%s); ", results[0].GoVersion, len(stdlib), plural(len(stdlib), "advisory", "advisories"), strings.Join(stdlib, " "))
		if unfixed {
			fmt.Fprintln(w, "some are not fixed in any Go release yet")
		} else {
			fmt.Fprintf(w, "Go %s fixes them all\n", strings.TrimPrefix(goFix, "go"))
		}
	}
	if len(failing) > 0 {
		fmt.Fprintf(w, "FAIL: %d %s reached outside the standard library: %s (%s)\n", len(failing), plural(len(failing), "advisory", "advisories"), strings.Join(failing, ", "), took.Round(time.Second))
		return true
	}
	fmt.Fprintf(w, "ok: no vulnerability reached outside the standard library (%s)\n", took.Round(time.Second))
	return false
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// goRelease returns a standard library version as govulncheck reports it
// ("v1.26.9") as a Go release ("go1.26.9"); "" stays "".
func goRelease(v string) string {
	if v == "" || strings.HasPrefix(v, "go") {
		return v
	}
	return "go" + strings.TrimPrefix(v, "v")
}
