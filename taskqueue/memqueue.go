package taskqueue

import "slices"

// The MemoryStore's queues: a FIFO of due tasks and a heap of delayed ones.

// deque is a FIFO of tasks over a slice with a moving head.
type deque struct {
	buf  []*memTask
	head int
}

func (d *deque) len() int          { return len(d.buf) - d.head }
func (d *deque) front() *memTask   { return d.buf[d.head] }
func (d *deque) at(i int) *memTask { return d.buf[d.head+i] }
func (d *deque) push(mt *memTask)  { d.buf = append(d.buf, mt) }
func (d *deque) removeAt(i int)    { d.buf = slices.Delete(d.buf, d.head+i, d.head+i+1) }
func (d *deque) popFront() {
	d.buf[d.head] = nil
	d.head++
	if d.head == len(d.buf) {
		d.buf, d.head = d.buf[:0], 0
	} else if d.head >= 1024 && d.head > len(d.buf)/2 {
		n := copy(d.buf, d.buf[d.head:])
		clear(d.buf[n:])
		d.buf, d.head = d.buf[:n], 0
	}
}

// compact keeps only the entries keep accepts.
func (d *deque) compact(keep func(*memTask) bool) {
	n := 0
	for _, mt := range d.buf[d.head:] {
		if keep(mt) {
			d.buf[n] = mt
			n++
		}
	}
	clear(d.buf[n:])
	d.buf, d.head = d.buf[:n], 0
}

// fit gives back a backing array far larger than its contents.
func (d *deque) fit() {
	if cap(d.buf) > 1024 && d.len() < cap(d.buf)/4 {
		d.buf, d.head = slices.Clone(d.buf[d.head:]), 0
	}
}

// delayHeap orders pending tasks by RunAt, then by insertion.
type delayHeap []*memTask

func (h delayHeap) Len() int { return len(h) }
func (h delayHeap) Less(i, j int) bool {
	if c := h[i].RunAt.Compare(h[j].RunAt); c != 0 {
		return c < 0
	}
	return h[i].seq < h[j].seq
}
func (h delayHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *delayHeap) Push(x any) {
	mt := x.(*memTask)
	mt.index = len(*h)
	*h = append(*h, mt)
}
func (h *delayHeap) Pop() any {
	old := *h
	mt := old[len(old)-1]
	old[len(old)-1] = nil
	mt.index = -1
	*h = old[:len(old)-1]
	return mt
}
