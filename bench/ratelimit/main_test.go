package ratelimit_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every limiter and Redis client compared here leaves
// no goroutine behind once its benchmark ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
