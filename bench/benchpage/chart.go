package main

import (
	"bytes"
	"fmt"
	"html"
	"strings"
)

// The chart's geometry, in pixels.
const (
	chartWidth = 760
	rowHeight  = 24
	barHeight  = 16
	top        = 56 // below the title and the caption
	charWidth  = 7  // of the 12px labels, roughly
)

// The bars' colours: asynckit, the other libraries, reference rows.
const (
	colourAsynckit  = "#1f6feb"
	colourPeer      = "#6e7781"
	colourReference = "#c8d1da"
)

// drawChart draws c: a horizontal bar per row of f in c's cases, the
// length of its median in f's headline unit, with the value written after
// it. It reports false when no row has that measurement.
func drawChart(c chart, f family, rows []row) ([]byte, bool) {
	type bar struct {
		label, colour, value string
		v                    float64
	}
	var chosen []row
	cases := map[string]bool{}
	for _, r := range rows {
		if c.cases != "" && r.cas != c.cases && !strings.HasPrefix(r.cas, c.cases+"/") {
			continue
		}
		if len(r.units[f.unit]) == 0 {
			continue
		}
		chosen = append(chosen, r)
		cases[r.cas] = true
	}
	// Bars of several cases say which case each is.
	several := len(cases) > 1
	var bars []bar
	var maxV float64
	runs := 0
	for _, r := range chosen {
		vals := r.units[f.unit]
		s, _ := summary(vals)
		colour := colourPeer
		switch {
		case isAsynckit(r.contender):
			colour = colourAsynckit
		case isReference(r.contender):
			colour = colourReference
		}
		label := r.contender
		if several {
			rest := strings.TrimPrefix(strings.TrimPrefix(r.cas, c.cases), "/")
			if rest != "" {
				label = rest + "  " + label
			}
		}
		bars = append(bars, bar{label: label, colour: colour, value: formatValue(s.Center, f.unit), v: s.Center})
		maxV = max(maxV, s.Center)
		runs = max(runs, len(vals))
	}
	if len(bars) == 0 {
		return nil, false
	}
	labelW := 0
	for _, b := range bars {
		labelW = max(labelW, len([]rune(b.label))*charWidth+16)
	}
	labelW = min(labelW, 360)
	valueRoom := 0 // for the value written after the longest bar
	for _, b := range bars {
		valueRoom = max(valueRoom, len([]rune(b.value))*charWidth+16)
	}
	barRoom := float64(chartWidth - labelW - valueRoom)
	height := top + len(bars)*rowHeight + 12

	var w bytes.Buffer
	fmt.Fprintf(&w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="-apple-system, Segoe UI, Helvetica, Arial, sans-serif">`+"\n",
		chartWidth, height, chartWidth, height)
	fmt.Fprintf(&w, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", chartWidth, height)
	fmt.Fprintf(&w, `<text x="12" y="24" font-size="15" font-weight="bold" fill="#1f2328">%s</text>`+"\n", esc(c.title))
	of := fmt.Sprintf("median of %d runs", runs)
	if runs == 1 {
		of = "one run"
	}
	caption := fmt.Sprintf("%s, %s; %s is better. Blue: asynckit; grey: the alternatives; light: references.",
		f.unit, of, better(f))
	fmt.Fprintf(&w, `<text x="12" y="42" font-size="11" fill="#57606a">%s</text>`+"\n", esc(caption))
	for i, b := range bars {
		y := top + i*rowHeight
		length := 1.0
		if maxV > 0 {
			length = max(b.v/maxV*barRoom, 1)
		}
		fmt.Fprintf(&w, `<text x="%d" y="%d" font-size="12" text-anchor="end" fill="#1f2328">%s</text>`+"\n",
			labelW-8, y+barHeight-4, esc(b.label))
		fmt.Fprintf(&w, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n",
			labelW, y, length, barHeight, b.colour)
		fmt.Fprintf(&w, `<text x="%.1f" y="%d" font-size="12" fill="#1f2328">%s</text>`+"\n",
			float64(labelW)+length+6, y+barHeight-4, esc(b.value))
	}
	w.WriteString("</svg>\n")
	return w.Bytes(), true
}

func esc(s string) string { return html.EscapeString(s) }
