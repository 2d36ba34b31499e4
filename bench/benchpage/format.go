package main

import (
	"math"
	"strconv"
	"strings"
)

// formatValue writes v in unit for a reader: times in ns, µs, ms or s,
// bytes in B, KiB or MiB, other times per op (cpu-ns/op) as times followed
// by what they count, other units as a number of three or four
// significant digits followed by the unit.
func formatValue(v float64, unit string) string {
	switch unit {
	case "ns/op":
		return formatDuration(v)
	case "B/op":
		switch {
		case v >= 1<<20:
			return fmtNum(v/(1<<20)) + " MiB"
		case v >= 1<<10:
			return fmtNum(v/(1<<10)) + " KiB"
		}
		return fmtNum(v) + " B"
	case "allocs/op":
		return fmtNum(v)
	}
	if what, ok := strings.CutSuffix(unit, "-ns/op"); ok {
		return formatDuration(v) + " " + what // cpu-ns/op: "1.2 µs cpu"
	}
	return fmtNum(v) + " " + unit
}

// formatDuration writes ns nanoseconds in the largest unit that keeps the
// figure at 1 or more.
func formatDuration(ns float64) string {
	switch {
	case ns >= 1e9:
		return fmtNum(ns/1e9) + " s"
	case ns >= 1e6:
		return fmtNum(ns/1e6) + " ms"
	case ns >= 1e3:
		return fmtNum(ns/1e3) + " µs"
	}
	return fmtNum(ns) + " ns"
}

// fmtNum writes v with three significant digits (all the integer digits
// from 1,000 up), never in exponent form, without trailing zeros.
func fmtNum(v float64) string {
	if v == 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	digits := int(math.Floor(math.Log10(math.Abs(v)))) + 1
	prec := max(3-digits, 0)
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}
