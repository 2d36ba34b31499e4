package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCachedUserIsNeverStaleAfterAnAcknowledgedWrite updates a user 200
// times while readers fetch it through the cache without pause. A read
// that starts after an update has been answered must see that version or
// a later one: the cache is invalidated after the commit, before the
// answer, and no load that began before the write can bring the old row
// back.
func TestCachedUserIsNeverStaleAfterAnAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	forEachDB(t, nil, func(t *testing.T, ts *testServer) {
		r := ts.do("POST", "/users", map[string]string{"username": "hot", "email": "hot@example.com", "full_name": "Hot 0"})
		require.Equal(t, http.StatusCreated, r.status)
		var u user
		r.json(t, &u)
		path := fmt.Sprintf("/users/%d", u.ID)

		var acked atomic.Int64
		acked.Store(u.Version)
		done := make(chan struct{})
		var (
			wg    sync.WaitGroup
			mu    sync.Mutex
			stale []string
			reads atomic.Int64
		)
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					floor := acked.Load()
					resp, err := ts.client.Get(ts.base + path)
					if err != nil {
						mu.Lock()
						stale = append(stale, err.Error())
						mu.Unlock()
						return
					}
					body, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					var got user
					if err := json.Unmarshal(body, &got); err != nil || got.Version < floor {
						mu.Lock()
						stale = append(stale, fmt.Sprintf("read version %d after version %d was acknowledged (%s)", got.Version, floor, body))
						mu.Unlock()
					}
					reads.Add(1)
				}
			})
		}
		for i := 1; i <= 200; i++ {
			r := ts.do("PUT", path, map[string]string{"username": "hot", "email": "hot@example.com", "full_name": fmt.Sprintf("Hot %d", i)})
			require.Equal(t, http.StatusOK, r.status, "%s", r.body)
			var v user
			r.json(t, &v)
			acked.Store(v.Version)
		}
		close(done)
		wg.Wait()
		require.Empty(t, stale)
		t.Logf("%d reads during 200 updates", reads.Load())
	})
}
