package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestCompareVersions(t *testing.T) {
	t.Parallel()
	// Each version sorts strictly before the next, as semver.Compare orders
	// them with a "v" in front.
	ordered := []string{
		"",
		"0.0.0-20180917221912-90fa682c2a6e",
		"0.0.0-20250721152936-fe86ceb2c3fa",
		"0.3.7",
		"0.3.8",
		"0.9.0",
		"0.10.0",
		"1.0.0-0",
		"1.0.0-alpha",
		"1.0.0-alpha.1",
		"1.0.0-alpha.beta",
		"1.0.0-beta",
		"1.0.0-beta.2",
		"1.0.0-beta.11",
		"1.0.0-rc.1",
		"1.0.0",
		"1.26.9",
		"1.26.10",
		"1.27.0-0",
		"1.27.2",
		"2.1.0",
	}
	for i := range ordered {
		for j := range ordered {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			require.Equal(t, want, compareVersions(ordered[i], ordered[j]), "compare(%q, %q)", ordered[i], ordered[j])
		}
	}

	equal := [][2]string{
		{"1.2", "1.2.0"},
		{"1", "1.0.0"},
		{"2.1.0+incompatible", "2.1.0"},
		{"1.0.0-rc.1+build.5", "1.0.0-rc.1"},
		{"bad", ""},     // invalid versions are equal to each other
		{"01.2.3", "x"}, // a leading zero is invalid
	}
	for _, p := range equal {
		require.Zero(t, compareVersions(p[0], p[1]), "compare(%q, %q)", p[0], p[1])
	}

	invalid := []string{"", "v1.2.3", "1.2.3.4", "1.2-pre", "1+build", "1.2.3-", "1.2.3-01", "1.2.3-a..b", "1.x.0", "go1.26"}
	for _, v := range invalid {
		require.Equal(t, -1, compareVersions(v, "0.0.0"), "%q must be invalid and sort first", v)
	}
}
