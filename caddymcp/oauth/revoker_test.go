package oauth_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore"
)

// revokerStore is a store holding, for each of users 1..n, a grant of
// client and a remembered consent to it.
func revokerStore(t *testing.T, client string, n int64) store.Store {
	t.Helper()
	st, err := bboltstore.Open(t.TempDir()+"/state.db", bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx := context.Background()
	now := time.Now()
	if err := st.PutClient(ctx, &store.Client{ID: client, RedirectURIs: []string{"https://c.example/cb"},
		TokenEndpointAuthMethod: "none", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for u := int64(1); u <= n; u++ {
		id := fmt.Sprintf("grant-%d", u)
		code := []byte("code-" + id)
		if err := st.PutCode(ctx, &store.Code{Hash: code, ClientID: client, ExpiresAt: now.Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		g := &store.Grant{ID: id, ClientID: client, User: store.Identity{ID: u, Login: fmt.Sprintf("user%d", u)},
			Resource: "https://r.example/mcp", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		at := &store.AccessToken{Hash: []byte("at-" + id), GrantID: id, ClientID: client, User: g.User, ExpiresAt: g.ExpiresAt}
		rt := &store.RefreshToken{Hash: []byte("rt-" + id), GrantID: id, ClientID: client, ExpiresAt: g.ExpiresAt}
		if err := st.CreateGrant(ctx, g, at, rt, code); err != nil {
			t.Fatal(err)
		}
		if err := st.PutConsent(ctx, &store.Consent{Key: consentKey(u), UserID: u, ClientID: client,
			CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	return st
}

func consentKey(u int64) []byte { return []byte(fmt.Sprintf("consent-%d", u)) }

// TestRevokerRevokesWithdrawsAndReports: revoking grants withdraws their
// users' consents and reports each grant, up to MaxListed, and counts
// every grant revoked.
func TestRevokerRevokesWithdrawsAndReports(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	st := revokerStore(t, "client-a", 5)
	var events []oauth.Event
	rv := oauth.Revoker{Store: st, Observer: func(e oauth.Event) { events = append(events, e) }, Reason: oauth.ReasonAdmin,
		MaxListed: 3, ListPage: 2}

	done, err := rv.RevokeGrants(ctx, store.GrantFilter{ClientID: "client-a"}, "Client A", now)
	if err != nil {
		t.Fatal(err)
	}
	if done != (oauth.Revoked{Count: 5, Listed: 3, Truncated: true}) {
		t.Errorf("revoked %+v, want 5 revoked, 3 listed, truncated", done)
	}
	if len(events) != 3 {
		t.Fatalf("%d events, want 3", len(events))
	}
	for _, e := range events {
		if e.Kind != oauth.EventGrantRevoked || e.Reason != oauth.ReasonAdmin || e.ClientID != "client-a" ||
			e.ClientName != "Client A" || e.User.ID == 0 || e.GrantID == "" || e.Resource != "https://r.example/mcp" {
			t.Errorf("event %+v", e)
		}
	}
	withdrawn := 0
	for u := int64(1); u <= 5; u++ {
		if _, err := st.GetConsent(ctx, consentKey(u), now); errors.Is(err, store.ErrNotFound) {
			withdrawn++
		}
	}
	if withdrawn != 3 {
		t.Errorf("%d consents withdrawn, want the 3 listed", withdrawn)
	}
	if left, err := st.ListGrants(ctx, store.GrantFilter{ClientID: "client-a"}, now); err != nil || len(left) != 0 {
		t.Errorf("grants left: %d, %v", len(left), err)
	}
}

// TestRevokerRevokeGrant: revoking one grant withdraws its user's consent
// and reports it; an unknown grant is store.ErrNotFound.
func TestRevokerRevokeGrant(t *testing.T) {
	ctx := context.Background()
	now := time.Now()
	st := revokerStore(t, "client-a", 2)
	var events []oauth.Event
	rv := oauth.Revoker{Store: st, Observer: func(e oauth.Event) { events = append(events, e) }, Reason: oauth.ReasonAdmin}

	if err := rv.RevokeGrant(ctx, "grant-1", now); err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].GrantID != "grant-1" || events[0].Kind != oauth.EventGrantRevoked || events[0].User.ID != 1 {
		t.Errorf("events %+v", events)
	}
	if _, err := st.GetGrant(ctx, "grant-1", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("grant-1 after revoking: %v", err)
	}
	if _, err := st.GetConsent(ctx, consentKey(1), now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("user 1's consent after revoking: %v", err)
	}
	if _, err := st.GetConsent(ctx, consentKey(2), now); err != nil {
		t.Errorf("user 2's consent: %v", err)
	}
	if err := rv.RevokeGrant(ctx, "grant-1", now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("revoking grant-1 again: %v, want ErrNotFound", err)
	}
	if err := (oauth.Revoker{Store: st}).RevokeGrant(ctx, "grant-2", now); err != nil {
		t.Errorf("without an Observer: %v", err)
	}
}
