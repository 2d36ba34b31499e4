package pagination

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/asynckit/asynckit/internal/testenv"
	"github.com/stretchr/testify/require"
)

// planNode is the part of a Postgres EXPLAIN (FORMAT JSON) node the test
// reads.
type planNode struct {
	NodeType             string     `json:"Node Type"`
	IndexName            string     `json:"Index Name"`
	IndexCond            string     `json:"Index Cond"`
	RowsRemoved          float64    `json:"Rows Removed by Filter"`
	ActualRows           float64    `json:"Actual Rows"`
	Plans                []planNode `json:"Plans"`
	ScanDirection        string     `json:"Scan Direction"`
	RowsRemovedByRecheck float64    `json:"Rows Removed by Index Recheck"`
}

func (n planNode) walk(f func(planNode)) {
	f(n)
	for _, c := range n.Plans {
		c.walk(f)
	}
}

// TestKeysetPostgresPlanWalksTheIndex checks, with EXPLAIN ANALYZE on
// 100,000 rows, that the page after a row deep in the listing is read from
// the index from that row on: an index scan whose index condition holds
// the keyset bound, with no Sort and no Seq Scan, and only a handful of
// rows read and discarded, for an ascending, a descending and a
// mixed-direction keyset.
func TestKeysetPostgresPlanWalksTheIndex(t *testing.T) {
	t.Parallel()
	db := testenv.Postgres(t)
	ctx := context.Background()
	for _, q := range []string{
		`CREATE TABLE events (id BIGINT PRIMARY KEY, grp INTEGER NOT NULL, created_at TIMESTAMPTZ NOT NULL)`,
		// 1,000 groups of 100 rows; every timestamp is shared by two rows.
		`INSERT INTO events SELECT n, n % 1000, timestamptz '2026-03-01 09:00:00+00' + (n / 2) * interval '1 second'
		   FROM generate_series(1, 100000) AS n`,
		`CREATE INDEX events_created ON events (created_at, id)`,
		`CREATE INDEX events_grp_created ON events (grp, created_at DESC, id)`,
		`ANALYZE events`,
	} {
		_, err := db.ExecContext(ctx, q)
		require.NoError(t, err)
	}

	tests := []struct {
		name  string
		ks    Keyset
		index string
	}{
		{"ascending", Keyset{{Name: "created_at"}, {Name: "id"}}, "events_created"},
		{"descending", Keyset{{Name: "created_at", Desc: true}, {Name: "id", Desc: true}}, "events_created"},
		{"mixed directions", Keyset{{Name: "grp"}, {Name: "created_at", Desc: true}, {Name: "id"}}, "events_grp_created"},
		{"mixed directions, reversed (previous page)", Keyset{{Name: "grp"}, {Name: "created_at", Desc: true}, {Name: "id"}}.Reverse(), "events_grp_created"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" reads the index from the cursor on", func(t *testing.T) {
			orderBy, err := tt.ks.OrderBy(Postgres)
			require.NoError(t, err)
			// The row 90,000 rows into the listing.
			var id int64
			var grp int
			var createdAt any
			require.NoError(t, db.QueryRowContext(ctx,
				fmt.Sprintf("SELECT id, grp, created_at FROM events ORDER BY %s OFFSET 90000 LIMIT 1", orderBy)).
				Scan(&id, &grp, &createdAt))
			row := map[string]any{"id": id, "grp": grp, "created_at": createdAt}
			values := make([]any, len(tt.ks))
			for i, c := range tt.ks {
				values[i] = row[c.Name]
			}
			where, args, err := tt.ks.After(values, Postgres)
			require.NoError(t, err)

			var out []byte
			q := fmt.Sprintf("EXPLAIN (ANALYZE, FORMAT JSON) SELECT id FROM events WHERE %s ORDER BY %s LIMIT 21", where, orderBy)
			require.NoError(t, db.QueryRowContext(ctx, q, args...).Scan(&out))
			var plans []struct {
				Plan planNode `json:"Plan"`
			}
			require.NoError(t, json.Unmarshal(out, &plans))
			require.Len(t, plans, 1)

			var scans []planNode
			plans[0].Plan.walk(func(n planNode) {
				require.NotContains(t, []string{"Sort", "Incremental Sort", "Seq Scan", "Bitmap Heap Scan"}, n.NodeType, "plan:\n%s", out)
				if n.NodeType == "Index Scan" || n.NodeType == "Index Only Scan" {
					scans = append(scans, n)
				}
			})
			require.Len(t, scans, 1, "plan:\n%s", out)
			scan := scans[0]
			require.Equal(t, tt.index, scan.IndexName)
			require.NotEmpty(t, scan.IndexCond, "the keyset bound must be an index condition, not a filter:\n%s", out)
			require.Equal(t, float64(21), scan.ActualRows)
			// At most the rest of the cursor's group (100 rows) is read
			// and discarded, never the 90,000 rows before the cursor.
			require.Less(t, scan.RowsRemoved, float64(100), "plan:\n%s", out)
		})
	}
}
