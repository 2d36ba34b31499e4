package asynckit_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// corePackages are the packages a user imports one at a time. They must
// compile without any database, Redis or metrics driver: those live in the
// driver subpackages (cache/rediscache, ratelimit/redisrate, txn/txnmysql)
// and in tests.
var corePackages = []string{"cache", "ratelimit", "taskqueue", "fanout", "txn", "pagination"}

// driverModules are the import path prefixes a core package must not depend on.
var driverModules = []string{
	"github.com/redis/go-redis/",
	"github.com/jackc/pgx/",
	"modernc.org/sqlite",
	"github.com/go-sql-driver/mysql",
	"github.com/prometheus/",
}

// drivers returns the driver packages that pkg depends on, transitively,
// outside its tests.
func drivers(t *testing.T, pkg string) []string {
	t.Helper()
	// go test puts the go command that runs it first on PATH.
	out, err := exec.Command("go", "list", "-deps", "github.com/asynckit/asynckit/"+pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	var found []string
	for _, dep := range strings.Fields(string(out)) {
		for _, d := range driverModules {
			if strings.HasPrefix(dep, d) {
				found = append(found, dep)
			}
		}
	}
	return found
}

func TestCorePackagesImportNoDrivers(t *testing.T) {
	t.Parallel()
	checked := 0
	for _, pkg := range corePackages {
		if _, err := os.Stat(pkg); err != nil {
			t.Logf("%s does not exist yet; it is checked once it does", pkg)
			continue
		}
		checked++
		t.Run(pkg, func(t *testing.T) {
			t.Parallel()
			if found := drivers(t, pkg); len(found) > 0 {
				t.Errorf("%s must not depend on drivers; it pulls in %s", pkg, strings.Join(found, ", "))
			}
		})
	}
	if checked == 0 {
		t.Fatal("no core package found; is the test running from the module root?")
	}
}

// TestDriverCheckDetectsDrivers proves the check above can fail: testenv
// imports every driver, so all of them must be reported for it.
func TestDriverCheckDetectsDrivers(t *testing.T) {
	t.Parallel()
	found := strings.Join(drivers(t, "internal/testenv"), " ")
	for _, d := range driverModules {
		if d == "github.com/prometheus/" {
			continue // testenv has no metrics
		}
		if !strings.Contains(found, d) {
			t.Errorf("the check did not report %s for internal/testenv; found: %s", d, found)
		}
	}
}
