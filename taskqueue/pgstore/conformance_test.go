package pgstore_test

import (
	"testing"
	"time"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
	"github.com/asynckit/asynckit/taskqueue/taskqueuetest"
)

// suiteOptions configure the stores the conformance suite runs on. The
// suite runs each behaviour in a testing/synctest bubble, where a
// goroutine waiting on the network would stop the fake clock: the store
// does not LISTEN (all its Runners share the one store, so its own wake-ups
// reach every Claim), and its lease outlasts the hours the suite sleeps
// while it holds claims without heartbeats.
var suiteOptions = pgstore.Options{DisableListener: true, Lease: 24 * time.Hour, PollInterval: time.Minute}

func TestConformance(t *testing.T) {
	// A skip inside a bubble reads as a pass: skip out here, once.
	testenv.PostgresConfig(t)
	taskqueuetest.Run(t, func(t *testing.T) taskqueue.Store {
		db, schema := setup(t)
		return open(t, db, schema, suiteOptions)
	})
}

// TestConformanceOverAPool runs the suite with the store's own queries on
// a native pgx pool: Insert still goes through the *sql.DB.
func TestConformanceOverAPool(t *testing.T) {
	testenv.PostgresConfig(t)
	taskqueuetest.Run(t, func(t *testing.T) taskqueue.Store {
		db, schema := setup(t)
		opts := suiteOptions
		opts.Pool = newPool(t, schema)
		return open(t, db, schema, opts)
	})
}
