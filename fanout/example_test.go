package fanout_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"time"

	"github.com/asynckit/asynckit/fanout"
)

// Three upstream calls run at once and their answers are merged into one
// response, as asyncio.gather(user(), orders(), recommendations()) would.
// The first failure cancels the other two, and Do returns it tagged with
// the index of the call that failed.
func ExampleDo() {
	type profile struct {
		Name            string
		Orders          []string
		Recommendations []string
	}
	// In-process stand-ins for three upstream services.
	users := func(ctx context.Context, id int) (string, error) { return "Ada", nil }
	orders := func(ctx context.Context, id int) ([]string, error) { return []string{"#1001", "#1002"}, nil }
	recommend := func(ctx context.Context, id int) ([]string, error) { return []string{"slide rule"}, nil }

	var p profile
	err := fanout.Do(context.Background(), []func(context.Context) error{
		func(ctx context.Context) (err error) { p.Name, err = users(ctx, 42); return err },
		func(ctx context.Context) (err error) { p.Orders, err = orders(ctx, 42); return err },
		func(ctx context.Context) (err error) { p.Recommendations, err = recommend(ctx, 42); return err },
	}, fanout.Timeout(2*time.Second))
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Printf("%+v\n", p)
	// Output:
	// {Name:Ada Orders:[#1001 #1002] Recommendations:[slide rule]}
}

// A hundred URLs are fetched with at most ten requests in flight, and the
// bodies come back in the order of the URLs. The upstream is an in-process
// http.Handler, so the example needs no network.
func ExampleMap() {
	var inFlight, peak atomic.Int64
	upstream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		time.Sleep(time.Millisecond)
		fmt.Fprintf(w, "page %s", r.URL.Path)
	})
	get := func(ctx context.Context, url string) (string, error) {
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		rec := httptest.NewRecorder()
		upstream.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			return "", fmt.Errorf("GET %s: %s", url, http.StatusText(rec.Code))
		}
		body, err := io.ReadAll(rec.Result().Body)
		return string(body), err
	}

	urls := make([]string, 100)
	for i := range urls {
		urls[i] = fmt.Sprintf("http://upstream.example/items/%d", i)
	}
	pages, err := fanout.Map(context.Background(), urls, get, fanout.Limit(10))
	if err != nil {
		fmt.Println("error:", err)
		return
	}
	fmt.Println(len(pages), "pages; first:", pages[0], "; last:", pages[99])
	fmt.Println("never more than 10 in flight:", peak.Load() <= 10)
	// Output:
	// 100 pages; first: page /items/0 ; last: page /items/99
	// never more than 10 in flight: true
}

// Every call runs to the end and reports its own outcome, failures and
// panics included, like asyncio.gather(..., return_exceptions=True).
func ExampleSettle() {
	errUnavailable := errors.New("503 service unavailable")
	shards := []string{"eu", "us", "apac"}
	results := fanout.Settle(context.Background(), shards, func(ctx context.Context, shard string) (int, error) {
		switch shard {
		case "us":
			return 0, errUnavailable
		case "apac":
			panic("corrupt index in " + shard) // a bug, reported, not a crash
		}
		return len(shard) * 100, nil
	})
	for i, r := range results {
		var pe *fanout.PanicError
		switch {
		case errors.As(r.Err, &pe):
			fmt.Printf("%s: panicked: %v\n", shards[i], pe.Value)
		case r.Err != nil:
			fmt.Printf("%s: failed: %v\n", shards[i], r.Err)
		default:
			fmt.Printf("%s: %d\n", shards[i], r.Value)
		}
	}
	// Output:
	// eu: 200
	// us: failed: 503 service unavailable
	// apac: panicked: corrupt index in apac
}

// A hedged request: the primary replica is asked first, and a second
// replica only if the primary has not answered within 20ms. The first
// answer wins and the slower call is cancelled.
func ExampleFirst() {
	replica := func(name string, latency time.Duration) func(context.Context) (string, error) {
		return func(ctx context.Context) (string, error) {
			select {
			case <-time.After(latency):
				return name, nil
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
	}
	v, err := fanout.First(context.Background(), []func(context.Context) (string, error){
		replica("primary (stalled)", 10*time.Second),
		replica("secondary", time.Millisecond),
	}, fanout.Hedge(20*time.Millisecond))
	fmt.Println(v, err)
	// Output:
	// secondary <nil>
}

// Results arrive as the calls complete; breaking out of the loop cancels
// the calls still running, and the loop ends only once they have returned.
func ExampleStream() {
	shards := []string{"a", "b", "c", "d", "e"}
	find := func(ctx context.Context, shard string) (bool, error) {
		if shard != "d" {
			<-ctx.Done() // these shards are slow and never find it
			return false, ctx.Err()
		}
		return true, nil
	}
	for i, r := range fanout.Stream(context.Background(), shards, find) {
		if r.Err == nil && r.Value {
			fmt.Println("found in shard", shards[i])
			break
		}
	}
	// Output:
	// found in shard d
}
