package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// writeOSV writes OSV files named after their ids into a new folder.
func writeOSV(t *testing.T, entries map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range entries {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644))
	}
	return dir
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, v))
}

func TestBuildDatabase(t *testing.T) {
	t.Parallel()
	text := `{"id":"GO-2022-1059","modified":"0001-01-01T00:00:00Z","aliases":["CVE-2022-32149"],
		"affected":[{"package":{"name":"golang.org/x/text","ecosystem":"Go"},
		"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"0.3.8"}]}]}]}`
	// One advisory for two modules; in the standard library it was fixed on
	// two release branches.
	both := `{"id":"GO-2026-6617","modified":"2026-10-01T12:00:00Z",
		"affected":[
		{"package":{"name":"stdlib"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"1.26.9"}]}]},
		{"package":{"name":"stdlib"},"ranges":[{"type":"SEMVER","events":[{"introduced":"1.27.0-0"},{"fixed":"1.27.2"}]}]},
		{"package":{"name":"golang.org/x/net"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"},{"fixed":"0.60.0"}]}]}]}`
	unfixed := `{"id":"GO-2024-0001","modified":"0001-01-01T00:00:00Z",
		"affected":[{"package":{"name":"example.com/m"},"ranges":[{"type":"SEMVER","events":[{"introduced":"0"}]}]}]}`
	src := writeOSV(t, map[string]string{
		"GO-2022-1059.json": text,
		"GO-2026-6617.json": both,
		"GO-2024-0001.json": unfixed,
		"README.md":         "not an entry",
	})
	out := t.TempDir()
	asOf := time.Date(2026, 11, 5, 23, 49, 57, 0, time.UTC)

	n, err := buildDatabase(src, out, asOf)
	require.NoError(t, err)
	require.Equal(t, 3, n)

	t.Run("each entry is copied unchanged under ID", func(t *testing.T) {
		b, err := os.ReadFile(filepath.Join(out, "ID", "GO-2022-1059.json"))
		require.NoError(t, err)
		require.Equal(t, text, string(b))
		entries, err := os.ReadDir(filepath.Join(out, "ID"))
		require.NoError(t, err)
		require.Len(t, entries, 3)
	})

	t.Run("db.json holds the later of the commit time and any entry's", func(t *testing.T) {
		var db dbMeta
		readJSON(t, filepath.Join(out, "index", "db.json"), &db)
		require.Equal(t, asOf, db.Modified)

		other := t.TempDir()
		_, err := buildDatabase(src, other, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		require.NoError(t, err)
		readJSON(t, filepath.Join(other, "index", "db.json"), &db)
		require.Equal(t, time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC), db.Modified)
	})

	t.Run("modules.json lists each module's advisories with the version that fixes them", func(t *testing.T) {
		var modules []moduleMeta
		readJSON(t, filepath.Join(out, "index", "modules.json"), &modules)
		modified := time.Date(2026, 10, 1, 12, 0, 0, 0, time.UTC)
		require.Equal(t, []moduleMeta{
			{Path: "example.com/m", Vulns: []moduleVuln{{ID: "GO-2024-0001"}}},
			{Path: "golang.org/x/net", Vulns: []moduleVuln{{ID: "GO-2026-6617", Modified: modified, Fixed: "0.60.0"}}},
			{Path: "golang.org/x/text", Vulns: []moduleVuln{{ID: "GO-2022-1059", Fixed: "0.3.8"}}},
			// One row per affected block, as vulndb publishes it; the
			// latest fix is carried from the first range into the second.
			{Path: "stdlib", Vulns: []moduleVuln{
				{ID: "GO-2026-6617", Modified: modified, Fixed: "1.26.9"},
				{ID: "GO-2026-6617", Modified: modified, Fixed: "1.27.2"},
			}},
		}, modules)
	})

	t.Run("vulns.json lists every advisory with its aliases", func(t *testing.T) {
		var vulns []vulnMeta
		readJSON(t, filepath.Join(out, "index", "vulns.json"), &vulns)
		require.Len(t, vulns, 3)
		require.Equal(t, vulnMeta{ID: "GO-2022-1059", Aliases: []string{"CVE-2022-32149"}}, vulns[0])
	})
}

func TestBuildDatabaseRefusesBadEntries(t *testing.T) {
	t.Parallel()
	for name, files := range map[string]map[string]string{
		"a file named other than its id": {"GO-2020-0001.json": `{"id":"GO-2020-0002"}`},
		"a file that is not JSON":        {"GO-2020-0001.json": `{`},
		"an entry without an id":         {"GO-2020-0001.json": `{}`},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := buildDatabase(writeOSV(t, files), t.TempDir(), time.Time{})
			require.Error(t, err)
		})
	}
}

func TestLatestFixed(t *testing.T) {
	t.Parallel()
	type ev = struct {
		Introduced string `json:"introduced"`
		Fixed      string `json:"fixed"`
	}
	semver := func(events ...ev) osvRange { return osvRange{Type: "SEMVER", Events: events} }
	for _, tc := range []struct {
		name   string
		ranges []osvRange
		want   string
	}{
		{"fixed once", []osvRange{semver(ev{Introduced: "0"}, ev{Fixed: "0.3.8"})}, "0.3.8"},
		{"never fixed", []osvRange{semver(ev{Introduced: "0"})}, ""},
		{"fixed on two branches", []osvRange{semver(ev{Introduced: "0"}, ev{Fixed: "1.26.9"}, ev{Introduced: "1.27.0-0"}, ev{Fixed: "1.27.2"})}, "1.27.2"},
		{"reintroduced after the last fix", []osvRange{semver(ev{Introduced: "0"}, ev{Fixed: "1.2.0"}, ev{Introduced: "2.0.0"})}, ""},
		{"the later of two ranges", []osvRange{semver(ev{Introduced: "0"}, ev{Fixed: "0.10.0"}), semver(ev{Introduced: "0"}, ev{Fixed: "0.9.0"})}, "0.10.0"},
		{"only SEMVER ranges count", []osvRange{{Type: "ECOSYSTEM", Events: []ev{{Fixed: "9.0.0"}}}}, ""},
		{"a pseudo-version fix", []osvRange{semver(ev{Introduced: "0.0.0-20250721152936-fe86ceb2c3fa"}, ev{Fixed: "0.0.0-20260626085133-7cb96ac80a6d"})}, "0.0.0-20260626085133-7cb96ac80a6d"},
	} {
		require.Equal(t, tc.want, latestFixed(tc.ranges), tc.name)
	}
}

// TestEnsureDatabaseReusesABuiltOne proves that a warm cache costs no
// download: with no go command on PATH, a database already in the cache is
// returned as it is.
func TestEnsureDatabaseReusesABuiltOne(t *testing.T) {
	cache := t.TempDir()
	const version = "v0.0.0-20261105234957-e22db6528018"
	dir := filepath.Join(cache, "vulndb", version)
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "index"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, modulesIndex), []byte("[]"), 0o644))
	t.Setenv("PATH", t.TempDir())

	got, err := ensureDatabase(context.Background(), cache, version, t.Logf)
	require.NoError(t, err)
	require.Equal(t, dir, got)

	_, err = ensureDatabase(context.Background(), cache, "v0.0.0-20200101000000-000000000000", t.Logf)
	require.Error(t, err, "a version not in the cache needs go mod download")

	for _, bad := range []string{"", "../escape", ".hidden", "a/b"} {
		_, err := ensureDatabase(context.Background(), cache, bad, t.Logf)
		require.ErrorContains(t, err, "is not a module version", "version %q", bad)
	}
}
