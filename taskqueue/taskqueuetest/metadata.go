package taskqueuetest

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

func init() {
	register(
		behaviour{"store: a task's Metadata comes back whole from every Claim", storeMetadata},
		behaviour{"metadata reaches every attempt's handler, copied both ways", metadataReachesHandler},
	)
}

// sampleMetadata exercises what a store must keep byte for byte: a trace
// context, characters outside ASCII, JSON's special characters, an empty
// value, and the largest total the Runner admits.
func sampleMetadata() map[string]string {
	m := map[string]string{
		"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
		"tracestate":  "vendor=a:b,other=ü",
		`quote"\key`:  "line\nbreak\ttab \"quoted\" <tag> ☃",
		"empty":       "",
	}
	size := 0
	for k, v := range m {
		size += len(k) + len(v)
	}
	m["fill"] = strings.Repeat("x", taskqueue.MaxMetadataBytes-size-len("fill"))
	return m
}

func storeMetadata(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	b := idle(t, newStore)
	ctx := context.Background()
	want := sampleMetadata()

	info := b.submit("a", Payload{N: 1}, taskqueue.Metadata(want))
	task := claim(t, b.store, "a")
	require.Equal(t, info.ID, task.ID)
	require.Equal(t, want, task.Metadata, "the first Claim")

	_, err := b.store.Retry(ctx, task.ID, task.ClaimToken, 0, "again")
	require.NoError(t, err)
	task = claim(t, b.store, "a")
	require.Equal(t, want, task.Metadata, "the Claim after a Retry")

	_, err = b.store.Release(ctx, task.ID, task.ClaimToken)
	require.NoError(t, err)
	task = claim(t, b.store, "a")
	require.Equal(t, want, task.Metadata, "the Claim after a Release")
	_, err = b.store.Finish(ctx, task.ID, task.ClaimToken, taskqueue.Outcome{Status: taskqueue.StatusSucceeded, Result: json.RawMessage(`{}`)})
	require.NoError(t, err)

	b.submit("b", Payload{N: 2})
	plain := claim(t, b.store, "b")
	require.Empty(t, plain.Metadata, "a task submitted without Metadata")

	// Each task keeps its own.
	for i := range 3 {
		b.submit("a", Payload{N: i}, taskqueue.Metadata(map[string]string{"n": fmt.Sprint(i)}))
	}
	for i := range 3 {
		task := claim(t, b.store, "a")
		require.Equal(t, map[string]string{"n": fmt.Sprint(i)}, task.Metadata)
	}
}

func metadataReachesHandler(t *testing.T, newStore func(*testing.T) taskqueue.Store) {
	var seen []map[string]string
	b := newBundle(t, newStore, taskqueue.Options{Workers: 1, MaxAttempts: 2}, func(r *taskqueue.Runner) {
		handle(t, r, "flaky", func(ctx context.Context, job *taskqueue.Job, p Payload) (Result, error) {
			md := job.Metadata()
			seen = append(seen, maps.Clone(md))
			if md != nil {
				md["changed"] = "by the handler" // a copy: the next attempt must not see it
			}
			if job.Attempt() == 1 {
				return Result{}, errBoom
			}
			return Result{Double: 2 * p.N}, nil
		})
	}).start()

	md := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "acme"}
	info := b.submit("flaky", Payload{N: 1}, taskqueue.Metadata(md))
	md["tenant"] = "changed after Submit" // Metadata copied it
	done := b.wait(info.ID)
	require.Equal(t, taskqueue.StatusSucceeded, done.Status)
	want := map[string]string{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "tenant": "acme"}
	require.Len(t, seen, 2)
	require.Equal(t, want, seen[0], "attempt 1 sees what was submitted, not what was changed after")
	require.Equal(t, want, seen[1], "attempt 2 sees what was submitted, not what attempt 1 changed")

	seen = nil
	done = b.wait(b.submit("flaky", Payload{N: 2}).ID)
	require.Equal(t, taskqueue.StatusSucceeded, done.Status)
	require.Equal(t, []map[string]string{nil, nil}, seen, "a task without Metadata")
}
