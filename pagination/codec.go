package pagination

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"reflect"
	"sync"
	"time"
)

// The cursor format. Every cursor is the unpadded URL-safe base64 of
//
//	version (1 byte) | flags (1 byte) | issued-at (varint, Unix ms)
//	| query hash (8 bytes, if bound) | body | tag (16 bytes)
//
// where body is the JSON of the value, or nonce | AES-GCM sealed JSON when
// encrypted, and tag is HMAC-SHA256 over everything before it, truncated to
// 128 bits as RFC 4868 does, which keeps cursors short while leaving a forger
// 2^128 guesses.
const (
	formatVersion = 1

	flagBound     = 1 << 0
	flagEncrypted = 1 << 1
	knownFlags    = flagBound | flagEncrypted

	tagSize       = 16
	queryHashSize = 8
	// minRawSize is the smallest byte string that can be a cursor: version,
	// flags, a one-byte varint and the tag.
	minRawSize = 2 + 1 + tagSize

	// MinKeySize is the shortest key NewCodec accepts, in bytes.
	MinKeySize = 32
	// MaxKeys is the most keys a Codec accepts. A cursor that no key signed
	// costs one HMAC per key to reject, so the count is bounded.
	MaxKeys = 16
	// DefaultMaxLen is the longest cursor, in characters, that a Codec
	// decodes unless CodecOptions.MaxLen says otherwise.
	DefaultMaxLen = 1024
	// maxMaxLen bounds CodecOptions.MaxLen so a misconfiguration cannot
	// invite megabyte cursors.
	maxMaxLen = 64 << 10
)

// Labels that derive the signing and encryption keys from each key the
// caller supplies, so the two uses never share a key.
var (
	macLabel = []byte("asynckit/pagination/v1 cursor signature")
	encLabel = []byte("asynckit/pagination/v1 cursor encryption")
)

// ErrInvalidCursor is the error Decode returns, wrapped, for anything it
// cannot accept: bad base64, truncation, a wrong version, a bad signature,
// expiry, a query mismatch, a cursor over the maximum length, or a value that
// does not fit the target type. The message names the case; a handler
// usually answers 400 with it.
var ErrInvalidCursor = errors.New("pagination: invalid cursor")

// ErrCursorExpired is returned by Decode for a genuine cursor older than
// the Codec's TTL. errors.Is(err, ErrInvalidCursor) also holds for it; test
// for ErrCursorExpired to tell a client to start over from the first page.
var ErrCursorExpired error = &cursorError{reason: "expired"}

// cursorError is an ErrInvalidCursor with the reason it was refused, and the
// underlying error when there is one (a JSON type mismatch).
type cursorError struct {
	reason string
	err    error
}

func (e *cursorError) Error() string {
	if e.err != nil {
		return "pagination: invalid cursor: " + e.reason + ": " + e.err.Error()
	}
	return "pagination: invalid cursor: " + e.reason
}

func (e *cursorError) Is(target error) bool { return target == ErrInvalidCursor }

func (e *cursorError) Unwrap() error { return e.err }

// The reasons that carry no data are allocated once, so that refusing
// hostile input costs no allocation.
var (
	errEmpty         = &cursorError{reason: "empty"}
	errTooLong       = &cursorError{reason: "longer than the maximum length"}
	errBadBase64     = &cursorError{reason: "not URL-safe base64"}
	errTruncated     = &cursorError{reason: "truncated"}
	errVersion       = &cursorError{reason: "unsupported format version"}
	errSignature     = &cursorError{reason: "bad signature"}
	errMalformed     = &cursorError{reason: "malformed"}
	errQueryMismatch = &cursorError{reason: "issued for a different query"}
	errNotBound      = &cursorError{reason: "not bound to a query, but this listing requires one"}
	errBound         = &cursorError{reason: "bound to a query, but this listing has none"}
	errDecrypt       = &cursorError{reason: "cannot be decrypted"}
)

// CodecOptions configures a Codec made by NewCodecWith. The zero value
// consists entirely of defaults: no expiry, no encryption, DefaultMaxLen.
type CodecOptions struct {
	// TTL, when positive, makes Decode refuse a cursor issued longer ago
	// than TTL with ErrCursorExpired. The issue time is part of every
	// cursor, at millisecond resolution, so a TTL can be introduced or
	// shortened later and applies to cursors already handed out. Negative is
	// an error. Defaults to 0: cursors never expire.
	TTL time.Duration

	// Encrypt seals the cursor's value with AES-256-GCM, so a client cannot
	// read the key values it carries. The AES key is derived from each
	// signing key, so rotation works as for signing. A random 96-bit nonce
	// per cursor adds 28 bytes; keep a key below some 2^32 encrypted cursors
	// before rotating it. Decode accepts unencrypted cursors signed by a
	// known key even when Encrypt is set, so turning it on breaks no link.
	// Defaults to false.
	Encrypt bool

	// MaxLen is the longest cursor, in characters, that Decode reads;
	// anything longer is refused before any other work, and Encode refuses
	// to produce one. Between 64 and 65536; defaults to DefaultMaxLen.
	MaxLen int

	// Now returns the current time, for issue times and expiry. Defaults to
	// time.Now.
	Now func() time.Time
}

// codecKey is one caller key, with a pool of HMAC states keyed by it (an
// HMAC state is not safe for concurrent use and costs allocations to build,
// so Encode and Decode borrow one) and its AES-GCM AEAD.
type codecKey struct {
	macs sync.Pool // of hash.Hash
	aead cipher.AEAD
}

func (k *codecKey) mac() hash.Hash  { return k.macs.Get().(hash.Hash) }
func (k *codecKey) put(h hash.Hash) { h.Reset(); k.macs.Put(h) }

// Codec turns cursor values into compact, URL-safe, opaque strings and back,
// signed with HMAC-SHA256 so a client can neither forge nor alter one.
//
// A Codec is immutable and safe for concurrent use. Bind returns a copy
// whose cursors only decode under the same query.
type Codec struct {
	keys    []*codecKey // keys[0] signs; all verify
	ttl     time.Duration
	encrypt bool
	maxLen  int
	now     func() time.Time

	bound     bool
	queryHash [queryHashSize]byte

	// nonces supplies AES-GCM nonces; crypto/rand unless a test makes
	// encryption deterministic.
	nonces io.Reader
}

// NewCodec returns a Codec with default options that signs with keys[0] and
// accepts cursors signed by any of keys, so a key can be rotated without
// breaking cursors already handed out: put the new key first and keep the
// old one until its cursors no longer matter. It is NewCodecWith with zero
// CodecOptions.
//
// Each key must be at least MinKeySize (32) random bytes; no key, more than
// MaxKeys keys, or a short key is an error. The Codec keeps only keys
// derived from them, so the caller may reuse the slices.
func NewCodec(keys ...[]byte) (*Codec, error) {
	return NewCodecWith(CodecOptions{}, keys...)
}

// NewCodecWith is NewCodec with options; see CodecOptions for each. Invalid
// options are an error, as are invalid keys.
func NewCodecWith(opts CodecOptions, keys ...[]byte) (*Codec, error) {
	if len(keys) == 0 {
		return nil, errors.New("pagination: NewCodec needs at least one key")
	}
	if len(keys) > MaxKeys {
		return nil, fmt.Errorf("pagination: %d keys given; at most %d are accepted", len(keys), MaxKeys)
	}
	if opts.TTL < 0 {
		return nil, fmt.Errorf("pagination: negative cursor TTL %v", opts.TTL)
	}
	maxLen := opts.MaxLen
	if maxLen == 0 {
		maxLen = DefaultMaxLen
	}
	if maxLen < 64 || maxLen > maxMaxLen {
		return nil, fmt.Errorf("pagination: cursor MaxLen %d is outside 64..%d", opts.MaxLen, maxMaxLen)
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	c := &Codec{ttl: opts.TTL, encrypt: opts.Encrypt, maxLen: maxLen, now: now, nonces: rand.Reader}
	for i, key := range keys {
		if len(key) < MinKeySize {
			return nil, fmt.Errorf("pagination: key %d is %d bytes; at least %d random bytes are required", i, len(key), MinKeySize)
		}
		macKey := derive(key, macLabel)
		k := &codecKey{}
		k.macs.New = func() any { return hmac.New(sha256.New, macKey) }
		// Built even when Encrypt is off, so a Codec that has stopped
		// encrypting can still read the encrypted cursors it issued.
		block, err := aes.NewCipher(derive(key, encLabel))
		if err != nil {
			return nil, fmt.Errorf("pagination: key %d: %w", i, err)
		}
		if k.aead, err = cipher.NewGCM(block); err != nil {
			return nil, fmt.Errorf("pagination: key %d: %w", i, err)
		}
		c.keys = append(c.keys, k)
	}
	return c, nil
}

// derive returns HMAC-SHA256(key, label): a 32-byte key for one purpose.
func derive(key, label []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(label)
	return m.Sum(nil)
}

// Bind returns a copy of c whose cursors are tied to one query: the parts
// that define a listing, typically its sort and its filter values, such as
// Bind("tasks", "status="+status). A cursor encoded by the bound Codec
// decodes only with a Codec bound to the same parts; any other, bound or
// not, refuses it with ErrInvalidCursor, so a client cannot splice a cursor
// from one listing into another. Parts are length-prefixed before hashing,
// so ("ab", "c") and ("a", "bc") differ.
//
// The cursor carries a 64-bit SHA-256 prefix of the parts, never the parts.
// Binding a bound Codec replaces its binding. Bind costs one small
// allocation and a hash of the parts; do it once per request, not per row.
// Bind of a nil Codec returns nil.
func (c *Codec) Bind(parts ...string) *Codec {
	if c == nil {
		return nil
	}
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	for _, p := range parts {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(p)))])
		h.Write([]byte(p))
	}
	b := *c
	b.bound = true
	copy(b.queryHash[:], h.Sum(nil))
	return &b
}

// scratch holds the buffers and JSON machinery of one Encode or Decode, so
// that the hot path reuses them instead of allocating.
type scratch struct {
	raw  []byte
	out  []byte
	json bytes.Buffer
	enc  *json.Encoder
	in   bytes.Reader
	dec  *json.Decoder
}

var scratchPool = sync.Pool{New: func() any {
	s := &scratch{raw: make([]byte, 0, 256), out: make([]byte, 0, 344)}
	s.enc = json.NewEncoder(&s.json)
	s.enc.SetEscapeHTML(false)
	s.dec = json.NewDecoder(&s.in)
	s.dec.DisallowUnknownFields()
	return s
}}

// maxPooledScratch keeps one huge cursor from pinning large buffers in the
// pool.
const maxPooledScratch = 4 << 10

func putScratch(s *scratch) {
	if cap(s.raw) > maxPooledScratch || cap(s.out) > maxPooledScratch || s.json.Cap() > maxPooledScratch {
		return
	}
	scratchPool.Put(s)
}

// Encode returns the cursor for v, which must be JSON-serialisable (a small
// struct of the sort key values of the last row is typical). The result is
// URL-safe base64 without padding, needs no escaping in a query string, and
// is signed with the first key; it records the time of issue and, for a
// bound Codec, the query.
//
// Encoding a struct of a time.Time and an int64 takes under a microsecond
// on an idle core and three allocations, one of them boxing v
// (BenchmarkEncode). A value json.Marshal rejects is an error, as is a cursor
// longer than the Codec's MaxLen; neither wraps ErrInvalidCursor.
func (c *Codec) Encode(v any) (string, error) {
	if err := c.check(); err != nil {
		return "", err
	}
	s := scratchPool.Get().(*scratch)
	defer putScratch(s)

	s.json.Reset()
	if err := s.enc.Encode(v); err != nil {
		return "", fmt.Errorf("pagination: encode cursor value %T: %w", v, err)
	}
	body := bytes.TrimSuffix(s.json.Bytes(), []byte{'\n'})

	flags := byte(0)
	if c.bound {
		flags |= flagBound
	}
	if c.encrypt {
		flags |= flagEncrypted
	}
	raw := append(s.raw[:0], formatVersion, flags)
	raw = binary.AppendVarint(raw, c.now().UnixMilli())
	if c.bound {
		raw = append(raw, c.queryHash[:]...)
	}
	key := c.keys[0]
	if c.encrypt {
		header := len(raw)
		nonceSize := key.aead.NonceSize()
		raw = append(raw, make([]byte, nonceSize)...)
		nonce := raw[header:]
		if _, err := io.ReadFull(c.nonces, nonce); err != nil {
			return "", fmt.Errorf("pagination: cursor nonce: %w", err)
		}
		raw = key.aead.Seal(raw, nonce, body, raw[:header])
	} else {
		raw = append(raw, body...)
	}
	m := key.mac()
	m.Write(raw)
	raw = m.Sum(raw)[:len(raw)+tagSize]
	key.put(m)
	s.raw = raw

	n := base64.RawURLEncoding.EncodedLen(len(raw))
	if n > c.maxLen {
		return "", fmt.Errorf("pagination: cursor of %d characters exceeds the codec's MaxLen of %d", n, c.maxLen)
	}
	s.out = base64.RawURLEncoding.AppendEncode(s.out[:0], raw)
	return string(s.out), nil
}

// Decode checks cursor and stores its value in v, which must be a non-nil
// pointer (as for json.Unmarshal). Anything a client may have sent wrong
// returns an error wrapping ErrInvalidCursor whose message says which case
// it is: empty, over MaxLen (refused before any other work), bad base64,
// truncated, an unsupported version, a signature no key makes, expired
// (also ErrCursorExpired), issued for a different query (see Bind), or a
// value that does not fit v, unknown fields included. Decode never panics,
// whatever cursor holds; a nil or non-pointer v is an error that does not
// wrap ErrInvalidCursor.
//
// An empty cursor usually means "first page": test for it before calling
// Decode. Decoding a struct of a time.Time and an int64 takes under a
// microsecond on an idle core and no allocation (BenchmarkDecode); a cursor
// no key signed costs one HMAC per key. On error, v may have been partly
// written.
func (c *Codec) Decode(cursor string, v any) error {
	if err := c.check(); err != nil {
		return err
	}
	if rv := reflect.ValueOf(v); rv.Kind() != reflect.Pointer || rv.IsNil() {
		return fmt.Errorf("pagination: Decode needs a non-nil pointer, got %T", v)
	}
	if cursor == "" {
		return errEmpty
	}
	if len(cursor) > c.maxLen {
		return errTooLong
	}
	s := scratchPool.Get().(*scratch)
	defer putScratch(s)
	raw, ok := appendDecodeBase64(s.raw[:0], cursor)
	if !ok {
		return errBadBase64
	}
	s.raw = raw
	if len(raw) < minRawSize {
		return errTruncated
	}
	if raw[0] != formatVersion {
		return errVersion
	}
	signed, tag := raw[:len(raw)-tagSize], raw[len(raw)-tagSize:]
	key := c.verify(signed, tag, s)
	if key == nil {
		return errSignature
	}

	// Authentic from here on: a malformed header is a bug in an Encode,
	// not an attack, but it is still refused rather than trusted.
	flags := signed[1]
	if flags&^knownFlags != 0 {
		return errMalformed
	}
	issued, n := binary.Varint(signed[2:])
	if n <= 0 {
		return errMalformed
	}
	rest := signed[2+n:]
	if c.ttl > 0 && c.now().Sub(time.UnixMilli(issued)) > c.ttl {
		return ErrCursorExpired
	}
	if flags&flagBound != 0 {
		if len(rest) < queryHashSize {
			return errMalformed
		}
		if !c.bound {
			return errBound
		}
		if !hmac.Equal(rest[:queryHashSize], c.queryHash[:]) {
			return errQueryMismatch
		}
		rest = rest[queryHashSize:]
	} else if c.bound {
		return errNotBound
	}
	body := rest
	if flags&flagEncrypted != 0 {
		ns := key.aead.NonceSize()
		if len(rest) < ns+key.aead.Overhead() {
			return errMalformed
		}
		header := signed[:len(signed)-len(rest)]
		// Opened into the space after the tag, so the sealed bytes are not
		// overwritten while they are read.
		opened, err := key.aead.Open(raw[len(raw):], rest[:ns], rest[ns:], header)
		if err != nil {
			return errDecrypt
		}
		body = opened
	}
	return s.decodeJSON(body, v)
}

// check refuses a nil Codec, or one not made by NewCodec.
func (c *Codec) check() error {
	if c == nil || len(c.keys) == 0 {
		return errors.New("pagination: Codec not made by NewCodec")
	}
	return nil
}

// verify returns the key whose HMAC of signed equals tag, or nil. Every key
// is tried, first key first, so a cursor signed before a rotation still
// verifies.
func (c *Codec) verify(signed, tag []byte, s *scratch) *codecKey {
	for _, k := range c.keys {
		m := k.mac()
		m.Write(signed)
		sum := m.Sum(s.out[:0])
		s.out = sum
		ok := hmac.Equal(sum[:tagSize], tag)
		k.put(m)
		if ok {
			return k
		}
	}
	return nil
}

// decodeJSON decodes exactly one JSON value from body into v with the
// pooled decoder, refusing unknown fields and trailing data.
func (s *scratch) decodeJSON(body []byte, v any) error {
	s.in.Reset(body)
	start := s.dec.InputOffset()
	err := s.dec.Decode(v)
	if err == nil && s.dec.InputOffset()-start != int64(len(body)) {
		err = errors.New("trailing data after the value")
	}
	if err != nil {
		// A decoder that failed may hold a sticky error or unread input;
		// replace it rather than pool it.
		s.dec = json.NewDecoder(&s.in)
		s.dec.DisallowUnknownFields()
		return &cursorError{reason: fmt.Sprintf("does not fit %T", v), err: err}
	}
	return nil
}

// base64Values maps each byte of the URL-safe base64 alphabet to its 6-bit
// value, and every other byte to 0xff.
var base64Values = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	for i, c := range "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_" {
		t[c] = byte(i)
	}
	return t
}()

// appendDecodeBase64 appends the bytes that s, unpadded URL-safe base64,
// encodes to dst. Unlike encoding/base64, it refuses line breaks and
// non-zero trailing bits, so every cursor has exactly one spelling, and it
// reads the string in place rather than copying it to a []byte.
func appendDecodeBase64(dst []byte, s string) ([]byte, bool) {
	if len(s)%4 == 1 {
		return dst, false
	}
	var acc uint32
	var bits uint
	for i := 0; i < len(s); i++ {
		v := base64Values[s[i]]
		if v == 0xff {
			return dst, false
		}
		acc = acc<<6 | uint32(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			dst = append(dst, byte(acc>>bits))
			acc &= 1<<bits - 1
		}
	}
	// What is left are the padding bits of the last group: canonical
	// encoders leave them zero.
	return dst, acc == 0
}
