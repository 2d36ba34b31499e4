package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/mail"
	"reflect"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/asynckit/asynckit/fanout"
	"github.com/asynckit/asynckit/pagination"
	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/pgstore"
)

// The kinds of task the server runs. Only demo and emails may be submitted
// through POST /tasks; file tasks come from POST /files, and callback tasks
// from file tasks that end.
const (
	kindDemo     = "demo"
	kindEmails   = "emails"
	kindFile     = "file"
	kindCallback = "callback"
)

// taskKinds are the kinds GET /tasks may filter on.
var taskKinds = []string{kindDemo, kindEmails, kindFile, kindCallback}

// Bounds of the task runner and of the tasks' payloads.
const (
	// taskRetention is how long a finished task stays visible.
	taskRetention = time.Hour
	// taskMaxAttempts is how many attempts a task gets unless its kind
	// says otherwise.
	taskMaxAttempts = 3
	// maxDemoSteps and maxDemoStepMS bound a demo task to under two hours.
	maxDemoSteps, maxDemoStepMS = 100, 60_000
	// maxEmails and maxTemplate bound an emails task.
	maxEmails, maxTemplate = 1000, 10_000
	// emailConcurrency is how many sends of one emails task run at once.
	emailConcurrency = 8
	// emailSendTimeout bounds one send.
	emailSendTimeout = 2 * time.Second
	// statsTimeout bounds the read of the task counts for /metrics.
	statsTimeout = 2 * time.Second
)

// newTasks makes the task runner with its handlers, the event hub that
// follows tasks for event streams, and the store of uploaded files.
// Nothing runs until start.
//
// With SQLite, tasks live in this process's memory: they end with it.
// With Postgres, they live in the same database, in taskqueue/pgstore's
// tables under TASKS_SCHEMA, and every instance on it shares one queue:
// any instance claims any task, answers for it (GET, list, events) and
// cancels it (a cancel reaches the instance running the task at once, by
// NOTIFY), and a task whose instance dies runs again elsewhere once its
// lease (TASK_LEASE) has lapsed. The Runner re-reads the tasks it follows
// every TASK_POLL, so an event stream on one instance sees what another
// did to its task.
func (s *server) newTasks(ctx context.Context) error {
	var err error
	s.callbacks = newCallbackClient(s.cfg.CallbackPrivate)
	opts := taskqueue.Options{
		Workers:     s.cfg.Workers,
		QueueSize:   s.cfg.QueueSize,
		Retention:   taskRetention,
		MaxAttempts: taskMaxAttempts,
		Backoff:     taskqueue.ExponentialBackoff(s.cfg.TaskRetryBase, maxTaskRetry),
		Logger:      s.log,
		OnFinish:    s.taskFinished,
	}
	if s.store.dialect == "postgres" {
		if err := pgstore.Migrate(ctx, s.store.db, s.cfg.TasksSchema); err != nil {
			return fmt.Errorf("task queue: %w", err)
		}
		if s.taskStore, err = pgstore.New(s.store.db, pgstore.Options{Schema: s.cfg.TasksSchema, Lease: s.cfg.TaskLease, Logger: s.log}); err != nil {
			return fmt.Errorf("task queue: %w", err)
		}
		opts.Store, opts.QueueSize, opts.PollInterval = s.taskStore, 0, s.cfg.TaskPoll
		s.tasksWhere = "postgres schema " + s.cfg.TasksSchema
	}
	if s.tasks, err = taskqueue.New(opts); err != nil {
		return fmt.Errorf("task runner: %w", err)
	}
	for _, err := range []error{
		taskqueue.Handle(s.tasks, kindDemo, traceTask(s.trace, kindDemo, runDemo)),
		taskqueue.Handle(s.tasks, kindEmails, traceTask(s.trace, kindEmails, runEmails)),
		taskqueue.Handle(s.tasks, kindFile, traceTask(s.trace, kindFile, s.runFile)),
		taskqueue.Handle(s.tasks, kindCallback, traceTask(s.trace, kindCallback, s.runCallback)),
	} {
		if err != nil {
			return fmt.Errorf("task runner: %w", err)
		}
	}
	if s.files, err = s.newFileStore(ctx); err != nil {
		return err
	}
	s.events = newEventHub(s.tasks, s.log, s.taskStore != nil)
	return nil
}

// shutdownTasks stops the task runner: intake stops, running tasks may
// finish until ctx ends and are then interrupted, and with Postgres the
// store's listener and rescuer stop. Tasks left pending are expected at a
// shutdown (the in-memory queue ends with the process; in Postgres they
// wait for another instance), so they are logged, not returned as an
// error.
func (s *server) shutdownTasks(ctx context.Context) error {
	err := s.tasks.Shutdown(ctx)
	if s.taskStore != nil {
		if cerr := s.taskStore.Close(); cerr != nil {
			return fmt.Errorf("stop task store: %w", cerr)
		}
	}
	var left *taskqueue.ShutdownError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &left):
		s.log.Warn("tasks left unfinished at shutdown", "pending", left.Pending, "interrupted", left.Interrupted)
		return nil
	}
	return fmt.Errorf("stop tasks: %w", err)
}

// taskFinished is the runner's OnFinish: a file task that ends, however
// it ends, gives its file back and has its callback sent.
func (s *server) taskFinished(info taskqueue.Info) {
	if info.Kind == kindFile {
		s.fileFinished(info)
	}
}

// demoPayload is the payload of a demo task.
type demoPayload struct {
	Steps  int `json:"steps,omitempty" doc:"How many steps, 1 to 100. Defaults to 5." min:"1" max:"100" example:"5"`
	StepMS int `json:"step_ms,omitempty" doc:"How long each step takes, in milliseconds, 0 to 60000. Defaults to 2000." min:"0" max:"60000" example:"2000"`
}

// demoResult is the result of a demo task.
type demoResult struct {
	Processed bool     `json:"processed" doc:"Always true"`
	Data      demoData `json:"data"`
}

// demoData is what a demo task did.
type demoData struct {
	Steps int `json:"steps" doc:"How many steps ran"`
}

// runDemo is the handler of demo tasks: a long-running task that reports
// its progress after each step and stops as soon as it is cancelled.
func runDemo(ctx context.Context, job *taskqueue.Job, p demoPayload) (demoResult, error) {
	if p.Steps < 1 || p.Steps > maxDemoSteps || p.StepMS < 0 || p.StepMS > maxDemoStepMS {
		return demoResult{}, taskqueue.Permanent(fmt.Errorf("payload out of range: %+v", p))
	}
	step := time.Duration(p.StepMS) * time.Millisecond
	for i := 1; i <= p.Steps; i++ {
		if err := sleep(ctx, step); err != nil {
			return demoResult{}, err
		}
		_ = job.Progress(i*100/p.Steps, fmt.Sprintf("step %d of %d", i, p.Steps))
	}
	return demoResult{Processed: true, Data: demoData{Steps: p.Steps}}, nil
}

// sleep waits for d, or returns the cause of ctx's end if that comes first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// emailAddress is an address an emails task sends to.
type emailAddress string

func (emailAddress) openAPISchema(*schemaGen) *schema {
	return &schema{Type: "string", Format: "email", MaxLength: ptr(254), Example: "ada@example.com"}
}

// emailsPayload is the payload of an emails task.
type emailsPayload struct {
	Emails   []emailAddress `json:"emails" doc:"The addresses to send to, 1 to 1000; addresses in the reserved .invalid domain (RFC 2606) always fail" minItems:"1" maxItems:"1000"`
	Template string         `json:"template" doc:"The message, 1 to 10000 characters" minLength:"1" maxLength:"10000" example:"Hello!"`
}

// validate returns what is wrong with p, naming fields under prefix.
func (p *emailsPayload) validate(prefix string) []fieldError {
	var errs []fieldError
	if len(p.Emails) < 1 || len(p.Emails) > maxEmails {
		errs = append(errs, fieldError{Field: prefix + "emails", Message: fmt.Sprintf("must hold 1 to %d addresses", maxEmails)})
	}
	for i, e := range p.Emails {
		if !validEmail(string(e)) {
			errs = append(errs, fieldError{Field: fmt.Sprintf("%semails.%d", prefix, i), Message: "must be an email address such as ada@example.com, at most 254 bytes"})
		}
	}
	if n := utf8.RuneCountInString(p.Template); n < 1 || n > maxTemplate || !utf8.ValidString(p.Template) {
		errs = append(errs, fieldError{Field: prefix + "template", Message: fmt.Sprintf("must be 1 to %d characters", maxTemplate)})
	}
	return errs
}

// validEmail reports whether e is a bare address, as users.go accepts them
// (in any case).
func validEmail(e string) bool {
	addr, err := mail.ParseAddress(e)
	return err == nil && addr.Address == e && len(e) <= 254 && strings.Contains(e, "@")
}

// emailsResult is the result of an emails task. A send that fails is
// recorded here; the task itself succeeds.
type emailsResult struct {
	Sent   int            `json:"sent" doc:"How many sends succeeded"`
	Failed []emailFailure `json:"failed" doc:"The sends that failed, in the payload's order"`
}

// emailFailure is one send that failed.
type emailFailure struct {
	Email string `json:"email"`
	Error string `json:"error"`
}

// runEmails is the handler of emails tasks: it sends to every address,
// eight at a time, each send under its own deadline, and reports progress
// as sends complete. A send that fails is recorded in the result; only a
// cancelled or interrupted task fails, so that it is not reported as sent.
func runEmails(ctx context.Context, job *taskqueue.Job, p emailsPayload) (emailsResult, error) {
	if errs := p.validate(""); len(errs) > 0 {
		return emailsResult{}, taskqueue.Permanent(fmt.Errorf("invalid payload: %s: %s", errs[0].Field, errs[0].Message))
	}
	var (
		mu   sync.Mutex // keeps the reported percentages in order
		done int
	)
	results := fanout.Settle(ctx, p.Emails, func(ctx context.Context, to emailAddress) (struct{}, error) {
		err := sendEmail(ctx, string(to), p.Template)
		mu.Lock()
		done++
		_ = job.Progress(done*100/len(p.Emails), fmt.Sprintf("%d of %d sent", done, len(p.Emails)))
		mu.Unlock()
		return struct{}{}, err
	}, fanout.Limit(emailConcurrency), fanout.Timeout(emailSendTimeout))
	if ctx.Err() != nil {
		return emailsResult{}, context.Cause(ctx)
	}
	out := emailsResult{Failed: []emailFailure{}}
	for i, r := range results {
		if r.Err != nil {
			out.Failed = append(out.Failed, emailFailure{Email: string(p.Emails[i]), Error: r.Err.Error()})
			continue
		}
		out.Sent++
	}
	return out, nil
}

// sendEmail stands in for a mail server's round trip: it takes 10 to 20 ms
// (the same for the same address) and fails for a domain under .invalid,
// which RFC 2606 reserves for names that never resolve.
func sendEmail(ctx context.Context, to, _ string) error {
	h := fnv.New32a()
	_, _ = h.Write([]byte(to))
	if err := sleep(ctx, time.Duration(10+h.Sum32()%11)*time.Millisecond); err != nil {
		return err
	}
	_, domain, _ := strings.Cut(to, "@")
	if d := strings.ToLower(domain); d == "invalid" || strings.HasSuffix(d, ".invalid") {
		return fmt.Errorf("no mail server for %s: the .invalid domain never resolves", domain)
	}
	return nil
}

// taskSubmission is the body of POST /tasks.
type taskSubmission struct {
	Kind    string          `json:"kind"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// The two shapes of a task submission, for the document.
type (
	demoSubmission struct {
		Kind    string       `json:"kind" enum:"demo" doc:"A long-running task that reports progress after each step"`
		Payload *demoPayload `json:"payload,omitempty" doc:"Omit it, or any of its fields, for the defaults"`
	}
	emailsSubmission struct {
		Kind    string        `json:"kind" enum:"emails" doc:"Sends a message to each address, eight at a time"`
		Payload emailsPayload `json:"payload"`
	}
)

func (taskSubmission) openAPISchema(g *schemaGen) *schema {
	d, e := g.of(reflect.TypeFor[demoSubmission]()), g.of(reflect.TypeFor[emailsSubmission]())
	return &schema{OneOf: []*schema{d, e}, Discriminator: &discriminator{PropertyName: "kind",
		Mapping: map[string]string{kindDemo: d.Ref, kindEmails: e.Ref}}}
}

// payload checks the submission's payload for its kind and returns it
// with the defaults filled in, or a validation problem naming the fields.
func (in *taskSubmission) payload() (any, error) {
	switch in.Kind {
	case kindDemo:
		p := demoPayload{Steps: 5, StepMS: 2000}
		if err := decodePayload(in.Payload, &p); err != nil {
			return nil, err
		}
		var errs []fieldError
		if p.Steps < 1 || p.Steps > maxDemoSteps {
			errs = append(errs, fieldError{Field: "payload.steps", Message: fmt.Sprintf("must be from 1 to %d", maxDemoSteps)})
		}
		if p.StepMS < 0 || p.StepMS > maxDemoStepMS {
			errs = append(errs, fieldError{Field: "payload.step_ms", Message: fmt.Sprintf("must be from 0 to %d", maxDemoStepMS)})
		}
		if len(errs) > 0 {
			return nil, invalid(errs...)
		}
		return p, nil
	case kindEmails:
		if len(in.Payload) == 0 || string(in.Payload) == "null" {
			return nil, invalid(fieldError{Field: "payload", Message: "is required for emails tasks"})
		}
		var p emailsPayload
		if err := decodePayload(in.Payload, &p); err != nil {
			return nil, err
		}
		if errs := p.validate("payload."); len(errs) > 0 {
			return nil, invalid(errs...)
		}
		return p, nil
	}
	return nil, invalid(fieldError{Field: "kind", Message: fmt.Sprintf("must be %q or %q, not %q", kindDemo, kindEmails, in.Kind)})
}

// decodePayload decodes raw strictly into dst, leaving dst as it is when
// raw is absent or null. Whatever is wrong is a validation problem whose
// fields are named under payload.
func decodePayload(raw json.RawMessage, dst any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	err := decodeStrict(raw, dst)
	if err == nil {
		return nil
	}
	var p *problem
	if !errors.As(err, &p) || len(p.Errors) == 0 {
		msg := err.Error()
		if p != nil {
			msg = p.Detail
		}
		return invalid(fieldError{Field: "payload", Message: msg})
	}
	errs := make([]fieldError, len(p.Errors))
	for i, e := range p.Errors {
		errs[i] = e
		errs[i].Field = "payload." + e.Field
	}
	return invalid(errs...)
}

// taskParam is the path parameter of the routes of one task.
var taskParam = param{Name: "id", In: "path", Required: true,
	Description: "The task's id, as POST /tasks or POST /files gave it (26 characters)",
	Schema:      &schema{Type: "string"}}

func (s *server) taskRoutes(a *api) {
	handleJSON(a, op{Pattern: "POST /tasks", ID: "submitTask", Tag: "tasks", Summary: "Submit a background task",
		Description: "Answers at once with the task, pending; follow it with GET /tasks/{id} or its event stream, GET /tasks/{id}/events. " +
			"Kinds: demo, a long-running task (payload steps and step_ms; result {\"processed\": true, \"data\": {\"steps\": n}}), " +
			"and emails, which sends a template to each address (result {\"sent\": n, \"failed\": [{\"email\", \"error\"}]}: a failed send is recorded, and the task still succeeds). " +
			"A task is tried up to 3 times, with exponential backoff between attempts. " +
			"An unknown kind or a bad payload is a 400 listing the fields; a full queue is a 503 with Retry-After.",
		Problems: []kind{probValidation, probQueueFull, probUnavailable}},
		http.StatusAccepted, s.submitTask)
	handleJSON(a, op{Pattern: "GET /tasks", ID: "listTasks", Tag: "tasks", Summary: "List tasks, newest first",
		Description: "Keyset-paged, newest first, optionally only those in one status or of one kind. Finished tasks are listed for an hour after they finish. " +
			"A cursor works only with the filter it was made for.",
		Params: []param{
			{Name: "status", In: "query", Description: "Only tasks in this status", Schema: &schema{Type: "string", Enum: statusNames()}},
			{Name: "kind", In: "query", Description: "Only tasks of this kind", Schema: &schema{Type: "string", Enum: anySlice(taskKinds)}},
			limitParam, cursorParam,
		},
		Problems: []kind{probValidation, probInvalidCursor}},
		http.StatusOK, s.listTasks)
	handleJSON(a, op{Pattern: "GET /tasks/{id}", ID: "getTask", Tag: "tasks", Summary: "Get a task",
		Description: "Its status, progress, attempts, and once it has finished its result or error. A task is kept for an hour after it finishes, then it is a 404.",
		Params:      []param{taskParam}, Problems: []kind{probNotFound}},
		http.StatusOK, s.getTask)
	handleJSON(a, op{Pattern: "DELETE /tasks/{id}", ID: "cancelTask", Tag: "tasks", Summary: "Cancel a task",
		Description: "A pending task is canceled at once and never runs. A running task is asked to stop, and ends canceled when its handler returns: " +
			"the answer shows it as it is just after the request, which may still be running. A task that has already finished is a 409.",
		Params: []param{taskParam}, Problems: []kind{probNotFound, probTaskFinished}},
		http.StatusAccepted, s.cancelTask)
}

func (s *server) submitTask(c *call, in *taskSubmission) (taskqueue.Info, error) {
	p, err := in.payload()
	if err != nil {
		return taskqueue.Info{}, err
	}
	info, err := s.submit(c.ctx(), in.Kind, p)
	if err != nil {
		return taskqueue.Info{}, submitProblem(err)
	}
	s.followNew(info.ID)
	return info, nil
}

// followNew has the event hub follow a task just submitted, so that its
// event log holds the task's every state from the first, when tasks live
// in memory. With Postgres it does not: a followed task is re-read every
// TASK_POLL, which for every task in the queue would cost a query per task
// per poll; a task is followed from its first stream instead.
func (s *server) followNew(id string) {
	if s.taskStore == nil {
		_, _ = s.events.follow(id)
	}
}

// submitProblem turns the runner's refusals into problems.
func submitProblem(err error) error {
	switch {
	case errors.Is(err, taskqueue.ErrQueueFull):
		p := newProblem(probQueueFull, "the task queue is full; retry later")
		p.retryAfter = 2 * time.Second
		return p
	case errors.Is(err, taskqueue.ErrClosed):
		p := newProblem(probUnavailable, "the server is shutting down")
		p.retryAfter = time.Second
		return p
	}
	return err
}

func (s *server) getTask(c *call, _ *none) (taskqueue.Info, error) {
	id := c.PathValue("id")
	info, err := s.tasks.Get(c.ctx(), id)
	return info, taskProblem(err, id)
}

func (s *server) cancelTask(c *call, _ *none) (taskqueue.Info, error) {
	id := c.PathValue("id")
	if err := s.tasks.Cancel(c.ctx(), id); err != nil {
		if errors.Is(err, taskqueue.ErrFinished) {
			return taskqueue.Info{}, newProblem(probTaskFinished, "task %s has already finished", id)
		}
		return taskqueue.Info{}, taskProblem(err, id)
	}
	info, err := s.tasks.Get(c.ctx(), id)
	return info, taskProblem(err, id)
}

// taskProblem turns ErrNotFound into a 404 problem.
func taskProblem(err error, id string) error {
	if errors.Is(err, taskqueue.ErrNotFound) {
		return newProblem(probNotFound, "no task has id %q", id)
	}
	return err
}

// taskCursor is what a task listing's cursor holds: the runner's own
// cursor, signed and bound to the listing's filter by the server's codec.
type taskCursor struct {
	After string `json:"a"`
}

func (s *server) listTasks(c *call, _ *none) (pagination.Page[taskqueue.Info], error) {
	q := c.URL.Query()
	var (
		f    taskqueue.Filter
		errs []fieldError
	)
	if v := q.Get("status"); v != "" {
		st, err := taskqueue.ParseStatus(v)
		if err != nil {
			errs = append(errs, fieldError{Field: "status", Message: "must be pending, running, succeeded, failed or canceled"})
		}
		f.Status = st
	}
	if v := q.Get("kind"); v != "" {
		ok := false
		for _, k := range taskKinds {
			ok = ok || k == v
		}
		if !ok {
			errs = append(errs, fieldError{Field: "kind", Message: "must be " + strings.Join(taskKinds, ", ")})
		}
		f.Kind = v
	}
	limit, err := pagination.ParseLimit(q.Get("limit"), 20, 100)
	if err != nil {
		errs = append(errs, fieldError{Field: "limit", Message: "must be a whole number from 1"})
	}
	if len(errs) > 0 {
		return pagination.Page[taskqueue.Info]{}, invalid(errs...)
	}
	codec := s.cursors.Bind("tasks", "status="+q.Get("status"), "kind="+f.Kind)
	var after taskCursor
	if cur := q.Get("cursor"); cur != "" {
		if err := codec.Decode(cur, &after); err != nil {
			return pagination.Page[taskqueue.Info]{}, newProblem(probInvalidCursor, "%v", err)
		}
	}
	page, err := s.tasks.List(c.ctx(), f, after.After, limit)
	if errors.Is(err, taskqueue.ErrInvalidCursor) {
		return page, newProblem(probInvalidCursor, "%v", err)
	}
	if err != nil {
		return page, err
	}
	if page.NextCursor != "" {
		if page.NextCursor, err = codec.Encode(taskCursor{After: page.NextCursor}); err != nil {
			return page, err
		}
	}
	return page, nil
}

// statusNames returns the names of the task statuses, for the document.
func statusNames() []any {
	var out []any
	for st := taskqueue.StatusPending; st.Valid(); st++ {
		out = append(out, st.String())
	}
	return out
}

func anySlice[T any](s []T) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// documentTasks describes taskqueue.Info in the document: its fields, and
// its result as the result of one of the server's kinds of task.
func documentTasks(g *schemaGen) {
	g.of(reflect.TypeFor[taskqueue.Info]())
	info := g.components[g.names[reflect.TypeFor[taskqueue.Info]()]]
	docs := map[string]string{
		"id":           "The task's id: 26 characters, never reused",
		"kind":         "What the task does: demo, emails, file or callback",
		"status":       "Where the task is in its life: pending, running, then succeeded, failed or canceled. A retried task goes back to pending.",
		"progress":     "How far the task has got, as its handler last reported",
		"attempt":      "Attempts started so far: 1 while the first runs",
		"max_attempts": "How many attempts the task may have in all",
		"unique_key":   "For a file task, the id of its upload; not used by the other kinds",
		"error":        "The last attempt's error, once an attempt has failed",
		"created_at":   "When the task was submitted",
		"run_at":       "When the task is, or was, due to run next",
		"started_at":   "When the latest attempt started",
		"finished_at":  "When the task finished",
		"version":      "1 when submitted, one more with each change of the task; the same on every instance of the service, and the id of the task's events",
	}
	for name, d := range docs {
		if p := info.Properties[name]; p != nil {
			p.Description = d
		}
	}
	if p := info.Properties["attempt"]; p != nil {
		p.Minimum = ptr(0.0)
	}
	if p := info.Properties["version"]; p != nil {
		p.Minimum = ptr(1.0)
	}
	var results []*schema
	for _, t := range []reflect.Type{reflect.TypeFor[demoResult](), reflect.TypeFor[emailsResult](), reflect.TypeFor[fileResult](), reflect.TypeFor[callbackResult]()} {
		results = append(results, g.of(t))
	}
	info.Properties["result"] = &schema{OneOf: results,
		Description: "The result, once the task has succeeded: DemoResult, EmailsResult, FileResult or CallbackResult, as its kind says"}
	progress := g.components[g.names[reflect.TypeFor[taskqueue.Progress]()]]
	if p := progress.Properties["percent"]; p != nil {
		p.Minimum, p.Maximum = ptr(0.0), ptr(100.0)
	}
}
