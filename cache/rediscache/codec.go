package rediscache

import "encoding/json"

// Codec turns values into the bytes stored in Redis and back. Marshal and
// Unmarshal must be safe for concurrent use.
type Codec[V any] interface {
	Marshal(v V) ([]byte, error)
	Unmarshal(data []byte) (V, error)
}

// JSON is the default [Codec]: encoding/json. Its zero value is ready to use.
type JSON[V any] struct{}

// Marshal returns the JSON encoding of v.
func (JSON[V]) Marshal(v V) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes JSON data into a new V.
func (JSON[V]) Unmarshal(data []byte) (V, error) {
	var v V
	err := json.Unmarshal(data, &v)
	return v, err
}

var _ Codec[int] = JSON[int]{}
