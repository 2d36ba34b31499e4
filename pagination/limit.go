package pagination

import (
	"errors"
	"fmt"
)

// maxLimitDigits bounds the text ParseLimit will read, so a huge query
// parameter is rejected before any conversion work.
const maxLimitDigits = 10

// ErrInvalidLimit matches, through errors.Is, every error ParseLimit
// returns for the text it was given, as opposed to its def and max. The
// message says what is wrong with the text; a handler usually answers 400
// with it.
var ErrInvalidLimit = errors.New("pagination: invalid limit")

// limitError is an ErrInvalidLimit whose message says why.
type limitError string

func (e limitError) Error() string      { return string(e) }
func (limitError) Is(target error) bool { return target == ErrInvalidLimit }

// ParseLimit parses a page size taken from a request, such as the "limit"
// query parameter. An empty s yields def. Otherwise s must be a number
// from 1 written in plain decimal digits: no sign, no leading zero, no
// space, at most 10 digits. Anything else is an error matching
// [ErrInvalidLimit] ("+5", "007", "-1", "0", " 5" and "1e3" all are). A
// number above max is clamped to max rather than refused, as most public
// APIs do.
//
// def and max are the caller's constants: def must be between 1 and max, or
// ParseLimit returns an error whatever s holds; that error does not match
// ErrInvalidLimit.
func ParseLimit(s string, def, max int) (int, error) {
	if def < 1 || max < def {
		return 0, fmt.Errorf("pagination: default limit %d and max %d must satisfy 1 <= default <= max", def, max)
	}
	if s == "" {
		return def, nil
	}
	if len(s) > maxLimitDigits {
		return 0, limitError(fmt.Sprintf("pagination: limit %.10q… is too long to be a page size", s))
	}
	if s[0] == '+' || s[0] == '-' {
		return 0, limitError(fmt.Sprintf("pagination: limit %q has a sign; a page size is plain digits", s))
	}
	// Ten digits fit an int64 whatever the size of int.
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, limitError(fmt.Sprintf("pagination: limit %q is not a whole number", s))
		}
		n = n*10 + int64(c-'0')
	}
	if s[0] == '0' && len(s) > 1 {
		return 0, limitError(fmt.Sprintf("pagination: limit %q has a leading zero", s))
	}
	if n < 1 {
		return 0, limitError(fmt.Sprintf("pagination: limit %d must be at least 1", n))
	}
	return int(min(n, int64(max))), nil
}
