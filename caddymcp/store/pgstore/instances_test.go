package pgstore_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/internal/pgtest"
	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/pgstore"
)

func digest(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// openN opens n stores (n pools, as n Caddy instances have) on one schema.
func openN(t *testing.T, n int) []*pgstore.Store {
	t.Helper()
	return openN2(t, pgtest.DSN(t), n)
}

// issue stores a client and a grant with its first token pair through s.
func issue(t *testing.T, s *pgstore.Store, label string, now time.Time) (*store.Grant, *store.AccessToken, *store.RefreshToken) {
	t.Helper()
	ctx := context.Background()
	if err := s.PutClient(ctx, &store.Client{ID: "client-" + label, CreatedAt: now}); err != nil && !errors.Is(err, store.ErrExists) {
		t.Fatal(err)
	}
	g := &store.Grant{ID: "grant-" + label, ClientID: "client-" + label, User: store.Identity{ID: 1, Login: "alice"},
		CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
	at := &store.AccessToken{Hash: digest(label + "/at"), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: now.Add(time.Hour)}
	rt := &store.RefreshToken{Hash: digest(label + "/rt"), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: g.ExpiresAt}
	if err := s.CreateGrant(ctx, g, at, rt, nil); err != nil {
		t.Fatal(err)
	}
	return g, at, rt
}

// TestInstancesRefreshRetry: two instances given the same refresh token
// at once, as two processes sharing one token store send it through a
// load balancer, both answer within the grace; either answer's token then
// refreshes on either instance; and once one was used, the old token
// presented again revokes the grant everywhere.
func TestInstancesRefreshRetry(t *testing.T) {
	stores := openN(t, 2)
	ctx := context.Background()
	now := time.Now().Truncate(time.Microsecond)
	use := store.RefreshUse{Now: now, Grace: 30 * time.Second, MaxRetries: 5}
	for r := range 5 {
		label := fmt.Sprintf("retry%d", r)
		g, _, rt := issue(t, stores[0], label, now)
		use.ClientID = g.ClientID
		news := make([]*store.RefreshToken, len(stores))
		errs := make([]error, len(stores))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for i, s := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				ng := *g
				at := &store.AccessToken{Hash: digest(fmt.Sprintf("%s/at%d", label, i)), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: now.Add(time.Hour)}
				news[i] = &store.RefreshToken{Hash: digest(fmt.Sprintf("%s/rt%d", label, i)), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: g.ExpiresAt}
				_, errs[i] = s.RotateRefresh(ctx, rt.Hash, use, &ng, at, news[i])
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d: instance %d refused the racing refresh: %v", r, i, err)
			}
		}
		// Each answer's token is live on the other instance.
		for i := range stores {
			if _, _, v, err := stores[1-i].GetRefreshToken(ctx, news[i].Hash, use); err != nil || v != store.RefreshLive {
				t.Fatalf("round %d: instance %d's token at the other instance: verdict %d, %v", r, i, v, err)
			}
		}
		// One is used; then the old token is reuse, on either instance.
		ng := *g
		at := &store.AccessToken{Hash: digest(label + "/at-next"), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: now.Add(time.Hour)}
		next := &store.RefreshToken{Hash: digest(label + "/rt-next"), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: g.ExpiresAt}
		if _, err := stores[1].RotateRefresh(ctx, news[0].Hash, use, &ng, at, next); err != nil {
			t.Fatalf("round %d: refreshing a racer's token: %v", r, err)
		}
		if _, _, _, err := stores[r%2].GetRefreshToken(ctx, rt.Hash, use); !errors.Is(err, store.ErrRefreshReused) {
			t.Fatalf("round %d: the old token after its successor was used: %v, want reuse", r, err)
		}
		for i, s := range stores {
			if _, err := s.GetGrant(ctx, g.ID, now); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("round %d: instance %d still sees the grant: %v", r, i, err)
			}
		}
	}
}

// TestInstancesRace: instances with pools of their own race for the same
// single-use records, many rounds; each round has exactly one winner, and
// a refresh token rotated by two instances at once revokes the grant.
func TestInstancesRace(t *testing.T) {
	const instances, rounds = 4, 10
	stores := openN(t, instances)
	ctx := context.Background()
	now := time.Now().Truncate(time.Microsecond)
	for r := range rounds {
		label := fmt.Sprintf("r%d", r)
		g, _, rt := issue(t, stores[0], label, now)
		code := digest(label + "/code")
		if err := stores[0].PutCode(ctx, &store.Code{Hash: code, ClientID: g.ClientID, ExpiresAt: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		codeErrs := make([]error, instances)
		rotErrs := make([]error, instances)
		start := make(chan struct{})
		for i, s := range stores {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				_, codeErrs[i] = s.RedeemCode(ctx, code, now)
				ng := *g
				at := &store.AccessToken{Hash: digest(fmt.Sprintf("%s/at%d", label, i)), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: now.Add(time.Hour)}
				nrt := &store.RefreshToken{Hash: digest(fmt.Sprintf("%s/rt%d", label, i)), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: g.ExpiresAt}
				_, rotErrs[i] = s.RotateRefresh(ctx, rt.Hash, store.RefreshUse{ClientID: g.ClientID, Now: now}, &ng, at, nrt)
			}()
		}
		close(start)
		wg.Wait()
		count := func(what string, errs []error, losers ...error) {
			wins := 0
			for _, err := range errs {
				switch {
				case err == nil:
					wins++
				case !slices.ContainsFunc(losers, func(l error) bool { return errors.Is(err, l) }):
					t.Errorf("round %d %s: unexpected error %v", r, what, err)
				}
			}
			if wins != 1 {
				t.Errorf("round %d %s: %d winners, want exactly 1", r, what, wins)
			}
		}
		count("RedeemCode", codeErrs, store.ErrCodeReplayed)
		// A loser finds the token reused and revokes the grant, or
		// finds the grant already revoked by another loser.
		count("RotateRefresh", rotErrs, store.ErrRefreshReused, store.ErrNotFound)
		// The losers' reuse revoked the grant, on every instance.
		for i, s := range stores {
			if _, err := s.GetGrant(ctx, g.ID, now); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("round %d: instance %d still sees the grant: %v", r, i, err)
			}
		}
	}
}

// TestRevocationSeenEverywhere: a grant revoked through one instance is
// refused by that instance at once, and by the others as soon as their
// cached copy (if any) is CacheTTL old: never later.
func TestRevocationSeenEverywhere(t *testing.T) {
	stores := openN(t, 2)
	ctx := context.Background()
	now := time.Now()
	g, at, _ := issue(t, stores[0], "x", now)
	for i, s := range stores { // both read it, so both cache it
		if _, err := s.GetAccessToken(ctx, at.Hash, now); err != nil {
			t.Fatalf("instance %d does not see the token: %v", i, err)
		}
	}
	if err := stores[0].RevokeGrant(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	if _, err := stores[0].GetAccessToken(ctx, at.Hash, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the revoking instance still accepts the token: %v", err)
	}
	// Accepted from the cache: only while its copy is younger than
	// CacheTTL, and it was cached before the revocation.
	goneWithin(t, "a revoked token", revoked, func() error {
		_, err := stores[1].GetAccessToken(ctx, at.Hash, now)
		return err
	})
}

// goneWithin waits until lookup reports ErrNotFound, and fails t if that
// takes more than CacheTTL from since.
func goneWithin(t *testing.T, what string, since time.Time, lookup func() error) {
	t.Helper()
	for {
		// Timed from the start of the lookup, so that a lookup that
		// began within CacheTTL and was slow to return is no failure.
		d := time.Since(since)
		err := lookup()
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		if d > pgstore.CacheTTL {
			t.Fatalf("the other instance still has %s %v later", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClientDeletionSeenEverywhere: a client deleted through one instance
// is gone there at once; another instance that cached it gets no tokens
// for it meanwhile, and forgets it within CacheTTL.
func TestClientDeletionSeenEverywhere(t *testing.T) {
	stores := openN(t, 2)
	ctx := context.Background()
	now := time.Now()
	issue(t, stores[0], "gone", now)
	for i, s := range stores { // both read it, so both cache it
		if _, err := s.GetClient(ctx, "client-gone"); err != nil {
			t.Fatalf("instance %d does not see the client: %v", i, err)
		}
	}
	if err := stores[0].DeleteClient(ctx, "client-gone"); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	if _, err := stores[0].GetClient(ctx, "client-gone"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the deleting instance still has the client: %v", err)
	}
	g := &store.Grant{ID: "grant-after", ClientID: "client-gone", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	at := &store.AccessToken{Hash: digest("after/at"), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: now.Add(time.Hour)}
	rt := &store.RefreshToken{Hash: digest("after/rt"), GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: g.ExpiresAt}
	if err := stores[1].CreateGrant(ctx, g, at, rt, nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the other instance issued a grant to the deleted client: %v", err)
	}
	goneWithin(t, "the deleted client", deleted, func() error {
		_, err := stores[1].GetClient(ctx, "client-gone")
		return err
	})
}

// TestNewerSchemaRefused: a database migrated by a newer caddymcp is
// refused at Open with a message saying so, and left untouched.
func TestNewerSchemaRefused(t *testing.T) {
	dsn := pgtest.DSN(t)
	s, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	current := queryInt(t, dsn, `SELECT version FROM mcp_auth_schema`)
	mustExec(t, dsn, `UPDATE mcp_auth_schema SET version = 99`)
	_, err = pgstore.Open(context.Background(), dsn, pgstore.Options{})
	if err == nil || !strings.Contains(err.Error(), "schema version 99, newer than this build supports") {
		t.Fatalf("Open on a newer schema: %v", err)
	}
	// Opening again with the version back works: nothing was changed.
	mustExec(t, dsn, `UPDATE mcp_auth_schema SET version = $1`, current)
	s, err = pgstore.Open(context.Background(), dsn, pgstore.Options{})
	if err != nil {
		t.Fatalf("Open after restoring the version: %v", err)
	}
	s.Close()
}

// TestOpenConcurrently: instances starting together on an empty database
// take turns creating the schema.
func TestOpenConcurrently(t *testing.T) {
	dsn := pgtest.DSN(t)
	errs := make(chan error, 6)
	for range cap(errs) {
		go func() {
			s, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("Open: %v", err)
		}
	}
}

// TestInstancesShareLeftoverBounds: instances sharing the database count
// one ledger: the bound of one address is reached across them, once, and
// racing instances together admit exactly the bound.
func TestInstancesShareLeftoverBounds(t *testing.T) {
	stores := openN(t, 2)
	ctx := context.Background()
	now := time.Now().Truncate(time.Microsecond)
	limits := store.LeftoverLimits{PerAddress: 6, Total: 1000}
	errs := make([]error, 24)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := &store.Leftover{Kind: store.LeftoverClient, Addr: "192.0.2.1", Key: fmt.Sprintf("c-%d", i), ExpiresAt: now.Add(time.Hour)}
			errs[i] = stores[i%2].PutLeftover(ctx, l, limits, now)
		}()
	}
	wg.Wait()
	ok := 0
	for i, err := range errs {
		var refusal *store.LeftoverRefusal
		switch {
		case err == nil:
			ok++
		case !errors.As(err, &refusal):
			t.Errorf("put %d: %v", i, err)
		}
	}
	if ok != limits.PerAddress {
		t.Fatalf("two instances admitted %d leftovers from one address, want the bound %d once", ok, limits.PerAddress)
	}
}
