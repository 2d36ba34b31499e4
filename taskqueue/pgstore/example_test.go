package pgstore_test

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver
	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
	"github.com/asynckit/asynckit/txn"
)

// A service keeps its tasks in Postgres: it migrates the store's schema at
// start, runs a Runner over the store, and submits a task in the same
// transaction as the order it ships, so that the task exists only if the
// order does. Any other instance on the same schema shares the queue.
//
// It needs a Postgres server (DATABASE_URL), so go test compiles it but
// does not run it as an example: TestExample runs it, and checks that it
// prints "shipped order 42".
func Example() {
	ctx := context.Background()
	db, err := sql.Open("pgx", os.Getenv("DATABASE_URL"))
	if err != nil {
		panic(err)
	}
	defer db.Close()
	schema := fmt.Sprintf("example_%d", time.Now().UnixNano())
	if err := pgstore.Migrate(ctx, db, schema); err != nil {
		panic(err)
	}
	quoted := pgx.Identifier{schema}.Sanitize()
	defer db.ExecContext(ctx, "DROP SCHEMA "+quoted+" CASCADE")
	if _, err := db.ExecContext(ctx, "CREATE TABLE "+quoted+".orders (id bigint PRIMARY KEY)"); err != nil {
		panic(err)
	}
	store, err := pgstore.New(db, pgstore.Options{Schema: schema})
	if err != nil {
		panic(err)
	}
	defer store.Close() // after the Runner's Shutdown: deferred calls run last first

	// PollInterval lets Wait and Subscribe see what other instances do.
	r, err := taskqueue.New(taskqueue.Options{Store: store, PollInterval: 200 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	err = taskqueue.Handle(r, "ship", func(ctx context.Context, job *taskqueue.Job, order int) (string, error) {
		return fmt.Sprintf("shipped order %d", order), nil
	})
	if err != nil {
		panic(err)
	}
	if err := r.Start(ctx); err != nil {
		panic(err)
	}
	defer r.Shutdown(ctx)

	var id string
	err = txn.Do(ctx, db, func(ctx context.Context, tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+quoted+".orders VALUES (42)"); err != nil {
			return err
		}
		info, err := r.Submit(ctx, "ship", 42) // in tx: rolled back with the order
		id = info.ID
		return err
	})
	if err != nil {
		panic(err)
	}
	done, err := r.Wait(ctx, id)
	if err != nil {
		panic(err)
	}
	var result string
	if err := json.Unmarshal(done.Result, &result); err != nil {
		panic(err)
	}
	fmt.Println(result)
}

func TestExample(t *testing.T) {
	testenv.PostgresConfig(t) // skips, or fails when services are required, without DATABASE_URL
	r, w, err := os.Pipe()
	require.NoError(t, err)
	stdout := os.Stdout
	os.Stdout = w
	defer func() { os.Stdout = stdout }()
	Example()
	os.Stdout = stdout
	require.NoError(t, w.Close())
	out, err := io.ReadAll(r)
	require.NoError(t, err)
	require.Equal(t, "shipped order 42\n", string(out))
}
