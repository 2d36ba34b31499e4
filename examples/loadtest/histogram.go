package main

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// subBits sets the histogram's precision: every power-of-two range of
// values is split into 1<<subBits buckets of equal width.
const subBits = 7

// numBuckets covers every non-negative int64: values below 1<<subBits
// have a bucket each, and each of the 64-subBits-1 octaves above has
// 1<<subBits.
const numBuckets = (64 - subBits) << subBits

// RelativeError bounds how far a value that histogram reports lies from
// the sample it stands for: at most this fraction of it, 1/256 (0.39%).
const RelativeError = 1.0 / (2 << subBits)

// histogram counts durations, in nanoseconds, in log-spaced buckets, the
// layout of HdrHistogram: values below 128ns have a bucket each, and each
// range [2^k, 2^(k+1)) above is cut into 128 buckets of width 2^(k-7).
// A bucket is never wider than 1/128 of its lower bound, so the middle of
// the bucket that holds a sample is within [RelativeError] of it. Memory
// is fixed (numBuckets counters, 58 KiB) however many samples are
// recorded and however large they are.
//
// Every method is safe for concurrent use. Record is a few atomic adds
// and never allocates; the quantiles read while samples are being
// recorded are those of some moment during the read.
type histogram struct {
	counts [numBuckets]atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Int64 // nanoseconds; overflows after 292 years of latency
	min    atomic.Int64 // math.MaxInt64 until the first sample
	max    atomic.Int64
}

func newHistogram() *histogram {
	h := &histogram{}
	h.min.Store(math.MaxInt64)
	return h
}

// bucketOf returns the index of the bucket that holds v >= 0.
func bucketOf(v int64) int {
	u := uint64(v)
	if u < 1<<subBits {
		return int(u)
	}
	shift := bits.Len64(u) - subBits - 1 // keep the top subBits+1 bits
	return shift<<subBits + int(u>>shift)
}

// bucketRange returns the lowest value of bucket i and its width.
func bucketRange(i int) (low, width int64) {
	if i < 1<<subBits {
		return int64(i), 1
	}
	shift := i>>subBits - 1
	top := int64(i&(1<<subBits-1) | 1<<subBits)
	return top << shift, 1 << shift
}

// Record adds one sample. A negative d counts as 0.
func (h *histogram) Record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(v)].Add(1)
	h.total.Add(1)
	h.sum.Add(v)
	for m := h.min.Load(); v < m && !h.min.CompareAndSwap(m, v); m = h.min.Load() {
	}
	for m := h.max.Load(); v > m && !h.max.CompareAndSwap(m, v); m = h.max.Load() {
	}
}

// Count returns how many samples were recorded.
func (h *histogram) Count() uint64 { return h.total.Load() }

// Max returns the largest sample, exactly, or 0 without samples.
func (h *histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean returns the mean of the samples, exactly, or 0 without samples.
func (h *histogram) Mean() time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / int64(n))
}

// Quantile returns the sample of rank ⌈q·n⌉ among the n recorded in
// increasing order (the smallest sample that at least a fraction q of them
// do not exceed), within [RelativeError]: the middle of the bucket that
// holds it, kept within the smallest and largest samples, which the
// lowest and highest ranks return exactly. q is clamped to [0, 1]; without
// samples the result is 0.
func (h *histogram) Quantile(q float64) time.Duration {
	var n uint64
	for i := range h.counts {
		n += h.counts[i].Load()
	}
	if n == 0 {
		return 0
	}
	if !(q >= 0) { // NaN too
		q = 0
	}
	q = min(q, 1)
	rank := uint64(math.Ceil(q * float64(n)))
	rank = min(max(rank, 1), n)
	switch rank {
	case 1:
		return time.Duration(h.min.Load())
	case n:
		return h.Max()
	}
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			low, width := bucketRange(i)
			v := low + width/2
			return time.Duration(min(max(v, h.min.Load()), h.max.Load()))
		}
	}
	return h.Max() // counts grew during the walk
}
