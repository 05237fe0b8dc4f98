package bboltstore

import (
	"bytes"
	"testing"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// recordKinds are the record types with a binary form: a fresh value to
// decode into, and its binary encoding.
var recordKinds = []struct {
	name   string
	fresh  func() any
	encode func(v any) []byte
}{
	{"access", func() any { return new(store.AccessToken) }, func(v any) []byte { return encodeAccess(v.(*store.AccessToken)) }},
	{"refresh", func() any { return new(store.RefreshToken) }, func(v any) []byte { return encodeRefresh(v.(*store.RefreshToken)) }},
	{"grant", func() any { return new(store.Grant) }, func(v any) []byte { return encodeGrant(v.(*store.Grant)) }},
}

// FuzzDecodeRecord: whatever a stored value holds after its expiry prefix,
// decoding it as any record kind is an error or a value, never a panic. A
// value decoded (from a binary or an older JSON record) encodes to a
// binary record that decodes to the same value, and encoding that again
// gives the same bytes. The seeds are the binary and JSON encodings of the
// codec test cases.
func FuzzDecodeRecord(f *testing.F) {
	for _, tc := range codecCases() {
		f.Add(tc.encode()[8:])
		js, err := encode(unixNano(tc.exp), tc.rec)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(js[8:])
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		for _, k := range recordKinds {
			v := k.fresh()
			if decodeRecord(raw, v) != nil {
				continue
			}
			enc := k.encode(v)
			emptyAsNil(v)
			w := k.fresh()
			if err := decodeRecord(enc[8:], w); err != nil {
				t.Fatalf("%s: re-encoded record does not decode: %v\n value %+v", k.name, err, v)
			}
			if !sameRecord(w, v) {
				t.Fatalf("%s: round trip changed the record:\n got %+v\nwant %+v", k.name, w, v)
			}
			if again := k.encode(w); !bytes.Equal(again, enc) {
				t.Fatalf("%s: encoding is not stable:\n%x\n%x", k.name, enc, again)
			}
		}
	})
}

// emptyAsNil makes the empty byte slices of a record nil. JSON tells an
// empty slice ("") from a missing one (null); the binary form, like JSON
// with omitempty, does not: both decode as nil.
func emptyAsNil(v any) {
	nilIfEmpty := func(b *[]byte) {
		if len(*b) == 0 {
			*b = nil
		}
	}
	switch r := v.(type) {
	case *store.AccessToken:
		nilIfEmpty(&r.Hash)
	case *store.RefreshToken:
		nilIfEmpty(&r.Hash)
	case *store.Grant:
		nilIfEmpty(&r.GitHubToken)
	}
}
