package taskqueue

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"time"
)

// A List cursor is a position in the listing, not a secret: it is the
// base64url (unpadded) encoding of a version byte, the CreatedAt of the last
// task of the previous page in Unix nanoseconds (8 bytes, big-endian), and
// that task's id. Anyone can read it; a forged one can only start a listing
// at another position, which List's filter still applies to. Decoding is
// strict: the wrong length, version, alphabet, id shape or a non-canonical
// encoding is ErrInvalidCursor.
const (
	cursorVersion = 1
	cursorRawLen  = 1 + 8 + idLen
)

var cursorEncoding = base64.RawURLEncoding.Strict()

func encodeCursor(p Position) string {
	var raw [cursorRawLen]byte
	raw[0] = cursorVersion
	binary.BigEndian.PutUint64(raw[1:9], uint64(p.CreatedAt.UnixNano()))
	copy(raw[9:], p.ID)
	return cursorEncoding.EncodeToString(raw[:])
}

func decodeCursor(s string) (Position, error) {
	if len(s) != cursorEncoding.EncodedLen(cursorRawLen) {
		return Position{}, fmt.Errorf("%w: wrong length", ErrInvalidCursor)
	}
	var raw [cursorRawLen]byte
	n, err := cursorEncoding.Decode(raw[:], []byte(s))
	if err != nil || n != cursorRawLen {
		return Position{}, fmt.Errorf("%w: not base64url", ErrInvalidCursor)
	}
	if raw[0] != cursorVersion {
		return Position{}, fmt.Errorf("%w: unknown version %d", ErrInvalidCursor, raw[0])
	}
	id := string(raw[9:])
	if !validID(id) {
		return Position{}, fmt.Errorf("%w: malformed task id", ErrInvalidCursor)
	}
	ns := int64(binary.BigEndian.Uint64(raw[1:9]))
	return Position{CreatedAt: time.Unix(0, ns), ID: id}, nil
}
