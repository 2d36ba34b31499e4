package main

import (
	"context"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	forEachDB(t, nil, func(t *testing.T, ts *testServer) {
		a, b := ts.openAccount(t, 1_000), ts.openAccount(t, 0)
		in := transferInput{a.ID, b.ID, 100}
		key := func(k string) []string { return []string{idempotencyHeader, k, "X-Client-ID", "alice"} }

		first := ts.do("POST", "/transfers", in, key("k1")...)
		require.Equal(t, http.StatusCreated, first.status, "%s", first.body)
		require.Empty(t, first.header.Get("Idempotent-Replayed"))

		t.Run("a replay answers the stored status and body, byte for byte, and runs nothing", func(t *testing.T) {
			// The same request spelled differently is the same request.
			again := ts.do("POST", "/transfers", `{ "amount": 100, "to_account": `+itoa(b.ID)+`, "from_account": `+itoa(a.ID)+` }`, key("k1")...)
			require.Equal(t, first.status, again.status)
			require.Equal(t, string(first.body), string(again.body))
			require.Equal(t, "true", again.header.Get("Idempotent-Replayed"))
			require.EqualValues(t, 900, ts.balance(t, a.ID))
		})
		t.Run("the same key with another body is 422 and runs nothing", func(t *testing.T) {
			r := ts.do("POST", "/transfers", transferInput{a.ID, b.ID, 101}, key("k1")...)
			require.Equal(t, http.StatusUnprocessableEntity, r.status)
			require.True(t, strings.HasSuffix(r.problem(t).Type, "idempotency-key-reused"))
			require.EqualValues(t, 900, ts.balance(t, a.ID))
		})
		t.Run("the same key on another route is 422 and runs nothing", func(t *testing.T) {
			r := ts.do("POST", "/accounts", map[string]any{"balance": 5}, key("k1")...)
			require.Equal(t, http.StatusUnprocessableEntity, r.status)
			require.True(t, strings.HasSuffix(r.problem(t).Type, "idempotency-key-reused"))
		})
		t.Run("keys are scoped to the client", func(t *testing.T) {
			r := ts.do("POST", "/transfers", in, idempotencyHeader, "k1", "X-Client-ID", "bob")
			require.Equal(t, http.StatusCreated, r.status)
			require.Empty(t, r.header.Get("Idempotent-Replayed"))
			require.EqualValues(t, 800, ts.balance(t, a.ID))
		})
		t.Run("a request that rolled back frees its key", func(t *testing.T) {
			big := transferInput{a.ID, b.ID, 5_000}
			r := ts.do("POST", "/transfers", big, key("k2")...)
			require.Equal(t, http.StatusUnprocessableEntity, r.status)
			require.True(t, strings.HasSuffix(r.problem(t).Type, "insufficient-funds"))
			top := ts.openAccount(t, 10_000)
			require.Equal(t, http.StatusCreated, ts.do("POST", "/transfers", transferInput{top.ID, a.ID, 10_000}).status)
			r = ts.do("POST", "/transfers", big, key("k2")...)
			require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
			require.Empty(t, r.header.Get("Idempotent-Replayed"))
		})
		t.Run("an expired key is claimed afresh", func(t *testing.T) {
			_, err := ts.db(t).Exec(`UPDATE idempotency_keys SET created_at = $1 WHERE client_id = 'id:alice' AND idem_key = 'k1'`,
				time.Now().Add(-idempotencyTTL-time.Minute).UTC())
			require.NoError(t, err)
			before := ts.balance(t, a.ID)
			r := ts.do("POST", "/transfers", transferInput{a.ID, b.ID, 7}, key("k1")...)
			require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
			require.Empty(t, r.header.Get("Idempotent-Replayed"))
			require.Equal(t, before-7, ts.balance(t, a.ID))
		})
		t.Run("a bad key is 400", func(t *testing.T) {
			for _, k := range []string{strings.Repeat("k", maxIdempotencyKey+1), "tab\there"} {
				r := ts.do("POST", "/transfers", in, idempotencyHeader, k)
				require.Equal(t, http.StatusBadRequest, r.status, "%q: %s", k, r.body)
				r.problem(t)
			}
		})
		t.Run("creating a user is idempotent too", func(t *testing.T) {
			u := map[string]string{"username": "idem", "email": "idem@example.com", "full_name": "Idem"}
			r1 := ts.do("POST", "/users", u, key("u1")...)
			r2 := ts.do("POST", "/users", u, key("u1")...)
			require.Equal(t, http.StatusCreated, r1.status)
			require.Equal(t, string(r1.body), string(r2.body))
			require.Equal(t, "true", r2.header.Get("Idempotent-Replayed"))
		})
		checkLedger(t, ts.db(t))
	})
}

// On Postgres, a duplicate that arrives while the first request with its
// key is still running is answered 409 with Retry-After at once, and the
// key answers normally once the first has finished. The first request is
// stood in for by a transaction that holds the key's advisory lock.
func TestIdempotencyKeyInUseIsConflict(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "postgres", nil)
	a, b := ts.openAccount(t, 1_000), ts.openAccount(t, 0)
	cfg, err := pgx.ParseConfig(ts.env["DATABASE_URL"])
	require.NoError(t, err)
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, keyLock("id:carol", "busy"))
	require.NoError(t, err)

	in := transferInput{a.ID, b.ID, 10}
	start := time.Now()
	r := ts.do("POST", "/transfers", in, idempotencyHeader, "busy", "X-Client-ID", "carol")
	require.Equal(t, http.StatusConflict, r.status, "%s", r.body)
	require.Less(t, time.Since(start), 2*time.Second, "the duplicate must not wait for the first")
	require.Equal(t, "1", r.header.Get("Retry-After"))
	require.True(t, strings.HasSuffix(r.problem(t).Type, "idempotency-key-in-use"))
	require.EqualValues(t, 1_000, ts.balance(t, a.ID))

	require.NoError(t, tx.Rollback(ctx))
	r = ts.do("POST", "/transfers", in, idempotencyHeader, "busy", "X-Client-ID", "carol")
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	require.EqualValues(t, 990, ts.balance(t, a.ID))
}

// The reaper deletes the keys older than its cutoff and only those, in
// batches.
func TestIdempotencyReaperDeletesExpiredKeys(t *testing.T) {
	t.Parallel()
	cfg := &config{DBPath: filepath.Join(t.TempDir(), "reap.db")}
	st, err := openStore(context.Background(), cfg, nil)
	require.NoError(t, err)
	defer st.close()
	old, fresh := time.Now().Add(-25*time.Hour).UTC(), time.Now().UTC()
	tx, err := st.db.Begin()
	require.NoError(t, err)
	for i := range 2_500 {
		created := fresh
		if i%2 == 0 {
			created = old
		}
		_, err := tx.Exec(`INSERT INTO idempotency_keys (client_id, idem_key, method, route, fingerprint, status, body, created_at)
			VALUES ('c', $1, 'POST', '/transfers', 'f', 201, $2, $3)`, itoa(int64(i)), []byte("{}"), created)
		require.NoError(t, err)
	}
	require.NoError(t, tx.Commit())
	idem := newIdempotency(st, nil, nil)
	n, err := idem.reap(context.Background(), time.Now().Add(-idempotencyTTL))
	require.NoError(t, err)
	require.EqualValues(t, 1_250, n)
	var left int
	require.NoError(t, st.db.QueryRow(`SELECT COUNT(*) FROM idempotency_keys`).Scan(&left))
	require.Equal(t, 1_250, left)
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
