package ratelimit

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// table is the sharded, capped key → state map behind every in-memory
// limiter. Each shard is a mutex, an open-addressing index and an intrusive
// list in approximately least-recently-used order (second chance, see
// victim). The key is hashed once, with hash/maphash: the top bits pick the
// shard and the low bits the index slot. A hit costs that hash, one lock, a
// short linear probe comparing stored hashes before keys, and one flag
// write, and allocates nothing. A miss allocates at most one node, and none
// when it can recycle an evicted or idle key's.
//
// S is the per-key state; P its pointer type, which reports whether the
// state has gone idle (carries no information any more) at a given time,
// so that idle keys are dropped lazily as new ones arrive, with no
// background goroutine.
type table[S any, P state[S]] struct {
	seed   maphash.Seed
	shift  uint // 64 − log2(shards): h >> shift is the shard
	max    int64
	grace  int64        // how long a key must have been idle before it is dropped
	count  atomic.Int64 // keys held across all shards, never above max at rest
	shards []shard[S]
}

type shard[S any] struct {
	mu    sync.Mutex
	slots []entry[S] // power-of-two length, at most 3/4 full
	n     int
	head  node[S]  // sentinel: head.next is the most recently used
	_     [64]byte // keep neighbouring shards' locks off one cache line
}

type entry[S any] struct {
	hash uint64
	node *node[S] // nil: empty
}

type node[S any] struct {
	prev, next *node[S]
	key        string
	hash       uint64
	used       bool // used since it was last put at the warm end
	s          S
}

// state is what a per-key state type provides to the table.
type state[S any] interface {
	*S
	// idle reports whether the state carries no information at now: the
	// key would behave exactly like a fresh one.
	idle(now int64) bool
	// reset makes the state fresh for a new key at now, keeping any
	// buffers it owns.
	reset(now int64)
}

func newTable[S any, P state[S]](o Options, grace time.Duration) *table[S, P] {
	t := &table[S, P]{
		grace:  int64(grace),
		seed:   maphash.MakeSeed(),
		shift:  uint(64 - bits.TrailingZeros(uint(o.Shards))),
		max:    int64(o.MaxKeys),
		shards: make([]shard[S], o.Shards),
	}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.slots = make([]entry[S], 8)
		sh.head.next, sh.head.prev = &sh.head, &sh.head
	}
	return t
}

// shard returns the shard that owns key, and key's hash.
func (t *table[S, P]) shard(key string) (*shard[S], uint64) {
	h := maphash.String(t.seed, key)
	return &t.shards[h>>t.shift], h
}

// get returns key's state in sh, creating a zero state if it has none, and
// marks it used (see victim). h is key's hash. sh.mu must be held.
//
// Creating a key first drops up to two keys from the cold end of the
// shard's list that have been idle for at least the grace period (one
// Period of the limit: dropping a key the moment it goes idle would make a
// steady working set churn). Then, if the table holds MaxKeys keys, it
// drops this shard's least recently used key, or, if this shard is empty,
// another shard's (taken with TryLock, so no two shard locks are ever
// waited for together). If every other shard is busy at that instant, the
// new key's state is used for this one decision and not kept: the cap is
// never exceeded.
func (t *table[S, P]) get(sh *shard[S], h uint64, key string, now int64) *S {
	if n := sh.find(h, key); n != nil {
		n.used = true
		return &n.s
	}
	var n *node[S]
	for range 2 {
		old := sh.head.prev
		if old == &sh.head || !P(&old.s).idle(now-t.grace) {
			break
		}
		t.remove(sh, old)
		if n == nil {
			n = old
		}
	}
	if t.count.Add(1) > t.max {
		switch {
		case sh.head.prev != &sh.head:
			v := sh.victim()
			t.remove(sh, v)
			if n == nil {
				n = v
			}
		case !t.steal(sh):
			t.count.Add(-1)
			n = &node[S]{key: key}
			return &n.s // used once, never stored
		}
	}
	// Recycle a dropped node when there is one, so that a steady churn of
	// keys allocates nothing.
	if n == nil {
		n = &node[S]{}
	} else {
		P(&n.s).reset(now)
	}
	n.key, n.hash, n.used = key, h, false
	sh.insert(n)
	sh.pushFront(n)
	return &n.s
}

// steal drops the least recently used key of some shard other than own.
func (t *table[S, P]) steal(own *shard[S]) bool {
	for i := range t.shards {
		sh := &t.shards[i]
		if sh == own || !sh.mu.TryLock() {
			continue
		}
		if sh.head.prev != &sh.head {
			t.remove(sh, sh.victim())
			sh.mu.Unlock()
			return true
		}
		sh.mu.Unlock()
	}
	return false
}

// lookup returns key's state in sh without creating it or marking it
// used, or nil. sh.mu must be held.
func (t *table[S, P]) lookup(sh *shard[S], h uint64, key string) *S {
	if n := sh.find(h, key); n != nil {
		return &n.s
	}
	return nil
}

// len returns the number of keys held, locking each shard in turn.
func (t *table[S, P]) len() int {
	total := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		total += sh.n
		sh.mu.Unlock()
	}
	return total
}

// remove drops n from sh, which must be locked.
func (t *table[S, P]) remove(sh *shard[S], n *node[S]) {
	n.unlink()
	sh.delete(n)
	t.count.Add(-1)
}

// find returns the node for key, or nil: a linear probe from h's slot,
// comparing hashes first, up to the first empty slot.
func (sh *shard[S]) find(h uint64, key string) *node[S] {
	mask := uint64(len(sh.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &sh.slots[i]
		if s.node == nil {
			return nil
		}
		if s.hash == h && s.node.key == key {
			return s.node
		}
	}
}

// insert indexes n, which is not in sh, growing the index past 3/4 full.
func (sh *shard[S]) insert(n *node[S]) {
	if (sh.n+1)*4 > len(sh.slots)*3 {
		old := sh.slots
		sh.slots = make([]entry[S], 2*len(old))
		for _, s := range old {
			if s.node != nil {
				sh.place(s)
			}
		}
	}
	sh.place(entry[S]{hash: n.hash, node: n})
	sh.n++
}

func (sh *shard[S]) place(s entry[S]) {
	mask := uint64(len(sh.slots) - 1)
	i := s.hash & mask
	for sh.slots[i].node != nil {
		i = (i + 1) & mask
	}
	sh.slots[i] = s
}

// delete unindexes n, which is in sh, shifting later entries of its probe
// run back so that no tombstones are needed.
func (sh *shard[S]) delete(n *node[S]) {
	mask := uint64(len(sh.slots) - 1)
	i := n.hash & mask
	for sh.slots[i].node != n {
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; sh.slots[j].node != nil; j = (j + 1) & mask {
		// The entry at j may move to the hole at i only if its home slot
		// is not in the cyclic range (i, j].
		home := sh.slots[j].hash & mask
		if (j-home)&mask >= (j-i)&mask {
			sh.slots[i] = sh.slots[j]
			i = j
		}
	}
	sh.slots[i] = entry[S]{}
	sh.n--
}

// victim returns the key to evict from sh, which must be locked and not
// empty. It is the second-chance (CLOCK) approximation of least recently
// used: a hit only marks its node, so the hot path writes no list pointers,
// and a marked node reaching the cold end is unmarked and moved back to the
// warm end instead of being evicted. Each node is passed over at most once,
// so this is O(1) amortised.
func (sh *shard[S]) victim() *node[S] {
	for {
		n := sh.head.prev
		if !n.used || n.prev == &sh.head {
			return n
		}
		n.used = false
		n.unlink()
		sh.pushFront(n)
	}
}

func (sh *shard[S]) pushFront(n *node[S]) {
	n.prev = &sh.head
	n.next = sh.head.next
	n.next.prev = n
	sh.head.next = n
}

func (n *node[S]) unlink() {
	n.prev.next = n.next
	n.next.prev = n.prev
	n.prev, n.next = nil, nil
}
