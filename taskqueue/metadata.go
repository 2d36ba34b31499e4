package taskqueue

import (
	"fmt"
	"maps"
	"strings"
	"unicode/utf8"
)

// Limits on the metadata of one task; see Metadata.
const (
	// MaxMetadataEntries is the most key-value pairs a task's metadata holds.
	MaxMetadataEntries = 16
	// MaxMetadataBytes bounds the sum of the lengths of a task's metadata
	// keys and values, in bytes.
	MaxMetadataBytes = 4096
	// maxMetadataKey bounds the length of one metadata key, in bytes.
	maxMetadataKey = 128
)

// Metadata stores m with the task and hands it to each attempt's handler
// as Job.Metadata. It carries what is not the task's input but travels
// with it from the submitter to whichever process runs the task: a trace
// context (W3C traceparent and tracestate), a correlation id, a tenant.
// The Runner knows none of its keys and does nothing with the values.
//
// m is copied, so the caller may change it once Submit returns. A later
// Metadata option replaces an earlier one; an empty m stores none.
// Metadata is not part of Info, so it is never published to Subscribe or
// Wait nor returned by Get and List: a service that serves Infos does not
// show its callers what it carries inside.
//
// Submit fails with a descriptive error when m has more than
// MaxMetadataEntries pairs, when its keys and values together are longer
// than MaxMetadataBytes, when a key is empty or longer than 128 bytes, or
// when a key or value is not valid UTF-8 or holds a NUL byte (which
// durable stores cannot keep).
func Metadata(m map[string]string) SubmitOption {
	if err := validateMetadata(m); err != nil {
		return func(c *submitConfig) { c.fail(err) }
	}
	var kept map[string]string
	if len(m) > 0 {
		kept = maps.Clone(m)
	}
	return func(c *submitConfig) { c.metadata = kept }
}

// validateMetadata checks m against the limits documented at Metadata.
func validateMetadata(m map[string]string) error {
	if len(m) > MaxMetadataEntries {
		return fmt.Errorf("taskqueue: Metadata has %d entries, more than MaxMetadataEntries (%d)", len(m), MaxMetadataEntries)
	}
	size := 0
	for k, v := range m {
		switch {
		case k == "":
			return fmt.Errorf("taskqueue: Metadata has an empty key")
		case len(k) > maxMetadataKey:
			return fmt.Errorf("taskqueue: Metadata key %.32q… is %d bytes, more than %d", k, len(k), maxMetadataKey)
		case !storable(k):
			return fmt.Errorf("taskqueue: Metadata key %q is not UTF-8 without NUL bytes", k)
		case !storable(v):
			return fmt.Errorf("taskqueue: Metadata value of key %q is not UTF-8 without NUL bytes", k)
		}
		size += len(k) + len(v)
	}
	if size > MaxMetadataBytes {
		return fmt.Errorf("taskqueue: Metadata keys and values total %d bytes, more than MaxMetadataBytes (%d)", size, MaxMetadataBytes)
	}
	return nil
}

func storable(s string) bool { return utf8.ValidString(s) && !strings.ContainsRune(s, 0) }

// Metadata returns a copy of the metadata the task was submitted with (see
// the Metadata option), or nil when it has none. It is the same for every
// attempt, wherever the attempt runs.
func (j *Job) Metadata() map[string]string {
	if len(j.metadata) == 0 {
		return nil
	}
	return maps.Clone(j.metadata)
}
