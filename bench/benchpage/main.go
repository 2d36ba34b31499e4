// Command benchpage turns the raw output of bench/run.sh into BENCHMARKS.md
// and its SVG charts: for every benchmark of spec.go, the median of each
// measurement with benchstat's 95% confidence interval (golang.org/x/perf's
// benchmath, the library behind benchstat), the ratio of each contender to
// asynckit with benchstat's significance test, and a plain bar chart per
// headline comparison.
//
// Its output depends only on its input and flags: sections, rows and
// charts come in a fixed order, so that two runs differ only in figures.
//
//	go run ./benchpage -in DIR -out ../BENCHMARKS.md -charts charts -chartlink bench/charts \
//		[-commands FILE] [-server FILE] [-metafile FILE] [-meta KEY=VALUE]...
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
)

// metaFlags collects -meta KEY=VALUE pairs in the order given.
type metaFlags [][2]string

func (m *metaFlags) String() string { return fmt.Sprint(*m) }
func (m *metaFlags) Set(s string) error {
	k, v, ok := strings.Cut(s, "=")
	if !ok {
		return fmt.Errorf("want KEY=VALUE, got %q", s)
	}
	*m = append(*m, [2]string{k, v})
	return nil
}

func main() {
	in := flag.String("in", "", "folder holding PKG.txt, the raw go test -bench output of each section")
	out := flag.String("out", "BENCHMARKS.md", "the Markdown file to write")
	charts := flag.String("charts", "charts", "the folder to write the SVG charts into")
	chartLink := flag.String("chartlink", "bench/charts", "the charts folder as the Markdown file links to it")
	server := flag.String("server", "", "a Markdown fragment for the example server's section; none leaves the section out")
	commands := flag.String("commands", "", "a file of the commands that made the input, one a line, shown on the page")
	var meta metaFlags
	flag.Var(&meta, "meta", "KEY=VALUE for the page's header, in order (repeatable)")
	metaFile := flag.String("metafile", "", "a file of KEY=VALUE lines for the page's header, shown before any -meta")
	flag.Parse()
	if *metaFile != "" {
		b, err := os.ReadFile(*metaFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchpage:", err)
			os.Exit(1)
		}
		var fromFile metaFlags
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if err := fromFile.Set(line); err != nil {
				fmt.Fprintf(os.Stderr, "benchpage: %s: %v\n", *metaFile, err)
				os.Exit(1)
			}
		}
		meta = append(fromFile, meta...)
	}
	if *in == "" {
		fmt.Fprintln(os.Stderr, "benchpage: -in is required")
		os.Exit(2)
	}
	var cmds []string
	if *commands != "" {
		b, err := os.ReadFile(*commands)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchpage:", err)
			os.Exit(1)
		}
		cmds = strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	if err := run(*in, *out, *charts, *chartLink, *server, meta, cmds); err != nil {
		fmt.Fprintln(os.Stderr, "benchpage:", err)
		os.Exit(1)
	}
}

func run(in, out, chartDir, chartLink, server string, meta metaFlags, cmds []string) error {
	var page bytes.Buffer
	writeHeader(&page, meta, cmds)
	if err := os.MkdirAll(chartDir, 0o755); err != nil {
		return err
	}
	for _, s := range sections {
		data, err := readResults(filepath.Join(in, s.pkg+".txt"))
		if err != nil {
			return err
		}
		svgs, err := writeSection(&page, s, data, chartLink)
		if err != nil {
			return err
		}
		for _, c := range svgs {
			if err := os.WriteFile(filepath.Join(chartDir, c.file), c.svg, 0o644); err != nil {
				return err
			}
		}
	}
	if server != "" {
		frag, err := os.ReadFile(server)
		if err != nil {
			return err
		}
		page.WriteString("## Example server\n\n")
		page.Write(bytes.TrimSpace(frag))
		page.WriteString("\n")
	}
	return os.WriteFile(out, page.Bytes(), 0o644)
}

// results are the measurements of one output file: for each benchmark
// name (without the -GOMAXPROCS suffix), each unit's values, one per run,
// and the names in the order they first appeared.
type results struct {
	names  []string
	values map[string]map[string][]float64
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// readResults reads one file of go test -bench output. A missing file is
// no results: that section's benchmarks did not run.
func readResults(path string) (*results, error) {
	res := &results{values: map[string]map[string][]float64{}}
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r := benchfmt.NewReader(f, path)
	for r.Scan() {
		rec, ok := r.Result().(*benchfmt.Result)
		if !ok {
			continue // a syntax error: a line that is not a result
		}
		name := procSuffix.ReplaceAllString(string(rec.Name.Full()), "")
		if !strings.HasPrefix(name, "Benchmark") {
			name = "Benchmark" + name
		}
		units := res.values[name]
		if units == nil {
			units = map[string][]float64{}
			res.values[name] = units
			res.names = append(res.names, name)
		}
		for _, v := range rec.Values {
			// Keep the units as go test wrote them (ns/op, not sec/op):
			// benchfmt keeps the original of any unit it tidied.
			unit, value := v.Unit, v.Value
			if v.OrigUnit != "" {
				unit, value = v.OrigUnit, v.OrigValue
			}
			units[unit] = append(units[unit], value)
		}
	}
	return res, r.Err()
}

// row is one contender in one case of a family.
type row struct {
	cas, contender string
	units          map[string][]float64
}

// rowsOf returns the rows of family fam in the order they appeared.
func (r *results) rowsOf(fam string) []row {
	var rows []row
	for _, name := range r.names {
		rest, ok := strings.CutPrefix(name, fam+"/")
		if !ok {
			continue
		}
		cas, contender := "", rest
		if i := strings.LastIndex(rest, "/"); i >= 0 {
			cas, contender = rest[:i], rest[i+1:]
		}
		rows = append(rows, row{cas: cas, contender: contender, units: r.values[name]})
	}
	return rows
}

// isAsynckit reports whether a contender is asynckit's.
func isAsynckit(c string) bool { return c == "asynckit" || strings.HasPrefix(c, "asynckit-") }

// isReference reports whether a contender is a reference row rather than
// a library: a floor, a bare implementation, or a library run outside the
// comparison's terms.
func isReference(c string) bool {
	return strings.HasPrefix(c, "bare-") || strings.HasPrefix(c, "floor-") ||
		strings.HasPrefix(c, "alloc-") || strings.HasSuffix(c, "-at-1e9")
}

var thresholds = benchmath.DefaultThresholds

// summary is benchstat's: the median and its 95% confidence interval,
// assuming nothing about the distribution.
func summary(vals []float64) (benchmath.Summary, *benchmath.Sample) {
	s := benchmath.NewSample(vals, &thresholds)
	return benchmath.AssumeNothing.Summary(s, 0.95), s
}

// verdict compares contender to base on fam's headline unit, from
// asynckit's side: "ahead", "behind" or "~" (no significant difference).
func verdict(f family, base, contender []float64) (ratio float64, v string, p float64) {
	bs, bsample := summary(base)
	cs, csample := summary(contender)
	ratio = cs.Center / bs.Center
	cmp := benchmath.AssumeNothing.Compare(bsample, csample)
	if cmp.P >= cmp.Alpha || bs.Center == cs.Center {
		return ratio, "~", cmp.P
	}
	peerBetter := cs.Center < bs.Center
	if f.higher {
		peerBetter = !peerBetter
	}
	if peerBetter {
		return ratio, "behind", cmp.P
	}
	return ratio, "ahead", cmp.P
}

// writeHeader writes the page's title and the run's facts.
func writeHeader(w io.Writer, meta metaFlags, cmds []string) {
	fmt.Fprint(w, `# Benchmarks

asynckit against the libraries a Go service would use instead, measured in
one run on one machine by `+"`bash bench/run.sh`"+`, which regenerates this
file and the charts under bench/charts/. Do not edit it by hand.

Each figure is the median of the runs with benchstat's 95% confidence
interval (±, in percent of the median; with 6 runs it spans the fastest
to the slowest run). The ratio is the contender's figure divided by
asynckit's on the benchmark's headline measurement (ns/op where the
headline column shows —; the one the chart shows), and the last column
says, from asynckit's side, whether the difference is significant
(benchstat's Mann-Whitney U test, p < 0.05): *ahead*, **behind**, or ~
(not significant, with its p). Rows marked *(reference)* are floors or
bare implementations, not libraries: they show what the work costs at
least. A second asynckit row (another limiter, Settle beside Map) has its
ratio to the first and no verdict.

`)
	for _, kv := range meta {
		fmt.Fprintf(w, "- %s: %s\n", kv[0], kv[1])
	}
	fmt.Fprint(w, `
The machine's cores are shared with other work while the benchmarks run, so
the figures are noisy: the load average above was taken at the start and at
the end of the run. Read the ± and the ratios within this run; absolute
figures move between runs by more than the libraries differ.
`)
	if len(cmds) > 0 {
		fmt.Fprintln(w, "\nThe commands, run from bench/ (each package's test binary is built once and run with the same flags):")
		fmt.Fprintln(w, "\n```sh")
		for _, c := range cmds {
			fmt.Fprintln(w, c)
		}
		fmt.Fprintln(w, "```")
	}
	fmt.Fprintln(w)
}

// svgFile is one chart to write.
type svgFile struct {
	file string
	svg  []byte
}

func writeSection(w io.Writer, s section, data *results, chartLink string) ([]svgFile, error) {
	fmt.Fprintf(w, "## %s\n\n%s\n\n", s.pkg, s.intro)
	var measured bool
	for _, f := range s.families {
		if len(data.rowsOf(f.bench)) > 0 {
			measured = true
		}
	}
	if !measured {
		fmt.Fprintf(w, "*Not measured in this run (see run.sh's output: a service it needs was not set).*\n\n")
		return nil, nil
	}
	for _, f := range s.families {
		fmt.Fprintf(w, "- `%s`: %s; headline %s (%s is better).\n", f.bench, f.what, f.unit, better(f))
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| benchmark | case | contender | headline | ns/op | B/op | allocs/op | other | ratio | vs asynckit |")
	fmt.Fprintln(w, "|---|---|---|---|--:|--:|--:|---|--:|---|")
	var behind []string
	var svgs []svgFile
	var chartLines []string
	for _, f := range s.families {
		rows := data.rowsOf(f.bench)
		if len(rows) == 0 {
			continue
		}
		short := strings.TrimPrefix(f.bench, "Benchmark")
		base := map[string]row{} // the first asynckit contender of each case
		for _, r := range rows {
			if _, ok := base[r.cas]; !ok && isAsynckit(r.contender) {
				base[r.cas] = r
			}
		}
		for _, r := range rows {
			name := r.contender
			if isReference(name) {
				name += " *(reference)*"
			} else if isAsynckit(name) {
				name = "**" + name + "**"
			}
			head := "—"
			if f.unit != "ns/op" {
				head = cell(r.units[f.unit], f.unit)
			}
			var other []string
			for _, u := range f.extra {
				if v := r.units[u]; len(v) > 0 {
					other = append(other, cell(v, u))
				}
			}
			ratio, vs := "", ""
			b, ok := base[r.cas]
			switch {
			case !ok:
				ratio, vs = "", "no asynckit row"
			case b.contender == r.contender:
				ratio, vs = "1", "(base: "+b.contender+")"
			case len(r.units[f.unit]) == 0 || len(b.units[f.unit]) == 0:
				ratio, vs = "", "not measured"
			default:
				x, v, p := verdict(f, b.units[f.unit], r.units[f.unit])
				ratio = fmt.Sprintf("%s×", fmtNum(x))
				switch {
				case isReference(r.contender):
					vs = "(reference)"
				case isAsynckit(r.contender):
					vs = "(asynckit)"
				case v == "~":
					vs = fmt.Sprintf("~ (p=%.3f)", p)
				case v == "behind":
					vs = "**behind**"
					behind = append(behind, behindLine(f, r, b, x))
				default:
					vs = v
				}
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n",
				short, r.cas, name, head,
				cell(r.units["ns/op"], "ns/op"),
				cell(r.units["B/op"], "B/op"),
				cell(r.units["allocs/op"], "allocs/op"),
				strings.Join(other, ", "), ratio, vs)
		}
		for _, c := range f.charts {
			svg, ok := drawChart(c, f, rows)
			if !ok {
				continue
			}
			svgs = append(svgs, svgFile{c.file, svg})
			chartLines = append(chartLines, fmt.Sprintf("![%s](%s/%s)", c.title, chartLink, c.file))
		}
	}
	fmt.Fprintln(w)
	if len(behind) > 0 {
		fmt.Fprintln(w, "Where asynckit is behind:")
		fmt.Fprintln(w)
		for _, l := range behind {
			fmt.Fprintln(w, l)
		}
		fmt.Fprintln(w)
	}
	for _, l := range chartLines {
		fmt.Fprintf(w, "%s\n\n", l)
	}
	return svgs, nil
}

func better(f family) string {
	if f.higher {
		return "higher"
	}
	return "lower"
}

// behindLine says that contender r beats asynckit's b, and why.
func behindLine(f family, r, b row, ratio float64) string {
	why, ok := reasons[f.bench+"/"+r.cas+"/"+r.contender]
	if !ok {
		why, ok = reasons[f.bench+"/"+r.contender]
	}
	if !ok {
		why, ok = reasons[f.bench]
	}
	if !ok {
		why = "Not yet analysed."
	}
	where := strings.TrimPrefix(f.bench, "Benchmark")
	if r.cas != "" {
		where += " " + r.cas
	}
	return fmt.Sprintf("- %s: %s is ahead of %s (%s× its %s). %s", where, r.contender, b.contender, fmtNum(ratio), f.unit, why)
}

// cell formats the median of vals in unit with benchstat's ± when there
// is more than one value.
func cell(vals []float64, unit string) string {
	if len(vals) == 0 {
		return ""
	}
	s, _ := summary(vals)
	v := formatValue(s.Center, unit)
	if len(vals) > 1 {
		v += " ± " + s.PctRangeString()
	}
	return v
}
