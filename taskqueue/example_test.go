package taskqueue_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/asynckit/asynckit/taskqueue"
)

// The long-running task of the service this package replaces: five steps,
// with the progress written after each, followed by a client that polls
// the task's status until it is done.
func Example_longRunningTask() {
	r, err := taskqueue.New(taskqueue.Options{Workers: 2, ProgressInterval: time.Millisecond})
	if err != nil {
		panic(err)
	}
	// work stands for the slow part of each step; the example feeds it so
	// that its output does not depend on timing.
	work := make(chan struct{})
	type report struct {
		Steps int `json:"steps"`
	}
	err = taskqueue.Handle(r, "long", func(ctx context.Context, job *taskqueue.Job, steps int) (report, error) {
		for i := 1; i <= steps; i++ {
			select {
			case <-work:
			case <-ctx.Done():
				return report{}, ctx.Err()
			}
			if err := job.Progress(i*100/steps, fmt.Sprintf("step %d of %d", i, steps)); err != nil {
				return report{}, err
			}
		}
		return report{Steps: steps}, nil
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		panic(err)
	}
	defer r.Shutdown(ctx)

	info, err := r.Submit(ctx, "long", 5)
	if err != nil {
		panic(err)
	}
	fmt.Println("submitted:", info.Status)

	// The client: poll GET /tasks/{id} until the task is finished.
	seen := -1
	for {
		info, err := r.Get(ctx, info.ID)
		if err != nil {
			panic(err)
		}
		p := info.Progress
		if info.Status.Terminal() {
			fmt.Printf("%s: %d%% %s, result %s\n", info.Status, p.Percent, p.Message, info.Result)
			break
		}
		if info.Status == taskqueue.StatusRunning && p.Percent != seen {
			fmt.Println(strings.TrimSpace(fmt.Sprintf("%s: %d%% %s", info.Status, p.Percent, p.Message)))
			seen = p.Percent
			work <- struct{}{} // the next step's work is done
		}
		time.Sleep(time.Millisecond)
	}
	// Output:
	// submitted: pending
	// running: 0%
	// running: 20% step 1 of 5
	// running: 40% step 2 of 5
	// running: 60% step 3 of 5
	// running: 80% step 4 of 5
	// succeeded: 100% step 5 of 5, result {"steps":5}
}

// File processing in the background with a notification when each file is
// done, whether it succeeded or failed, through Options.OnFinish.
func ExampleOptions_onFinish() {
	type file struct {
		Name string `json:"name"`
		Body string `json:"body"`
	}
	type summary struct {
		Lines int `json:"lines"`
		Words int `json:"words"`
	}
	notifications := make(chan string, 10)
	r, err := taskqueue.New(taskqueue.Options{
		Workers: 1,
		OnFinish: func(info taskqueue.Info) {
			// Keep it quick: hand the notification to whoever sends it.
			notifications <- fmt.Sprintf("notify: task %s %s %s%s", info.Kind, info.Status, info.Result, info.Error)
		},
	})
	if err != nil {
		panic(err)
	}
	err = taskqueue.Handle(r, "process-file", func(ctx context.Context, job *taskqueue.Job, f file) (summary, error) {
		if f.Body == "" {
			return summary{}, taskqueue.Permanent(errors.New(f.Name + " is empty"))
		}
		lines := strings.Split(f.Body, "\n")
		var s summary
		for i, line := range lines {
			s.Lines++
			s.Words += len(strings.Fields(line))
			_ = job.Progress((i+1)*100/len(lines), "counting") // cheap: coalesced
		}
		return s, nil
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		panic(err)
	}
	defer r.Shutdown(ctx)

	for _, f := range []file{
		{Name: "report.csv", Body: "a b c\nd e\nf"},
		{Name: "empty.csv"},
	} {
		if _, err := r.Submit(ctx, "process-file", f); err != nil {
			panic(err)
		}
	}
	fmt.Println(<-notifications)
	fmt.Println(<-notifications)
	// Output:
	// notify: task process-file succeeded {"lines":3,"words":6}
	// notify: task process-file failed empty.csv is empty
}

// Cancel stops a task: a pending one never runs, and a running one sees its
// ctx end and finishes canceled. Wait returns the final state.
func ExampleRunner_Cancel() {
	r, err := taskqueue.New(taskqueue.Options{Workers: 1})
	if err != nil {
		panic(err)
	}
	started := make(chan struct{})
	err = taskqueue.Handle(r, "sleep", func(ctx context.Context, job *taskqueue.Job, d time.Duration) (string, error) {
		close(started)
		select {
		case <-time.After(d):
			return "slept", nil
		case <-ctx.Done():
			return "", context.Cause(ctx)
		}
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		panic(err)
	}
	defer r.Shutdown(ctx)

	running, _ := r.Submit(ctx, "sleep", time.Hour)
	<-started
	queued, _ := r.Submit(ctx, "sleep", time.Hour) // waits for the only worker

	for _, id := range []string{queued.ID, running.ID} {
		if err := r.Cancel(ctx, id); err != nil {
			panic(err)
		}
		info, err := r.Wait(ctx, id)
		fmt.Println(info.Status, info.Attempt, err)
	}
	err = r.Cancel(ctx, running.ID)
	fmt.Println(errors.Is(err, taskqueue.ErrFinished))
	// Output:
	// canceled 0 <nil>
	// canceled 1 <nil>
	// true
}

// List pages through tasks newest first; the cursor of one page fetches
// the next.
func ExampleRunner_List() {
	r, err := taskqueue.New(taskqueue.Options{})
	if err != nil {
		panic(err)
	}
	err = taskqueue.Handle(r, "echo", func(ctx context.Context, job *taskqueue.Job, s string) (string, error) { return s, nil })
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	for _, s := range []string{"a", "b", "c", "d", "e"} {
		if _, err := r.Submit(ctx, "echo", s); err != nil {
			panic(err)
		}
	}
	cursor := ""
	for {
		page, err := r.List(ctx, taskqueue.Filter{Status: taskqueue.StatusPending}, cursor, 2)
		if err != nil {
			panic(err)
		}
		fmt.Println(len(page.Items), "tasks, more:", page.HasMore)
		if !page.HasMore {
			break
		}
		cursor = page.NextCursor
	}
	_, err = r.List(ctx, taskqueue.Filter{}, "forged", 2)
	fmt.Println(errors.Is(err, taskqueue.ErrInvalidCursor))
	err = r.Shutdown(ctx)
	var se *taskqueue.ShutdownError
	fmt.Println(errors.As(err, &se), se.Pending, "left pending")
	// Output:
	// 2 tasks, more: true
	// 2 tasks, more: true
	// 1 tasks, more: false
	// true
	// true 5 left pending
}

// Metadata carries what travels with a task without being its input, here
// a request id, from the code that submits the task to the handler that
// runs it, in whichever process claims it.
func ExampleMetadata() {
	r, err := taskqueue.New(taskqueue.Options{Workers: 1})
	if err != nil {
		panic(err)
	}
	err = taskqueue.Handle(r, "greet", func(ctx context.Context, job *taskqueue.Job, name string) (string, error) {
		return "hello " + name + " (request " + job.Metadata()["request_id"] + ")", nil
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := r.Start(ctx); err != nil {
		panic(err)
	}
	defer r.Shutdown(ctx)

	info, err := r.Submit(ctx, "greet", "ada", taskqueue.Metadata(map[string]string{"request_id": "req-42"}))
	if err != nil {
		panic(err)
	}
	info, _ = r.Wait(ctx, info.ID)
	fmt.Println(info.Status, string(info.Result))

	_, err = r.Submit(ctx, "greet", "bob", taskqueue.Metadata(map[string]string{"": "no key"}))
	fmt.Println(err)
	// Output:
	// succeeded "hello ada (request req-42)"
	// taskqueue: Metadata has an empty key
}
