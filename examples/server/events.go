package main

import (
	"bytes"
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/asynckit/asynckit/taskqueue"
)

// Bounds of the event hub.
const (
	// hubMaxTasks is the most tasks the hub follows at once.
	hubMaxTasks = 4096
	// hubMaxEvents is the most events kept per task; the oldest go first.
	// A demo task of 100 steps makes at most 103.
	hubMaxEvents = 256
	// hubMaxBytes bounds the Infos the hub holds, in bytes of JSON, since
	// an Info may carry up to 16 KiB of error text: about 200,000 events
	// of a demo task.
	hubMaxBytes = 64 << 20
	// hubKeepFinished is how long the events of a finished task are kept
	// for streams that reconnect.
	hubKeepFinished = 10 * time.Minute
)

// Event stream settings.
const (
	// sseRetry is the reconnection delay, in milliseconds, a stream asks
	// its client to use.
	sseRetry = 2000
	// sseWriteTimeout is how long one write of a stream may take: a client
	// that reads nothing for this long is cut off.
	sseWriteTimeout = 30 * time.Second
)

// errHubClosed is returned by eventHub.follow once the hub is closed.
var errHubClosed = errors.New("event hub closed")

// eventHub keeps an event log for each task it follows: the distinct
// Infos the task went through, each under its Version as event id. An
// event stream replays the log after the id its client last saw and then
// waits for more, so a client that reconnects with Last-Event-ID misses
// nothing and sees nothing twice.
//
// The Version is counted by the task's store, so it means the same on
// every instance that shares it: a client that reconnects to another
// instance (behind a load balancer, say) with the id it last saw gets the
// states after it that this instance has logged. Each event holds the
// whole Info, and the stream always ends with the terminal one, so what a
// client may miss that way is intermediate progress, never the outcome:
// an instance logs a task from when it begins to follow it (its first
// stream, or, with tasks in memory, its submission), and with Postgres it
// sees what other instances do to the task by re-reading it every
// TASK_POLL, so it may skip progress that came and went in between, as a
// slow reader of Runner.Subscribe does. It never repeats a state, nor
// shows one older than a state it has shown.
//
// A follower goroutine per unfinished task reads Runner.Subscribe into the
// log. With Postgres, where a follower costs a query every TASK_POLL, a
// task is followed only while a stream reads its log (idleStop): the last
// stream to end stops the follower, and the next to begin starts another.
// Everything is bounded: at most maxTasks logs and maxBytes of Infos
// (past either, the log of the task that finished first is dropped, else
// the least recently used one and its follower), at most maxEvents events
// per log (the oldest dropped; each event holds the whole Info, so a
// client that falls that far behind still gets the task's current state),
// and finished logs are dropped keep after the task finished. Dropping is
// done by the calls that use the hub, so it starts no goroutine of its
// own beyond the followers, which close stops.
type eventHub struct {
	runner    *taskqueue.Runner
	log       *slog.Logger
	idleStop  bool // stop following a task that no stream reads
	maxTasks  int
	maxEvents int
	maxBytes  int
	keep      time.Duration

	ctx    context.Context // the followers' parent: close cancels it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	closed bool
	bytes  int                  // the length of every event's data
	logs   map[string]*eventLog // by task id
	live   list.List            // unfinished logs, least recently used first
	done   list.List            // finished logs, earliest finished first
}

// eventLog is the event log of one task.
type eventLog struct {
	task     string
	events   []taskEvent // ids increasing; never changed in place, so a copy of the slice may be read without the lock
	bytes    int         // the length of the events' data
	changed  chan struct{}
	finished time.Time // when the terminal event was logged; zero before
	// following is true while a follower goroutine feeds the log.
	following bool
	stop      context.CancelFunc // stops the follower
	feeder    uint64             // which follower feeds it: each one started counts one more
	streams   int                // the streams reading it
	// dropped is true once the log has left the hub; streams reading it end.
	dropped bool
	elem    *list.Element // in live or done
}

// taskEvent is one event of a task's log.
type taskEvent struct {
	id    uint64 // the Info's Version
	data  []byte // the Info as JSON
	final bool   // the task's terminal Info
}

func newEventHub(r *taskqueue.Runner, log *slog.Logger, idleStop bool) *eventHub {
	h := &eventHub{runner: r, log: log, idleStop: idleStop, maxTasks: hubMaxTasks, maxEvents: hubMaxEvents, maxBytes: hubMaxBytes, keep: hubKeepFinished,
		logs: map[string]*eventLog{}}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	return h
}

// follow returns the log of task id, and starts following the task if no
// follower feeds its log and it has not finished. It does not check that
// the task exists: a follower of an unknown task stops at once, leaving
// an empty log. After close it returns errHubClosed.
func (h *eventHub) follow(id string) (*eventLog, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errHubClosed
	}
	h.expire(time.Now())
	l := h.logs[id]
	if l == nil {
		for len(h.logs) >= h.maxTasks {
			h.evict(nil)
		}
		l = &eventLog{task: id, changed: make(chan struct{})}
		l.elem = h.live.PushBack(l)
		h.logs[id] = l
	}
	h.touch(l)
	if l.finished.IsZero() && !l.following {
		ctx, stop := context.WithCancel(h.ctx)
		l.following, l.stop = true, stop
		l.feeder++
		h.wg.Add(1)
		go h.feed(ctx, l, l.feeder)
	}
	return l, nil
}

// stream is follow for an event stream, which calls the returned func when
// it ends.
func (h *eventHub) stream(id string) (*eventLog, func(), error) {
	l, err := h.follow(id)
	if err != nil {
		return nil, nil, err
	}
	h.mu.Lock()
	l.streams++
	h.mu.Unlock()
	return l, func() { h.unstream(l) }, nil
}

// unstream counts a stream of l out, and with idleStop stops l's follower
// when it was the last.
func (h *eventHub) unstream(l *eventLog) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l.streams--
	if h.idleStop && l.streams == 0 && l.following {
		l.stop()
		// The next stream starts a follower of its own at once; this one's
		// ending must not then touch the log.
		l.following, l.stop = false, nil
		l.feeder++
	}
}

// feed appends the task's Infos to l until the task finishes, the log is
// dropped, the hub closes, the runner shuts down or, with idleStop, no
// stream reads the log any more. feeder is the follower's number.
func (h *eventHub) feed(ctx context.Context, l *eventLog, feeder uint64) {
	defer h.wg.Done()
	ch, err := h.runner.Subscribe(ctx, l.task)
	if err != nil {
		if ctx.Err() == nil {
			h.log.Debug("cannot follow task", "task", l.task, "err", err)
		}
	} else {
		for info := range ch {
			h.append(l, info)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if l.feeder != feeder {
		return // stopped by unstream, and perhaps replaced
	}
	l.following = false
	if l.stop != nil {
		l.stop()
	}
	if l.finished.IsZero() && !l.dropped {
		h.notify(l) // streams waiting on it learn that nothing more will come
	}
}

// append logs info as l's next event, unless l has had its state or a
// newer one.
func (h *eventHub) append(l *eventLog, info taskqueue.Info) {
	data, err := json.Marshal(info)
	if err != nil { // cannot happen: an Info from the runner marshals
		h.log.Error("cannot encode task", "task", l.task, "err", err)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if l.dropped || !l.finished.IsZero() {
		return
	}
	if n := len(l.events); n > 0 && l.events[n-1].id >= uint64(info.Version) {
		return
	}
	ev := taskEvent{id: uint64(info.Version), data: data, final: info.Status.Terminal()}
	l.events = append(l.events, ev)
	l.bytes += len(data)
	h.bytes += len(data)
	if len(l.events) > h.maxEvents {
		h.trim(l, len(l.events)-h.maxEvents)
	}
	for h.bytes > h.maxBytes {
		if !h.evict(l) { // l is the only log left: it gives up its oldest events
			n := 0
			for b := h.bytes; b > h.maxBytes && n < len(l.events)-1; n++ {
				b -= len(l.events[n].data)
			}
			h.trim(l, n)
			break
		}
	}
	if ev.final {
		l.finished = time.Now()
		h.live.Remove(l.elem)
		l.elem = h.done.PushBack(l)
	}
	h.notify(l)
}

// trim drops the n oldest events of l into a new slice, leaving the old
// one to the streams reading it. h.mu is held.
func (h *eventHub) trim(l *eventLog, n int) {
	if n <= 0 {
		return
	}
	for _, ev := range l.events[:n] {
		l.bytes -= len(ev.data)
		h.bytes -= len(ev.data)
	}
	l.events = append([]taskEvent(nil), l.events[n:]...)
}

// notify wakes the streams waiting on l. h.mu is held.
func (h *eventHub) notify(l *eventLog) {
	close(l.changed)
	l.changed = make(chan struct{})
}

// touch marks an unfinished log as just used. h.mu is held.
func (h *eventHub) touch(l *eventLog) {
	if l.finished.IsZero() && !l.dropped {
		h.live.MoveToBack(l.elem)
	}
}

// evict drops the log of the task that finished first, or if none has
// finished, the least recently used, sparing keep; it reports whether
// there was one to drop. h.mu is held.
func (h *eventHub) evict(keep *eventLog) bool {
	for _, e := range []*list.Element{h.done.Front(), h.live.Front()} {
		if e != nil && e.Value.(*eventLog) == keep {
			e = e.Next()
		}
		if e != nil {
			h.drop(e.Value.(*eventLog))
			return true
		}
	}
	return false
}

// expire drops the logs of tasks that finished keep or longer before now.
// h.mu is held.
func (h *eventHub) expire(now time.Time) {
	for e := h.done.Front(); e != nil && now.Sub(e.Value.(*eventLog).finished) >= h.keep; e = h.done.Front() {
		h.drop(e.Value.(*eventLog))
	}
}

// drop removes l from the hub, stops its follower and ends its streams.
// h.mu is held.
func (h *eventHub) drop(l *eventLog) {
	delete(h.logs, l.task)
	h.bytes -= l.bytes
	if l.finished.IsZero() {
		h.live.Remove(l.elem)
	} else {
		h.done.Remove(l.elem)
	}
	l.dropped = true
	if l.stop != nil {
		l.stop()
	}
	close(l.changed)
}

// logState is what a stream may expect of a log after what it has read.
type logState int

const (
	logOpen     logState = iota // more events may come
	logFinished                 // the terminal event has been logged
	logStopped                  // no follower feeds it, or it was dropped: nothing more will come
)

// since returns l's events with ids above after, the channel closed at its
// next change, and its state.
func (h *eventHub) since(l *eventLog, after uint64) ([]taskEvent, <-chan struct{}, logState) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.touch(l)
	i := len(l.events)
	for i > 0 && l.events[i-1].id > after {
		i--
	}
	evs := l.events[i:len(l.events):len(l.events)]
	switch {
	case !l.finished.IsZero():
		return evs, l.changed, logFinished
	case l.dropped || !l.following:
		return evs, l.changed, logStopped
	}
	return evs, l.changed, logOpen
}

// size returns how many logs the hub holds, how many events they hold,
// and how many bytes of Infos.
func (h *eventHub) size() (logs, events, bytes int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, l := range h.logs {
		events += len(l.events)
	}
	return len(h.logs), events, h.bytes
}

// close stops every follower and waits for them. follow fails afterwards.
func (h *eventHub) close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
}

// lastEventID returns the event id a reconnecting client last saw: its
// Last-Event-ID header, or else its lastEventId query parameter (for
// clients that cannot set headers), 0 when it sent neither.
func lastEventID(r *http.Request) (uint64, error) {
	name, v := "Last-Event-ID", r.Header.Get("Last-Event-ID")
	if v == "" {
		name, v = "lastEventId", r.URL.Query().Get("lastEventId")
	}
	if v == "" {
		return 0, nil
	}
	id, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, invalid(fieldError{Field: name, Message: "must be an event id this server sent"})
	}
	return id, nil
}

func (s *server) eventRoutes(a *api) {
	handleRaw(a, op{Pattern: "GET /tasks/{id}/events", ID: "taskEvents", Tag: "tasks", Summary: "Follow a task as server-sent events",
		Description: "A text/event-stream (for EventSource). It begins with `retry: 2000`; then each change of the task is an event `progress` whose data is the task (as GET /tasks/{id} answers it), " +
			"and its final state is one event `done`, after which the stream ends. Every event's id is the task's version, strictly increasing. " +
			"A client that reconnects with Last-Event-ID (or ?lastEventId=) gets every event after that one, without gaps or repeats, " +
			"for as long as the server keeps the task's events (10 minutes after it finishes, the last 256 events of each task). " +
			"The version means the same on every instance of the service: a client that reconnects to another instance resumes after the same event, " +
			"though that instance may not have seen every intermediate progress event of a task that runs elsewhere (it reads the task every TASK_POLL); " +
			"it never repeats an event, nor sends an older state after a newer one, and always ends with `done`. " +
			"A comment `: ping` is sent when the stream has been idle for a while (SSE_PING, 15 s by default), so that proxies keep it open. " +
			"A client that reconnects after `done` is answered 204, which tells EventSource to stop. The stream also ends when the server shuts down; reconnect then.",
		Params: []param{taskParam,
			{Name: "Last-Event-ID", In: "header", Description: "The id of the last event received, to resume after it",
				Schema: &schema{Type: "string", Pattern: "^[0-9]{1,20}$"}},
			{Name: "lastEventId", In: "query", Description: "As Last-Event-ID, for clients that cannot set headers; the header wins",
				Schema: &schema{Type: "string", Pattern: "^[0-9]{1,20}$"}},
		},
		Status:   http.StatusOK,
		Response: &content{MediaType: "text/event-stream", Schema: &schema{Type: "string"}, Description: "The task's events, as server-sent events"},
		Others:   []answer{{Status: http.StatusNoContent, Description: "The client has already received the task's done event: nothing more will come"}},
		Problems: []kind{probValidation, probNotFound, probUnavailable}},
		s.taskEvents)
}

// taskEvents streams a task's event log; see eventRoutes for the contract.
func (s *server) taskEvents(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	after, err := lastEventID(r)
	if err != nil {
		writeError(w, r, s.log, err)
		return
	}
	info, err := s.tasks.Get(r.Context(), id)
	if err != nil {
		writeError(w, r, s.log, taskProblem(err, id))
		return
	}
	if after > uint64(info.Version) {
		// No state the task has had: the client kept an id from elsewhere,
		// and gets the whole log rather than nothing. An id this instance
		// has not logged yet but the task has had (another instance sent
		// it) is kept: the stream resumes after it.
		after = 0
	}
	if info.Status.Terminal() && after == uint64(info.Version) {
		w.WriteHeader(http.StatusNoContent) // the client has had done, from this instance or another
		return
	}
	l, done, err := s.events.stream(id)
	if err != nil {
		p := newProblem(probUnavailable, "the server is shutting down")
		p.retryAfter = time.Second
		writeProblem(w, r, p)
		return
	}
	defer done()
	evs, changed, state := s.events.since(l, after)
	if state == logFinished && len(evs) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "retry: %d\n\n", sseRetry)
	send := func() bool {
		_ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout))
		_, err := w.Write(buf.Bytes())
		buf.Reset()
		return err == nil && rc.Flush() == nil
	}
	ping := time.NewTicker(s.cfg.SSEPing)
	defer ping.Stop()
	for {
		for _, ev := range evs {
			name := "progress"
			if ev.final {
				name = "done"
			}
			fmt.Fprintf(&buf, "id: %d\nevent: %s\ndata: %s\n\n", ev.id, name, ev.data)
			after = ev.id
		}
		if buf.Len() > 0 {
			if !send() {
				return
			}
			ping.Reset(s.cfg.SSEPing)
		}
		if state != logOpen {
			return // done was sent, or nothing more will come: the client reconnects
		}
		select {
		case <-changed:
			evs, changed, state = s.events.since(l, after)
		case <-ping.C:
			evs = nil
			buf.WriteString(": ping\n\n")
		case <-r.Context().Done():
			return
		case <-s.streams.Done():
			return
		}
	}
}
