//go:build race

package cache_test

// raceEnabled lets the largest tests run at a reduced size under -race,
// whose instrumented atomics make them several times slower.
const raceEnabled = true
