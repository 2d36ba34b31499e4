package taskqueuetest_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/asynckit/asynckit/taskqueue"
	"github.com/asynckit/asynckit/taskqueue/taskqueuetest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMemoryStore(t *testing.T) {
	taskqueuetest.Run(t, func(t *testing.T) taskqueue.Store {
		s, err := taskqueue.NewMemoryStore(taskqueue.MemoryOptions{})
		require.NoError(t, err)
		return s
	})
}
