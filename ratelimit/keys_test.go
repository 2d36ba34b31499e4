package ratelimit_test

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/ratelimit"
)

func TestKeyByIP(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")}
	for _, tc := range []struct {
		name    string
		remote  string
		headers map[string][]string
		want    string // "" means an error
	}{
		{"an untrusted peer is the client", "203.0.113.7:4242", nil, "203.0.113.7"},
		{"a spoofed X-Forwarded-For from an untrusted peer is ignored", "203.0.113.7:4242",
			map[string][]string{"X-Forwarded-For": {"1.1.1.1"}}, "203.0.113.7"},
		{"a spoofed Forwarded from an untrusted peer is ignored", "203.0.113.7:4242",
			map[string][]string{"Forwarded": {"for=1.1.1.1"}}, "203.0.113.7"},
		{"a trusted peer's X-Forwarded-For names the client", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"198.51.100.9"}}, "198.51.100.9"},
		{"the rightmost untrusted hop wins over a forged leftmost one", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.9, 10.1.2.3"}}, "198.51.100.9"},
		{"hops across several header lines are read in order", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"6.6.6.6, 198.51.100.9", "10.1.2.3"}}, "198.51.100.9"},
		{"all hops trusted: the leftmost is the client", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"10.9.9.9, 10.1.2.3"}}, "10.9.9.9"},
		{"a trusted peer with no header is the client", "10.0.0.1:80", nil, "10.0.0.1"},
		{"Forwarded is preferred to X-Forwarded-For", "10.0.0.1:80",
			map[string][]string{"Forwarded": {`for=192.0.2.60;proto=http;by=10.0.0.1, for="[2001:db8:cafe::17]:4711"`},
				"X-Forwarded-For": {"6.6.6.6"}}, "2001:db8:cafe::/64"},
		{"Forwarded with a port and quotes", "10.0.0.1:80",
			map[string][]string{"Forwarded": {`For="192.0.2.60:8080"`}}, "192.0.2.60"},
		{"IPv6 clients are bucketed by /64", "[2001:db8:1:2:aaaa:bbbb:cccc:dddd]:443", nil, "2001:db8:1:2::/64"},
		{"another address in the same /64 shares the key", "[2001:db8:1:2::1]:443", nil, "2001:db8:1:2::/64"},
		{"IPv4-mapped IPv6 counts as IPv4", "[::ffff:192.0.2.1]:443", nil, "192.0.2.1"},
		{"a trusted IPv6 proxy", "[fd00::1]:443",
			map[string][]string{"X-Forwarded-For": {"2001:db8:9::5"}}, "2001:db8:9::/64"},
		{"a hop with a port", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"198.51.100.9:5555"}}, "198.51.100.9"},
		{"an unknown hop that must be read is an error", "10.0.0.1:80",
			map[string][]string{"Forwarded": {"for=unknown"}}, ""},
		{"a Forwarded element without for= is an error", "10.0.0.1:80",
			map[string][]string{"Forwarded": {"proto=https"}}, ""},
		{"a garbage hop that must be read is an error", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"not-an-ip"}}, ""},
		{"garbage left of the client is never read", "10.0.0.1:80",
			map[string][]string{"X-Forwarded-For": {"garbage, 198.51.100.9"}}, "198.51.100.9"},
		{"a remote address that is not an address is an error", "pipe", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			for k, vs := range tc.headers {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			got, err := ratelimit.KeyByIP(trusted...)(r)
			if tc.want == "" {
				require.Error(t, err)
				require.Empty(t, got)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestKeyByIPTooManyHops(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.1:80"
	for range 40 {
		r.Header.Add("X-Forwarded-For", "10.0.0.2")
	}
	_, err := ratelimit.KeyByIP(netip.MustParsePrefix("10.0.0.0/8"))(r)
	require.ErrorContains(t, err, "more than 32 hops")
}

func TestKeyByIPRejectsAnInvalidPrefix(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	_, err := ratelimit.KeyByIP(netip.Prefix{})(r)
	require.ErrorContains(t, err, "not a valid prefix")
}

func TestKeyByHeader(t *testing.T) {
	t.Parallel()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.Header.Set("X-Api-Key", "  k-123 ")
	got, err := ratelimit.KeyByHeader("x-api-key")(r)
	require.NoError(t, err)
	require.Equal(t, "k-123", got)

	_, err = ratelimit.KeyByHeader("X-Other")(r)
	require.ErrorIs(t, err, ratelimit.ErrNoKey)

	r.Header.Set("X-Api-Key", strings.Repeat("k", ratelimit.MaxKeyLen+1))
	_, err = ratelimit.KeyByHeader("X-Api-Key")(r)
	require.ErrorContains(t, err, "longer than 256 bytes")

	_, err = ratelimit.KeyByHeader("")(r)
	require.ErrorContains(t, err, "not a header name")
	_, err = ratelimit.KeyByHeader("Bad:Name")(r)
	require.ErrorContains(t, err, "not a header name")
}

// FuzzKeyByIP: whatever the peer and headers, KeyByIP never panics, and a
// key it returns is an IPv4 address or an IPv6 /64 that parses back.
func FuzzKeyByIP(f *testing.F) {
	f.Add("10.0.0.1:80", "6.6.6.6, 198.51.100.9", `for="[2001:db8::1]:80";by=x, for=192.0.2.1`)
	f.Add("[fd00::1]:1", "[2001:db8::1]:9, junk", "")
	f.Add("203.0.113.7:1", "", `for="\"quoted\\",for=1.2.3.4`)
	key := ratelimit.KeyByIP(netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8"))
	f.Fuzz(func(t *testing.T, remote, xff, fwd string) {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = remote
		if xff != "" {
			r.Header.Set("X-Forwarded-For", xff)
		}
		if fwd != "" {
			r.Header.Set("Forwarded", fwd)
		}
		got, err := key(r)
		if err != nil {
			if got != "" {
				t.Fatalf("error %v with key %q", err, got)
			}
			return
		}
		if a, err := netip.ParseAddr(got); err == nil {
			if !a.Is4() {
				t.Fatalf("key %q is a bare IPv6 address, want a /64", got)
			}
			return
		}
		p, err := netip.ParsePrefix(got)
		if err != nil || p.Bits() != 64 || !p.Addr().Is6() || p.Masked() != p {
			t.Fatalf("key %q is neither an IPv4 address nor an IPv6 /64", got)
		}
	})
}
