package fanout_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every fan-out compared here leaves no goroutine
// behind once its benchmark ends (pond's long-lived pool is stopped in the
// benchmark's cleanup).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
