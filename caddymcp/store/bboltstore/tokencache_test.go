package bboltstore

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// TestTokenCacheRevocation: for every way a token or its grant can go, a
// token that was just read (and so cached) is refused as soon as the
// revoking call returns.
func TestTokenCacheRevocation(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	exp := now.Add(time.Hour)
	for name, revoke := range map[string]func(t *testing.T, s *Store, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken, code []byte){
		"RevokeGrant": func(t *testing.T, s *Store, g *store.Grant, _ *store.AccessToken, _ *store.RefreshToken, _ []byte) {
			must(t, s.RevokeGrant(ctx, g.ID))
		},
		"RevokeAccessToken": func(t *testing.T, s *Store, _ *store.Grant, at *store.AccessToken, _ *store.RefreshToken, _ []byte) {
			must(t, s.RevokeAccessToken(ctx, at.Hash))
		},
		"DeleteClient": func(t *testing.T, s *Store, g *store.Grant, _ *store.AccessToken, _ *store.RefreshToken, _ []byte) {
			must(t, s.DeleteClient(ctx, g.ClientID))
		},
		"code replayed": func(t *testing.T, s *Store, _ *store.Grant, _ *store.AccessToken, _ *store.RefreshToken, code []byte) {
			if _, err := s.RedeemCode(ctx, code, now); !errors.Is(err, store.ErrCodeReplayed) {
				t.Fatalf("replay: %v", err)
			}
		},
		"refresh reused at rotation": func(t *testing.T, s *Store, g *store.Grant, _ *store.AccessToken, rt *store.RefreshToken, _ []byte) {
			g2, at2, rt2 := benchRecords(2, g.ClientID, now, exp)
			g2.ID, at2.GrantID, rt2.GrantID = g.ID, g.ID, g.ID
			must(t, s.RotateRefresh(ctx, rt.Hash, now, g, at2, rt2))
			if _, err := s.GetAccessToken(ctx, at2.Hash, now); err != nil { // cache the new one too
				t.Fatal(err)
			}
			g3, at3, rt3 := benchRecords(3, g.ClientID, now, exp)
			g3.ID, at3.GrantID, rt3.GrantID = g.ID, g.ID, g.ID
			if err := s.RotateRefresh(ctx, rt.Hash, now, g, at3, rt3); !errors.Is(err, store.ErrRefreshReused) {
				t.Fatalf("reuse: %v", err)
			}
			if _, err := s.GetAccessToken(ctx, at2.Hash, now); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("the rotated pair's token survived the reuse: %v", err)
			}
		},
		"refresh reused at lookup": func(t *testing.T, s *Store, g *store.Grant, _ *store.AccessToken, rt *store.RefreshToken, _ []byte) {
			g2, at2, rt2 := benchRecords(2, g.ClientID, now, exp)
			g2.ID, at2.GrantID, rt2.GrantID = g.ID, g.ID, g.ID
			must(t, s.RotateRefresh(ctx, rt.Hash, now, g, at2, rt2))
			if _, _, err := s.GetRefreshToken(ctx, rt.Hash, now); !errors.Is(err, store.ErrRefreshReused) {
				t.Fatalf("reuse: %v", err)
			}
		},
		"grant lapsed and swept": func(t *testing.T, s *Store, g *store.Grant, at *store.AccessToken, _ *store.RefreshToken, _ []byte) {
			// The grant lapses before its access token would expire.
			if _, err := s.Sweep(ctx, g.ExpiresAt.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			if _, err := s.GetAccessToken(ctx, at.Hash, now); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a swept grant's token is still served: %v", err)
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := openTemp(t)
			must(t, s.PutClient(ctx, &store.Client{ID: "c", CreatedAt: now}))
			g, at, rt := benchRecords(1, "c", now, exp)
			if name == "grant lapsed and swept" {
				g.ExpiresAt = now.Add(time.Minute)
			}
			code := digest("code")
			must(t, s.PutCode(ctx, &store.Code{Hash: code, ClientID: "c", ExpiresAt: exp}))
			if _, err := s.RedeemCode(ctx, code, now); err != nil {
				t.Fatal(err)
			}
			must(t, s.CreateGrant(ctx, g, at, rt, code))
			for range 2 { // the second read is served from the cache
				if _, err := s.GetAccessToken(ctx, at.Hash, now); err != nil {
					t.Fatal(err)
				}
			}
			if !s.tokens.Cached(at.Hash) {
				t.Fatal("the token was not cached; this test would prove nothing")
			}
			revoke(t, s, g, at, rt, code)
			if _, err := s.GetAccessToken(ctx, at.Hash, now); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("after %s the cached token is still served: %v", name, err)
			}
		})
	}
}

// TestTokenCacheRace: readers hammer a token while it is revoked; once
// RevokeGrant has returned, no read accepts it, whatever a read that
// raced the revocation tried to put back.
func TestTokenCacheRace(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	for round := range 20 {
		s := openTemp(t)
		must(t, s.PutClient(ctx, &store.Client{ID: "c", CreatedAt: now}))
		g, at, rt := benchRecords(round, "c", now, now.Add(time.Hour))
		must(t, s.CreateGrant(ctx, g, at, rt, nil))
		var revoked atomic.Bool
		var wg sync.WaitGroup
		var bad atomic.Int32
		for range 4 {
			wg.Go(func() {
				for range 300 {
					after := revoked.Load()
					_, err := s.GetAccessToken(ctx, at.Hash, now)
					if after && err == nil {
						bad.Add(1)
					}
				}
			})
		}
		must(t, s.RevokeGrant(ctx, g.ID))
		revoked.Store(true)
		wg.Wait()
		if n := bad.Load(); n > 0 {
			t.Fatalf("round %d: %d reads accepted the token after its revocation returned", round, n)
		}
	}
}
