package taskqueue_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every queue compared here, with its pools,
// listeners and maintenance goroutines, is stopped once its benchmark ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
