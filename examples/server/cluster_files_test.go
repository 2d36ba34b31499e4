package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

// blockWorkers has every worker of a cluster whose instances run one each
// (WORKERS=1) run a long demo task, so that the tasks submitted next stay
// pending. The demo tasks are cancelled when the test ends.
func blockWorkers(t *testing.T, cluster []*testServer) {
	t.Helper()
	var ids []string
	for range cluster {
		ids = append(ids, cluster[0].submit(t, map[string]any{"kind": "demo", "payload": map[string]int{"steps": 100, "step_ms": 1000}}).ID)
	}
	t.Cleanup(func() {
		for _, ts := range cluster {
			for _, id := range ids {
				if req, err := http.NewRequest("DELETE", ts.base+"/tasks/"+id, nil); err == nil {
					if resp, err := ts.client.Do(req); err == nil {
						resp.Body.Close()
						return // one instance that answers is enough
					}
				}
			}
		}
	})
	require.Eventually(t, func() bool {
		var page struct{ Items []taskqueue.Info }
		cluster[0].do("GET", "/tasks?status=running&kind=demo", nil).json(t, &page)
		return len(page.Items) == len(cluster)
	}, 10*time.Second, 10*time.Millisecond, "every worker runs a demo task")
}

// uploads returns how many uploads the cluster's database holds, and the
// bytes they hold.
func (ts *testServer) uploads(t *testing.T) (n int, used int64) {
	t.Helper()
	db := ts.db(t)
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM uploads`).Scan(&n))
	require.NoError(t, db.QueryRow(`SELECT used FROM upload_space`).Scan(&used))
	return n, used
}

// TestClusterFiles checks uploads across instances on Postgres: the space
// they may take is one for all instances, a pending file task cancelled
// through another instance than the one that took its upload has its file
// removed and its callback sent, and so does a task that ended without
// any instance seeing it end (a rescue that failed it), by the sweep.
func TestClusterFiles(t *testing.T) {
	t.Parallel()
	rcv := newCallbackReceiver(t, http.StatusOK)
	cluster := startCluster(t, 3, false, map[string]string{"WORKERS": "1", "MAX_UPLOAD": "64KiB", "UPLOAD_SPACE": "100KiB",
		"CALLBACK_PRIVATE": "true", "UPLOAD_SWEEP": "100ms"})
	a, b, c := cluster[0], cluster[1], cluster[2]
	blockWorkers(t, cluster)
	data := bytes.Repeat([]byte("x"), 60<<10)
	upload := func(ts *testServer, name string) *response {
		return ts.upload(t, part{name: "file", filename: name, data: data}, part{name: "callback_url", data: []byte(rcv.URL)})
	}
	// The callbacks of the file tasks that end wait for the workers; they
	// are received at the end.
	want := map[string]taskqueue.Status{}
	callbacks := func() []taskqueue.Info {
		var page struct{ Items []taskqueue.Info }
		a.do("GET", "/tasks?kind=callback", nil).json(t, &page)
		return page.Items
	}

	t.Run("UPLOAD_SPACE bounds the uploads of every instance together", func(t *testing.T) {
		r := upload(a, "a")
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		var first taskqueue.Info
		r.json(t, &first)
		n, used := a.uploads(t)
		require.Equal(t, 1, n)
		require.EqualValues(t, len(data), used)
		for _, ts := range cluster {
			require.Empty(t, ts.uploadedFiles(t), "nothing is kept on an instance's disk")
		}

		r = upload(b, "b")
		require.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
		require.Equal(t, problemTypePrefix+"upload-space-full", r.problem(t).Type)
		n, used = a.uploads(t)
		require.Equal(t, 1, n, "the refused upload left nothing behind")
		require.EqualValues(t, len(data), used)

		t.Run("and a pending file task cancelled through another instance gives its space back and sends its callback", func(t *testing.T) {
			require.Equal(t, http.StatusAccepted, c.do("DELETE", "/tasks/"+first.ID, nil).status)
			want[first.ID] = taskqueue.StatusCanceled
			require.Len(t, callbacks(), 1, "the callback task waits for a worker")
			n, used := a.uploads(t)
			require.Zero(t, n)
			require.Zero(t, used)
			r := upload(b, "c")
			require.Equal(t, http.StatusAccepted, r.status, "the space came back: %s", r.body)
		})
	})

	t.Run("a task that ends without an instance seeing it has its upload swept", func(t *testing.T) {
		// Make room, then make a task end as a rescue would end it:
		// straight in the table, with no OnFinish anywhere.
		var pending struct{ Items []taskqueue.Info }
		a.do("GET", "/tasks?kind=file&status=pending", nil).json(t, &pending)
		for _, p := range pending.Items {
			require.Equal(t, http.StatusAccepted, a.do("DELETE", "/tasks/"+p.ID, nil).status)
			want[p.ID] = taskqueue.StatusCanceled
		}
		r := upload(a, "d")
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		var info taskqueue.Info
		r.json(t, &info)
		_, err := a.db(t).ExecContext(context.Background(), `
			UPDATE tasks SET status = 'failed', error = 'pgstore: attempt 1 lost its lease: its worker stopped renewing it',
			       finished_at = now(), payload = NULL, lease_until = NULL, version = version + 1
			 WHERE id = $1`, info.ID)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			n, used := a.uploads(t)
			return n == 0 && used == 0
		}, 10*time.Second, 20*time.Millisecond, "a sweep removed the upload")
		want[info.ID] = taskqueue.StatusFailed
		require.Len(t, callbacks(), len(want), "its callback was submitted")
	})

	t.Run("every callback is delivered once the workers are free", func(t *testing.T) {
		for _, ts := range cluster {
			var demos struct{ Items []taskqueue.Info }
			ts.do("GET", "/tasks?kind=demo&status=running", nil).json(t, &demos)
			for _, d := range demos.Items {
				ts.do("DELETE", "/tasks/"+d.ID, nil)
			}
		}
		got := map[string]taskqueue.Status{}
		for range want {
			sent := a.info(t, string(rcv.next(t).body))
			got[sent.ID] = sent.Status
		}
		require.Equal(t, want, got)
	})
}

// TestClusterFileOutlivesItsInstance uploads a file through an instance
// that stops before the file's task can run; another instance, started
// afterwards, reads the file and sends the callback: nothing of the
// upload lived in the first one.
func TestClusterFileOutlivesItsInstance(t *testing.T) {
	t.Parallel()
	rcv := newCallbackReceiver(t, http.StatusOK)
	env := clusterEnv(t, false, map[string]string{"WORKERS": "1", "CALLBACK_PRIVATE": "true", "SHUTDOWN_TIMEOUT": "2s"})
	a := startServer(t, "", env)
	blockWorkers(t, []*testServer{a})
	data := sampleFile(300_000)
	r := a.upload(t, part{name: "file", filename: "f", data: data}, part{name: "callback_url", data: []byte(rcv.URL)})
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	var info taskqueue.Info
	r.json(t, &info)
	require.NoError(t, a.stop(), "a stops, its demo task interrupted and left pending")

	b := startServer(t, "", env)
	var demos struct{ Items []taskqueue.Info }
	b.do("GET", "/tasks?kind=demo", nil).json(t, &demos)
	for _, d := range demos.Items {
		b.do("DELETE", "/tasks/"+d.ID, nil)
	}
	done := b.waitTask(t, info.ID)
	require.Equal(t, taskqueue.StatusSucceeded, done.Status, done.Error)
	var got fileResult
	require.NoError(t, json.Unmarshal(done.Result, &got))
	require.Equal(t, expectedFileResult(t, data), got)
	sent := b.info(t, string(rcv.next(t).body))
	require.Equal(t, info.ID, sent.ID)
	require.Equal(t, taskqueue.StatusSucceeded, sent.Status)
	require.Eventually(t, func() bool { n, used := b.uploads(t); return n == 0 && used == 0 }, 10*time.Second, 20*time.Millisecond)
}
