package fanout_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/fanout"
)

// Map and Settle allocate a constant number of objects per call, whatever
// the number of items: the output slice, the run's state and context, and
// the workers, with no allocation per item or per claim.
func TestAllocationsDoNotGrowWithTheItems(t *testing.T) {
	var sink atomic.Int64
	fn := func(_ context.Context, i int) (int, error) { return int(sink.Add(1)), nil }
	ctx := context.Background()
	run := map[string]func(items []int){
		"Map": func(items []int) {
			if _, err := fanout.Map(ctx, items, fn, fanout.Limit(8)); err != nil {
				t.Fatal(err)
			}
		},
		"Settle": func(items []int) { fanout.Settle(ctx, items, fn, fanout.Limit(8)) },
	}
	for _, name := range []string{"Map", "Settle"} {
		t.Run(name, func(t *testing.T) {
			allocs := make(map[int]float64)
			for _, n := range []int{64, 20_000} {
				items := make([]int, n)
				allocs[n] = testing.AllocsPerRun(20, func() { run[name](items) })
			}
			t.Log(fmt.Sprint(allocs))
			require.Equal(t, allocs[64], allocs[20_000])
			require.LessOrEqual(t, allocs[20_000], 20.0)
		})
	}
}
