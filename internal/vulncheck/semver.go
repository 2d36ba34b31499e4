package main

import "strings"

// compareVersions compares two OSV versions, which are semantic versions
// without the leading "v" ("0.3.8", "1.26.0-0", "0.0.0-20250721152936-fe86ceb2c3fa"),
// and returns -1, 0 or +1 like golang.org/x/mod/semver.Compare does for the
// same versions with "v" in front: build metadata is ignored, a prerelease
// sorts before its release, and an invalid version (such as "") sorts before
// every valid one and equal to any other invalid one.
//
// It exists so that this command needs nothing outside the standard library:
// x/mod would otherwise become a requirement of every asynckit user.
func compareVersions(a, b string) int {
	pa, oka := parseVersion(a)
	pb, okb := parseVersion(b)
	switch {
	case !oka && !okb:
		return 0
	case !oka:
		return -1
	case !okb:
		return 1
	}
	for i := range 3 {
		if c := compareNumeric(pa.core[i], pb.core[i]); c != 0 {
			return c
		}
	}
	return comparePrerelease(pa.pre, pb.pre)
}

type version struct {
	core [3]string // major, minor, patch: decimal, no leading zeros
	pre  string    // without the leading "-"; "" for a release
}

// parseVersion parses "MAJOR[.MINOR[.PATCH]][-PRERELEASE][+BUILD]". A missing
// minor or patch is 0, as semver.Compare treats "v1.2" as "v1.2.0"; a
// prerelease or build is only accepted after all three numbers.
func parseVersion(s string) (version, bool) {
	var v version
	build := false
	if i := strings.IndexByte(s, '+'); i >= 0 {
		if !validIdents(s[i+1:], false) {
			return v, false
		}
		s, build = s[:i], true
	}
	if i := strings.IndexByte(s, '-'); i >= 0 {
		v.pre = s[i+1:]
		if !validIdents(v.pre, true) {
			return v, false
		}
		s = s[:i]
	}
	parts := strings.Split(s, ".")
	if len(parts) > 3 || (len(parts) < 3 && (v.pre != "" || build)) {
		return v, false
	}
	v.core = [3]string{"0", "0", "0"}
	for i, p := range parts {
		if !isNumeric(p) || (len(p) > 1 && p[0] == '0') {
			return v, false
		}
		v.core[i] = p
	}
	return v, true
}

// validIdents reports whether s is a dot-separated list of non-empty
// [0-9A-Za-z-] identifiers; in a prerelease, numeric ones have no leading 0.
func validIdents(s string, prerelease bool) bool {
	for id := range strings.SplitSeq(s, ".") {
		if id == "" {
			return false
		}
		for _, r := range id {
			if !(r == '-' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
				return false
			}
		}
		if prerelease && isNumeric(id) && len(id) > 1 && id[0] == '0' {
			return false
		}
	}
	return true
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// compareNumeric compares two decimal strings without leading zeros.
func compareNumeric(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// comparePrerelease orders prereleases as semantic versioning does: a release
// ("") comes after any prerelease, identifiers compare one by one, numeric ones
// by value and before alphanumeric ones, and a shorter list comes first.
func comparePrerelease(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "":
		return 1
	case b == "":
		return -1
	}
	as, bs := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(as) && i < len(bs); i++ {
		x, y := as[i], bs[i]
		if x == y {
			continue
		}
		nx, ny := isNumeric(x), isNumeric(y)
		switch {
		case nx && ny:
			return compareNumeric(x, y)
		case nx:
			return -1
		case ny:
			return 1
		default:
			return strings.Compare(x, y)
		}
	}
	switch {
	case len(as) < len(bs):
		return -1
	case len(as) > len(bs):
		return 1
	}
	return 0
}
