package bboltstore

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/storetest"
)

func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "state", "caddymcp.db"), Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

// TestContractSmallSweepRounds runs the suite again with sweep rounds of a
// couple of records, so that resuming a walk between rounds is exercised.
func TestContractSmallSweepRounds(t *testing.T) {
	defer func(scan, del int) { sweepScan, sweepDelete = scan, del }(sweepScan, sweepDelete)
	sweepScan, sweepDelete = 3, 2
	storetest.Run(t, func(t *testing.T) store.Store { return openTemp(t) })
}

func TestOpenLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "caddymcp.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()

	start := time.Now()
	s2, err := Open(path, Options{LockTimeout: 100 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second Open of a locked file succeeded")
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("second Open waited %v, want about the 100ms lock timeout", waited)
	}
	if !errors.Is(err, ErrLocked) {
		t.Errorf("error %v does not match ErrLocked", err)
	}
	want := "bboltstore: open " + path + ": the file is locked by another process (is another Caddy instance using it?)"
	if err.Error() != want {
		t.Errorf("error message:\n got %q\nwant %q", err, want)
	}

	// Once the first handle is closed the file opens again.
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s3, err := Open(path, Options{LockTimeout: time.Second})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s3.Close()
}

func TestOpenPermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("POSIX permissions")
	}
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "caddymcp.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if s.Path() != path {
		t.Errorf("Path() = %q, want %q", s.Path(), path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("file mode %v, want 0600", perm)
	}
	di, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("directory mode %v, want 0700", perm)
	}
}

func TestPersistence(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "caddymcp.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	c := &store.Client{ID: "c1", RedirectURIs: []string{"https://a.example/cb"}, TokenEndpointAuthMethod: "none", CreatedAt: now}
	g := &store.Grant{ID: "g1", ClientID: "c1", User: store.Identity{ID: 7, Login: "u"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	at := &store.AccessToken{Hash: digest("at"), GrantID: "g1", ClientID: "c1", User: g.User, ExpiresAt: now.Add(time.Minute)}
	rt := &store.RefreshToken{Hash: digest("rt"), GrantID: "g1", ClientID: "c1", ExpiresAt: now.Add(time.Hour)}
	must(t, s.PutClient(ctx, c))
	must(t, s.CreateGrant(ctx, g, at, rt, nil))
	must(t, s.Close())

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if got, err := s.GetClient(ctx, "c1"); err != nil || got.ID != "c1" || !got.CreatedAt.Equal(now) {
		t.Errorf("GetClient after reopen = %+v, %v", got, err)
	}
	if got, err := s.GetAccessToken(ctx, at.Hash, now); err != nil || got.GrantID != "g1" {
		t.Errorf("GetAccessToken after reopen = %+v, %v", got, err)
	}
	if gotRT, gotG, _, err := s.GetRefreshToken(ctx, rt.Hash, store.RefreshUse{ClientID: rt.ClientID, Now: now}); err != nil || gotRT.GrantID != "g1" || !gotG.ExpiresAt.Equal(g.ExpiresAt) {
		t.Errorf("GetRefreshToken after reopen = %+v, %+v, %v", gotRT, gotG, err)
	}
}

func TestSchemaTooNew(t *testing.T) {
	path := filepath.Join(t.TempDir(), "caddymcp.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	must(t, s.Close())
	setMeta(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte(fmt.Sprint(schemaVersion+1)))
	})

	_, err = Open(path, Options{})
	if err == nil {
		t.Fatal("Open of a newer schema succeeded")
	}
	for _, want := range []string{path, fmt.Sprintf("schema version %d", schemaVersion+1), "newer"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	// The refusal released the file, and did not change it.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, ReadOnly: true})
	if err != nil {
		t.Fatalf("file still locked after refused Open: %v", err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		if v := string(tx.Bucket(bucketMeta).Get(keySchemaVersion)); v != fmt.Sprint(schemaVersion+1) {
			t.Errorf("schema version became %q", v)
		}
		return nil
	})
}

func TestSchemaInvalidOrForeign(t *testing.T) {
	path := filepath.Join(t.TempDir(), "caddymcp.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	must(t, s.Close())
	setMeta(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchemaVersion, []byte("garbage"))
	})
	if _, err := Open(path, Options{}); err == nil || !strings.Contains(err.Error(), "invalid schema version") {
		t.Errorf("Open with a garbage version: %v", err)
	}

	foreign := filepath.Join(t.TempDir(), "other.db")
	setMeta(t, foreign, func(tx *bolt.Tx) error {
		_, err := tx.CreateBucket([]byte("someone-elses"))
		return err
	})
	if _, err := Open(foreign, Options{}); err == nil || !strings.Contains(err.Error(), "no caddymcp schema version") {
		t.Errorf("Open of a foreign bbolt file: %v", err)
	}
}

// TestRevokedTokensSweptAtExpiry checks what the contract suite cannot
// see: revocation, deletion and sweeping leave no index entries behind,
// and the tokens of revoked grants, dead at once, leave the file when
// they expire.
func TestRevokedTokensSweptAtExpiry(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := openTemp(t)
	must(t, s.PutClient(ctx, &store.Client{ID: "c", CreatedAt: now}))
	grant := func(id string, exp time.Time) (*store.Grant, *store.RefreshToken) {
		g := &store.Grant{ID: id, ClientID: "c", CreatedAt: now, ExpiresAt: exp}
		at := &store.AccessToken{Hash: digest(id + "at"), GrantID: id, ClientID: "c", ExpiresAt: exp}
		rt := &store.RefreshToken{Hash: digest(id + "rt"), GrantID: id, ClientID: "c", ExpiresAt: exp}
		must(t, s.CreateGrant(ctx, g, at, rt, nil))
		return g, rt
	}
	g1, rt1 := grant("g1", now.Add(time.Hour))
	// Rotate g1 once, so that it has a rotated refresh token.
	g1b := *g1
	must(t, rotate(s, rt1.Hash, now, &g1b,
		&store.AccessToken{Hash: digest("g1at2"), GrantID: "g1", ClientID: "c", ExpiresAt: now.Add(time.Hour)},
		&store.RefreshToken{Hash: digest("g1rt2"), GrantID: "g1", ClientID: "c", ExpiresAt: now.Add(time.Hour)}))
	grant("g2", now.Add(time.Minute))
	grant("g3", now.Add(time.Hour))

	must(t, s.RevokeGrant(ctx, "g3"))
	must(t, s.RevokeAccessToken(ctx, digest("g1at")))
	if n := countKeys(t, s, bucketClientGrants); n != 2 {
		t.Errorf("client_grants has %d keys, want 2", n)
	}
	n, err := s.Sweep(ctx, now.Add(2*time.Minute)) // g2 lapses, with its tokens
	must(t, err)
	if n != 3 {
		t.Errorf("Sweep removed %d records, want 3 (grant g2 and its two tokens)", n)
	}
	must(t, s.DeleteClient(ctx, "c"))
	for _, b := range [][]byte{bucketGrants, bucketClientGrants, bucketClients} {
		if n := countKeys(t, s, b); n != 0 {
			t.Errorf("bucket %s has %d keys left, want 0", b, n)
		}
	}
	// Left until they expire, all dead: g1's second access token and
	// its refresh tokens (one rotated), g3's pair.
	for _, h := range [][]byte{digest("g1at2"), digest("g3at")} {
		if _, err := s.GetAccessToken(ctx, h, now); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("access token of a deleted grant: %v", err)
		}
	}
	if _, _, _, err := s.GetRefreshToken(ctx, digest("g3rt"), store.RefreshUse{ClientID: "c", Now: now}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refresh token of a revoked grant: %v", err)
	}
	if n := countKeys(t, s, bucketAccess) + countKeys(t, s, bucketRefresh); n != 5 {
		t.Errorf("%d tokens stored before they expire, want 5", n)
	}
	n, err = s.Sweep(ctx, now.Add(2*time.Hour))
	must(t, err)
	if n != 5 {
		t.Errorf("final Sweep removed %d, want 5", n)
	}
	for _, b := range [][]byte{bucketAccess, bucketRefresh} {
		if n := countKeys(t, s, b); n != 0 {
			t.Errorf("bucket %s has %d keys after the final Sweep, want 0", b, n)
		}
	}
}

// TestConsentIndex checks what the contract suite cannot see: a replaced
// consent moves its user_consents entry, and a swept one takes it along.
func TestConsentIndex(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := openTemp(t)
	c := &store.Consent{Key: digest("k"), UserID: 1, ClientID: "c", ExpiresAt: now.Add(time.Hour)}
	must(t, s.PutConsent(ctx, c))
	c.UserID = 2
	must(t, s.PutConsent(ctx, c))
	if n := countKeys(t, s, bucketUserConsents); n != 1 {
		t.Errorf("user_consents has %d keys after a replacement, want 1", n)
	}
	if _, err := s.Sweep(ctx, now.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{bucketConsents, bucketUserConsents} {
		if n := countKeys(t, s, b); n != 0 {
			t.Errorf("bucket %s has %d keys after Sweep, want 0", b, n)
		}
	}
}

// TestSweepRounds sweeps many more records than one round deletes.
func TestSweepRounds(t *testing.T) {
	defer func(scan, del int) { sweepScan, sweepDelete = scan, del }(sweepScan, sweepDelete)
	sweepScan, sweepDelete = 50, 7

	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := openTemp(t)
	const expiredN, liveN = 300, 40
	// One transaction, rather than one Batch per record, keeps this fast.
	must(t, s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPending)
		for i := range expiredN + liveN {
			exp := now.Add(-time.Minute)
			if i < liveN { // digests scatter these among the expired ones
				exp = now.Add(time.Minute)
			}
			p := &store.Pending{StateHash: digest(fmt.Sprint(i)), ExpiresAt: exp}
			val, err := encode(unixNano(exp), p)
			if err != nil {
				return err
			}
			if err := b.Put(p.StateHash, val); err != nil {
				return err
			}
		}
		return nil
	}))
	n, err := s.Sweep(ctx, now)
	must(t, err)
	if n != expiredN {
		t.Errorf("Sweep removed %d, want %d", n, expiredN)
	}
	if left := countKeys(t, s, bucketPending); left != liveN {
		t.Errorf("%d pending left, want %d", left, liveN)
	}
}

func TestContextCanceled(t *testing.T) {
	s := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.PutClient(ctx, &store.Client{ID: "c"}); !errors.Is(err, context.Canceled) {
		t.Errorf("PutClient with a canceled context: %v", err)
	}
	if _, err := s.GetClient(context.Background(), "c"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("client stored despite canceled context: %v", err)
	}
}

func TestOversizedKeys(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	huge := make([]byte, 64*1024)
	if _, err := s.GetAccessToken(ctx, huge, time.Now()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("GetAccessToken(huge): %v", err)
	}
	if err := s.PutPending(ctx, &store.Pending{StateHash: huge}); err == nil {
		t.Error("PutPending(huge key) succeeded")
	}
	if err := s.PutClient(ctx, &store.Client{ID: string(huge)}); err == nil {
		t.Error("PutClient(huge ID) succeeded")
	}
}

func BenchmarkGetAccessToken(b *testing.B) {
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := openTemp(b)
	must(b, s.PutClient(ctx, &store.Client{ID: "c", CreatedAt: now}))
	g := &store.Grant{ID: "g", ClientID: "c", User: store.Identity{ID: 1, Login: "octocat"}, Scope: "read", Resource: "https://mcp.example/mcp", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	at := &store.AccessToken{Hash: digest("at"), GrantID: "g", ClientID: "c", User: g.User, Scope: g.Scope, Resource: g.Resource, ExpiresAt: now.Add(time.Hour)}
	rt := &store.RefreshToken{Hash: digest("rt"), GrantID: "g", ClientID: "c", ExpiresAt: now.Add(time.Hour)}
	must(b, s.CreateGrant(ctx, g, at, rt, nil))

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.GetAccessToken(ctx, at.Hash, now); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkCreateGrantParallel measures issuance throughput with real
// fsyncs; concurrent callers share commits through the group commit, so raise
// -cpu or GOMAXPROCS (or use b.SetParallelism) to see group commit at work.
func BenchmarkCreateGrantParallel(b *testing.B) {
	ctx := context.Background()
	now := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := openTemp(b)
	must(b, s.PutClient(ctx, &store.Client{ID: "c", CreatedAt: now}))

	b.SetParallelism(16)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := store.NewID()
			g := &store.Grant{ID: id, ClientID: "c", User: store.Identity{ID: 1, Login: "octocat"}, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			at := &store.AccessToken{Hash: tokenKey("mcp_at_"), GrantID: id, ClientID: "c", User: g.User, ExpiresAt: now.Add(time.Hour)}
			rt := &store.RefreshToken{Hash: tokenKey("mcp_rt_"), GrantID: id, ClientID: "c", ExpiresAt: now.Add(time.Hour)}
			if err := s.CreateGrant(ctx, g, at, rt, nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// --- helpers ---------------------------------------------------------------

func digest(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// setMeta edits a closed store file with bbolt directly.
func setMeta(t *testing.T, path string, fn func(tx *bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	must(t, db.Update(fn))
}

func countKeys(t *testing.T, s *Store, bucket []byte) int {
	t.Helper()
	n := 0
	must(t, s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucket).Stats().KeyN
		return nil
	}))
	return n
}
