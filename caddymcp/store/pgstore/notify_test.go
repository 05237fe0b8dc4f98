package pgstore_test

import (
	"context"
	"crypto/rand"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/internal/pgtest"
	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/pgstore"
)

// Revocations pushed to the other instances (notify.go). The tests that
// rely on the notification give their stores a cache TTL many times the
// delay they measure, so that a token another instance refuses before its
// cached copy is TTL old was refused because its cache was emptied:
// nothing else explains it. (Without the notification they fail after the
// TTL.)

// pushTTL is the cache TTL of the tests that rely on the notification.
const pushTTL = 10 * time.Second

// openNamed opens a store on dsn with the given cache TTL, its sessions
// named app in pg_stat_activity (the listener's: app +
// pgstore.ListenerAppSuffix).
func openNamed(t *testing.T, dsn, app string, ttl time.Duration) *pgstore.Store {
	t.Helper()
	s, err := pgstore.Open(context.Background(), pgtest.WithParam(dsn, "application_name", app),
		pgstore.Options{CacheTTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// pair opens instances A and B on one new schema.
func pair(t *testing.T, ttl time.Duration) (a, b *pgstore.Store, dsn, bApp string) {
	t.Helper()
	dsn = pgtest.DSN(t)
	bApp = "b-" + rand.Text()[:8]
	return openNamed(t, dsn, "a-"+rand.Text()[:8], ttl), openNamed(t, dsn, bApp, ttl), dsn, bApp
}

// cached makes s read the access token hash, so that it caches it, and
// returns when it did.
func cached(t *testing.T, s *pgstore.Store, hash []byte) time.Time {
	t.Helper()
	before := time.Now()
	if _, err := s.GetAccessToken(context.Background(), hash, time.Now()); err != nil {
		t.Fatalf("the instance does not accept the token: %v", err)
	}
	return before
}

// refusedBefore waits until lookup reports ErrNotFound and returns how
// long that took from since. A copy cached at or after cachedAt is served
// until cachedAt+ttl at least, so only a refusal answered before then
// proves that the cache was emptied; it fails t once that time has passed.
func refusedBefore(t *testing.T, cachedAt time.Time, ttl time.Duration, since time.Time, lookup func() error) time.Duration {
	t.Helper()
	for {
		err := lookup()
		done := time.Now()
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			t.Fatal(err)
		}
		if done.Sub(cachedAt) >= ttl {
			what := "still accepted"
			if err != nil {
				what = "refused only"
			}
			t.Fatalf("%s %v after the revocation, when the cache TTL (%v) may have expired it", what, done.Sub(since), ttl)
		}
		if err != nil {
			return done.Sub(since)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// tokenRefusedBefore is refusedBefore for access token hash at s.
func tokenRefusedBefore(t *testing.T, s *pgstore.Store, hash []byte, cachedAt time.Time, ttl time.Duration, since time.Time) time.Duration {
	t.Helper()
	return refusedBefore(t, cachedAt, ttl, since, func() error {
		_, err := s.GetAccessToken(context.Background(), hash, time.Now())
		return err
	})
}

// TestRevocationPushed: every write that revokes, made at A, is refused by
// B, which had the token cached, long before B's cache TTL.
func TestRevocationPushed(t *testing.T) {
	use := func(clientID string) store.RefreshUse {
		return store.RefreshUse{ClientID: clientID, Now: time.Now()} // no grace: every reuse revokes
	}
	// rotate refreshes rt at s once, so that presenting rt again is reuse.
	rotate := func(t *testing.T, s *pgstore.Store, g *store.Grant, rt *store.RefreshToken) {
		t.Helper()
		ng := *g
		at := &store.AccessToken{Hash: digest(g.ID + "/at2"), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: time.Now().Add(time.Hour)}
		next := &store.RefreshToken{Hash: digest(g.ID + "/rt2"), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: g.ExpiresAt}
		if _, err := s.RotateRefresh(context.Background(), rt.Hash, use(g.ClientID), &ng, at, next); err != nil {
			t.Fatal(err)
		}
	}
	// fromCode issues a grant from a code at s and returns the token and
	// the code's digest.
	fromCode := func(t *testing.T, s *pgstore.Store, label string) (*store.AccessToken, []byte) {
		t.Helper()
		ctx, now := context.Background(), time.Now()
		client := "client-" + label
		if err := s.PutClient(ctx, &store.Client{ID: client, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		code := &store.Code{Hash: digest(label + "/code"), ClientID: client, User: store.Identity{ID: 1, Login: "alice"}, ExpiresAt: now.Add(time.Minute)}
		if err := s.PutCode(ctx, code); err != nil {
			t.Fatal(err)
		}
		g, at, rt := grantOf(label, client, now)
		if err := s.CreateGrant(ctx, g, at, rt, code.Hash); err != nil {
			t.Fatal(err)
		}
		return at, code.Hash
	}
	ctx := context.Background()
	cases := []struct {
		name string
		// setup issues, through A, the token that B caches; revoke
		// revokes it through A.
		setup  func(t *testing.T, a *pgstore.Store) (hash []byte, revoke func() error)
		wanted error // revoke's expected outcome
	}{
		{"RevokeGrant", func(t *testing.T, a *pgstore.Store) ([]byte, func() error) {
			g, at, _ := issue(t, a, "rg", time.Now())
			return at.Hash, func() error { return a.RevokeGrant(ctx, g.ID) }
		}, nil},
		{"RevokeGrants by user", func(t *testing.T, a *pgstore.Store) ([]byte, func() error) {
			_, at, _ := issue(t, a, "rgs", time.Now())
			return at.Hash, func() error {
				n, err := a.RevokeGrants(ctx, store.GrantFilter{UserLogin: "ALICE"})
				if err == nil && n != 1 {
					t.Errorf("revoked %d grants, want 1", n)
				}
				return err
			}
		}, nil},
		{"DeleteClient", func(t *testing.T, a *pgstore.Store) ([]byte, func() error) {
			g, at, _ := issue(t, a, "dc", time.Now())
			return at.Hash, func() error { return a.DeleteClient(ctx, g.ClientID) }
		}, nil},
		{"RevokeAccessToken", func(t *testing.T, a *pgstore.Store) ([]byte, func() error) {
			_, at, _ := issue(t, a, "rat", time.Now())
			return at.Hash, func() error { return a.RevokeAccessToken(ctx, at.Hash) }
		}, nil},
		{"refresh reuse found by GetRefreshToken", func(t *testing.T, a *pgstore.Store) ([]byte, func() error) {
			g, at, rt := issue(t, a, "reuse1", time.Now())
			rotate(t, a, g, rt)
			return at.Hash, func() error {
				_, _, _, err := a.GetRefreshToken(ctx, rt.Hash, use(g.ClientID))
				return err
			}
		}, store.ErrRefreshReused},
		{"refresh reuse found by RotateRefresh", func(t *testing.T, a *pgstore.Store) ([]byte, func() error) {
			g, at, rt := issue(t, a, "reuse2", time.Now())
			rotate(t, a, g, rt)
			return at.Hash, func() error {
				ng := *g
				at3 := &store.AccessToken{Hash: digest("reuse2/at3"), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: time.Now().Add(time.Hour)}
				rt3 := &store.RefreshToken{Hash: digest("reuse2/rt3"), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: g.ExpiresAt}
				_, err := a.RotateRefresh(ctx, rt.Hash, use(g.ClientID), &ng, at3, rt3)
				return err
			}
		}, store.ErrRefreshReused},
		{"code replayed to RedeemCode", func(t *testing.T, a *pgstore.Store) ([]byte, func() error) {
			at, code := fromCode(t, a, "replay1")
			return at.Hash, func() error {
				_, err := a.RedeemCode(ctx, code, time.Now())
				return err
			}
		}, store.ErrCodeReplayed},
		{"code replayed to CreateGrant", func(t *testing.T, a *pgstore.Store) ([]byte, func() error) {
			at, code := fromCode(t, a, "replay2")
			return at.Hash, func() error {
				g, at2, rt2 := grantOf("replay2-again", "client-replay2", time.Now())
				return a.CreateGrant(ctx, g, at2, rt2, code)
			}
		}, store.ErrCodeReplayed},
		{"Sweep of a lapsed grant", func(t *testing.T, a *pgstore.Store) ([]byte, func() error) {
			_, at, _ := issue(t, a, "sweep", time.Now())
			return at.Hash, func() error {
				// Two days on, the grant (24 h) has lapsed; B judges the
				// access token by its own clock, by which it is live.
				n, err := a.Sweep(ctx, time.Now().Add(48*time.Hour))
				if err == nil && n == 0 {
					t.Error("the sweep removed nothing")
				}
				return err
			}
		}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b, _, _ := pair(t, pushTTL)
			hash, revoke := c.setup(t, a)
			cachedAt := cached(t, b, hash)
			if err := revoke(); !errors.Is(err, c.wanted) {
				t.Fatalf("the revocation: %v, want %v", err, c.wanted)
			}
			revoked := time.Now()
			if _, err := a.GetAccessToken(ctx, hash, time.Now()); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("A still accepts the token it revoked: %v", err)
			}
			d := tokenRefusedBefore(t, b, hash, cachedAt, pushTTL, revoked)
			t.Logf("refused at B %v after A's revocation returned (cache TTL %v)", d, pushTTL)
		})
	}

	t.Run("DeleteClient of a client without grants", func(t *testing.T) {
		// B forgets the client too (its client cache), not only tokens.
		a, b, _, _ := pair(t, pushTTL)
		if err := a.PutClient(ctx, &store.Client{ID: "client-lone", CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		cachedAt := time.Now()
		if _, err := b.GetClient(ctx, "client-lone"); err != nil {
			t.Fatal(err)
		}
		if err := a.DeleteClient(ctx, "client-lone"); err != nil {
			t.Fatal(err)
		}
		deleted := time.Now()
		d := refusedBefore(t, cachedAt, pushTTL, deleted, func() error {
			_, err := b.GetClient(ctx, "client-lone")
			return err
		})
		t.Logf("client gone at B %v after A deleted it", d)
	})
}

// grantOf returns a grant of client to alice with its first token pair.
func grantOf(label, client string, now time.Time) (*store.Grant, *store.AccessToken, *store.RefreshToken) {
	g := &store.Grant{ID: "grant-" + label, ClientID: client, User: store.Identity{ID: 1, Login: "alice"},
		CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	at := &store.AccessToken{Hash: digest(label + "/at"), GrantID: g.ID, ClientID: client, ExpiresAt: now.Add(time.Hour)}
	rt := &store.RefreshToken{Hash: digest(label + "/rt"), GrantID: g.ID, ClientID: client, ExpiresAt: g.ExpiresAt}
	return g, at, rt
}

// TestRevocationPushScopedToSchema: a store in another schema of the same
// database does not hear this schema's revocations. Its cache holds a
// token whose grant was deleted behind its back; it keeps serving it after
// B, in the revoking schema, heard the revocation.
func TestRevocationPushScopedToSchema(t *testing.T) {
	ctx := context.Background()
	a, b, _, _ := pair(t, pushTTL)
	otherDSN := pgtest.DSN(t)
	c := openNamed(t, otherDSN, "c", pushTTL)
	_, cAt, _ := issue(t, c, "other", time.Now())
	cached(t, c, cAt.Hash)
	mustExec(t, otherDSN, `DELETE FROM mcp_auth_grants WHERE id = 'grant-other'`)

	g, at, _ := issue(t, a, "here", time.Now())
	cachedAt := cached(t, b, at.Hash)
	if err := a.RevokeGrant(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	tokenRefusedBefore(t, b, at.Hash, cachedAt, pushTTL, time.Now())
	// The notification reached B; one on a shared channel would have
	// reached C as quickly. Give it a moment more all the same.
	time.Sleep(100 * time.Millisecond)
	if _, err := c.GetAccessToken(ctx, cAt.Hash, time.Now()); err != nil {
		t.Errorf("another schema's revocation emptied this schema's cache: %v", err)
	}
}

// listenerPID returns the backend PID of the listener of the store whose
// sessions are named app, waiting up to 30 s for there to be exactly one
// other than not (0 for any).
func listenerPID(t *testing.T, dsn, app string, not int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := queryInt(t, dsn, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, app+pgstore.ListenerAppSuffix)
		if n == 1 {
			pid := queryInt(t, dsn, `SELECT pid FROM pg_stat_activity WHERE application_name = $1`, app+pgstore.ListenerAppSuffix)
			if pid != not {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d listener sessions named %q, want one (other than %d)", n, app+pgstore.ListenerAppSuffix, not)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLostNotification: B's listener connection is killed. A revocation
// whose notification never reached B (the grant deleted behind its back),
// which B's cache TTL alone would serve for 10 s, is refused once B's
// listener has reconnected, because reconnecting empties the cache. A
// revocation made while the listener is down is refused too, and
// revocations are pushed again afterwards.
func TestLostNotification(t *testing.T) {
	ctx := context.Background()
	a, b, dsn, bApp := pair(t, pushTTL)
	pid := listenerPID(t, dsn, bApp, 0)

	// A notification lost: the grant goes without one. B keeps serving
	// its cached copy (the TTL is long).
	_, lost, _ := issue(t, a, "lost", time.Now())
	lostAt := cached(t, b, lost.Hash)
	mustExec(t, dsn, `DELETE FROM mcp_auth_grants WHERE id = 'grant-lost'`)
	if _, err := b.GetAccessToken(ctx, lost.Hash, time.Now()); err != nil && time.Since(lostAt) < pushTTL {
		t.Fatalf("B should still serve its cached copy (no notification was sent): %v", err)
	}
	// Nothing else is revoked until B refuses it: only the reconnection
	// can explain the refusal.
	mustExec(t, dsn, `SELECT pg_terminate_backend($1)`, pid)
	killed := time.Now()
	d := tokenRefusedBefore(t, b, lost.Hash, lostAt, pushTTL, killed)
	t.Logf("the lost notification's token: refused at B %v after its listener was killed (the reconnection emptied the cache)", d)
	pid2 := listenerPID(t, dsn, bApp, pid)
	t.Logf("B's listener reconnected as backend %d (was %d)", pid2, pid)

	// B's listener loses its connection again, and A revokes at once.
	g, during, _ := issue(t, a, "during", time.Now())
	duringAt := cached(t, b, during.Hash)
	mustExec(t, dsn, `SELECT pg_terminate_backend($1)`, pid2)
	killed = time.Now()
	if err := a.RevokeGrant(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	d = tokenRefusedBefore(t, b, during.Hash, duringAt, pushTTL, killed)
	t.Logf("revoked while B's listener was down: refused at B %v after the kill", d)
	listenerPID(t, dsn, bApp, pid2)

	// Pushed again after the reconnection.
	g, after, _ := issue(t, a, "after", time.Now())
	afterAt := cached(t, b, after.Hash)
	if err := a.RevokeGrant(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	d = tokenRefusedBefore(t, b, after.Hash, afterAt, pushTTL, time.Now())
	t.Logf("after the reconnection: refused at B %v after A's revocation", d)
}

// TestLostNotificationWithinTTL: with the default cache TTL, a revocation
// whose notification never arrives is refused by B within the TTL.
func TestLostNotificationWithinTTL(t *testing.T) {
	a, b, dsn, _ := pair(t, 0) // 0: the default, pgstore.CacheTTL
	_, at, _ := issue(t, a, "lost", time.Now())
	cached(t, b, at.Hash)
	cachedBy := time.Now() // B cached the token by now, so it expires by cachedBy+TTL
	mustExec(t, dsn, `DELETE FROM mcp_auth_grants WHERE id = 'grant-lost'`)
	deleted := time.Now()
	for {
		start := time.Now()
		_, err := b.GetAccessToken(context.Background(), at.Hash, time.Now())
		if errors.Is(err, store.ErrNotFound) {
			t.Logf("refused at B %v after the deletion, without a notification (TTL %v)", time.Since(deleted), pgstore.CacheTTL)
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if start.Sub(cachedBy) > pgstore.CacheTTL {
			t.Fatalf("B still serves the token %v after caching it, past its TTL", start.Sub(cachedBy))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listeners counts this process's listener goroutines.
func listeners() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "pgstore.(*listener).run(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestListenerStopsOnClose: Close ends the listener, whether it is
// listening or waiting to reconnect to a database that is down, without
// waiting for the backoff, and its session leaves the server.
func TestListenerStopsOnClose(t *testing.T) {
	before := listeners()
	t.Run("listening", func(t *testing.T) {
		dsn := pgtest.DSN(t)
		s := openNamed(t, dsn, "closing", pushTTL)
		listenerPID(t, dsn, "closing", 0)
		if n := listeners(); n != before+1 {
			t.Fatalf("%d listener goroutines with the store open, want %d", n, before+1)
		}
		s.Close()
		if n := listeners(); n != before {
			t.Errorf("%d listener goroutines after Close, want %d", n, before)
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			n := queryInt(t, dsn, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, "closing"+pgstore.ListenerAppSuffix)
			if n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the listener's session is still on the server after Close")
			}
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close again: %v", err)
		}
	})
	t.Run("reconnecting", func(t *testing.T) {
		srv := pgtest.Start(t)
		s, err := pgstore.Open(context.Background(), srv.DSN(), pgstore.Options{}) // a server of its own: its public schema
		if err != nil {
			t.Fatal(err)
		}
		srv.Stop()
		// Long enough for a few failed attempts (100 ms, 200 ms, ...).
		time.Sleep(700 * time.Millisecond)
		closed := make(chan struct{})
		go func() {
			s.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(30 * time.Second):
			t.Fatal("Close did not return while the listener was reconnecting")
		}
		if n := listeners(); n != before {
			t.Errorf("%d listener goroutines after Close, want %d", n, before)
		}
	})
}
