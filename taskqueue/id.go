package taskqueue

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"time"
)

// idAlphabet is Crockford's base32 in lower case: no i, l, o or u, so an id
// survives being read aloud or typed.
const idAlphabet = "0123456789abcdefghjkmnpqrstvwxyz"

// idLen is the length of a task id: 128 bits (48 of milliseconds, 80
// random) in base32.
const idLen = 26

// newID returns a fresh task id. Ids sort roughly by creation time, and
// their 80 random bits make them unguessable and unique across processes.
func newID() string {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], uint64(time.Now().UnixMilli())<<16)
	src := entropy.Get().(*randomBytes)
	src.read(raw[6:])
	entropy.Put(src)
	hi := binary.BigEndian.Uint64(raw[:8])
	lo := binary.BigEndian.Uint64(raw[8:])
	var out [idLen]byte
	// 26 base32 digits hold 130 bits; the top digit carries the top 3 bits.
	for i := idLen - 1; i >= 0; i-- {
		out[i] = idAlphabet[lo&31]
		lo = lo>>5 | hi<<59
		hi >>= 5
	}
	return string(out[:])
}

// validID reports whether id has the shape newID gives.
func validID(id string) bool {
	if len(id) != idLen || id[0] > '7' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if !isIDChar(id[i]) {
			return false
		}
	}
	return true
}

func isIDChar(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' && c != 'i' && c != 'l' && c != 'o' && c != 'u'
}

// randomBytes hands out crypto/rand bytes read in blocks, so that an id
// costs a copy rather than a call into the kernel's generator.
type randomBytes struct {
	buf [640]byte
	off int
}

var entropy = sync.Pool{New: func() any { return &randomBytes{off: len(randomBytes{}.buf)} }}

func (r *randomBytes) read(p []byte) {
	if r.off+len(p) > len(r.buf) {
		_, _ = rand.Read(r.buf[:]) // crypto/rand.Read never fails on supported platforms
		r.off = 0
	}
	r.off += copy(p, r.buf[r.off:])
}
