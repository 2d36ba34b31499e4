package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/pagination"
	"github.com/asynckit/asynckit/taskqueue"
)

// Tasks live in memory whatever the database, so these tests run on SQLite
// only.

func TestTasks(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", map[string]string{"SSE_PING": "50ms"})

	t.Run("a demo task runs to success with its documented result", func(t *testing.T) {
		info := ts.submit(t, map[string]any{"kind": "demo", "payload": map[string]int{"steps": 3, "step_ms": 5}})
		require.Equal(t, "demo", info.Kind)
		require.Equal(t, taskqueue.StatusPending, info.Status)
		require.Len(t, info.ID, 26)

		final := ts.waitTask(t, info.ID)
		require.Equal(t, taskqueue.StatusSucceeded, final.Status, "error: %s", final.Error)
		require.JSONEq(t, `{"processed":true,"data":{"steps":3}}`, string(final.Result))
		require.Equal(t, taskqueue.Progress{Percent: 100, Message: "step 3 of 3"}, final.Progress)
		require.Equal(t, 1, final.Attempt)

		r := ts.do("GET", "/tasks/"+info.ID, nil)
		require.Equal(t, http.StatusOK, r.status)
		var got taskqueue.Info
		r.json(t, &got)
		require.Equal(t, final.FinishedAt, got.FinishedAt)
		require.Equal(t, final.Status, got.Status)
	})
	t.Run("a demo payload's omitted fields take their defaults", func(t *testing.T) {
		info := ts.submit(t, map[string]any{"kind": "demo", "payload": map[string]int{"step_ms": 0}})
		final := ts.waitTask(t, info.ID)
		require.JSONEq(t, `{"processed":true,"data":{"steps":5}}`, string(final.Result))
	})
	t.Run("an emails task records each failed send and succeeds", func(t *testing.T) {
		info := ts.submit(t, map[string]any{"kind": "emails", "payload": map[string]any{
			"emails":   []string{"ada@example.com", "bob@mail.invalid", "Carol@Example.org", "dan@invalid"},
			"template": "Hello!",
		}})
		final := ts.waitTask(t, info.ID)
		require.Equal(t, taskqueue.StatusSucceeded, final.Status, "error: %s", final.Error)
		var res emailsResult
		require.NoError(t, json.Unmarshal(final.Result, &res))
		require.Equal(t, 2, res.Sent)
		require.Len(t, res.Failed, 2)
		require.Equal(t, "bob@mail.invalid", res.Failed[0].Email)
		require.Equal(t, "dan@invalid", res.Failed[1].Email)
		for _, f := range res.Failed {
			require.Contains(t, f.Error, ".invalid")
		}
		require.Equal(t, 100, final.Progress.Percent)
	})
	t.Run("an emails task with no failures has an empty failed list", func(t *testing.T) {
		info := ts.submit(t, map[string]any{"kind": "emails", "payload": map[string]any{"emails": []string{"ada@example.com"}, "template": "x"}})
		final := ts.waitTask(t, info.ID)
		require.JSONEq(t, `{"sent":1,"failed":[]}`, string(final.Result))
	})
	t.Run("a bad submission is a 400 naming the fields", func(t *testing.T) {
		many := make([]string, maxEmails+1)
		for i := range many {
			many[i] = fmt.Sprintf("u%d@example.com", i)
		}
		for _, c := range []struct {
			name   string
			body   any
			typ    string
			fields []string
		}{
			{"unknown kind", `{"kind":"resize"}`, "validation-error", []string{"kind"}},
			{"file tasks come only from uploads", `{"kind":"file","payload":{"file":"x"}}`, "validation-error", []string{"kind"}},
			{"callback tasks are not submittable", `{"kind":"callback"}`, "validation-error", []string{"kind"}},
			{"missing kind", `{"payload":{}}`, "bad-request", []string{"kind"}},
			{"unknown top-level field", `{"kind":"demo","priority":1}`, "bad-request", []string{"priority"}},
			{"no steps", `{"kind":"demo","payload":{"steps":0}}`, "validation-error", []string{"payload.steps"}},
			{"too many steps", `{"kind":"demo","payload":{"steps":101}}`, "validation-error", []string{"payload.steps"}},
			{"negative step_ms", `{"kind":"demo","payload":{"step_ms":-1}}`, "validation-error", []string{"payload.step_ms"}},
			{"step_ms too long", `{"kind":"demo","payload":{"step_ms":60001}}`, "validation-error", []string{"payload.step_ms"}},
			{"steps of the wrong type", `{"kind":"demo","payload":{"steps":"5"}}`, "validation-error", []string{"payload.steps"}},
			{"unknown payload field", `{"kind":"demo","payload":{"steps":1,"color":"red"}}`, "validation-error", []string{"payload.color"}},
			{"payload not an object", `{"kind":"demo","payload":[1]}`, "validation-error", []string{"payload"}},
			{"emails without payload", `{"kind":"emails"}`, "validation-error", []string{"payload"}},
			{"emails missing fields", `{"kind":"emails","payload":{}}`, "validation-error", []string{"payload.emails", "payload.template"}},
			{"no addresses", `{"kind":"emails","payload":{"emails":[],"template":"x"}}`, "validation-error", []string{"payload.emails"}},
			{"too many addresses", map[string]any{"kind": "emails", "payload": map[string]any{"emails": many, "template": "x"}}, "validation-error", []string{"payload.emails"}},
			{"bad addresses", `{"kind":"emails","payload":{"emails":["ok@example.com","nope","Ada <ada@example.com>"],"template":"x"}}`, "validation-error", []string{"payload.emails.1", "payload.emails.2"}},
			{"empty template", `{"kind":"emails","payload":{"emails":["a@example.com"],"template":""}}`, "validation-error", []string{"payload.template"}},
			{"template too long", map[string]any{"kind": "emails", "payload": map[string]any{"emails": []string{"a@example.com"}, "template": strings.Repeat("é", maxTemplate+1)}}, "validation-error", []string{"payload.template"}},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := ts.do("POST", "/tasks", c.body)
				require.Equal(t, http.StatusBadRequest, r.status, "%s", r.body)
				p := r.problem(t)
				require.Equal(t, problemTypePrefix+c.typ, p.Type)
				var fields []string
				for _, e := range p.Errors {
					fields = append(fields, e.Field)
				}
				require.Equal(t, c.fields, fields)
			})
		}
		t.Run("a body that is not JSON is 415", func(t *testing.T) {
			r := ts.do("POST", "/tasks", "kind=demo", "Content-Type", "application/x-www-form-urlencoded")
			require.Equal(t, http.StatusUnsupportedMediaType, r.status)
			r.problem(t)
		})
	})
	t.Run("an unknown task is 404 on every route", func(t *testing.T) {
		for _, id := range []string{"01m96s8q5kggmrm5c5nq7vqwwd", "not-an-id"} {
			for _, req := range []struct{ method, path string }{
				{"GET", "/tasks/" + id}, {"DELETE", "/tasks/" + id}, {"GET", "/tasks/" + id + "/events"},
			} {
				r := ts.do(req.method, req.path, nil)
				require.Equal(t, http.StatusNotFound, r.status, "%s %s", req.method, req.path)
				require.Equal(t, problemTypePrefix+"not-found", r.problem(t).Type)
			}
		}
	})
	t.Run("metrics count tasks by status, and by kind and status", func(t *testing.T) {
		r := ts.do("GET", "/metrics", nil)
		require.Equal(t, http.StatusOK, r.status)
		for _, want := range []string{
			`tasks{status="succeeded"} 4`,
			`tasks{status="pending"} 0`,
			`tasks_by_kind{kind="demo",status="succeeded"} 2`,
			`tasks_by_kind{kind="emails",status="succeeded"} 2`,
			`tasks_by_kind{kind="file",status="succeeded"} 0`,
		} {
			require.Contains(t, string(r.body), want)
		}
	})
}

func TestTaskList(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", nil)
	var demos, emails []string
	for range 3 {
		demos = append(demos, ts.submit(t, map[string]any{"kind": "demo", "payload": map[string]int{"steps": 1, "step_ms": 0}}).ID)
	}
	for range 2 {
		emails = append(emails, ts.submit(t, map[string]any{"kind": "emails", "payload": map[string]any{"emails": []string{"a@example.com"}, "template": "x"}}).ID)
	}
	for _, id := range append(append([]string{}, demos...), emails...) {
		require.Equal(t, taskqueue.StatusSucceeded, ts.waitTask(t, id).Status)
	}
	walk := func(t *testing.T, query url.Values, limit int) []taskqueue.Info {
		t.Helper()
		var all []taskqueue.Info
		cursor := ""
		for pages := 0; ; pages++ {
			require.Less(t, pages, 20)
			q := url.Values{"limit": {strconv.Itoa(limit)}}
			for k, v := range query {
				q[k] = v
			}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			r := ts.do("GET", "/tasks?"+q.Encode(), nil)
			require.Equal(t, http.StatusOK, r.status, "%s", r.body)
			var page pagination.Page[taskqueue.Info]
			r.json(t, &page)
			require.LessOrEqual(t, len(page.Items), limit)
			all = append(all, page.Items...)
			if !page.HasMore {
				require.Empty(t, page.NextCursor)
				return all
			}
			cursor = page.NextCursor
		}
	}
	ids := func(infos []taskqueue.Info) []string {
		var out []string
		for _, in := range infos {
			out = append(out, in.ID)
		}
		return out
	}
	newestFirst := func(ids []string) []string {
		out := make([]string, len(ids))
		for i, id := range ids {
			out[len(ids)-1-i] = id
		}
		return out
	}

	t.Run("a cursor walk lists every task once, newest first", func(t *testing.T) {
		all := walk(t, nil, 2)
		require.Equal(t, newestFirst(append(append([]string{}, demos...), emails...)), ids(all))
	})
	t.Run("kind and status filter the listing", func(t *testing.T) {
		require.Equal(t, newestFirst(emails), ids(walk(t, url.Values{"kind": {"emails"}}, 1)))
		require.Equal(t, newestFirst(demos), ids(walk(t, url.Values{"kind": {"demo"}, "status": {"succeeded"}}, 2)))
		require.Empty(t, walk(t, url.Values{"status": {"failed"}}, 5))
		require.Empty(t, walk(t, url.Values{"kind": {"file"}}, 5))
	})
	t.Run("without a limit a page holds up to 20", func(t *testing.T) {
		r := ts.do("GET", "/tasks", nil)
		var page pagination.Page[taskqueue.Info]
		r.json(t, &page)
		require.Len(t, page.Items, 5)
		require.False(t, page.HasMore)
	})
	t.Run("bad filters and limits are 400 naming the parameter", func(t *testing.T) {
		for _, c := range []struct{ query, field string }{
			{"status=done", "status"},
			{"status=Running", "status"},
			{"kind=resize", "kind"},
			{"limit=0", "limit"},
			{"limit=-3", "limit"},
			{"limit=ten", "limit"},
		} {
			r := ts.do("GET", "/tasks?"+c.query, nil)
			require.Equal(t, http.StatusBadRequest, r.status, c.query)
			p := r.problem(t)
			require.Equal(t, problemTypePrefix+"validation-error", p.Type)
			require.Equal(t, c.field, p.Errors[0].Field)
		}
	})
	t.Run("a cursor that was not made for the listing is refused", func(t *testing.T) {
		r := ts.do("GET", "/tasks?kind=demo&limit=1", nil)
		var page pagination.Page[taskqueue.Info]
		r.json(t, &page)
		require.NotEmpty(t, page.NextCursor)
		for _, query := range []string{
			"kind=emails&cursor=" + url.QueryEscape(page.NextCursor),
			"cursor=" + url.QueryEscape(page.NextCursor),
			"cursor=garbage",
			"kind=demo&cursor=" + url.QueryEscape(page.NextCursor[:len(page.NextCursor)-2]),
		} {
			r := ts.do("GET", "/tasks?"+query, nil)
			require.Equal(t, http.StatusBadRequest, r.status, query)
			require.Equal(t, problemTypePrefix+"invalid-cursor", r.problem(t).Type)
		}
	})
}

func TestTaskCancel(t *testing.T) {
	t.Parallel()
	// One worker: the second task waits while the first runs.
	ts := startServer(t, "sqlite", map[string]string{"WORKERS": "1"})
	long := map[string]any{"kind": "demo", "payload": map[string]int{"steps": 100, "step_ms": 1000}}
	running := ts.submit(t, long)
	pending := ts.submit(t, long)

	events := ts.openEvents(t, running.ID)
	for ev := events.next(t); ; ev = events.next(t) {
		if ev.Data != "" && ts.info(t, ev.Data).Status == taskqueue.StatusRunning {
			break
		}
	}

	t.Run("a pending task is canceled at once", func(t *testing.T) {
		r := ts.do("DELETE", "/tasks/"+pending.ID, nil)
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		var got taskqueue.Info
		r.json(t, &got)
		require.Equal(t, taskqueue.StatusCanceled, got.Status)
		require.Zero(t, got.Attempt, "it never ran")
	})
	t.Run("a running task is stopped and ends canceled", func(t *testing.T) {
		r := ts.do("DELETE", "/tasks/"+running.ID, nil)
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		var got taskqueue.Info
		r.json(t, &got)
		require.Contains(t, []taskqueue.Status{taskqueue.StatusRunning, taskqueue.StatusCanceled}, got.Status)
		evs := events.untilDone(t)
		final := ts.info(t, evs[len(evs)-1].Data)
		require.Equal(t, taskqueue.StatusCanceled, final.Status)
		require.Less(t, final.Progress.Percent, 100)
	})
	t.Run("cancelling a finished task is 409", func(t *testing.T) {
		for _, id := range []string{running.ID, pending.ID} {
			r := ts.do("DELETE", "/tasks/"+id, nil)
			require.Equal(t, http.StatusConflict, r.status)
			require.Equal(t, problemTypePrefix+"task-finished", r.problem(t).Type)
		}
	})
}

func TestTaskQueueFull(t *testing.T) {
	t.Parallel()
	ts := startServer(t, "sqlite", map[string]string{"WORKERS": "1", "QUEUE_SIZE": "2"})
	long := map[string]any{"kind": "demo", "payload": map[string]int{"steps": 100, "step_ms": 1000}}
	// At most QUEUE_SIZE tasks wait and WORKERS run, so the fourth of four
	// is refused whether or not the first has started.
	var accepted []string
	var last *response
	for range 4 {
		last = ts.do("POST", "/tasks", long)
		if last.status == http.StatusAccepted {
			var info taskqueue.Info
			last.json(t, &info)
			accepted = append(accepted, info.ID)
		}
	}
	require.GreaterOrEqual(t, len(accepted), 2)
	require.Equal(t, http.StatusServiceUnavailable, last.status)
	require.Equal(t, problemTypePrefix+"queue-full", last.problem(t).Type)
	require.NotEmpty(t, last.header.Get("Retry-After"))

	for _, id := range accepted { // so that the server stops at once
		require.Equal(t, http.StatusAccepted, ts.do("DELETE", "/tasks/"+id, nil).status)
	}
	r := ts.do("POST", "/tasks", long)
	require.Equal(t, http.StatusAccepted, r.status, "room again once the queue drains")
	var info taskqueue.Info
	r.json(t, &info)
	require.Equal(t, http.StatusAccepted, ts.do("DELETE", "/tasks/"+info.ID, nil).status)
}

// submit submits a task and returns it, failing the test unless it is
// accepted.
func (ts *testServer) submit(t *testing.T, body any) taskqueue.Info {
	t.Helper()
	r := ts.do("POST", "/tasks", body)
	require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
	var info taskqueue.Info
	r.json(t, &info)
	return info
}

// waitTask follows the task's event stream to its done event and returns
// the task as that event shows it.
func (ts *testServer) waitTask(t *testing.T, id string) taskqueue.Info {
	t.Helper()
	s := ts.openEvents(t, id)
	defer s.close()
	evs := s.untilDone(t)
	return ts.info(t, evs[len(evs)-1].Data)
}

// info checks that data is a task as the OpenAPI document describes Info,
// and decodes it.
func (ts *testServer) info(t *testing.T, data string) taskqueue.Info {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal([]byte(data), &v), "data: %s", data)
	require.NoError(t, ts.doc.Components.Schemas["Info"].Value.VisitJSON(v), "data: %s", data)
	var info taskqueue.Info
	require.NoError(t, json.Unmarshal([]byte(data), &info))
	return info
}

// sseEvent is one block of a server-sent event stream: an event, or a
// comment, or a retry field.
type sseEvent struct {
	ID      uint64
	HasID   bool
	Name    string
	Data    string
	Retry   int
	Comment string
}

// eventStream is an open GET /tasks/{id}/events, parsed as EventSource
// would parse it.
type eventStream struct {
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
}

// dialEvents opens the event stream at path (with its query) with the
// given header pairs, and reads its first block, which must set the retry
// delay. It reports what is wrong as an error, so that it may be called
// from any goroutine; the caller closes the stream.
func (ts *testServer) dialEvents(path string, headers ...string) (*eventStream, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	req, err := http.NewRequestWithContext(ctx, "GET", ts.base+path, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := ts.client.Do(req)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &eventStream{resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel}
	if resp.StatusCode != http.StatusOK {
		s.close()
		return nil, fmt.Errorf("GET %s answered %d", path, resp.StatusCode)
	}
	if first, err := s.read(); err != nil || first.Retry != 2000 {
		s.close()
		return nil, fmt.Errorf("GET %s began with %+v (%v), not its retry delay", path, first, err)
	}
	return s, nil
}

// openEvents opens a task's event stream with the given header pairs and
// checks its headers. It is closed when the test ends, if not before.
func (ts *testServer) openEvents(t *testing.T, id string, headers ...string) *eventStream {
	t.Helper()
	s, err := ts.dialEvents("/tasks/"+id+"/events", headers...)
	require.NoError(t, err)
	t.Cleanup(s.close)
	require.Equal(t, "text/event-stream", s.resp.Header.Get("Content-Type"))
	require.Equal(t, "no-cache", s.resp.Header.Get("Cache-Control"))
	require.Equal(t, "no", s.resp.Header.Get("X-Accel-Buffering"))
	require.Empty(t, s.resp.Header.Get("Content-Encoding"), "an event stream is never compressed")
	return s
}

// next returns the next block of the stream, failing the test at its end.
func (s *eventStream) next(t *testing.T) sseEvent {
	t.Helper()
	ev, err := s.read()
	require.NoError(t, err)
	return ev
}

// read returns the next block of the stream, or the error that ended it
// (io.EOF when the server ended it).
func (s *eventStream) read() (sseEvent, error) {
	var ev sseEvent
	seen := false
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			if seen {
				return ev, nil
			}
			continue
		}
		seen = true
		if c, ok := strings.CutPrefix(line, ":"); ok {
			ev.Comment = strings.TrimSpace(c)
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "id":
			ev.ID, err = strconv.ParseUint(value, 10, 64)
			ev.HasID = true
		case "event":
			ev.Name = value
		case "data":
			if ev.Data != "" {
				ev.Data += "\n"
			}
			ev.Data += value
		case "retry":
			ev.Retry, err = strconv.Atoi(value)
		default:
			err = fmt.Errorf("unknown field in %q", line)
		}
		if err != nil {
			return ev, err
		}
	}
}

// untilDone reads the events up to and including done, skipping comments,
// checks that ids strictly increase, that done comes last and the stream
// ends after it, and returns them.
func (s *eventStream) untilDone(t *testing.T) []sseEvent {
	t.Helper()
	var evs []sseEvent
	for {
		ev := s.next(t)
		if ev.Comment != "" {
			continue
		}
		require.True(t, ev.HasID, "event without an id: %+v", ev)
		if len(evs) > 0 {
			require.Greater(t, ev.ID, evs[len(evs)-1].ID, "ids strictly increase")
		}
		evs = append(evs, ev)
		if ev.Name == "done" {
			_, err := s.read()
			require.ErrorIs(t, err, io.EOF, "the stream ends after done")
			return evs
		}
		require.Equal(t, "progress", ev.Name)
	}
}

func (s *eventStream) close() {
	s.cancel()
	s.resp.Body.Close()
}
