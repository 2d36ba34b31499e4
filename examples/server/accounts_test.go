package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// openAccount opens an account with balance through the API.
func (ts *testServer) openAccount(t *testing.T, balance int64) account {
	t.Helper()
	r := ts.do("POST", "/accounts", map[string]any{"balance": balance})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	var a account
	r.json(t, &a)
	return a
}

func (ts *testServer) balance(t *testing.T, id int64) int64 {
	t.Helper()
	r := ts.do("GET", fmt.Sprintf("/accounts/%d", id), nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var a account
	r.json(t, &a)
	return a.Balance
}

// db opens the server's database directly, for checks the API does not
// offer (the ledger).
func (ts *testServer) db(t *testing.T) *sql.DB {
	t.Helper()
	var (
		db  *sql.DB
		err error
	)
	if u := ts.env["DATABASE_URL"]; u != "" {
		db, err = sql.Open("pgx", u)
	} else {
		db, err = sql.Open("sqlite", "file:"+ts.env["DB_PATH"]+"?_pragma=busy_timeout(10000)&_time_format=sqlite")
	}
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func TestTransfers(t *testing.T) {
	t.Parallel()
	forEachDB(t, nil, func(t *testing.T, ts *testServer) {
		a, b := ts.openAccount(t, 10_000), ts.openAccount(t, 0)
		t.Run("a transfer answers 201 and moves the amount", func(t *testing.T) {
			r := ts.do("POST", "/transfers", transferInput{FromAccount: a.ID, ToAccount: b.ID, Amount: 2_500})
			require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
			var tr transfer
			r.json(t, &tr)
			require.Positive(t, tr.ID)
			require.Equal(t, transferInput{a.ID, b.ID, 2_500}, transferInput{tr.FromAccount, tr.ToAccount, tr.Amount})
			require.EqualValues(t, 7_500, ts.balance(t, a.ID))
			require.EqualValues(t, 2_500, ts.balance(t, b.ID))
		})
		for _, c := range []struct {
			name   string
			in     transferInput
			status int
			typ    string
		}{
			{"insufficient funds is 422", transferInput{b.ID, a.ID, 2_501}, 422, "insufficient-funds"},
			{"an unknown source account is 404", transferInput{999_999, a.ID, 1}, 404, "not-found"},
			{"an unknown destination account is 404", transferInput{a.ID, 999_999, 1}, 404, "not-found"},
			{"an unknown account below the source's id is 404", transferInput{b.ID, 1_000_000, 1}, 404, "not-found"},
			{"a zero amount is 400", transferInput{a.ID, b.ID, 0}, 400, "validation-error"},
			{"a negative amount is 400", transferInput{a.ID, b.ID, -5}, 400, "validation-error"},
			{"the same account on both sides is 400", transferInput{a.ID, a.ID, 1}, 400, "validation-error"},
		} {
			t.Run(c.name+" and moves nothing", func(t *testing.T) {
				r := ts.do("POST", "/transfers", c.in)
				require.Equal(t, c.status, r.status, "%s", r.body)
				require.True(t, strings.HasSuffix(r.problem(t).Type, c.typ))
				require.EqualValues(t, 7_500, ts.balance(t, a.ID))
				require.EqualValues(t, 2_500, ts.balance(t, b.ID))
			})
		}
		t.Run("a credit past the largest balance is 422 and moves nothing", func(t *testing.T) {
			rich := ts.openAccount(t, maxBalance)
			r := ts.do("POST", "/transfers", transferInput{a.ID, rich.ID, 1})
			require.Equal(t, 422, r.status, "%s", r.body)
			require.True(t, strings.HasSuffix(r.problem(t).Type, "balance-limit"))
			require.EqualValues(t, 7_500, ts.balance(t, a.ID))
			require.EqualValues(t, maxBalance, ts.balance(t, rich.ID))
		})
		t.Run("an account with an unknown owner is 404", func(t *testing.T) {
			r := ts.do("POST", "/accounts", map[string]any{"user_id": 999_999, "balance": 1})
			require.Equal(t, http.StatusNotFound, r.status)
			r.problem(t)
		})
		checkLedger(t, ts.db(t))
	})
}

// checkLedger checks the ledger's invariants: every balance is the sum of
// its account's ledger rows, none is negative, every transfer has its two
// rows, and no money was made or lost (the sum of balances is the sum of
// opening balances).
func checkLedger(t *testing.T, db *sql.DB) {
	t.Helper()
	ctx := context.Background()
	rows, err := db.QueryContext(ctx, `
		SELECT a.id, a.balance, COALESCE((SELECT SUM(l.amount) FROM ledger l WHERE l.account_id = a.id), 0)
		  FROM accounts a ORDER BY a.id`)
	require.NoError(t, err)
	defer rows.Close()
	for rows.Next() {
		var id, balance, sum int64
		require.NoError(t, rows.Scan(&id, &balance, &sum))
		require.GreaterOrEqual(t, balance, int64(0), "account %d is overdrawn", id)
		require.Equal(t, balance, sum, "account %d: the ledger sums to %d, the balance is %d", id, sum, balance)
	}
	require.NoError(t, rows.Err())
	var bad int
	require.NoError(t, db.QueryRowContext(ctx, `
		SELECT COUNT(*) FROM transfers tr
		 WHERE (SELECT COUNT(*) FROM ledger l WHERE l.transfer_id = tr.id AND l.account_id = tr.from_account AND l.amount = -tr.amount) <> 1
		    OR (SELECT COUNT(*) FROM ledger l WHERE l.transfer_id = tr.id AND l.account_id = tr.to_account AND l.amount = tr.amount) <> 1
		    OR (SELECT COUNT(*) FROM ledger l WHERE l.transfer_id = tr.id) <> 2`).Scan(&bad))
	require.Zero(t, bad, "transfers without exactly their two ledger rows")
	var total, opening int64
	require.NoError(t, db.QueryRowContext(ctx, `SELECT COALESCE(SUM(balance), 0) FROM accounts`).Scan(&total))
	require.NoError(t, db.QueryRowContext(ctx, `SELECT COALESCE(SUM(amount), 0) FROM ledger WHERE transfer_id IS NULL`).Scan(&opening))
	require.Equal(t, opening, total, "money was made or lost")
}

// outcome is one request's outcome in the concurrency test, read whole.
type outcome struct {
	status   int
	header   http.Header
	replayed bool
	body     []byte
	err      error
}

// post sends a JSON POST without the test's require, for use from many
// goroutines at once.
func (ts *testServer) post(path string, body any, headers ...string) outcome {
	return ts.attempt("POST", path, body, headers...)
}

// attempt sends a request with a JSON body (none when body is nil) without
// the test's require, for use from many goroutines at once, and reads the
// whole answer.
func (ts *testServer) attempt(method, path string, body any, headers ...string) outcome {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return outcome{err: err}
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, ts.base+path, rd)
	if err != nil {
		return outcome{err: err}
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		return outcome{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return outcome{status: resp.StatusCode, header: resp.Header, replayed: resp.Header.Get("Idempotent-Replayed") == "true", body: b, err: err}
}

// TestConcurrentTransfersConserveMoney sends 2,000 transfers at once over
// 20 accounts. Every tenth goes out twice concurrently with one
// Idempotency-Key, and both copies are retried on 409 until they get an
// answer. Afterwards money is conserved, no balance is negative, the
// ledger reproduces every balance, each key moved money once and both of
// its copies got the same answer, byte for byte.
func TestConcurrentTransfersConserveMoney(t *testing.T) {
	t.Parallel()
	forEachDB(t, nil, func(t *testing.T, ts *testServer) {
		concurrentTransfers(t, []*testServer{ts})
	})
}

// concurrentTransfers runs the 2,000 transfers of
// TestConcurrentTransfersConserveMoney, spread over servers, which share
// one database: transfer i goes to server i mod n, and its twin with the
// same Idempotency-Key to the next server, so that with several servers
// every retry reaches another instance than the first copy.
func concurrentTransfers(t *testing.T, servers []*testServer) {
	ts := servers[0]
	const (
		accounts  = 20
		transfers = 2_000
		opening   = 10_000
		senders   = 48
	)
	ids := make([]int64, accounts)
	for i := range ids {
		ids[i] = ts.openAccount(t, opening).ID
	}
	type job struct {
		in     transferInput
		key    string
		server *testServer
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var jobs []job
	for i := range transfers {
		from := rng.IntN(accounts)
		to := (from + 1 + rng.IntN(accounts-1)) % accounts
		j := job{in: transferInput{ids[from], ids[to], 1 + rng.Int64N(3_000)}, server: servers[i%len(servers)]}
		if i%10 == 0 {
			j.key = "dup-" + strconv.Itoa(i)
			jobs = append(jobs, j)
			j.server = servers[(i+1)%len(servers)] // its twin goes out beside it, elsewhere
		}
		jobs = append(jobs, j)
	}
	results := make([]outcome, len(jobs))
	work := make(chan int)
	var wg sync.WaitGroup
	for range senders {
		wg.Go(func() {
			for i := range work {
				j := jobs[i]
				for attempt := 0; ; attempt++ {
					if j.key == "" {
						results[i] = j.server.post("/transfers", j.in)
					} else {
						results[i] = j.server.post("/transfers", j.in, idempotencyHeader, j.key, "X-Client-ID", "load-test")
					}
					if results[i].status != http.StatusConflict || attempt == 200 {
						break
					}
					time.Sleep(5 * time.Millisecond) // a concurrent duplicate is still running
				}
			}
		})
	}
	for i := range jobs {
		work <- i
	}
	close(work)
	wg.Wait()

	moved, refused := 0, 0
	byKey := map[string][]outcome{}
	for i, r := range results {
		require.NoError(t, r.err)
		switch r.status {
		case http.StatusCreated:
			if !r.replayed {
				moved++
			}
		case http.StatusUnprocessableEntity:
			refused++
			var p problem
			require.NoError(t, json.Unmarshal(r.body, &p))
			require.True(t, strings.HasSuffix(p.Type, "insufficient-funds"), "%s", r.body)
		default:
			t.Fatalf("transfer %d answered %d: %s", i, r.status, r.body)
		}
		if k := jobs[i].key; k != "" {
			byKey[k] = append(byKey[k], r)
		}
	}
	for k, rs := range byKey {
		require.Len(t, rs, 2)
		// A copy refused for insufficient funds rolled back and freed
		// the key, so its twin may run after it; but two that
		// succeeded share one run.
		if rs[0].status == http.StatusCreated && rs[1].status == http.StatusCreated {
			require.Equal(t, string(rs[0].body), string(rs[1].body), "key %s: the copies got different answers", k)
			require.True(t, rs[0].replayed != rs[1].replayed, "key %s: exactly one copy ran", k)
		}
	}
	db := ts.db(t)
	var rows int
	require.NoError(t, db.QueryRow(`SELECT COUNT(*) FROM transfers`).Scan(&rows))
	require.Equal(t, moved, rows, "every 201 that was not a replay is one transfer, and nothing else is")
	var total int64
	for i, id := range ids {
		b := servers[i%len(servers)].balance(t, id)
		require.GreaterOrEqual(t, b, int64(0))
		total += b
	}
	require.EqualValues(t, accounts*opening, total, "money was made or lost")
	checkLedger(t, db)
	t.Logf("%d transfers moved money, %d were refused for insufficient funds", moved, refused)
}
