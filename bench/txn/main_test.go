package txn_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain checks that the database pools opened here are closed once
// their benchmark ends.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
