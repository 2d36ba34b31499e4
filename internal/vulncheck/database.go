package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// vulndbModule is the module whose data/osv folder holds every Go advisory
// in OSV form, one GO-YYYY-NNNN.json file each.
const vulndbModule = "golang.org/x/vulndb"

// The files of the database layout that `govulncheck -db file://DIR` reads,
// as go.dev/security/vuln/database describes it. govulncheck recognises a
// local database by its modules index; vulns.json is not read by govulncheck
// but is part of the layout, so the folder is a complete database.
const (
	dbIndex      = "index/db.json"
	modulesIndex = "index/modules.json"
	vulnsIndex   = "index/vulns.json"
	entriesDir   = "ID"
)

// osvEntry is the part of an OSV entry that the indexes are made from. The
// entry itself is copied byte for byte.
type osvEntry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases"`
	Affected []struct {
		Package struct {
			Name string `json:"name"` // a module path, or "stdlib" or "toolchain"
		} `json:"package"`
		Ranges []osvRange `json:"ranges"`
	} `json:"affected"`
}

type osvRange struct {
	Type   string `json:"type"`
	Events []struct {
		Introduced string `json:"introduced"`
		Fixed      string `json:"fixed"`
	} `json:"events"`
}

// The index records, with the field names and order of the published database.
type (
	dbMeta struct {
		Modified time.Time `json:"modified"`
	}
	moduleMeta struct {
		Path  string       `json:"path"`
		Vulns []moduleVuln `json:"vulns"`
	}
	moduleVuln struct {
		ID       string    `json:"id"`
		Modified time.Time `json:"modified"`
		Fixed    string    `json:"fixed,omitempty"`
	}
	vulnMeta struct {
		ID       string    `json:"id"`
		Modified time.Time `json:"modified"`
		Aliases  []string  `json:"aliases,omitempty"`
	}
)

// ensureDatabase returns the folder of the database built from vulndb at
// version, under cacheDir/vulndb/VERSION. A folder that is there already is
// used as it is: it only ever appears complete, because it is built under a
// temporary name and renamed into place, so concurrent runs are safe and the
// loser of a race discards its copy. logf reports what is being done.
func ensureDatabase(ctx context.Context, cacheDir, version string, logf func(string, ...any)) (string, error) {
	if version == "" || filepath.Base(version) != version || strings.HasPrefix(version, ".") {
		return "", fmt.Errorf("vulndb version %q is not a module version", version)
	}
	parent := filepath.Join(cacheDir, "vulndb")
	dir := filepath.Join(parent, version)
	if exists(filepath.Join(dir, modulesIndex)) {
		return dir, nil
	}

	logf("downloading %s@%s", vulndbModule, version)
	src, asOf, err := downloadVulndb(ctx, parent, version)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(parent, version+".tmp-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	n, err := buildDatabase(filepath.Join(src, "data", "osv"), tmp, asOf)
	if err != nil {
		return "", fmt.Errorf("build the database from %s@%s: %w", vulndbModule, version, err)
	}
	// MkdirTemp made it private; the database is for anyone to read.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if exists(filepath.Join(dir, modulesIndex)) {
			return dir, nil // built meanwhile by another run
		}
		return "", err
	}
	logf("built the database of %d advisories in %s", n, dir)
	return dir, nil
}

// downloadVulndb runs go mod download for vulndb at version and returns the
// module's folder in the module cache and the time of its commit.
func downloadVulndb(ctx context.Context, workDir, version string) (dir string, asOf time.Time, err error) {
	if err := os.MkdirAll(workDir, 0o755); err != nil {
		return "", time.Time{}, err
	}
	var out struct {
		Dir   string
		Info  string
		Error string
	}
	// Run outside any module, so that no go.mod or go.work is consulted.
	cmd := goCommand(ctx, workDir, "mod", "download", "-json", vulndbModule+"@"+version)
	stdout, err := cmd.Output()
	if jsonErr := json.Unmarshal(stdout, &out); jsonErr == nil && out.Error != "" {
		return "", time.Time{}, fmt.Errorf("go mod download %s@%s: %s", vulndbModule, version, out.Error)
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("go mod download %s@%s: %w%s", vulndbModule, version, err, stderrOf(err))
	}
	if out.Dir == "" {
		return "", time.Time{}, fmt.Errorf("go mod download %s@%s named no folder", vulndbModule, version)
	}
	var info struct{ Time time.Time }
	if b, err := os.ReadFile(out.Info); err == nil {
		_ = json.Unmarshal(b, &info)
	}
	return out.Dir, info.Time, nil
}

// buildDatabase writes into dir the database made of the OSV files in osvDir:
// each entry copied unchanged to ID/<id>.json, and the three indexes. It
// returns the number of entries. A file that is not valid OSV, or whose name
// is not its id, is an error, as it is for govulncheck.
//
// The entries in vulndb's repository carry a zero "modified" time (the
// published database fills it in from the repository's history), so the
// database's own modified time, which govulncheck prints, is the later of
// asOf, the commit time of the vulndb version, and any entry's.
func buildDatabase(osvDir, dir string, asOf time.Time) (int, error) {
	files, err := os.ReadDir(osvDir)
	if err != nil {
		return 0, err
	}
	for _, sub := range []string{"index", entriesDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			return 0, err
		}
	}

	db := dbMeta{Modified: asOf.UTC()}
	modules := map[string]*moduleMeta{}
	var vulns []vulnMeta
	seen := map[string]bool{}
	for _, f := range files {
		if f.IsDir() || filepath.Ext(f.Name()) != ".json" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(osvDir, f.Name()))
		if err != nil {
			return 0, err
		}
		var e osvEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return 0, fmt.Errorf("%s: %w", f.Name(), err)
		}
		if e.ID == "" || f.Name() != e.ID+".json" {
			return 0, fmt.Errorf("%s: an OSV file must be named <id>.json, and its id is %q", f.Name(), e.ID)
		}
		if seen[e.ID] {
			return 0, fmt.Errorf("%s: id %s appears twice", f.Name(), e.ID)
		}
		seen[e.ID] = true
		if err := os.WriteFile(filepath.Join(dir, entriesDir, f.Name()), b, 0o644); err != nil {
			return 0, err
		}

		if e.Modified.After(db.Modified) {
			db.Modified = e.Modified
		}
		vulns = append(vulns, vulnMeta{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		for _, a := range e.Affected {
			m := modules[a.Package.Name]
			if m == nil {
				m = &moduleMeta{Path: a.Package.Name, Vulns: []moduleVuln{}}
				modules[a.Package.Name] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified, Fixed: latestFixed(a.Ranges)})
		}
	}

	mods := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		slices.SortStableFunc(m.Vulns, func(a, b moduleVuln) int { return strings.Compare(a.ID, b.ID) })
		mods = append(mods, m)
	}
	slices.SortFunc(mods, func(a, b *moduleMeta) int { return strings.Compare(a.Path, b.Path) })
	slices.SortFunc(vulns, func(a, b vulnMeta) int { return strings.Compare(a.ID, b.ID) })
	for name, v := range map[string]any{dbIndex: db, modulesIndex: mods, vulnsIndex: vulns} {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(name)), b, 0o644); err != nil {
			return 0, err
		}
	}
	return len(vulns), nil
}

// latestFixed returns the version from which no version is affected any more,
// or "" if there is none (the vulnerability is unfixed, or was re-introduced
// after its last fix). govulncheck skips an entry for a module version at or
// past it without reading the entry. It is the rule vulndb applies when it
// publishes the database (osvutils.LatestFixed), kept to the letter: the
// latest fix is carried across ranges, and a later introduction clears it.
func latestFixed(ranges []osvRange) string {
	var fixed string
	for _, r := range ranges {
		if r.Type != "SEMVER" {
			continue
		}
		for _, e := range r.Events {
			if e.Fixed != "" && compareVersions(fixed, e.Fixed) < 0 {
				fixed = e.Fixed
			}
		}
		for _, e := range r.Events {
			if e.Introduced != "" && e.Introduced != "0" && compareVersions(fixed, e.Introduced) < 0 {
				fixed = ""
				break
			}
		}
	}
	return fixed
}

// goCommand returns a go command run in dir, with go.work files ignored.
func goCommand(ctx context.Context, dir string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off")
	return cmd
}

// stderrOf returns the standard error an *exec.ExitError captured, on a line
// of its own, or "".
func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(bytes.TrimSpace(ee.Stderr)) > 0 {
		return "\n" + string(bytes.TrimSpace(ee.Stderr))
	}
	return ""
}

// exists reports whether path names a file or folder that can be reached.
func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
