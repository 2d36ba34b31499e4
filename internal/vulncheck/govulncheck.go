package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
)

// govulncheckPackage is the command that does the analysis.
const govulncheckPackage = "golang.org/x/vuln/cmd/govulncheck"

// ensureGovulncheck returns the path of govulncheck at version, installed
// under cacheDir/govulncheck/VERSION-GOVERSION by go install. It is keyed by
// the Go release too, because govulncheck type-checks with the go/types it
// was built with and must understand the code the toolchain accepts.
func ensureGovulncheck(ctx context.Context, cacheDir, version string, logf func(string, ...any)) (string, error) {
	if version == "" || filepath.Base(version) != version || strings.HasPrefix(version, ".") {
		return "", fmt.Errorf("govulncheck version %q is not a module version", version)
	}
	parent := filepath.Join(cacheDir, "govulncheck")
	exe := "govulncheck"
	if runtime.GOOS == "windows" {
		exe += ".exe"
	}
	bin := filepath.Join(parent, version+"-"+runtime.Version(), exe)
	if exists(bin) {
		return bin, nil
	}

	logf("installing %s@%s", govulncheckPackage, version)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(parent, version+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := goCommand(ctx, tmp, "install", govulncheckPackage+"@"+version)
	cmd.Env = append(cmd.Env, "GOBIN="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", govulncheckPackage, version, err, out)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", err
	}
	// Renaming a file over another is atomic, so a concurrent run sees
	// either no binary or a whole one.
	if err := os.Rename(filepath.Join(tmp, exe), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// The messages of govulncheck -format json that the verdict is made from;
// see golang.org/x/vuln/internal/govulncheck (protocol v1.0.0).
type (
	message struct {
		Config  *scanConfig `json:"config"`
		OSV     *osvSummary `json:"osv"`
		Finding *finding    `json:"finding"`
	}
	scanConfig struct {
		ScannerVersion string `json:"scanner_version"`
		GoVersion      string `json:"go_version"`
	}
	osvSummary struct {
		ID      string `json:"id"`
		Summary string `json:"summary"`
	}
	finding struct {
		OSV          string   `json:"osv"`
		FixedVersion string   `json:"fixed_version"`
		Trace        []*frame `json:"trace"`
	}
	frame struct {
		Module   string    `json:"module"`
		Version  string    `json:"version"`
		Package  string    `json:"package"`
		Function string    `json:"function"`
		Receiver string    `json:"receiver"`
		Position *position `json:"position"`
	}
	position struct {
		Filename string `json:"filename"`
		Line     int    `json:"line"`
		Column   int    `json:"column"`
	}
)

// scanResult is what govulncheck found in one module.
type scanResult struct {
	Dir       string
	GoVersion string               // the toolchain's, as govulncheck saw it
	Summaries map[string]string    // advisory id → one-line summary
	Called    map[string][]finding // advisory id → the findings whose trace reaches it
	// NotCalled are the advisories that affect a required module or an
	// imported package but that no code path reaches.
	NotCalled []string
}

// stdlib reports whether f is in the standard library or the go command,
// which come with the toolchain rather than with go.mod.
func (f finding) stdlib() bool {
	m := f.Trace[0].Module
	return m == "stdlib" || m == "toolchain"
}

// Failing returns the advisories reached in modules other than the standard
// library, sorted: each one fails the check.
func (r *scanResult) Failing() []string { return r.called(false) }

// Stdlib returns the advisories reached in the standard library, sorted.
func (r *scanResult) Stdlib() []string { return r.called(true) }

func (r *scanResult) called(stdlib bool) []string {
	var ids []string
	for id, fs := range r.Called {
		if fs[0].stdlib() == stdlib {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids
}

// scan runs govulncheck over ./... in dir against the database in dbDir.
func scan(ctx context.Context, bin, dbDir, dir string) (*scanResult, error) {
	abs, err := filepath.Abs(dbDir)
	if err != nil {
		return nil, err
	}
	db := url.URL{Scheme: "file", Path: filepath.ToSlash(abs)}
	if !strings.HasPrefix(db.Path, "/") {
		db.Path = "/" + db.Path // a Windows drive letter
	}
	cmd := exec.CommandContext(ctx, bin, "-db", db.String(), "-format", "json", "-test", "./...")
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	res, parseErr := parseScan(stdout)
	_, _ = io.Copy(io.Discard, stdout)
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("govulncheck in %s: %w\n%s", dir, err, strings.TrimSpace(stderr.String()))
	}
	if parseErr != nil {
		return nil, fmt.Errorf("govulncheck in %s: reading its output: %w", dir, parseErr)
	}
	res.Dir = dir
	return res, nil
}

// parseScan reads the stream of JSON messages govulncheck -format json writes.
func parseScan(r io.Reader) (*scanResult, error) {
	res := &scanResult{Summaries: map[string]string{}, Called: map[string][]finding{}}
	notCalled := map[string]bool{}
	dec := json.NewDecoder(r)
	for {
		var m message
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return nil, err
		}
		switch {
		case m.Config != nil:
			res.GoVersion = m.Config.GoVersion
		case m.OSV != nil:
			res.Summaries[m.OSV.ID] = m.OSV.Summary
		case m.Finding != nil && len(m.Finding.Trace) > 0:
			f := *m.Finding
			// A trace whose innermost frame names a function is a call
			// path into the vulnerable symbol; without one, govulncheck
			// only saw the package imported or the module required.
			if f.Trace[0].Function != "" {
				res.Called[f.OSV] = append(res.Called[f.OSV], f)
			} else {
				notCalled[f.OSV] = true
			}
		}
	}
	for id := range notCalled {
		if _, ok := res.Called[id]; !ok {
			res.NotCalled = append(res.NotCalled, id)
		}
	}
	slices.Sort(res.NotCalled)
	return res, nil
}
