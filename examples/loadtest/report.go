package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"
)

// report is what a run measured, as -json writes it. Durations are in
// milliseconds.
type report struct {
	URLs        []string `json:"urls"`
	Method      string   `json:"method"`
	Loop        string   `json:"loop"` // "closed" or "open"
	Sequence    bool     `json:"sequence,omitempty"`
	Connections int      `json:"connections"`
	Rate        float64  `json:"rate,omitempty"`     // open loop: requests due per second
	MaxRate     int      `json:"max_rate,omitempty"` // closed loop: the cap, if any
	ElapsedS    float64  `json:"elapsed_s"`
	Interrupted bool     `json:"interrupted,omitempty"` // stopped by a signal

	Answered   int64            `json:"answered"`          // requests (or iterations) with an answer
	Throughput float64          `json:"throughput_per_s"`  // answered per second
	Status     map[string]int64 `json:"status"`            // answered, by status code
	FirstOf    map[string]int64 `json:"first_of_status"`   // the lowest request number (from 1, in the order sent) that got each status
	Failed     int64            `json:"failed"`            // no answer: timeouts, connection errors
	Errors     []errorCount     `json:"errors,omitempty"`  // the failures by kind
	Canceled   int64            `json:"canceled"`          // in flight when the run stopped
	Late       int64            `json:"late,omitempty"`    // open loop: sent more than 1ms after due
	Dropped    int64            `json:"dropped,omitempty"` // open loop: due, never sent

	LatencyMs latency `json:"latency_ms"`
}

// latency is the distribution of the answered requests' latencies, in
// milliseconds. Percentiles are within 1/256 of the sample of their rank;
// max and mean are exact.
type latency struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p99_9"`
	Max  float64 `json:"max"`
	Mean float64 `json:"mean"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// report sums up the run, which ran for elapsed.
func (r *generator) report(elapsed time.Duration, interrupted bool) report {
	o, s := r.opt, r.stats
	rep := report{
		Method: o.targets[0].method, Loop: "closed", Sequence: o.sequence, Connections: o.workers,
		MaxRate: o.maxRate, ElapsedS: elapsed.Seconds(), Interrupted: interrupted,
		Answered: s.done.Load(), Status: map[string]int64{}, FirstOf: map[string]int64{},
		Failed: s.failed.Load(), Errors: s.errorCounts(), Canceled: s.canceled.Load(),
	}
	for _, t := range o.targets {
		rep.URLs = append(rep.URLs, t.url)
	}
	if o.rate > 0 {
		rep.Loop, rep.Rate = "open", o.rate
		rep.Late, rep.Dropped = s.late.Load(), r.dropped(elapsed)
	}
	if elapsed > 0 {
		rep.Throughput = float64(rep.Answered) / elapsed.Seconds()
	}
	for code := range s.status {
		if n := s.status[code].Load(); n > 0 {
			rep.Status[strconv.Itoa(code)] = int64(n)
			rep.FirstOf[strconv.Itoa(code)] = s.first[code].Load() + 1
		}
	}
	h := s.latency
	rep.LatencyMs = latency{
		P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max()), Mean: ms(h.Mean()),
	}
	return rep
}

func (rep report) writeJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(rep)
}

func (rep report) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	what := fmt.Sprintf("%s %s", rep.Method, strings.Join(rep.URLs, " "))
	if rep.Sequence {
		what += " (in sequence, timed as one)"
	}
	fmt.Fprintf(tw, "target\t%s\n", what)
	conns := fmt.Sprintf("%d connections", rep.Connections)
	if rep.Connections == 1 {
		conns = "1 connection"
	}
	switch {
	case rep.Loop == "open":
		fmt.Fprintf(tw, "load\topen loop, %g requests/s due, at most %d in flight\n", rep.Rate, rep.Connections)
	case rep.MaxRate > 0:
		fmt.Fprintf(tw, "load\tclosed loop, %s, at most %d requests/s\n", conns, rep.MaxRate)
	default:
		fmt.Fprintf(tw, "load\tclosed loop, %s\n", conns)
	}
	stopped := ""
	if rep.Interrupted {
		stopped = " (stopped by a signal)"
	}
	fmt.Fprintf(tw, "elapsed\t%.2fs%s\n", rep.ElapsedS, stopped)
	fmt.Fprintf(tw, "answered\t%d, %.1f/s\n", rep.Answered, rep.Throughput)
	codes := make([]string, 0, len(rep.Status))
	for code := range rep.Status {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%s × %d (first: #%d)", c, rep.Status[c], rep.FirstOf[c]))
	}
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	fmt.Fprintf(tw, "status\t%s\n", strings.Join(parts, ", "))
	l := rep.LatencyMs
	fmt.Fprintf(tw, "latency\tp50 %s  p90 %s  p99 %s  p99.9 %s  max %s  mean %s\n",
		fmtMs(l.P50), fmtMs(l.P90), fmtMs(l.P99), fmtMs(l.P999), fmtMs(l.Max), fmtMs(l.Mean))
	if rep.Loop == "open" {
		fmt.Fprintf(tw, "schedule\t%d late (sent over 1ms after due, timed from due), %d dropped (due, never sent)\n", rep.Late, rep.Dropped)
	}
	fmt.Fprintf(tw, "failed\t%d\n", rep.Failed)
	for _, e := range rep.Errors {
		fmt.Fprintf(tw, "\t%d × %s\n", e.Count, e.Error)
	}
	fmt.Fprintf(tw, "canceled\t%d (in flight at the end)\n", rep.Canceled)
	return tw.Flush()
}

// fmtMs writes milliseconds with three significant digits or more.
func fmtMs(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	}
	return fmt.Sprintf("%.3fms", v)
}

// startProgress rewrites one line on w every interval with the run's
// figures so far, until the function it returns is called, which clears
// the line and returns once the writer has stopped.
func startProgress(r *generator, w io.Writer, interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		var last int64
		lastAt := time.Now()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case now := <-t.C:
				s := r.stats
				n := s.done.Load()
				rate := float64(n-last) / now.Sub(lastAt).Seconds()
				last, lastAt = n, now
				line := fmt.Sprintf("%5.1fs  %d answered  %.0f/s  p50 %s  p99 %s  failed %d",
					time.Since(r.start).Seconds(), n, rate,
					fmtMs(ms(s.latency.Quantile(0.5))), fmtMs(ms(s.latency.Quantile(0.99))), s.failed.Load())
				if r.opt.rate > 0 {
					line += fmt.Sprintf("  late %d", s.late.Load())
				}
				fmt.Fprint(w, "\r\033[K"+line)
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
