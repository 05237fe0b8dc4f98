package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"strings"
	"sync/atomic"
	"time"
)

// Secrets that are looked up (states, codes, access and refresh tokens)
// start with the time they were made, and so do their keys: records
// written together then sit together in a B-tree. In bbolt a batch of new
// tokens rewrites a page or two instead of one page per token, which was
// most of the cost of issuing and refreshing tokens once the grant index
// was gone (BenchmarkRotateRefreshParallel: 92 µs to ~50 µs).
//
// A secret is its prefix followed by 54 characters of base64url: 8 bytes
// of time, then 256 random bits. Its key is the same 8 bytes of time
// followed by the SHA-256 of the whole secret. The time in a token is no
// secret, and reveals only when it was issued.
const (
	secretOrderLen  = 8
	secretRandomLen = 32
	secretBodyLen   = 54 // base64 of secretOrderLen+secretRandomLen bytes
)

// lastOrder is the last time stamp handed out; stamps are strictly
// increasing within a process.
var lastOrder atomic.Int64

// nextOrder returns the current time in Unix nanoseconds, or one more than
// the last stamp if the clock has not moved past it.
func nextOrder() uint64 {
	for {
		last := lastOrder.Load()
		now := max(time.Now().UnixNano(), last+1)
		if lastOrder.CompareAndSwap(last, now) {
			return uint64(now)
		}
	}
}

// NewSecret returns a new secret with prefix, to be stored under
// SecretKey(prefix, secret).
func NewSecret(prefix string) string {
	var b [secretOrderLen + secretRandomLen]byte
	binary.BigEndian.PutUint64(b[:], nextOrder())
	rand.Read(b[secretOrderLen:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// SecretKey returns the key a secret is stored and looked up under: the
// time stamp of a secret made by NewSecret followed by the secret's
// SHA-256 digest (40 bytes). Anything else, such as a secret of the older
// format (43 characters of randomness) or a forgery, gets its plain digest
// (32 bytes), so that secrets issued before keys were ordered still work;
// the two kinds of key cannot meet, as their lengths differ.
func SecretKey(prefix, secret string) []byte {
	if stamp, ok := secretStamp(prefix, secret); ok {
		key := make([]byte, secretOrderLen, secretOrderLen+sha256.Size)
		copy(key, stamp[:])
		sum := sha256.Sum256([]byte(secret))
		return append(key, sum[:]...)
	}
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// secretStamp returns the time stamp of a secret made by NewSecret with
// prefix.
func secretStamp(prefix, secret string) (stamp [secretOrderLen]byte, ok bool) {
	body, ok := strings.CutPrefix(secret, prefix)
	if !ok || len(body) != secretBodyLen {
		return stamp, false
	}
	// 12 characters are exactly 9 bytes, the stamp and one more.
	var head [9]byte
	if n, err := base64.RawURLEncoding.Decode(head[:], []byte(body[:12])); err != nil || n != len(head) {
		return stamp, false
	}
	copy(stamp[:], head[:])
	return stamp, true
}

// sortedBase64 is base64 with its alphabet in ASCII order, so that the
// text of IDs sorts as their bytes do.
var sortedBase64 = base64.NewEncoding("-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz").WithPadding(base64.NoPadding)

// NewID returns a new grant ID: 22 URL-safe characters that sort by the
// time the ID was made, followed by 64 random bits. Stored under it, new
// grants sit together, and listings are in the order grants were made.
func NewID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:], nextOrder())
	rand.Read(b[8:])
	return sortedBase64.EncodeToString(b[:])
}
