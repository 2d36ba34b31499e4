package taskqueuetest_test

import (
	"testing"

	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/taskqueuetest"
)

// A store's own test file runs the whole suite against it, with a fresh,
// empty store for each behaviour. Here the store is the in-memory one.
func ExampleRun() {
	testMemoryStore := func(t *testing.T) {
		taskqueuetest.Run(t, func(t *testing.T) taskqueue.Store {
			s, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
			if err != nil {
				t.Fatal(err)
			}
			return s
		})
	}
	_ = testMemoryStore // in a _test.go file: func TestMemoryStore(t *testing.T) { … }
}
