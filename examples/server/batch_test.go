package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// POST /batch runs each operation in a savepoint of one transaction: the
// ones that fail are rolled back alone and reported, the others commit.
func TestBatchRollsBackOnlyTheFailedOperations(t *testing.T) {
	t.Parallel()
	forEachDB(t, nil, func(t *testing.T, ts *testServer) {
		a, b := ts.openAccount(t, 1_000), ts.openAccount(t, 0)
		taken := ts.do("POST", "/users", map[string]string{"username": "taken", "email": "taken@example.com", "full_name": "Taken"})
		require.Equal(t, http.StatusCreated, taken.status)
		ops := []map[string]any{
			{"op": "transfer", "from_account": a.ID, "to_account": b.ID, "amount": 300},                           // ok
			{"op": "transfer", "from_account": b.ID, "to_account": a.ID, "amount": 5_000},                         // insufficient funds
			{"op": "create_user", "username": "grace", "email": "grace@example.com", "full_name": "Grace Hopper"}, // ok
			{"op": "create_user", "username": "taken", "email": "x@example.com", "full_name": "X"},                // conflict
			{"op": "transfer", "from_account": a.ID, "to_account": 999_999, "amount": 1},                          // unknown account
			{"op": "transfer", "from_account": a.ID, "to_account": a.ID, "amount": 1},                             // invalid
			{"op": "create_user", "username": "BAD", "email": "bad", "full_name": "Bad"},                          // invalid
			{"op": "transfer", "from_account": b.ID, "to_account": a.ID, "amount": 100},                           // ok, after the first
		}
		r := ts.do("POST", "/batch", map[string]any{"operations": ops})
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var out struct {
			Results []struct {
				Index  int             `json:"index"`
				Status string          `json:"status"`
				Result json.RawMessage `json:"result"`
				Error  *problem        `json:"error"`
			} `json:"results"`
		}
		r.json(t, &out)
		require.Len(t, out.Results, len(ops))
		want := []string{"ok", "insufficient-funds", "ok", "conflict", "not-found", "validation-error", "validation-error", "ok"}
		for i, res := range out.Results {
			require.Equal(t, i, res.Index)
			if want[i] == "ok" {
				require.Equal(t, "ok", res.Status, "operation %d: %+v", i, res.Error)
				require.NotEmpty(t, res.Result)
				continue
			}
			require.Equal(t, "error", res.Status, "operation %d", i)
			require.NotNil(t, res.Error)
			require.True(t, strings.HasSuffix(res.Error.Type, want[i]), "operation %d: %s", i, res.Error.Type)
		}
		require.EqualValues(t, 800, ts.balance(t, a.ID))
		require.EqualValues(t, 200, ts.balance(t, b.ID))
		var grace user
		require.NoError(t, json.Unmarshal(out.Results[2].Result, &grace))
		got := ts.do("GET", fmt.Sprintf("/users/%d", grace.ID), nil)
		require.Equal(t, http.StatusOK, got.status)
		search := ts.do("GET", "/users?q=grace", nil)
		require.Contains(t, string(search.body), `"grace"`)
		checkLedger(t, ts.db(t))
	})
}
