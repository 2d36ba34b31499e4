package testenv_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asynckit/asynckit/internal/testenv"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// childEnv names the service a re-executed test binary should ask for; see
// TestSkipOrFail.
const childEnv = "ASYNCKIT_TESTENV_CHILD"

// TestChildService is not a test on its own: TestSkipOrFail runs the test
// binary again with only this test selected, and this test then asks testenv
// for the service named in ASYNCKIT_TESTENV_CHILD.
func TestChildService(t *testing.T) {
	switch os.Getenv(childEnv) {
	case "":
		return
	case "redis":
		testenv.Redis(t)
	case "postgres":
		testenv.Postgres(t)
	case "mysql":
		testenv.MySQL(t)
	}
	t.Log("service reached")
}

func TestSkipOrFail(t *testing.T) {
	services := []struct {
		child, env, unreachable string
	}{
		{"redis", testenv.EnvRedis, "redis://127.0.0.1:1/0"},
		{"postgres", testenv.EnvPostgres, "postgres://postgres@127.0.0.1:1/test?sslmode=disable&connect_timeout=2"},
		{"mysql", testenv.EnvMySQL, "root@tcp(127.0.0.1:1)/test"},
	}
	cases := []struct {
		name        string
		unreachable bool
		require     bool
		wantSkip    bool
		wantOutput  string
	}{
		{"unset variable skips with a line naming it", false, false, true, "set %s="},
		{"unset variable fails when services are required", false, true, false, "%s is not set and ASYNCKIT_REQUIRE_SERVICES=1"},
		{"unreachable server fails", true, false, false, "named by %s does not answer"},
		{"unreachable server fails when services are required", true, true, false, "named by %s does not answer"},
	}
	for _, svc := range services {
		for _, tc := range cases {
			t.Run(svc.child+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				cmd := exec.Command(os.Args[0], "-test.run=^TestChildService$", "-test.v", "-test.count=1")
				env := []string{childEnv + "=" + svc.child}
				for _, kv := range os.Environ() {
					k, _, _ := strings.Cut(kv, "=")
					if k != svc.env && k != testenv.EnvRequire && k != childEnv {
						env = append(env, kv)
					}
				}
				if tc.unreachable {
					env = append(env, svc.env+"="+svc.unreachable)
				}
				if tc.require {
					env = append(env, testenv.EnvRequire+"=1")
				}
				cmd.Env = env
				out, err := cmd.CombinedOutput()
				want := strings.ReplaceAll(tc.wantOutput, "%s", svc.env)
				require.Contains(t, string(out), want)
				require.NotContains(t, string(out), "service reached")
				if tc.wantSkip {
					require.NoError(t, err, "a skipped test must not fail the run:\n%s", out)
					require.Contains(t, string(out), "--- SKIP: TestChildService")
				} else {
					var exit *exec.ExitError
					require.True(t, errors.As(err, &exit), "the run must fail, got %v:\n%s", err, out)
					require.Contains(t, string(out), "--- FAIL: TestChildService")
				}
			})
		}
	}
}

func TestRedis(t *testing.T) {
	// Two tests running at once get distinct prefixes, do not see each
	// other's keys, and leave nothing behind.
	observer, observerPrefix := testenv.Redis(t)
	ctx := context.Background()
	var mu sync.Mutex
	var prefixes []string
	t.Run("group", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				client, prefix := testenv.Redis(t)
				require.True(t, strings.HasPrefix(prefix, "ak_"), prefix)
				require.NoError(t, client.Set(ctx, prefix+"k", name, 0).Err())
				require.NoError(t, client.Set(ctx, prefix+"other", name, 0).Err())
				got, err := client.Get(ctx, prefix+"k").Result()
				require.NoError(t, err)
				require.Equal(t, name, got)
				mu.Lock()
				prefixes = append(prefixes, prefix)
				mu.Unlock()
			})
		}
	})
	require.Len(t, prefixes, 2)
	require.NotEqual(t, prefixes[0], prefixes[1])
	require.NotEqual(t, observerPrefix, prefixes[0])
	for _, p := range prefixes {
		n, err := observer.Exists(ctx, p+"k", p+"other").Result()
		require.NoError(t, err)
		require.Zero(t, n, "keys under %q must be deleted at cleanup", p)
	}
	_, err := observer.Get(ctx, observerPrefix+"k").Result()
	require.ErrorIs(t, err, redis.Nil)
}

// sqlIsolation runs two parallel subtests that each create the same table in
// their own namespace, then checks that each saw only its own row and that
// both namespaces are gone after cleanup.
func sqlIsolation(t *testing.T, open func(testing.TB) *sql.DB, current, exists string) {
	observer := open(t)
	ctx := context.Background()
	var mu sync.Mutex
	var names []string
	t.Run("group", func(t *testing.T) {
		for _, name := range []string{"a", "b"} {
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				db := open(t)
				_, err := db.ExecContext(ctx, "CREATE TABLE items (name VARCHAR(10) NOT NULL)")
				require.NoError(t, err)
				_, err = db.ExecContext(ctx, "INSERT INTO items (name) VALUES ('"+name+"')")
				require.NoError(t, err)
				rows, err := db.QueryContext(ctx, "SELECT name FROM items")
				require.NoError(t, err)
				var got []string
				for rows.Next() {
					var s string
					require.NoError(t, rows.Scan(&s))
					got = append(got, s)
				}
				require.NoError(t, rows.Err())
				require.NoError(t, rows.Close())
				require.Equal(t, []string{name}, got)

				var ns string
				require.NoError(t, db.QueryRowContext(ctx, current).Scan(&ns))
				require.True(t, strings.HasPrefix(ns, "ak_"), ns)
				mu.Lock()
				names = append(names, ns)
				mu.Unlock()
			})
		}
	})
	require.Len(t, names, 2)
	require.NotEqual(t, names[0], names[1])
	for _, ns := range names {
		var n int
		require.NoError(t, observer.QueryRowContext(ctx, exists, ns).Scan(&n))
		require.Zero(t, n, "%s must be dropped at cleanup", ns)
	}
}

func TestPostgres(t *testing.T) {
	sqlIsolation(t, testenv.Postgres, "SELECT current_schema()",
		"SELECT count(*) FROM information_schema.schemata WHERE schema_name = $1")
}

func TestMySQL(t *testing.T) {
	sqlIsolation(t, testenv.MySQL, "SELECT DATABASE()",
		"SELECT count(*) FROM information_schema.schemata WHERE schema_name = ?")
}

func TestSQLite(t *testing.T) {
	db := testenv.SQLite(t)
	var fk int
	require.NoError(t, db.QueryRow("PRAGMA foreign_keys").Scan(&fk))
	require.Equal(t, 1, fk)
	_, err := db.Exec("CREATE TABLE items (name TEXT)")
	require.NoError(t, err)
}
