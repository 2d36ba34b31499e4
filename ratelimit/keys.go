package ratelimit

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// KeyFunc returns the key a request is limited under. An error, or an empty
// key, makes [Middleware] answer 400 rather than limit the request under
// some shared key.
type KeyFunc func(r *http.Request) (string, error)

// ErrNoKey is returned by a KeyFunc when the request carries nothing to key
// it by, such as a missing header.
var ErrNoKey = errors.New("ratelimit: request has no key")

// maxHops bounds how many proxy hops KeyByIP walks, so that a long forged
// header costs little.
const maxHops = 32

// KeyByIP returns a KeyFunc keying requests by client IP address.
//
// The direct peer (Request.RemoteAddr) is the client unless it lies in one
// of the trusted prefixes. Only then are the proxy headers read: the
// `Forwarded` header (RFC 7239) if present, else `X-Forwarded-For`. The
// hops are walked from the right, trusted ones skipped, and the first
// untrusted address is the client; if every hop is trusted the leftmost is.
// A client can thus prepend what it likes to these headers and it is never
// believed, and headers sent straight from an untrusted peer are ignored.
//
// IPv4 addresses key as themselves ("192.0.2.1"); IPv6 addresses key by
// their /64 ("2001:db8:1:2::/64"), since one host commonly holds a whole
// /64. IPv4-mapped IPv6 addresses count as IPv4.
//
// The KeyFunc returns an error for a RemoteAddr that is not an address, a
// hop it must read that is not an address (such as "unknown" or an
// obfuscated identifier), or more than 32 hops. An invalid (zero) prefix in
// trusted makes every call return an error.
func KeyByIP(trusted ...netip.Prefix) KeyFunc {
	prefixes := make([]netip.Prefix, len(trusted))
	for i, p := range trusted {
		if !p.IsValid() {
			err := fmt.Errorf("ratelimit: KeyByIP: trusted prefix %d is not a valid prefix", i)
			return func(*http.Request) (string, error) { return "", err }
		}
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), max(p.Bits()-96, 0))
		}
		prefixes[i] = p.Masked()
	}
	isTrusted := func(a netip.Addr) bool {
		for _, p := range prefixes {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return func(r *http.Request) (string, error) {
		peer, err := parseHost(r.RemoteAddr)
		if err != nil {
			return "", fmt.Errorf("ratelimit: remote address %q: %w", r.RemoteAddr, err)
		}
		if !isTrusted(peer) {
			return ipKey(peer), nil
		}
		hops, err := proxyHops(r.Header)
		if err != nil {
			return "", err
		}
		for i := len(hops) - 1; i >= 0; i-- {
			a, err := parseHost(hops[i])
			if err != nil {
				return "", fmt.Errorf("ratelimit: forwarded hop %q: %w", hops[i], err)
			}
			if !isTrusted(a) || i == 0 {
				return ipKey(a), nil
			}
		}
		return ipKey(peer), nil
	}
}

// ipKey is the key of a: the address for IPv4, its /64 for IPv6.
func ipKey(a netip.Addr) string {
	if a.Is4() {
		return a.String()
	}
	return netip.PrefixFrom(a, 64).Masked().String()
}

// parseHost parses "addr", "addr:port", "[v6]" or "[v6]:port", dropping
// any zone and unmapping IPv4-mapped addresses.
func parseHost(s string) (netip.Addr, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, errors.New("unclosed '['")
		}
		rest := s[end+1:]
		if rest != "" && (rest[0] != ':' || !isPort(rest[1:])) {
			return netip.Addr{}, errors.New("not an address")
		}
		s = s[1:end]
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() {
			return netip.Addr{}, errors.New("not an IPv6 address")
		}
		return a.WithZone("").Unmap(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.WithZone("").Unmap(), nil
	}
	if i := strings.LastIndexByte(s, ':'); i > 0 && isPort(s[i+1:]) {
		if a, err := netip.ParseAddr(s[:i]); err == nil && a.Is4() {
			return a, nil
		}
	}
	return netip.Addr{}, errors.New("not an IP address")
}

func isPort(s string) bool {
	if s == "" || len(s) > 5 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// proxyHops returns the client-side hops the trusted proxies recorded, in
// order from the original client to the nearest proxy: the for= values of
// Forwarded if that header is present, else the X-Forwarded-For entries.
func proxyHops(h http.Header) ([]string, error) {
	if fwd := h.Values("Forwarded"); len(fwd) > 0 {
		var hops []string
		for _, line := range fwd {
			for el := range splitQuoted(line, ',') {
				v, ok := forwardedFor(el)
				if !ok {
					return nil, fmt.Errorf("ratelimit: Forwarded element %q has no valid for= parameter", strings.TrimSpace(el))
				}
				if hops = append(hops, v); len(hops) > maxHops {
					return nil, fmt.Errorf("ratelimit: Forwarded has more than %d hops", maxHops)
				}
			}
		}
		return hops, nil
	}
	var hops []string
	for _, line := range h.Values("X-Forwarded-For") {
		for v := range strings.SplitSeq(line, ",") {
			if v = strings.TrimSpace(v); v == "" {
				continue
			}
			if hops = append(hops, v); len(hops) > maxHops {
				return nil, fmt.Errorf("ratelimit: X-Forwarded-For has more than %d hops", maxHops)
			}
		}
	}
	return hops, nil
}

// splitQuoted yields the parts of s separated by sep outside double quotes.
func splitQuoted(s string, sep byte) func(func(string) bool) {
	return func(yield func(string) bool) {
		start, quoted := 0, false
		for i := 0; i < len(s); i++ {
			switch c := s[i]; {
			case c == '\\' && quoted:
				i++
			case c == '"':
				quoted = !quoted
			case c == sep && !quoted:
				if !yield(s[start:i]) {
					return
				}
				start = i + 1
			}
		}
		yield(s[start:])
	}
}

// forwardedFor returns the unquoted value of the for= parameter of one
// Forwarded element.
func forwardedFor(el string) (string, bool) {
	for pair := range splitQuoted(el, ';') {
		name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok || !strings.EqualFold(name, "for") {
			continue
		}
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = strings.ReplaceAll(value[1:len(value)-1], `\`, "")
		}
		return value, value != ""
	}
	return "", false
}

// MaxKeyLen bounds the keys [Middleware] accepts from a key function, and
// the header values [KeyByHeader] accepts, so that a client cannot make a
// limiter hold MaxKeys keys of a megabyte each.
const MaxKeyLen = 256

// KeyByHeader returns a KeyFunc keying requests by the value of the named
// header (its first line, trimmed). A request without it, or with an empty
// value, gets an error wrapping [ErrNoKey]; a value longer than [MaxKeyLen]
// bytes an error too. An empty or malformed name makes every call return
// an error.
func KeyByHeader(name string) KeyFunc {
	canonical := http.CanonicalHeaderKey(strings.TrimSpace(name))
	if canonical == "" || strings.ContainsAny(canonical, " \t\r\n:") {
		err := fmt.Errorf("ratelimit: KeyByHeader: %q is not a header name", name)
		return func(*http.Request) (string, error) { return "", err }
	}
	return func(r *http.Request) (string, error) {
		v := strings.TrimSpace(r.Header.Get(canonical))
		if v == "" {
			return "", fmt.Errorf("%w: header %s is missing or empty", ErrNoKey, canonical)
		}
		if len(v) > MaxKeyLen {
			return "", fmt.Errorf("ratelimit: header %s is longer than %d bytes", canonical, MaxKeyLen)
		}
		return v, nil
	}
}
