package cache_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that every cache compared here, once closed, leaves no
// goroutine behind (golang-lru's expirable janitor, which cannot be
// stopped, only starts with a TTL, and these benchmarks set none).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
