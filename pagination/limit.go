package pagination

import (
	"fmt"
	"strconv"
)

// maxLimitDigits bounds the text ParseLimit will read, so a huge query
// parameter is rejected before any conversion work.
const maxLimitDigits = 10

// ParseLimit parses a page size taken from a request, such as the "limit"
// query parameter. An empty s yields def. Anything that is not a whole
// decimal number, and any number below 1, is an error suitable for a 400
// response; a number above max is clamped to max rather than refused, as
// most public APIs do.
//
// def and max are the caller's constants: def must be between 1 and max, or
// ParseLimit returns an error whatever s holds.
func ParseLimit(s string, def, max int) (int, error) {
	if def < 1 || max < def {
		return 0, fmt.Errorf("pagination: default limit %d and max %d must satisfy 1 <= default <= max", def, max)
	}
	if s == "" {
		return def, nil
	}
	if len(s) > maxLimitDigits {
		return 0, fmt.Errorf("pagination: limit %.10q… is too long to be a page size", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("pagination: limit %q is not a whole number", s)
	}
	if n < 1 {
		return 0, fmt.Errorf("pagination: limit %d must be at least 1", n)
	}
	return min(n, max), nil
}
