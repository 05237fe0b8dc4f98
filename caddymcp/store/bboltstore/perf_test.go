package bboltstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// benchRecords returns grant i with its access and refresh token, shaped
// like the ones the server issues (a sealed GitHub token of realistic size,
// a full identity), expiring at exp.
func benchRecords(i int, clientID string, now, exp time.Time) (*store.Grant, *store.AccessToken, *store.RefreshToken) {
	id := fmt.Sprintf("grant-%016d", i)
	who := store.Identity{ID: int64(100000 + i), Login: fmt.Sprintf("user%d", i), Name: "Some User", Email: "user@example.com",
		AvatarURL: "https://avatars.example.com/u/1"}
	g := &store.Grant{ID: id, ClientID: clientID, User: who, Scope: "read", Resource: "https://mcp.example.com/mcp",
		GitHubToken: make([]byte, 120), CreatedAt: now, ExpiresAt: exp}
	at := &store.AccessToken{Hash: digest(id + "/at"), GrantID: id, ClientID: clientID, User: who, Scope: g.Scope,
		Resource: g.Resource, ExpiresAt: exp}
	rt := &store.RefreshToken{Hash: digest(id + "/rt"), GrantID: id, ClientID: clientID, ExpiresAt: exp}
	return g, at, rt
}

// seedGrants writes grants from..to-1 (each with a client-grant index entry
// and a token pair) directly, many per transaction, so that a large store
// takes seconds rather than one group commit per grant. The records are
// exactly what CreateGrant writes.
func seedGrants(t testing.TB, s *Store, clientID string, from, to int, now, exp time.Time) {
	t.Helper()
	const perTx = 5000
	for lo := from; lo < to; lo += perTx {
		hi := min(lo+perTx, to)
		must(t, s.db.Update(func(tx *bolt.Tx) error {
			for i := lo; i < hi; i++ {
				g, at, rt := benchRecords(i, clientID, now, exp)
				gVal := encodeGrant(g)
				atVal := encodeAccess(at)
				rtVal := encodeRefresh(rt)
				if err := tx.Bucket(bucketGrants).Put([]byte(g.ID), gVal); err != nil {
					return err
				}
				if err := tx.Bucket(bucketClientGrants).Put(clientGrantKey(clientID, g.ID), nil); err != nil {
					return err
				}
				if err := putTokens(tx, at, atVal, rt, rtVal); err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

// BenchmarkOpen100kGrants measures what provisioning costs the store: open
// a file holding 100,000 grants (with their access and refresh tokens),
// check its schema, and close it again.
func BenchmarkOpen100kGrants(b *testing.B) {
	path := filepath.Join(b.TempDir(), "state.db")
	s, err := Open(path, Options{})
	must(b, err)
	now := time.Now()
	must(b, s.PutClient(context.Background(), &store.Client{ID: "c", CreatedAt: now}))
	seedGrants(b, s, "c", 0, 100000, now, now.Add(24*time.Hour))
	must(b, s.Close())

	b.ResetTimer()
	for b.Loop() {
		s, err := Open(path, Options{})
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
	if fi, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "file-MiB")
	}
}

// tokenKey is the key of a new token, as the token endpoint makes them.
func tokenKey(prefix string) []byte {
	return store.SecretKey(prefix, store.NewSecret(prefix))
}

// BenchmarkRotateRefreshParallel measures refresh rotation with real
// fsyncs at 32 concurrent callers: each caller rotates its own chain, as a
// client refreshing its own grant does.
func BenchmarkRotateRefreshParallel(b *testing.B) {
	ctx := context.Background()
	now := time.Now()
	s := openTemp(b)
	must(b, s.PutClient(ctx, &store.Client{ID: "c", CreatedAt: now}))
	var seq atomic.Int64

	b.SetParallelism(16) // 32 goroutines on 2 CPUs
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := int(seq.Add(1))
		g, at, rt := benchRecords(i, "c", now, now.Add(time.Hour))
		if err := s.CreateGrant(ctx, g, at, rt, nil); err != nil {
			b.Error(err)
			return
		}
		cur := rt.Hash
		for pb.Next() {
			nat := &store.AccessToken{Hash: tokenKey("mcp_at_"), GrantID: g.ID, ClientID: "c", User: g.User, Scope: g.Scope, Resource: g.Resource, ExpiresAt: now.Add(time.Hour)}
			nrt := &store.RefreshToken{Hash: tokenKey("mcp_rt_"), GrantID: g.ID, ClientID: "c", ExpiresAt: now.Add(time.Hour)}
			if err := rotate(s, cur, now, g, nat, nrt); err != nil {
				b.Error(err)
				return
			}
			cur = nrt.Hash
		}
	})
}

// TestSweepBoundsStoreUnderChurn issues grants that lapse, round after
// round, refreshing some and revoking others, sweeping between rounds as
// the server's sweeper does: the number of records stays at one round's
// worth and the file stops growing, because bbolt reuses the pages Sweep
// frees.
func TestSweepBoundsStoreUnderChurn(t *testing.T) {
	ctx := context.Background()
	s := openTemp(t)
	start := time.Now()
	must(t, s.PutClient(ctx, &store.Client{ID: "c", CreatedAt: start}))
	const perRound, rounds = 2000, 12
	var sizes []int64
	for r := range rounds {
		now := start.Add(time.Duration(r) * time.Hour)
		seedGrants(t, s, "c", r*perRound, (r+1)*perRound, now, now.Add(time.Hour))
		// Refresh half of them once, so rotated refresh tokens (kept until
		// they expire) are part of the churn too.
		for i := r * perRound; i < r*perRound+perRound/2; i += 50 {
			g, _, rt := benchRecords(i, "c", now, now.Add(time.Hour))
			nat := &store.AccessToken{Hash: digest(fmt.Sprintf("%d/at2", i)), GrantID: g.ID, ClientID: "c", ExpiresAt: now.Add(time.Hour)}
			nrt := &store.RefreshToken{Hash: digest(fmt.Sprintf("%d/rt2", i)), GrantID: g.ID, ClientID: "c", ExpiresAt: now.Add(time.Hour)}
			must(t, rotate(s, rt.Hash, now, g, nat, nrt))
		}
		// Revoke a quarter of the other half: their tokens die at once
		// and stay, dead, until they expire with the round.
		const revoked = perRound / 8
		for i := r*perRound + perRound/2; i < (r+1)*perRound; i += 4 {
			g, _, _ := benchRecords(i, "c", now, now.Add(time.Hour))
			must(t, s.RevokeGrant(ctx, g.ID))
		}
		// The previous round has lapsed by now; this round is live.
		if _, err := s.Sweep(ctx, now); err != nil {
			t.Fatal(err)
		}
		for _, b := range [][]byte{bucketGrants, bucketClientGrants} {
			if n := countKeys(t, s, b); n != perRound-revoked {
				t.Fatalf("round %d: %s holds %d keys after Sweep, want %d (one round's worth)", r, b, n, perRound-revoked)
			}
		}
		for _, b := range [][]byte{bucketAccess, bucketRefresh} {
			if n := countKeys(t, s, b); n != perRound+perRound/100 {
				t.Fatalf("round %d: %s holds %d keys after Sweep, want %d (this round's, revoked ones included)", r, b, n, perRound+perRound/100)
			}
		}
		fi, err := os.Stat(s.Path())
		must(t, err)
		sizes = append(sizes, fi.Size())
	}
	t.Logf("file sizes by round: %v", sizes)
	// bbolt grows a file in steps and never shrinks it; after a few rounds
	// the freed pages must be enough for the next round.
	if last, settled := sizes[rounds-1], sizes[rounds/2]; last > settled {
		t.Errorf("the file kept growing under churn: %d bytes after round %d, %d after round %d (sizes %v)", settled, rounds/2, last, rounds-1, sizes)
	}
}

// rotate is RotateRefresh by the token's client under the strict rule,
// returning the error alone.
func rotate(s *Store, old []byte, now time.Time, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken) error {
	_, err := s.RotateRefresh(context.Background(), old, store.RefreshUse{ClientID: g.ClientID, Now: now}, g, at, rt)
	return err
}
