package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

func TestTaskEvents(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", map[string]string{"SSE_PING": "50ms"})
	demo := map[string]any{"kind": "demo", "payload": map[string]int{"steps": 8, "step_ms": 30}}

	info := ts.submit(t, demo)
	full := ts.openEvents(t, info.ID)
	resumed := make(chan []sseEvent, 1)
	failed := make(chan error, 1)
	go func() { // a second reader, at the same time, that keeps reconnecting
		evs, err := ts.readWithReconnects(info.ID)
		if err != nil {
			failed <- err
			return
		}
		resumed <- evs
	}()
	all := full.untilDone(t)
	var again []sseEvent
	select {
	case again = <-resumed:
	case err := <-failed:
		t.Fatal(err)
	}

	t.Run("a stream shows each change of the task as a progress event, then done", func(t *testing.T) {
		require.GreaterOrEqual(t, len(all), 2)
		prev := -1
		for i, ev := range all {
			got := ts.info(t, ev.Data)
			require.Equal(t, info.ID, got.ID)
			require.GreaterOrEqual(t, got.Progress.Percent, prev, "progress never goes back")
			prev = got.Progress.Percent
			require.Equal(t, i == len(all)-1, got.Status.Terminal(), "only the last event is terminal")
		}
		final := ts.info(t, all[len(all)-1].Data)
		require.Equal(t, taskqueue.StatusSucceeded, final.Status)
		require.JSONEq(t, `{"processed":true,"data":{"steps":8}}`, string(final.Result))
	})
	t.Run("a reader that reconnects with the last id it saw misses nothing and sees nothing twice", func(t *testing.T) {
		require.Equal(t, all, again)
	})
	t.Run("a reconnect after done is 204, which stops EventSource", func(t *testing.T) {
		last := strconv.FormatUint(all[len(all)-1].ID, 10)
		for _, r := range []*response{
			ts.do("GET", "/tasks/"+info.ID+"/events", nil, "Last-Event-ID", last),
			ts.do("GET", "/tasks/"+info.ID+"/events?lastEventId="+last, nil),
		} {
			require.Equal(t, http.StatusNoContent, r.status)
			require.Empty(t, r.body)
		}
	})
	t.Run("a reconnect from any earlier id gets exactly the events after it", func(t *testing.T) {
		for i := range all[:len(all)-1] {
			s := ts.openEvents(t, info.ID, "Last-Event-ID", strconv.FormatUint(all[i].ID, 10))
			require.Equal(t, all[i+1:], s.untilDone(t))
			s.close()
		}
	})
	t.Run("an id the server never gave replays the whole log", func(t *testing.T) {
		s := ts.openEvents(t, info.ID, "Last-Event-ID", "99999999999999999")
		require.Equal(t, all, s.untilDone(t))
	})
	t.Run("a Last-Event-ID that is not an event id is 400", func(t *testing.T) {
		for _, r := range []*response{
			ts.do("GET", "/tasks/"+info.ID+"/events", nil, "Last-Event-ID", "abc"),
			ts.do("GET", "/tasks/"+info.ID+"/events?lastEventId=-1", nil),
		} {
			require.Equal(t, http.StatusBadRequest, r.status)
			require.Equal(t, problemTypePrefix+"validation-error", r.problem(t).Type)
		}
	})
	t.Run("a stream opened after the task finished replays it to done", func(t *testing.T) {
		done := ts.waitTask(t, ts.submit(t, map[string]any{"kind": "emails", "payload": map[string]any{"emails": []string{"a@example.com"}, "template": "x"}}).ID)
		s := ts.openEvents(t, done.ID)
		evs := s.untilDone(t)
		require.Equal(t, taskqueue.StatusSucceeded, ts.info(t, evs[len(evs)-1].Data).Status)
	})
	t.Run("an idle stream is pinged", func(t *testing.T) {
		long := ts.submit(t, map[string]any{"kind": "demo", "payload": map[string]int{"steps": 10, "step_ms": 1000}})
		s := ts.openEvents(t, long.ID)
		for ev := s.next(t); ev.Comment != "ping"; ev = s.next(t) {
		}
		require.Equal(t, http.StatusAccepted, ts.do("DELETE", "/tasks/"+long.ID, nil).status)
		evs := s.untilDone(t)
		require.Equal(t, taskqueue.StatusCanceled, ts.info(t, evs[len(evs)-1].Data).Status)
	})
}

// readWithReconnects reads a task's events as a client with a flaky
// connection would: it drops the connection after every two events and
// reconnects, alternately with the Last-Event-ID header and the
// lastEventId query parameter, until done. It returns every event it saw.
func (ts *testServer) readWithReconnects(id string) ([]sseEvent, error) {
	var seen []sseEvent
	for conn := 0; conn < 1000; conn++ {
		path, headers := "/tasks/"+id+"/events", []string(nil)
		if n := len(seen); n > 0 {
			last := strconv.FormatUint(seen[n-1].ID, 10)
			if conn%2 == 0 {
				headers = []string{"Last-Event-ID", last}
			} else {
				path += "?lastEventId=" + last
			}
		}
		s, err := ts.dialEvents(path, headers...)
		if err != nil {
			return seen, err
		}
		for n := 0; n < 2; {
			ev, err := s.read()
			if err != nil {
				s.close()
				return seen, err
			}
			if ev.Comment != "" {
				continue
			}
			seen = append(seen, ev)
			n++
			if ev.Name == "done" {
				s.close()
				return seen, nil
			}
		}
		s.close()
	}
	return seen, errors.New("no done after 1000 connections")
}

func TestTaskEventsEndAtShutdown(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", map[string]string{"SHUTDOWN_TIMEOUT": "2s"})
	long := ts.submit(t, map[string]any{"kind": "demo", "payload": map[string]int{"steps": 100, "step_ms": 1000}})
	s := ts.openEvents(t, long.ID)
	for ev := s.next(t); ts.info(t, ev.Data).Status != taskqueue.StatusRunning; ev = s.next(t) {
	}

	ended := make(chan error, 1)
	go func() {
		for {
			if _, err := s.read(); err != nil {
				ended <- err
				return
			}
		}
	}()
	stopped := make(chan error, 1)
	start := time.Now()
	go func() { stopped <- ts.stop() }()

	select {
	case err := <-ended:
		require.ErrorIs(t, err, io.EOF, "the server ends the stream")
		require.Less(t, time.Since(start), time.Second, "without waiting for the running task")
	case <-time.After(10 * time.Second):
		t.Fatal("the stream was still open 10s into the shutdown")
	}
	require.NoError(t, <-stopped, "the server stops cleanly, the interrupted task left pending")
	require.Contains(t, ts.logs.String(), "tasks left unfinished at shutdown")
}

// TestEventHubBounds drives the hub with a real runner whose tasks move
// only when the test tells them to.
func TestEventHubBounds(t *testing.T) {
	t.Parallel()
	r, err := taskqueue.New(taskqueue.Options{Workers: 8, ProgressInterval: time.Nanosecond})
	require.NoError(t, err)
	var (
		mu    sync.Mutex
		feeds = map[string]chan int{} // by payload key: each value is a progress report, close to finish
	)
	feed := func(key string) chan int {
		mu.Lock()
		defer mu.Unlock()
		if feeds[key] == nil {
			feeds[key] = make(chan int)
		}
		return feeds[key]
	}
	require.NoError(t, taskqueue.Handle(r, "step", func(ctx context.Context, job *taskqueue.Job, key string) (int, error) {
		ch := feed(key)
		for {
			select {
			case p, ok := <-ch:
				if !ok {
					return 0, nil
				}
				_ = job.Progress(p, "")
			case <-ctx.Done():
				return 0, context.Cause(ctx)
			}
		}
	}))
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var left *taskqueue.ShutdownError
		if err := r.Shutdown(ctx); err != nil && !errors.As(err, &left) {
			t.Error(err)
		}
	})

	h := newEventHub(r, slog.New(slog.DiscardHandler), false)
	h.maxTasks, h.maxEvents = 3, 4
	t.Cleanup(h.close)
	submit := func(key string) (string, *eventLog) {
		info, err := r.Submit(context.Background(), "step", key)
		require.NoError(t, err)
		l, err := h.follow(info.ID)
		require.NoError(t, err)
		return info.ID, l
	}
	// waitFor waits until the log's latest Info satisfies ok.
	waitFor := func(l *eventLog, ok func(taskqueue.Info) bool) {
		t.Helper()
		timeout := time.After(10 * time.Second)
		for {
			evs, changed, _ := h.since(l, 0)
			if n := len(evs); n > 0 {
				var info taskqueue.Info
				require.NoError(t, json.Unmarshal(evs[n-1].data, &info))
				if ok(info) {
					return
				}
			}
			select {
			case <-changed:
			case <-timeout:
				t.Fatalf("the log of %s did not get there: %d events", l.task, len(evs))
			}
		}
	}
	running := func(p int) func(taskqueue.Info) bool {
		return func(i taskqueue.Info) bool { return i.Status == taskqueue.StatusRunning && i.Progress.Percent == p }
	}
	finished := func(i taskqueue.Info) bool { return i.Status.Terminal() }
	held := func() []string {
		h.mu.Lock()
		defer h.mu.Unlock()
		var ids []string
		for e := h.done.Front(); e != nil; e = e.Next() {
			ids = append(ids, e.Value.(*eventLog).task)
		}
		for e := h.live.Front(); e != nil; e = e.Next() {
			ids = append(ids, e.Value.(*eventLog).task)
		}
		return ids
	}

	a, la := submit("a")
	t.Run("a log keeps its latest events, the terminal one included", func(t *testing.T) {
		for p := 1; p <= 10; p++ {
			feed("a") <- p
			waitFor(la, running(p))
		}
		close(feed("a"))
		waitFor(la, finished)
		evs, _, state := h.since(la, 0)
		require.Equal(t, logFinished, state)
		require.Len(t, evs, 4)
		for i, ev := range evs {
			var info taskqueue.Info
			require.NoError(t, json.Unmarshal(ev.data, &info))
			require.Equal(t, []int{8, 9, 10, 10}[i], info.Progress.Percent)
			require.Equal(t, i == 3, ev.final)
			if i > 0 {
				require.Equal(t, evs[i-1].id+1, ev.id, "consecutive ids: the task's own events")
			}
		}
		_, events, _ := h.size()
		require.Equal(t, 4, events)
	})

	b, lb := submit("b")
	c, lc := submit("c")
	var (
		ld, lf *eventLog
		f      string
	)
	t.Run("past the bound the earliest finished log goes first", func(t *testing.T) {
		_, _, _ = h.since(la, 0) // a read does not keep a finished log
		var d string
		d, ld = submit("d")
		require.Equal(t, []string{b, c, d}, held())
		logs, _, _ := h.size()
		require.Equal(t, 3, logs)
		_, _, state := h.since(la, 0)
		require.Equal(t, logFinished, state, "a stream that holds it still reads it to its end")
	})
	t.Run("with none finished the least recently used goes, and its follower stops", func(t *testing.T) {
		waitFor(lb, running(0))
		waitFor(lc, running(0))
		_, _, _ = h.since(ld, 0)
		_, _, _ = h.since(lb, 0) // d and b are read after c: c is the least recently used
		e, _ := submit("e")
		require.NotContains(t, held(), c)
		require.Contains(t, held(), b)
		require.Contains(t, held(), e)
		evs, changed, state := h.since(lc, 0)
		require.Equal(t, logStopped, state, "streams on it end, and their clients reconnect")
		select {
		case <-changed:
		default:
			t.Fatal("the dropped log's waiters were not woken")
		}
		require.NotEmpty(t, evs)
	})
	t.Run("a finished log is dropped once kept long enough", func(t *testing.T) {
		close(feed("b"))
		waitFor(lb, finished)
		require.Contains(t, held(), b)
		h.mu.Lock()
		h.keep = 0
		h.mu.Unlock()
		f, lf = submit("f")
		require.NotContains(t, held(), b)
		require.Contains(t, held(), f)
	})
	t.Run("past the byte budget logs are dropped as past the count", func(t *testing.T) {
		before := held()
		require.Len(t, before, 3)
		require.Equal(t, f, before[2], "f was used last")
		_, _, bytes := h.size()
		h.mu.Lock()
		h.maxBytes = bytes // the next event is one too many
		h.mu.Unlock()
		feed("f") <- 50
		waitFor(lf, running(50))
		after := held()
		require.Less(t, len(after), 3)
		require.Equal(t, before[3-len(after):], after, "the least recently used went first")
		_, _, bytes = h.size()
		require.LessOrEqual(t, bytes, h.maxBytes)

		h.mu.Lock()
		h.maxBytes = 1 // only the latest event of the growing log fits, and no other log
		h.mu.Unlock()
		feed("f") <- 60
		waitFor(lf, running(60))
		require.Equal(t, []string{f}, held())
		logs, events, _ := h.size()
		require.Equal(t, 1, logs)
		require.Equal(t, 1, events)
	})
	t.Run("with idleStop a task is followed only while a stream reads its log", func(t *testing.T) {
		idle := newEventHub(r, slog.New(slog.DiscardHandler), true)
		defer idle.close()
		info, err := r.Submit(context.Background(), "step", "g")
		require.NoError(t, err)
		latest := func(l *eventLog, ok func(taskqueue.Info) bool) taskqueue.Info {
			t.Helper()
			timeout := time.After(10 * time.Second)
			for {
				evs, changed, _ := idle.since(l, 0)
				if n := len(evs); n > 0 {
					var info taskqueue.Info
					require.NoError(t, json.Unmarshal(evs[n-1].data, &info))
					if ok(info) {
						return info
					}
				}
				select {
				case <-changed:
				case <-timeout:
					t.Fatalf("the log did not get there: %d events", len(evs))
				}
			}
		}
		following := func(l *eventLog) bool {
			idle.mu.Lock()
			defer idle.mu.Unlock()
			return l.following
		}
		l, done, err := idle.stream(info.ID)
		require.NoError(t, err)
		first := latest(l, running(0))
		done()
		require.False(t, following(l), "the last stream stopped the follower")
		feed("g") <- 5
		l2, done2, err := idle.stream(info.ID)
		require.NoError(t, err)
		require.Same(t, l, l2, "the log is kept")
		require.True(t, following(l2))
		got := latest(l2, running(5))
		require.Greater(t, got.Version, first.Version)
		close(feed("g"))
		latest(l2, finished)
		done2()
	})
	t.Run("close stops every follower; follow then fails", func(t *testing.T) {
		h.close()
		_, err := h.follow(a)
		require.ErrorIs(t, err, errHubClosed)
	})
	for _, key := range []string{"c", "d", "e", "f"} {
		close(feed(key))
	}
}
