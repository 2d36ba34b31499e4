package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop() // a second signal ends the process at once
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr, isTerminal(os.Stderr))
	switch {
	case errors.Is(err, flag.ErrHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "loadtest:", err)
		os.Exit(1)
	}
}

// errUsage is returned by run for bad flags or arguments, once it has
// said what is wrong.
var errUsage = errors.New("usage")

// errNoAnswer is returned by run when no request got an answer, which
// makes the figures meaningless: the URL is wrong or the server is down.
var errNoAnswer = errors.New("no request was answered")

// isTerminal reports whether f is a terminal, where a progress line that
// rewrites itself makes sense.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// headerFlag collects repeated -H "Name: value" flags.
type headerFlag http.Header

func (h headerFlag) String() string { return "" }

func (h headerFlag) Set(v string) error {
	name, value, ok := strings.Cut(v, ":")
	name = strings.TrimSpace(name)
	if !ok || name == "" || strings.ContainsAny(name, " \t") {
		return errors.New(`must be "Name: value"`)
	}
	http.Header(h).Add(name, strings.TrimSpace(value))
	return nil
}

const usageText = `Usage: loadtest [flags] URL [URL...]

loadtest sends HTTP/1.1 requests to the URLs (http:// only) and reports
throughput, the status of the answers, and latency percentiles (p50, p90,
p99, p99.9, max) from a log-bucketed histogram within 0.4%.

Closed loop (the default): -c connections each send a request, wait for the
answer, and send the next. Latency runs from each send.

Open loop (-rate N): requests are due at N per second whatever the answers
take, and latency runs from each request's due time, so that a stalled
server shows in the percentiles instead of slowing the load down
(coordinated omission). At most -c requests are in flight; a request due
while all -c are busy is sent as soon as one is free and counted late, and
one still waiting when the run ends is counted dropped.

With several URLs, requests take them in turn; with -seq, each iteration
sends them all, one after another, and is timed as one.

The run ends after -duration, after -n requests, or at SIGINT or SIGTERM,
and the report covers what was done. A progress line is shown on stderr
when it is a terminal.

Flags:
`

// run is the whole program, with its arguments, outputs and whether stderr
// is a terminal given, so that tests can run it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, tty bool) error {
	fs := flag.NewFlagSet("loadtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, usageText)
		fs.PrintDefaults()
	}
	var (
		o        options
		header   = headerFlag{}
		method   = fs.String("method", http.MethodGet, "HTTP `method` of every request")
		body     = fs.String("body", "", "request `body`, sent with a Content-Length")
		jsonOut  = fs.Bool("json", false, "write the report as one JSON object instead of text")
		quiet    = fs.Bool("quiet", false, "no progress line, even on a terminal")
		progress = fs.Duration("progress", time.Second, "how often the progress line is refreshed")
	)
	fs.IntVar(&o.workers, "c", 64, "closed loop: `connections`, each with one request in flight; open loop: the most requests in flight")
	fs.Float64Var(&o.rate, "rate", 0, "open loop: `N` requests due per second (0: closed loop)")
	fs.IntVar(&o.maxRate, "max-rate", 0, "closed loop: at most `N` requests per second in all (0: no cap)")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long to run (0: until -n requests or a signal)")
	fs.Int64Var(&o.requests, "n", 0, "stop after this many `requests` (0: no limit)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "time limit of each request")
	fs.BoolVar(&o.sequence, "seq", false, "send every URL in turn per iteration, timed as one")
	fs.Var(header, "H", "request header `Name: value`; may be repeated")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage // the flag package has said what is wrong
	}
	bad := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "loadtest: "+format+"\nRun loadtest -h for usage.\n", a...)
		return errUsage
	}
	switch {
	case fs.NArg() == 0:
		return bad("no URL given")
	case o.workers < 1 || o.workers > 100_000:
		return bad("-c %d: must be from 1 to 100000", o.workers)
	case !(o.rate >= 0) || o.rate > 10_000_000:
		return bad("-rate %v: must be from 0 to 10000000", o.rate)
	case o.maxRate < 0:
		return bad("-max-rate %d: must not be negative", o.maxRate)
	case o.maxRate > 0 && o.rate > 0:
		return bad("-max-rate caps the closed loop; with -rate the loop is open and its rate is -rate")
	case o.duration < 0:
		return bad("-duration %v: must not be negative", o.duration)
	case o.requests < 0:
		return bad("-n %d: must not be negative", o.requests)
	case o.duration == 0 && o.requests == 0:
		return bad("-duration 0 and -n 0: the run would never end; give one of them")
	case o.timeout <= 0:
		return bad("-timeout %v: must be above 0", o.timeout)
	case *progress <= 0:
		return bad("-progress %v: must be above 0", *progress)
	}
	for _, u := range fs.Args() {
		t, err := newTarget(u, *method, http.Header(header), []byte(*body))
		if err != nil {
			return bad("%v", err)
		}
		o.targets = append(o.targets, t)
	}

	r := &generator{opt: o, stats: newStats()}
	stopProgress := func() {}
	if tty && !*quiet {
		stopProgress = startProgress(r, stderr, *progress)
	}
	elapsed, err := r.execute(ctx)
	stopProgress()
	if err != nil {
		return err
	}
	rep := r.report(elapsed, ctx.Err() != nil)
	if *jsonOut {
		err = rep.writeJSON(stdout)
	} else {
		err = rep.writeText(stdout)
	}
	if err != nil {
		return err
	}
	if rep.Answered == 0 {
		return errNoAnswer
	}
	return nil
}
