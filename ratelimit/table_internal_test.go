package ratelimit

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

type testState struct{ v int }

func (s *testState) idle(int64) bool { return false }
func (s *testState) reset(int64)     { s.v = 0 }

// TestTableIndexMatchesAMap drives one shard's open-addressing index through
// random inserts, lookups and deletions (including evictions at the cap)
// and checks it against a Go map after every step.
func TestTableIndexMatchesAMap(t *testing.T) {
	t.Parallel()
	for _, seed := range []uint64{1, 2, 3} {
		t.Run("seed "+strconv.FormatUint(seed, 10), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, seed))
			const maxKeys = 300
			tb := newTable[testState](Options{MaxKeys: maxKeys, Shards: 1}, 0)
			sh := &tb.shards[0]
			model := map[string]int{}
			for step := range 20_000 {
				key := "k" + strconv.Itoa(r.IntN(600))
				_, h := tb.shard(key)
				_, had := model[key]
				mayEvict := 0
				op := r.IntN(3)
				if op == 0 && !had && len(model) == maxKeys {
					mayEvict = 1 // a new key at the cap evicts exactly one
				}
				switch op {
				case 0: // get or create, and write a value
					st := tb.get(sh, h, key, 0)
					if v, ok := model[key]; ok && st.v != v {
						t.Fatalf("step %d: %s holds %d, want %d", step, key, st.v, v)
					}
					st.v = step + 1
					model[key] = step + 1
				case 1: // drop
					if n := sh.find(h, key); n != nil {
						tb.remove(sh, n)
					}
					delete(model, key)
				case 2: // lookup
					st := tb.lookup(sh, h, key)
					v, ok := model[key]
					if (st != nil) != ok || (ok && st.v != v) {
						t.Fatalf("step %d: lookup %s = %v, model has %d (%v)", step, key, st, v, ok)
					}
				}
				// An eviction removes a key the model still has; no other
				// key may go missing.
				lost := 0
				for k := range model {
					if _, h := tb.shard(k); sh.find(h, k) == nil {
						delete(model, k)
						lost++
					}
				}
				if lost != mayEvict {
					t.Fatalf("step %d: %d keys went missing, want %d", step, lost, mayEvict)
				}
				if sh.n != len(model) || int(tb.count.Load()) != len(model) || sh.n > maxKeys {
					t.Fatalf("step %d: index holds %d, count %d, model %d", step, sh.n, tb.count.Load(), len(model))
				}
			}
			// Every node on the list is found through the index.
			listed := 0
			for n := sh.head.next; n != &sh.head; n = n.next {
				listed++
				if sh.find(n.hash, n.key()) != n {
					t.Fatalf("%s is listed but not indexed", n.key())
				}
			}
			if listed != sh.n {
				t.Fatalf("list holds %d, index %d", listed, sh.n)
			}
		})
	}
}
