package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHistogramBuckets checks the layout the error bound rests on: the
// buckets tile the values without gaps or overlaps, and none is wider
// than 1/128 of its lowest value (but the exact ones below 128).
func TestHistogramBuckets(t *testing.T) {
	t.Parallel()
	next := int64(0)
	for i := range numBuckets {
		low, width := bucketRange(i)
		require.Equal(t, next, low, "bucket %d starts where %d ended", i, i-1)
		require.Equal(t, i, bucketOf(low), "the lowest value of bucket %d", i)
		require.Equal(t, i, bucketOf(low+width-1), "the highest value of bucket %d", i)
		if i >= 1<<subBits {
			require.LessOrEqual(t, width*(1<<subBits), low, "bucket %d is too wide", i)
		}
		next = low + width // wraps past MaxInt64 at the very end
	}
	require.Equal(t, numBuckets-1, bucketOf(math.MaxInt64))
	require.Equal(t, int64(math.MinInt64), next, "the last bucket ends at MaxInt64")
}

// TestHistogramQuantiles compares the histogram's percentiles with the
// exact ones of the sorted samples, for distributions that spread over
// many octaves or sit in a few buckets: every one is within
// RelativeError of the sample of its rank, and max and mean are exact.
func TestHistogramQuantiles(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct {
		name   string
		sample func() time.Duration
	}{
		{"uniform between 1ms and 10ms", func() time.Duration { return time.Millisecond + time.Duration(rng.Int64N(int64(9*time.Millisecond))) }},
		{"exponential with mean 2ms", func() time.Duration { return time.Duration(rng.ExpFloat64() * 2e6) }},
		{"log-normal around 300µs, long tail", func() time.Duration { return time.Duration(math.Exp(rng.NormFloat64()*1.5) * 3e5) }},
		{"bimodal: 95% near 1ms, 5% near 800ms", func() time.Duration {
			if rng.IntN(100) < 5 {
				return 800*time.Millisecond + time.Duration(rng.Int64N(int64(50*time.Millisecond)))
			}
			return time.Millisecond + time.Duration(rng.Int64N(int64(100*time.Microsecond)))
		}},
		{"nanoseconds, each value its own bucket", func() time.Duration { return time.Duration(rng.Int64N(int64(time.Duration(100)))) }},
		{"hours", func() time.Duration { return time.Hour + time.Duration(rng.Int64N(int64(100*time.Hour))) }},
		{"one value", func() time.Duration { return 1234567 * time.Nanosecond }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHistogram()
			samples := make([]time.Duration, 100_000)
			var sum int64
			for i := range samples {
				samples[i] = tc.sample()
				sum += int64(samples[i])
				h.Record(samples[i])
			}
			slices.Sort(samples)
			for _, q := range []float64{0, 0.001, 0.25, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
				rank := max(int(math.Ceil(q*float64(len(samples)))), 1)
				want := samples[rank-1]
				got := h.Quantile(q)
				require.InDelta(t, float64(want), float64(got), float64(want)*RelativeError,
					"q=%v: %v, but the sample of rank %d is %v", q, got, rank, want)
			}
			require.Equal(t, samples[len(samples)-1], h.Max())
			require.Equal(t, samples[len(samples)-1], h.Quantile(1))
			require.Equal(t, samples[0], h.Quantile(0))
			require.Equal(t, time.Duration(sum/int64(len(samples))), h.Mean())
			require.EqualValues(t, len(samples), h.Count())
		})
	}
}

// TestHistogramEdges checks the empty histogram, negative samples and odd
// quantiles.
func TestHistogramEdges(t *testing.T) {
	t.Parallel()
	h := newHistogram()
	require.Zero(t, h.Quantile(0.5))
	require.Zero(t, h.Max())
	require.Zero(t, h.Mean())
	h.Record(-time.Second)
	h.Record(time.Second)
	require.Zero(t, h.Quantile(0.5), "a negative sample counts as 0")
	require.Zero(t, h.Quantile(math.NaN()))
	require.Equal(t, time.Second, h.Quantile(7))
}

// BenchmarkHistogramRecord measures the cost the histogram adds to every
// request, from as many goroutines as a run has workers.
func BenchmarkHistogramRecord(b *testing.B) {
	h := newHistogram()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			d = (d*7 + 12345) % (100 * time.Millisecond)
			h.Record(d)
		}
	})
}
