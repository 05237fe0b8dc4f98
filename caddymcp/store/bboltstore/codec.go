package bboltstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Access tokens are read on every request to a protected resource, so they
// are stored in a compact binary form instead of JSON: decoding JSON was
// most of the cost of a lookup (about 5µs and 20 allocations), decoding
// this is one copy and a few slices of it.
//
// After the 8-byte expiry prefix every value has, an access token is
//
//	accessV1 | uvarint-prefixed: hash, grant ID, client ID, login, name,
//	email, avatar URL, scope, resource | varint user ID |
//	varint expiry seconds | uvarint expiry nanoseconds
//
// A JSON record starts with '{', which is not accessV1, so access tokens
// written as JSON by schema version 1 are still read (and expire or are
// swept like any other); the schema version went to 2 so that a build that
// reads only JSON refuses a file that may hold binary records.
const accessV1 = 0x01

// encodeGrant is the stored value of a grant.
func encodeGrant(g *store.Grant) ([]byte, error) { return encode(unixNano(g.ExpiresAt), g) }

// encodeRefresh is the stored value of a refresh token.
func encodeRefresh(rt *store.RefreshToken) ([]byte, error) {
	return encode(unixNano(rt.ExpiresAt), rt)
}

// encodeAccess is the stored value of an access token.
func encodeAccess(at *store.AccessToken) ([]byte, error) {
	strs := [...]string{at.GrantID, at.ClientID, at.User.Login, at.User.Name, at.User.Email, at.User.AvatarURL, at.Scope, at.Resource}
	n := 8 + 1 + binary.MaxVarintLen64 + len(at.Hash) + 3*binary.MaxVarintLen64
	for _, s := range strs {
		n += binary.MaxVarintLen64 + len(s)
	}
	buf := make([]byte, 8, n)
	binary.BigEndian.PutUint64(buf, uint64(unixNano(at.ExpiresAt)))
	buf = append(buf, accessV1)
	buf = binary.AppendUvarint(buf, uint64(len(at.Hash)))
	buf = append(buf, at.Hash...)
	for _, s := range strs {
		buf = binary.AppendUvarint(buf, uint64(len(s)))
		buf = append(buf, s...)
	}
	buf = binary.AppendVarint(buf, at.User.ID)
	buf = binary.AppendVarint(buf, at.ExpiresAt.Unix())
	buf = binary.AppendUvarint(buf, uint64(at.ExpiresAt.Nanosecond()))
	return buf, nil
}

// getAccess decodes the access token under key into at and reports
// whether it was there.
func getAccess(b *bolt.Bucket, key []byte, at *store.AccessToken) (bool, error) {
	if len(key) == 0 {
		return false, nil
	}
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if len(raw) < 8 {
		return false, errCorrupt
	}
	return true, decodeAccess(raw[8:], at)
}

var errBadAccess = errors.New("bboltstore: corrupt access token record")

// decodeAccess decodes a stored access token (the value without its
// expiry prefix) into at. raw may point into bbolt's memory: nothing of it
// is kept.
func decodeAccess(raw []byte, at *store.AccessToken) error {
	if len(raw) == 0 {
		return errBadAccess
	}
	if raw[0] != accessV1 {
		if err := json.Unmarshal(raw, at); err != nil {
			return fmt.Errorf("decode access token: %w", err)
		}
		return nil
	}
	// One copy of the record; every string is a slice of it. Lengths
	// are read from raw, at the same offsets.
	body := raw[1:]
	rec := string(body)
	pos := 0
	var hash string
	for _, p := range [...]*string{&hash, &at.GrantID, &at.ClientID, &at.User.Login, &at.User.Name, &at.User.Email,
		&at.User.AvatarURL, &at.Scope, &at.Resource} {
		l, n := binary.Uvarint(body[pos:])
		if n <= 0 || l > uint64(len(body)-pos-n) {
			return errBadAccess
		}
		*p = rec[pos+n : pos+n+int(l)]
		pos += n + int(l)
	}
	id, n1 := binary.Varint(body[pos:])
	if n1 <= 0 {
		return errBadAccess
	}
	pos += n1
	sec, n2 := binary.Varint(body[pos:])
	if n2 <= 0 {
		return errBadAccess
	}
	pos += n2
	nsec, n3 := binary.Uvarint(body[pos:])
	if n3 <= 0 || nsec >= uint64(time.Second) {
		return errBadAccess
	}
	at.Hash = []byte(hash)
	at.User.ID = id
	at.ExpiresAt = time.Unix(sec, int64(nsec))
	return nil
}
