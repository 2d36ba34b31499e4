// Package testenv is the one way asynckit's tests reach real services.
//
// Each helper reads one environment variable, connects to the server it names
// and hands the test a namespace of its own, removed again at cleanup:
//
//	REDIS_URL      redis://127.0.0.1:6379/0                              Redis: a unique key prefix
//	DATABASE_URL   postgres://postgres@127.0.0.1:5432/test?sslmode=disable   Postgres: a fresh schema
//	MYSQL_DSN      root@tcp(127.0.0.1:3306)/test?parseTime=true          MySQL/MariaDB: a fresh database
//
// Packages run in parallel under go test ./... against the same servers, so
// no two tests ever share a key prefix, a schema or a database.
//
// When a variable is unset the test is skipped with one line saying which
// variable enables it, unless ASYNCKIT_REQUIRE_SERVICES=1, in which case the
// test fails instead. A server that is named but does not answer always fails
// the test: a broken service must never pass as a skipped one.
package testenv

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

// The environment variables that name the services.
const (
	EnvRedis    = "REDIS_URL"
	EnvPostgres = "DATABASE_URL"
	EnvMySQL    = "MYSQL_DSN"
	// EnvRequire, when "1", turns a missing service from a skip into a failure.
	EnvRequire = "ASYNCKIT_REQUIRE_SERVICES"
)

// examples are the values the skip line suggests for each variable.
var examples = map[string]string{
	EnvRedis:    "redis://127.0.0.1:6379/0",
	EnvPostgres: "postgres://postgres@127.0.0.1:5432/test?sslmode=disable",
	EnvMySQL:    "root@tcp(127.0.0.1:3306)/test?parseTime=true",
}

// connectTimeout bounds how long a helper waits for a server before it fails
// the test, so an unreachable server is reported in seconds, not minutes.
const connectTimeout = 5 * time.Second

// Required reports whether ASYNCKIT_REQUIRE_SERVICES=1 is set, that is
// whether a missing service fails a test instead of skipping it.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// lookup returns the value of the service variable name, or skips or fails
// tb when it is unset, following the rule in the package comment.
func lookup(tb testing.TB, name string) string {
	tb.Helper()
	v := strings.TrimSpace(os.Getenv(name))
	if v != "" {
		return v
	}
	if Required() {
		tb.Fatalf("testenv: %s is not set and %s=1; set %s=%s", name, EnvRequire, name, examples[name])
	}
	tb.Skipf("testenv: set %s=%s to run this test against a real server", name, examples[name])
	return ""
}

// uniqueName returns a name unique to this test run, usable unquoted as a
// Postgres schema, a MySQL database or a Redis key prefix: "ak_" followed by
// 12 random hex digits and as much of the test name as fits in max bytes.
func uniqueName(tb testing.TB, max int) string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatalf("testenv: random name: %v", err)
	}
	name := "ak_" + hex.EncodeToString(b[:])
	var tail strings.Builder
	for _, r := range strings.ToLower(tb.Name()) {
		if r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			tail.WriteRune(r)
		} else {
			tail.WriteByte('_')
		}
	}
	if t := tail.String(); t != "" {
		name += "_" + t
	}
	if len(name) > max {
		name = name[:max]
	}
	return name
}

// SQLite returns a *sql.DB on a new SQLite database file in the test's
// temporary directory, through the pure-Go modernc.org/sqlite driver. It needs
// no service, so it never skips. Foreign keys are on and a busy timeout of
// five seconds lets concurrent writers wait for each other instead of failing.
func SQLite(tb testing.TB) *sql.DB {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "test.db")
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=foreign_keys(1)&_pragma=busy_timeout(5000)&_pragma=journal_mode(WAL)")
	if err != nil {
		tb.Fatalf("testenv: open SQLite: %v", err)
	}
	tb.Cleanup(func() { _ = db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		tb.Fatalf("testenv: SQLite at %s: %v", path, err)
	}
	return db
}

// failUnreachable fails tb for a server that was named but did not answer.
func failUnreachable(tb testing.TB, what, name string, err error) {
	tb.Helper()
	tb.Fatalf("testenv: %s named by %s does not answer: %v", what, name, err)
}

// must fails tb with the formatted context when err is not nil.
func must(tb testing.TB, err error, format string, args ...any) {
	tb.Helper()
	if err != nil {
		tb.Fatalf("testenv: %s: %v", fmt.Sprintf(format, args...), err)
	}
}
