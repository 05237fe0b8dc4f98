package bboltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"path/filepath"
	"reflect"
	"strconv"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// codecCase is one record kind: how to encode it and a fresh value to
// decode into.
type codecCase struct {
	name   string
	rec    any // pointer to the record
	encode func() []byte
	exp    time.Time
	fresh  func() any
}

func codecCases() []codecCase {
	who := store.Identity{ID: 583231, Login: "octocat", Name: "Ökta Cat ✓", Email: "o@example.com", AvatarURL: "https://a.example/1"}
	var cases []codecCase
	for _, exp := range []time.Time{
		time.Unix(1900000000, 123456789),
		time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Unix(-62135596800, 0),
	} {
		at := &store.AccessToken{Hash: digest("a"), GrantID: "g", ClientID: "c", User: who, Scope: "read write",
			Resource: "https://mcp.example.com/mcp", ExpiresAt: exp}
		rt := &store.RefreshToken{Hash: digest("r"), GrantID: "g", ClientID: "c", ExpiresAt: exp, Rotated: exp.Year() == 9999, Gen: 1<<40 + 7}
		g := &store.Grant{ID: "g", ClientID: "c", User: who, Scope: "read", Resource: "https://mcp.example.com/mcp",
			GitHubToken: []byte("sealed\x00token"), CreatedAt: time.Unix(1800000000, 42), ExpiresAt: exp,
			CheckedAt: time.Unix(1800000100, 7), RefreshGen: 1<<40 + 8, RotatedAt: time.Unix(1800000200, 9), Retries: 3}
		empty := &store.Grant{ID: "g2", ClientID: "c", User: store.Identity{ID: -1}, ExpiresAt: exp}
		cases = append(cases,
			codecCase{"access", at, func() []byte { return encodeAccess(at) }, exp, func() any { return new(store.AccessToken) }},
			codecCase{"refresh", rt, func() []byte { return encodeRefresh(rt) }, exp, func() any { return new(store.RefreshToken) }},
			codecCase{"grant", g, func() []byte { return encodeGrant(g) }, exp, func() any { return new(store.Grant) }},
			codecCase{"empty grant", empty, func() []byte { return encodeGrant(empty) }, exp, func() any { return new(store.Grant) }},
		)
	}
	return cases
}

// sameRecord compares records with instants compared by Equal.
func sameRecord(got, want any) bool {
	norm := func(v any) any {
		switch r := v.(type) {
		case *store.AccessToken:
			c := *r
			c.ExpiresAt = c.ExpiresAt.UTC()
			return c
		case *store.RefreshToken:
			c := *r
			c.ExpiresAt = c.ExpiresAt.UTC()
			return c
		case *store.Grant:
			c := *r
			c.CreatedAt, c.ExpiresAt = c.CreatedAt.UTC(), c.ExpiresAt.UTC()
			c.CheckedAt, c.RotatedAt = c.CheckedAt.UTC(), c.RotatedAt.UTC()
			return c
		}
		return v
	}
	return reflect.DeepEqual(norm(got), norm(want))
}

func TestBinaryCodecRoundTrip(t *testing.T) {
	for _, tc := range codecCases() {
		val := tc.encode()
		if exp, _ := valueExp(val); exp != unixNano(tc.exp) {
			t.Errorf("%s: expiry prefix %d, want %d", tc.name, exp, unixNano(tc.exp))
		}
		got := tc.fresh()
		must(t, decodeRecord(val[8:], got))
		if !sameRecord(got, tc.rec) {
			t.Errorf("%s round trip:\n got %+v\nwant %+v", tc.name, got, tc.rec)
		}
		// Every truncation, and a huge length, is an error, never a panic.
		for n := 0; n < len(val)-8; n++ {
			if err := decodeRecord(val[8:8+n], tc.fresh()); err == nil {
				t.Errorf("%s: a record cut to %d bytes decoded", tc.name, n)
			}
		}
		// Bytes after the last field are damage too: nothing writes
		// them, and a record that decodes must be exactly what its
		// encoder wrote.
		for _, tail := range [][]byte{{0}, {1}, []byte("garbage")} {
			if err := decodeRecord(append(bytes.Clone(val[8:]), tail...), tc.fresh()); err == nil {
				t.Errorf("%s: a record with %q appended decoded", tc.name, tail)
			}
		}
		bad := append([]byte{val[8]}, binary.AppendUvarint(nil, 1<<62)...)
		if err := decodeRecord(bad, tc.fresh()); err == nil {
			t.Errorf("%s: a record with a huge length decoded", tc.name)
		}
	}
}

// TestJSONRecordsStillRead: records written as JSON by older schema
// versions decode into the same values.
func TestJSONRecordsStillRead(t *testing.T) {
	for _, tc := range codecCases() {
		val, err := encode(unixNano(tc.exp), tc.rec)
		must(t, err)
		got := tc.fresh()
		must(t, decodeRecord(val[8:], got))
		if !sameRecord(got, tc.rec) {
			t.Errorf("%s from JSON:\n got %+v\nwant %+v", tc.name, got, tc.rec)
		}
	}
}

// TestAccessFormatUnchanged: access tokens keep the layout schema version
// 2 wrote, field by field, so files of that version read the same.
func TestAccessFormatUnchanged(t *testing.T) {
	at := &store.AccessToken{Hash: digest("a"), GrantID: "g", ClientID: "c", User: store.Identity{ID: 583231, Login: "octocat",
		Name: "N", Email: "e@x", AvatarURL: "u"}, Scope: "read", Resource: "https://r/mcp", ExpiresAt: time.Unix(1900000000, 5)}
	want := binary.BigEndian.AppendUint64(nil, uint64(at.ExpiresAt.UnixNano()))
	want = append(want, 0x01)
	for _, f := range []string{string(at.Hash), "g", "c", "octocat", "N", "e@x", "u", "read", "https://r/mcp"} {
		want = binary.AppendUvarint(want, uint64(len(f)))
		want = append(want, f...)
	}
	want = binary.AppendVarint(want, 583231)
	want = binary.AppendVarint(want, 1900000000)
	want = binary.AppendUvarint(want, 5)
	got := encodeAccess(at)
	if !bytes.Equal(got, want) {
		t.Errorf("access token encoding changed:\n got %x\nwant %x", got, want)
	}
}

// TestSchema1AccessTokensStillWork opens a file of schema version 1, whose
// access tokens are JSON: it is restamped to the current version, and its
// tokens are read, revoked and swept like binary ones.
func TestSchema1AccessTokensStillWork(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v1.db")
	s, err := Open(path, Options{})
	must(t, err)
	now := time.Now()
	must(t, s.PutClient(ctx, &store.Client{ID: "c", CreatedAt: now}))
	mk := func(id string, exp time.Time) (*store.Grant, *store.AccessToken, *store.RefreshToken) {
		g := &store.Grant{ID: id, ClientID: "c", User: store.Identity{ID: 7, Login: "octocat"}, Resource: "https://x/mcp", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		at := &store.AccessToken{Hash: digest(id + "at"), GrantID: id, ClientID: "c", User: g.User, Scope: "read", Resource: g.Resource, ExpiresAt: exp}
		rt := &store.RefreshToken{Hash: digest(id + "rt"), GrantID: id, ClientID: "c", ExpiresAt: g.ExpiresAt}
		return g, at, rt
	}
	g1, at1, rt1 := mk("g1", now.Add(time.Hour))
	g2, at2, rt2 := mk("g2", now.Add(time.Hour))
	g3, at3, rt3 := mk("g3", now.Add(time.Minute))
	must(t, s.CreateGrant(ctx, g1, at1, rt1, nil))
	must(t, s.CreateGrant(ctx, g2, at2, rt2, nil))
	must(t, s.CreateGrant(ctx, g3, at3, rt3, nil))
	must(t, s.Close())
	// Rewrite the file as version 1 wrote it: JSON access tokens.
	setMeta(t, path, func(tx *bolt.Tx) error {
		for _, at := range []*store.AccessToken{at1, at2, at3} {
			val, err := encode(unixNano(at.ExpiresAt), at)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketAccess).Put(at.Hash, val); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte("1"))
	})

	s, err = Open(path, Options{})
	must(t, err)
	defer s.Close()
	must(t, s.db.View(func(tx *bolt.Tx) error {
		if v := string(tx.Bucket(bucketMeta).Get(keySchemaVersion)); v != strconv.Itoa(schemaVersion) {
			t.Errorf("schema version %q after Open, want %d", v, schemaVersion)
		}
		return nil
	}))
	got, err := s.GetAccessToken(ctx, at1.Hash, now)
	must(t, err)
	if got.User.Login != "octocat" || got.GrantID != "g1" || got.Scope != "read" || !got.ExpiresAt.Equal(at1.ExpiresAt) {
		t.Errorf("version 1 token read as %+v", got)
	}
	must(t, s.RevokeAccessToken(ctx, at2.Hash))
	if _, err := s.GetAccessToken(ctx, at2.Hash, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoked version 1 token: %v", err)
	}
	// The expired one is swept.
	if _, err := s.Sweep(ctx, now.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if n := countKeys(t, s, bucketAccess); n != 1 {
		t.Errorf("access holds %d tokens after Sweep, want 1", n)
	}
}

// TestSchema2IndexDropped opens a file of schema version 2, which kept an
// index from grants to their tokens: the index is deleted, the file is
// restamped, and its grants and tokens work and revoke as before.
func TestSchema2IndexDropped(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "v2.db")
	s, err := Open(path, Options{})
	must(t, err)
	now := time.Now()
	must(t, s.PutClient(ctx, &store.Client{ID: "c", CreatedAt: now}))
	g1, at1, rt1 := benchRecords(1, "c", now, now.Add(time.Hour))
	g2, at2, rt2 := benchRecords(2, "c", now, now.Add(time.Hour))
	must(t, s.CreateGrant(ctx, g1, at1, rt1, nil))
	must(t, s.CreateGrant(ctx, g2, at2, rt2, nil))
	must(t, s.Close())
	setMeta(t, path, func(tx *bolt.Tx) error {
		idx, err := tx.CreateBucket(bucketGrantTokensV2)
		if err != nil {
			return err
		}
		for _, k := range []string{"g1-at", "g1-rt", "g2-at", "g2-rt"} {
			if err := idx.Put([]byte(k), nil); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte("2"))
	})

	s, err = Open(path, Options{})
	must(t, err)
	defer s.Close()
	must(t, s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketGrantTokensV2) != nil {
			t.Error("the version 2 index is still there")
		}
		if v := string(tx.Bucket(bucketMeta).Get(keySchemaVersion)); v != strconv.Itoa(schemaVersion) {
			t.Errorf("schema version %q after Open, want %d", v, schemaVersion)
		}
		return nil
	}))
	must(t, s.RevokeGrant(ctx, g1.ID))
	if _, err := s.GetAccessToken(ctx, at1.Hash, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("access token of the revoked grant: %v", err)
	}
	if _, _, _, err := s.GetRefreshToken(ctx, rt1.Hash, store.RefreshUse{ClientID: rt1.ClientID, Now: now}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refresh token of the revoked grant: %v", err)
	}
	if _, err := s.GetAccessToken(ctx, at2.Hash, now); err != nil {
		t.Errorf("access token of the other grant: %v", err)
	}
	if _, _, _, err := s.GetRefreshToken(ctx, rt2.Hash, store.RefreshUse{ClientID: rt2.ClientID, Now: now}); err != nil {
		t.Errorf("refresh token of the other grant: %v", err)
	}
}

// TestVersion1RefreshAndGrantStillRead: refresh tokens and grants written
// in the binary form of schema 3 (before refresh generations) read back
// with those fields zero, so a live token of such a grant is of its
// generation 0 and refreshes.
func TestVersion1RefreshAndGrantStillRead(t *testing.T) {
	exp := time.Unix(1900000000, 5)
	w := newRecord(exp, refreshV1, 0)
	w.bytes(digest("r"))
	w.str("g")
	w.str("c")
	w.flag(true)
	w.time(exp)
	var rt store.RefreshToken
	if err := decodeRecord(w.buf[8:], &rt); err != nil {
		t.Fatal(err)
	}
	if rt.GrantID != "g" || rt.ClientID != "c" || !rt.Rotated || rt.Gen != 0 || !rt.ExpiresAt.Equal(exp) {
		t.Errorf("refresh v1 read as %+v", rt)
	}

	w = newRecord(exp, grantV1, 0)
	for _, s := range []string{"g", "c", "octocat", "", "", "", "read", "https://mcp.example/mcp"} {
		w.str(s)
	}
	w.bytes([]byte("sealed"))
	w.int(42)
	w.time(time.Unix(1800000000, 0))
	w.time(exp)
	var g store.Grant
	if err := decodeRecord(w.buf[8:], &g); err != nil {
		t.Fatal(err)
	}
	if g.ID != "g" || g.User.ID != 42 || g.Scope != "read" || g.RefreshGen != 0 || !g.CheckedAt.IsZero() || !g.RotatedAt.IsZero() || g.Retries != 0 {
		t.Errorf("grant v1 read as %+v", g)
	}
	if v := store.ClassifyRefresh(&store.RefreshToken{GrantID: "g", ClientID: "c"}, &g, store.RefreshUse{ClientID: "c", Grace: time.Minute, MaxRetries: 1}); v != store.RefreshLive {
		t.Errorf("an unrotated v1 token of a v1 grant is verdict %d, want live", v)
	}
}
