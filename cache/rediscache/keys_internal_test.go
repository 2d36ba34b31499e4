package rediscache

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

var kinds = []string{kindValue, kindLock}

// decodeKey inverts redisKey, which proves it injective: it returns the
// namespace, kind and string key a Redis key was made from.
func decodeKey(key string) (ns, kind, skey string, ok bool) {
	i := strings.IndexByte(key, '{')
	if i < 1 || !strings.HasPrefix(key[i:], "{:") || !strings.HasSuffix(key, "}") {
		return "", "", "", false
	}
	return key[:i-1], key[i-1 : i], key[i+2 : len(key)-1], true
}

// hashTag returns the part of key Redis Cluster hashes: the text between
// the first "{" and the first "}" after it, if that is not empty, and
// otherwise the whole key.
func hashTag(key string) string {
	i := strings.IndexByte(key, '{')
	if i < 0 {
		return key
	}
	j := strings.IndexByte(key[i+1:], '}')
	if j <= 0 {
		return key
	}
	return key[i+1 : i+1+j]
}

// FuzzKeys checks that no two (namespace, kind, key) share a Redis key, by
// decoding every key back and by comparing the keys of two pairs, and that
// the keys of one (namespace, key) share a hash tag, which is never empty.
func FuzzKeys(f *testing.F) {
	for _, s := range [][4]string{
		{"x:", "v:1", "x:v:", "1"},
		{"y:", "l:2", "y:v:", "2"},
		{"z", "v:3", "zv:", "3"},
		{"app:", "", "app:", "}"},
		{"a", "}{", "a", "{:}"},
		{"ns:", "k}v{:", "ns:k}", "v{:"},
		{"é:", "\\x00", "é:", "key with spaces"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, ns1, key1, ns2, key2 string) {
		for _, ns := range []string{ns1, ns2} {
			if ns == "" || strings.ContainsAny(ns, "{}") {
				t.Skip("New refuses this namespace")
			}
		}
		for _, k1 := range kinds {
			a := redisKey(ns1, k1, key1)
			gotNS, gotKind, gotKey, ok := decodeKey(a)
			require.True(t, ok, "%q", a)
			require.Equal(t, [3]string{ns1, k1, key1}, [3]string{gotNS, gotKind, gotKey}, "%q decodes back", a)
			require.True(t, strings.HasPrefix(a, ns1), "%q starts with its namespace", a)
			tag := hashTag(a)
			require.NotEqual(t, a, tag, "%q has a hash tag", a)
			require.Equal(t, hashTag(redisKey(ns1, kindValue, key1)), tag, "every key of one key shares a slot")
			for _, k2 := range kinds {
				b := redisKey(ns2, k2, key2)
				if ns1 != ns2 || k1 != k2 || key1 != key2 {
					require.NotEqual(t, a, b, "(%q, %q, %q) and (%q, %q, %q)", ns1, k1, key1, ns2, k2, key2)
				}
			}
		}
	})
}
