package taskqueue_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/asynckit/asynckit/taskqueue"
)

func TestMetadataIsBounded(t *testing.T) {
	r := newRunner(t, taskqueue.Options{})
	ctx := context.Background()
	many := make(map[string]string, taskqueue.MaxMetadataEntries+1)
	for i := range taskqueue.MaxMetadataEntries + 1 {
		many[fmt.Sprintf("k%d", i)] = "v"
	}
	for _, tc := range []struct {
		name string
		md   map[string]string
		want string // in the error
	}{
		{"too many entries", many, "17 entries, more than MaxMetadataEntries (16)"},
		{"too many bytes", map[string]string{"a": strings.Repeat("x", taskqueue.MaxMetadataBytes)}, "total 4097 bytes, more than MaxMetadataBytes (4096)"},
		{"empty key", map[string]string{"": "v"}, "empty key"},
		{"long key", map[string]string{strings.Repeat("k", 129): "v"}, "is 129 bytes, more than 128"},
		{"key not UTF-8", map[string]string{"\xff": "v"}, "not UTF-8 without NUL bytes"},
		{"NUL in a value", map[string]string{"k": "a\x00b"}, `value of key "k" is not UTF-8 without NUL bytes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			info, err := r.Submit(ctx, "double", args{N: 1}, taskqueue.Metadata(tc.md))
			require.ErrorContains(t, err, "taskqueue: Metadata")
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, taskqueue.Info{}, info)
		})
	}
	st, err := r.Stats(ctx)
	require.NoError(t, err)
	require.Equal(t, taskqueue.Stats{}, st, "nothing was stored")

	t.Run("the limits themselves are admitted", func(t *testing.T) {
		full := make(map[string]string, taskqueue.MaxMetadataEntries)
		for i := range taskqueue.MaxMetadataEntries {
			full[fmt.Sprintf("k%02d", i)] = ""
		}
		full["k00"] = strings.Repeat("x", taskqueue.MaxMetadataBytes-3*taskqueue.MaxMetadataEntries)
		_, err := r.Submit(ctx, "double", args{N: 1}, taskqueue.Metadata(full))
		require.NoError(t, err)
		_, err = r.Submit(ctx, "double", args{N: 1}, taskqueue.Metadata(map[string]string{strings.Repeat("k", 128): "v"}))
		require.NoError(t, err)
	})
}
