package ratelimit

import (
	"hash/maphash"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// table is the sharded, capped key → state map behind every in-memory
// limiter. Each shard is a mutex, an open-addressing index and an intrusive
// list in approximately least-recently-used order (second chance, see
// victim). The key is hashed once, with hash/maphash: the top bits pick the
// shard and the low bits the index slot. A miss allocates at most one node,
// and none when it can recycle a dropped key's (the one it drops to make
// room, or one of the few each shard keeps on a free list).
//
// The index can be read without the lock (see probe): its slots are atomic
// and a grown index is published whole, and a node's key is a seqlock
// (seq) that a reader checks around what it reads. So a limiter whose
// per-key state is itself atomic (a [sharedState], such as GCRA's) finds a
// known key, marks it used and updates it without taking any lock: the
// hash, a short probe comparing stored hashes before keys, at most one
// flag write (none for a key already marked) and its own compare-and-swap.
// A dropped shared state is first made dead, so that a reader still
// holding it fails and looks the key up again under the lock; its node is
// recycled only if the state can start afresh above every value it held
// (see sharedState), so a stale compare-and-swap can never succeed on the
// node's next key. The other limiters lock the shard and use get, and
// their hit costs the same probe and one lock.
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
	shared bool         // P is a sharedState: nodes are read without the lock
	count  atomic.Int64 // keys held across all shards, never above max at rest
	shards []shard[S]
}

type shard[S any] struct {
	idx atomic.Pointer[index[S]]
	_   [56]byte // lock-free readers load idx: keep the lock's writes off its line
	mu  sync.Mutex
	n   int
	// free holds up to maxFree dropped nodes (linked through next) for
	// later keys, so that a churn which drops two keys for every one it
	// creates, or evicts a key it cannot reuse at once, allocates nothing.
	free  *node[S]
	nfree int
	// head is the list's sentinel: head.next is the most recently inserted
	// or second-chanced node.
	head node[S]
	_    [64]byte // keep neighbouring shards' locks off one cache line
}

// index is one shard's open-addressing table, replaced whole when it
// grows. Its slots are written under the shard lock and read with or
// without it.
type index[S any] struct {
	slots []entry[S] // power-of-two length, at most 3/4 full
	mask  uint64
}

// entry is one index slot. A writer stores hash before node; a lock-free
// reader loads node, then hash, and confirms a match against the node's
// own (immutable) hash and key, so a torn pair can only cost it a miss.
type entry[S any] struct {
	hash atomic.Uint64
	node atomic.Pointer[node[S]] // nil: empty
}

type node[S any] struct {
	// seq is odd while the node's key and state are being replaced under
	// the lock; a lock-free reader trusts what it read between two equal,
	// even loads of seq.
	seq  atomic.Uint64
	kptr atomic.Pointer[byte] // the key's bytes (unsafe.StringData)
	klen atomic.Int64         // and length
	hash uint64               // guarded by the shard lock; readers use entry.hash
	// used is the CLOCK reference bit: set by a hit since the node was
	// last put at the warm end. Hits set it only when it is clear, so a hot
	// key's hit writes nothing.
	used       atomic.Bool
	s          S
	prev, next *node[S] // guarded by the shard lock
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

// sharedState is a state updated without the shard lock, by atomic
// operations on the state itself. The table makes a dropped shared state
// dead, so that an update racing with the drop fails and can be retried
// against the key's new state rather than being lost or counted twice.
type sharedState interface {
	// retire makes the state dead if it is idle at now, atomically with
	// that check, and reports whether it did.
	retire(now int64) bool
	// kill makes the state dead whatever it holds.
	kill()
	// reusable reports whether a dead state can be reset at now to a fresh
	// one whose every value differs from every value it held, so that a
	// compare-and-swap by a reader still holding an old value must fail.
	reusable(now int64) bool
}

func newTable[S any, P state[S]](o Options, grace time.Duration) *table[S, P] {
	_, shared := any(P(nil)).(sharedState)
	t := &table[S, P]{
		grace:  int64(grace),
		seed:   maphash.MakeSeed(),
		shift:  uint(64 - bits.TrailingZeros(uint(o.Shards))),
		max:    int64(o.MaxKeys),
		shared: shared,
		shards: make([]shard[S], o.Shards),
	}
	for i := range t.shards {
		sh := &t.shards[i]
		sh.idx.Store(newIndex[S](8))
		sh.head.next, sh.head.prev = &sh.head, &sh.head
	}
	return t
}

func newIndex[S any](size int) *index[S] {
	return &index[S]{slots: make([]entry[S], size), mask: uint64(size - 1)}
}

// shard returns the shard that owns key, and key's hash.
func (t *table[S, P]) shard(key string) (*shard[S], uint64) {
	h := maphash.String(t.seed, key)
	return &t.shards[h>>t.shift], h
}

// get returns key's state in sh, creating a zero state if it has none, and
// marks it used (see victim). h is key's hash. sh.mu must be held.
func (t *table[S, P]) get(sh *shard[S], h uint64, key string, now int64) *S {
	return &t.node(sh, h, key, now).s
}

// node returns key's node in sh, creating one with a zero state if it has
// none, and marks it used. sh.mu must be held.
//
// Creating a key first drops up to two keys from the cold end of the
// shard's list that have been idle for at least the grace period (one
// Period of the limit: dropping a key the moment it goes idle would make a
// steady working set churn). Then, if the table holds MaxKeys keys, it
// drops this shard's least recently used key, or, if this shard is empty,
// another shard's (taken with TryLock, so no two shard locks are ever
// waited for together). If every other shard is busy at that instant, the
// new key's node is used for this one decision and not kept: the cap is
// never exceeded.
func (t *table[S, P]) node(sh *shard[S], h uint64, key string, now int64) *node[S] {
	if n := sh.find(h, key); n != nil {
		n.mark()
		return n
	}
	var n *node[S]
	for range 2 {
		old := sh.head.prev
		if old == &sh.head || !t.retire(old, now-t.grace) {
			break
		}
		t.remove(sh, old)
		if n == nil {
			n = old
		} else {
			sh.keep(old)
		}
	}
	if t.count.Add(1) > t.max {
		switch {
		case sh.head.prev != &sh.head:
			v := sh.victim()
			t.evict(sh, v)
			if n == nil {
				n = v
			} else {
				sh.keep(v)
			}
		case !t.steal(sh):
			t.count.Add(-1)
			n = &node[S]{hash: h} // used once, never stored
			n.setKey(key)
			return n
		}
	}
	// Recycle a dropped node when that is safe, so that a steady churn of
	// keys allocates nothing.
	if n != nil && !t.reusable(n, now) {
		sh.keep(n)
		n = nil
	}
	if n == nil && sh.free != nil && t.reusable(sh.free, now) {
		n = sh.free
		sh.free, n.next = n.next, nil
		sh.nfree--
	}
	if n == nil {
		n = &node[S]{hash: h}
		n.setKey(key)
	} else {
		n.seq.Add(1)
		P(&n.s).reset(now)
		n.used.Store(false)
		n.hash = h
		n.setKey(key)
		n.seq.Add(1)
	}
	sh.insert(n)
	sh.pushFront(n)
	return n
}

// retire reports whether n's state is idle at now, and if so, for a
// shared state, makes it dead in the same atomic step.
func (t *table[S, P]) retire(n *node[S], now int64) bool {
	if t.shared {
		return any(P(&n.s)).(sharedState).retire(now)
	}
	return P(&n.s).idle(now)
}

// reusable reports whether n, dropped, may be given to a new key at now.
func (t *table[S, P]) reusable(n *node[S], now int64) bool {
	return !t.shared || any(P(&n.s)).(sharedState).reusable(now)
}

// maxFree bounds each shard's list of dropped nodes kept for reuse.
const maxFree = 4

// keep puts n, dropped from sh, on sh's free list if there is room; else
// the collector takes it. sh.mu must be held.
func (sh *shard[S]) keep(n *node[S]) {
	if sh.nfree < maxFree {
		n.next = sh.free
		sh.free = n
		sh.nfree++
	}
}

// evict drops n, which is in sh, whatever its state holds.
func (t *table[S, P]) evict(sh *shard[S], n *node[S]) {
	if t.shared {
		any(P(&n.s)).(sharedState).kill()
	}
	t.remove(sh, n)
}

// steal drops the least recently used key of some shard other than own.
func (t *table[S, P]) steal(own *shard[S]) bool {
	for i := range t.shards {
		sh := &t.shards[i]
		if sh == own || !sh.mu.TryLock() {
			continue
		}
		if sh.head.prev != &sh.head {
			v := sh.victim()
			t.evict(sh, v)
			sh.keep(v)
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

// remove drops n from sh, which must be locked. A shared state must be
// dead already (see retire and evict).
func (t *table[S, P]) remove(sh *shard[S], n *node[S]) {
	n.unlink()
	sh.delete(n)
	t.count.Add(-1)
}

// find returns the node for key, or nil. sh.mu must be held.
func (sh *shard[S]) find(h uint64, key string) *node[S] {
	n, _ := sh.probe(h, key)
	return n
}

// probe returns the node for key and the node's seq when it matched, or
// nil: a linear probe from h's slot, comparing hashes first, up to the
// first empty slot. It needs no lock, but without one it may miss a key
// that is being moved, added or recycled (the caller then looks again
// under the lock), and the node may have been dropped or recycled since:
// a caller that reads the node's state checks seq again afterwards.
func (sh *shard[S]) probe(h uint64, key string) (*node[S], uint64) {
	x := sh.idx.Load()
	for n, next := x.candidate(h, h); n != nil; n, next = x.candidate(h, next) {
		if seq, ok := n.holds(key); ok {
			return n, seq
		}
	}
	return nil, 0
}

// probeAt is probe that also returns the time since epoch, read after
// key's index slot and before its node, on purpose. Reading the monotonic
// clock waits for every load issued before it (the kernel orders its TSC
// read), so a cache miss before it is paid in full, and one after it
// overlaps the rest of the read. The node's lines are the likeliest
// misses: they are the largest part of the table, and another core may
// have written them. On a 2-core VM, reading the clock here rather than
// before the lookup made a parallel GCRA Allow about 15% faster, over
// 10,000 keys and over 1,000,000, and the locked limiters' about 10%;
// reading it after the node's key and before GCRA's TAT was as fast at
// 10,000 keys and 30% slower at 1,000,000.
func (sh *shard[S]) probeAt(h uint64, key string, epoch time.Time) (*node[S], uint64, int64) {
	x := sh.idx.Load()
	c, next := x.candidate(h, h)
	now := int64(time.Since(epoch))
	for ; c != nil; c, next = x.candidate(h, next) {
		if seq, ok := c.holds(key); ok {
			return c, seq, now
		}
	}
	return nil, 0, now
}

// getAt is get for a caller that has not read the time: it returns key's
// state in sh, created if need be and marked used, and the time since
// epoch, read as probeAt reads it. sh.mu must be held.
func (t *table[S, P]) getAt(sh *shard[S], h uint64, key string, epoch time.Time) (*S, int64) {
	n, _, now := sh.probeAt(h, key, epoch)
	if n != nil {
		n.mark()
		return &n.s, now
	}
	return t.get(sh, h, key, now), now
}

// candidate returns the first node at or after slot i (taken modulo the
// index's size) whose stored hash is h, and the slot after it; or nil at
// the first empty slot. It reads only the index, not the nodes: probe
// and probeAt check the candidate's key with holds.
func (x *index[S]) candidate(h, i uint64) (*node[S], uint64) {
	for i &= x.mask; ; i = (i + 1) & x.mask {
		e := &x.slots[i]
		n := e.node.Load()
		if n == nil {
			return nil, 0
		}
		if e.hash.Load() == h {
			return n, i + 1
		}
	}
}

// holds reports whether n's key is key, and n's seq at the time. It reads
// the key only between two equal, even loads of seq, so it never pairs one
// key's bytes with another's length; the bytes themselves never change.
func (n *node[S]) holds(key string) (uint64, bool) {
	seq := n.seq.Load()
	p, l := n.kptr.Load(), n.klen.Load()
	if seq&1 != 0 || n.seq.Load() != seq || int(l) != len(key) {
		return seq, false
	}
	return seq, unsafe.String(p, l) == key
}

// key returns n's key. sh.mu must be held, or n unpublished.
func (n *node[S]) key() string { return unsafe.String(n.kptr.Load(), n.klen.Load()) }

// setKey sets n's key. sh.mu must be held and, if n is published, n.seq
// odd.
func (n *node[S]) setKey(key string) {
	n.kptr.Store(unsafe.StringData(key))
	n.klen.Store(int64(len(key)))
}

// mark sets n's reference bit, writing only if it is clear.
func (n *node[S]) mark() {
	if !n.used.Load() {
		n.used.Store(true)
	}
}

// insert indexes n, which is not in sh, growing the index past 3/4 full.
// sh.mu must be held.
func (sh *shard[S]) insert(n *node[S]) {
	x := sh.idx.Load()
	if (sh.n+1)*4 > len(x.slots)*3 {
		old := x
		x = newIndex[S](2 * len(old.slots))
		for i := range old.slots {
			if m := old.slots[i].node.Load(); m != nil {
				x.place(m)
			}
		}
		sh.idx.Store(x)
	}
	x.place(n)
	sh.n++
}

func (x *index[S]) place(n *node[S]) {
	i := n.hash & x.mask
	for x.slots[i].node.Load() != nil {
		i = (i + 1) & x.mask
	}
	x.slots[i].hash.Store(n.hash)
	x.slots[i].node.Store(n)
}

// delete unindexes n, which is in sh, shifting later entries of its probe
// run back so that no tombstones are needed. sh.mu must be held. A
// lock-free reader probing meanwhile may miss an entry being shifted, or
// see one twice; it never finds a node under another key.
func (sh *shard[S]) delete(n *node[S]) {
	x := sh.idx.Load()
	mask := x.mask
	i := n.hash & mask
	for x.slots[i].node.Load() != n {
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; ; j = (j + 1) & mask {
		m := x.slots[j].node.Load()
		if m == nil {
			break
		}
		// The entry at j may move to the hole at i only if its home slot
		// is not in the cyclic range (i, j].
		home := m.hash & mask
		if (j-home)&mask >= (j-i)&mask {
			x.slots[i].hash.Store(m.hash)
			x.slots[i].node.Store(m)
			i = j
		}
	}
	x.slots[i].node.Store(nil)
	sh.n--
}

// victim returns the key to evict from sh, which must be locked and not
// empty. It is the second-chance (CLOCK) approximation of least recently
// used: a hit only marks its node, so the hot path writes no list pointers,
// and a marked node reaching the cold end is unmarked and moved back to the
// warm end instead of being evicted. Lock-free hits may mark nodes again
// behind it, so after passing over every node twice it takes the cold end
// whatever its mark: O(1) amortised, and O(keys in the shard) at worst.
func (sh *shard[S]) victim() *node[S] {
	for steps := 0; ; steps++ {
		n := sh.head.prev
		if !n.used.Load() || n.prev == &sh.head || steps >= 2*sh.n {
			return n
		}
		n.used.Store(false)
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
