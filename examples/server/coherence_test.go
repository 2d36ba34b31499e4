package main

import (
	"encoding/json"
	"fmt"
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
		_, reads := checkCoherence(t, ts, []*testServer{ts})
		t.Logf("%d reads during 200 updates", reads)
	})
}

// checkCoherence makes a user and updates it 200 times through writer,
// while four readers, spread over readers, fetch it without pause. Every
// read must see the version the last acknowledged update gave, or a later
// one. It returns the user's path and how many reads there were.
func checkCoherence(t *testing.T, writer *testServer, readers []*testServer) (path string, reads int64) {
	t.Helper()
	r := writer.do("POST", "/users", map[string]string{"username": "hot", "email": "hot@example.com", "full_name": "Hot 0"})
	require.Equal(t, http.StatusCreated, r.status, "%s", r.body)
	var u user
	r.json(t, &u)
	path = fmt.Sprintf("/users/%d", u.ID)

	var (
		acked atomic.Int64
		done  = make(chan struct{})
		wg    sync.WaitGroup
		mu    sync.Mutex
		stale []string
		n     atomic.Int64
	)
	acked.Store(u.Version)
	for i := range 4 {
		reader := readers[i%len(readers)]
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				floor := acked.Load()
				got := reader.get(path)
				var v user
				if got.err != nil || got.status != http.StatusOK || json.Unmarshal(got.body, &v) != nil || v.Version < floor {
					mu.Lock()
					stale = append(stale, fmt.Sprintf("%s read version %d after version %d was acknowledged (%d %s %v)", reader.base, v.Version, floor, got.status, got.body, got.err))
					mu.Unlock()
				}
				n.Add(1)
			}
		})
	}
	for i := 1; i <= 200; i++ {
		r := writer.do("PUT", path, map[string]string{"username": "hot", "email": "hot@example.com", "full_name": fmt.Sprintf("Hot %d", i)})
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		var v user
		r.json(t, &v)
		acked.Store(v.Version)
	}
	close(done)
	wg.Wait()
	require.Empty(t, stale)
	return path, n.Load()
}
