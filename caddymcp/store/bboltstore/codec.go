package bboltstore

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// The records read on every token request (access tokens by the gate,
// refresh tokens and grants at every refresh) are stored in a compact
// binary form instead of JSON: decoding JSON was most of the cost of an
// access token lookup (about 5µs and 20 allocations) and a tenth of the
// CPU of a refresh; decoding these is one copy and a few slices of it.
//
// After the 8-byte expiry prefix every value has, such a record is a
// format byte and its fields in a fixed order: strings and byte slices
// uvarint-length-prefixed, integers as varints, instants as varint Unix
// seconds and uvarint nanoseconds, flags as a uvarint 0 or 1.
//
//	accessV1  | hash, grant ID, client ID, login, name, email, avatar URL,
//	            scope, resource | user ID | expiry
//	refreshV1 | hash, grant ID, client ID | rotated | expiry
//	grantV1   | ID, client ID, login, name, email, avatar URL, scope,
//	            resource, sealed GitHub token | user ID | created | expiry
//	refreshV2 | refreshV1's fields | generation
//	grantV2   | grantV1's fields | checked | generation | rotated at |
//	            retries
//
// A JSON record starts with '{', which is no format byte, so records
// written as JSON by older schema versions are still read (and expire or
// are swept like any other). Schema version 2 made access tokens binary,
// version 3 refresh tokens and grants, version 4 added the generations
// of refresh tokens (store/refresh.go) and the time GitHub last confirmed
// a grant's user, so that a build that cannot read them refuses the file.
// Version 1 records read with those fields zero.
const (
	accessV1  = 0x01
	refreshV1 = 0x02
	grantV1   = 0x03
	refreshV2 = 0x04
	grantV2   = 0x05
)

var errBadRecord = errors.New("bboltstore: corrupt binary record")

// recordWriter appends the fields of a binary record.
type recordWriter struct{ buf []byte }

func newRecord(exp time.Time, format byte, sizeHint int) *recordWriter {
	w := &recordWriter{buf: make([]byte, 8, 8+1+sizeHint)}
	binary.BigEndian.PutUint64(w.buf, uint64(unixNano(exp)))
	w.buf = append(w.buf, format)
	return w
}

func (w *recordWriter) str(s string) {
	w.buf = binary.AppendUvarint(w.buf, uint64(len(s)))
	w.buf = append(w.buf, s...)
}

func (w *recordWriter) bytes(b []byte) {
	w.buf = binary.AppendUvarint(w.buf, uint64(len(b)))
	w.buf = append(w.buf, b...)
}

func (w *recordWriter) int(v int64) { w.buf = binary.AppendVarint(w.buf, v) }

func (w *recordWriter) uint(v uint64) { w.buf = binary.AppendUvarint(w.buf, v) }

func (w *recordWriter) flag(v bool) {
	n := uint64(0)
	if v {
		n = 1
	}
	w.buf = binary.AppendUvarint(w.buf, n)
}

func (w *recordWriter) time(t time.Time) {
	w.buf = binary.AppendVarint(w.buf, t.Unix())
	w.buf = binary.AppendUvarint(w.buf, uint64(t.Nanosecond()))
}

// recordReader reads the fields of a binary record. The record is copied
// once, as a string that every string field is a slice of, because the
// bytes given may point into bbolt's memory. The first malformed field
// sets err; every later read then returns a zero value.
type recordReader struct {
	body []byte
	rec  string
	pos  int
	err  error
}

func newReader(body []byte) *recordReader { return &recordReader{body: body, rec: string(body)} }

func (r *recordReader) fail() { r.err, r.pos = errBadRecord, len(r.body) }

// end returns the record's error: the first malformed field's, or, if
// bytes follow the last field, errBadRecord, since no encoder writes any
// there.
func (r *recordReader) end() error {
	if r.err == nil && r.pos != len(r.body) {
		r.fail()
	}
	return r.err
}

func (r *recordReader) str() string {
	l, n := binary.Uvarint(r.body[r.pos:])
	if n <= 0 || l > uint64(len(r.body)-r.pos-n) {
		r.fail()
		return ""
	}
	s := r.rec[r.pos+n : r.pos+n+int(l)]
	r.pos += n + int(l)
	return s
}

// bytes returns a byte slice field, nil when empty (as JSON decodes an
// omitted one).
func (r *recordReader) bytes() []byte {
	if s := r.str(); s != "" {
		return []byte(s)
	}
	return nil
}

func (r *recordReader) int() int64 {
	v, n := binary.Varint(r.body[r.pos:])
	return advance(r, n, v)
}

func (r *recordReader) uint() uint64 {
	v, n := binary.Uvarint(r.body[r.pos:])
	return advance(r, n, v)
}

// advance moves past a varint of n bytes (n <= 0: malformed) and returns
// v, or zero after a failure.
func advance[T int64 | uint64](r *recordReader, n int, v T) T {
	if n <= 0 || r.err != nil {
		r.fail()
		return 0
	}
	r.pos += n
	return v
}

func (r *recordReader) flag() bool {
	switch r.uint() {
	case 0:
		return false
	case 1:
		return true
	}
	r.fail()
	return false
}

func (r *recordReader) time() time.Time {
	sec := r.int()
	nsec := r.uint()
	if nsec >= uint64(time.Second) {
		r.fail()
	}
	if r.err != nil {
		return time.Time{}
	}
	return time.Unix(sec, int64(nsec))
}

// encodeAccess is the stored value of an access token.
func encodeAccess(at *store.AccessToken) []byte {
	w := newRecord(at.ExpiresAt, accessV1, 160+len(at.Hash)+len(at.Scope)+len(at.Resource))
	w.bytes(at.Hash)
	for _, s := range [...]string{at.GrantID, at.ClientID, at.User.Login, at.User.Name, at.User.Email,
		at.User.AvatarURL, at.Scope, at.Resource} {
		w.str(s)
	}
	w.int(at.User.ID)
	w.time(at.ExpiresAt)
	return w.buf
}

// encodeRefresh is the stored value of a refresh token.
func encodeRefresh(rt *store.RefreshToken) []byte {
	w := newRecord(rt.ExpiresAt, refreshV2, 72+len(rt.Hash))
	w.bytes(rt.Hash)
	w.str(rt.GrantID)
	w.str(rt.ClientID)
	w.flag(rt.Rotated)
	w.time(rt.ExpiresAt)
	w.uint(rt.Gen)
	return w.buf
}

// encodeGrant is the stored value of a grant.
func encodeGrant(g *store.Grant) []byte {
	w := newRecord(g.ExpiresAt, grantV2, 240+len(g.Scope)+len(g.Resource)+len(g.GitHubToken))
	for _, s := range [...]string{g.ID, g.ClientID, g.User.Login, g.User.Name, g.User.Email, g.User.AvatarURL, g.Scope, g.Resource} {
		w.str(s)
	}
	w.bytes(g.GitHubToken)
	w.int(g.User.ID)
	w.time(g.CreatedAt)
	w.time(g.ExpiresAt)
	w.time(g.CheckedAt)
	w.uint(g.RefreshGen)
	w.time(g.RotatedAt)
	w.int(int64(g.Retries))
	return w.buf
}

// decodeRecord decodes a stored value without its expiry prefix into v: a
// binary record into the type it holds, anything else as JSON. raw may
// point into bbolt's memory: nothing of it is kept.
func decodeRecord(raw []byte, v any) error {
	if len(raw) == 0 {
		return errCorrupt
	}
	switch rec := v.(type) {
	case *store.AccessToken:
		if raw[0] == accessV1 {
			return decodeAccess(newReader(raw[1:]), rec)
		}
	case *store.RefreshToken:
		if raw[0] == refreshV1 || raw[0] == refreshV2 {
			return decodeRefresh(newReader(raw[1:]), raw[0], rec)
		}
	case *store.Grant:
		if raw[0] == grantV1 || raw[0] == grantV2 {
			return decodeGrant(newReader(raw[1:]), raw[0], rec)
		}
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("bboltstore: decode record: %w", err)
	}
	return nil
}

// decodeAccess decodes the fields of a binary access token.
func decodeAccess(r *recordReader, at *store.AccessToken) error {
	at.Hash = r.bytes()
	for _, p := range [...]*string{&at.GrantID, &at.ClientID, &at.User.Login, &at.User.Name, &at.User.Email,
		&at.User.AvatarURL, &at.Scope, &at.Resource} {
		*p = r.str()
	}
	at.User.ID = r.int()
	at.ExpiresAt = r.time()
	return r.end()
}

// decodeRefresh decodes the fields of a binary refresh token.
func decodeRefresh(r *recordReader, format byte, rt *store.RefreshToken) error {
	rt.Hash = r.bytes()
	rt.GrantID = r.str()
	rt.ClientID = r.str()
	rt.Rotated = r.flag()
	rt.ExpiresAt = r.time()
	if format == refreshV2 {
		rt.Gen = r.uint()
	}
	return r.end()
}

// decodeGrant decodes the fields of a binary grant.
func decodeGrant(r *recordReader, format byte, g *store.Grant) error {
	for _, p := range [...]*string{&g.ID, &g.ClientID, &g.User.Login, &g.User.Name, &g.User.Email, &g.User.AvatarURL, &g.Scope, &g.Resource} {
		*p = r.str()
	}
	g.GitHubToken = r.bytes()
	g.User.ID = r.int()
	g.CreatedAt = r.time()
	g.ExpiresAt = r.time()
	if format == grantV2 {
		g.CheckedAt = zeroUnix(r.time())
		g.RefreshGen = r.uint()
		g.RotatedAt = zeroUnix(r.time())
		g.Retries = int(r.int())
	}
	return r.end()
}

// zeroUnix gives back the zero time.Time that an encoder wrote (a field
// never set), rather than the same instant in the local zone, so that a
// decoded record equals the one encoded.
func zeroUnix(t time.Time) time.Time {
	if t.Unix() == (time.Time{}).Unix() {
		return time.Time{}
	}
	return t
}
