package oauth_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// events records what the server reports to its observer.
type events struct {
	mu  sync.Mutex
	all []oauth.Event
}

func (ev *events) observe(e oauth.Event) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	ev.all = append(ev.all, e)
}

// take returns "kind/reason" of the events since the last take.
func (ev *events) take() []string {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	var out []string
	for _, e := range ev.all {
		s := string(e.Kind)
		if e.Reason != "" {
			s += "/" + e.Reason
		}
		out = append(out, s)
	}
	ev.all = nil
	return out
}

func (ev *events) last() oauth.Event {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return ev.all[len(ev.all)-1]
}

func wantEvents(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s: events %q, want %q", what, got, want)
	}
}

// TestEvents: every decision point reports its event, with the user,
// client and reason, and never a secret.
func TestEvents(t *testing.T) {
	ev := &events{}
	e := newEnvWith(t, envOptions{observer: ev.observe, allowUsers: []string{"alice"}})

	c := e.publicClient()
	wantEvents(t, "register", ev.take(), "client_registered")

	tk := e.loginTokens(c, "alice")
	wantEvents(t, "login", ev.take(), "authorization_started", "authorization_approved", "token_issued")

	e.expectOK("/mcp", tk.Access)
	got := ev.last()
	if got.Kind != oauth.EventGate || got.Reason != oauth.GateAllowed || got.User.Login != "alice" || got.ClientID != c.ID || got.GrantID == "" {
		t.Errorf("allowed gate event %+v", got)
	}
	e.expectRefused("/mcp", "", http.StatusUnauthorized)
	e.expectRefused("/mcp", "mcp_at_unknown", http.StatusUnauthorized)
	readOnly := e.loginTokens(c, "alice", set("scope", "read"))
	e.expectRefused("/mcp/admin", readOnly.Access, http.StatusForbidden)
	r := e.call("/mcp?access_token=x", "")
	if r.Status != http.StatusBadRequest {
		t.Errorf("token in URL: %d", r.Status)
	}
	wantEvents(t, "gate", ev.take(), "gate/allowed", "gate/missing", "gate/invalid",
		"authorization_started", "authorization_approved", "token_issued", "gate/insufficient_scope", "gate/bad_request")

	narrow := e.loginTokens(c, "alice", set("resource", e.issuer+"/sse"))
	ev.take()
	e.expectRefused("/mcp", narrow.Access, http.StatusUnauthorized)
	wantEvents(t, "wrong audience", ev.take(), "gate/wrong_audience")

	t2 := e.mustTokens(e.refresh(c, tk.Refresh))
	wantEvents(t, "refresh", ev.take(), "token_refreshed")
	e.mustTokens(e.refresh(c, tk.Refresh)) // its answer was lost
	wantEvents(t, "refresh retried", ev.take(), "token_refreshed/retried")
	e.mustTokens(e.refresh(c, t2.Refresh))
	wantEvents(t, "refresh of the successor", ev.take(), "token_refreshed")
	if got := e.refresh(c, tk.Refresh); got.Status != http.StatusBadRequest {
		t.Errorf("reused refresh token: %d", got.Status)
	}
	wantEvents(t, "refresh reuse", ev.take(), "grant_revoked/refresh_reused")

	e.postForm("/revoke", url.Values{"token": {narrow.Access}, "client_id": {c.ID}}, nil)
	wantEvents(t, "revoke access token", ev.take(), "token_revoked/client_request")
	e.postForm("/revoke", url.Values{"token": {narrow.Refresh}, "client_id": {c.ID}}, nil)
	wantEvents(t, "revoke refresh token", ev.take(), "grant_revoked/client_request")

	// An access token past its lifetime is told apart from an unknown one.
	fresh := e.loginTokens(c, "alice")
	ev.take()
	e.clock.Advance(accessTTL + time.Minute)
	r = e.expectRefused("/mcp", fresh.Access, http.StatusUnauthorized)
	if !strings.Contains(r.Header.Get("WWW-Authenticate"), "has expired") {
		t.Errorf("expired token challenge %q", r.Header.Get("WWW-Authenticate"))
	}
	wantEvents(t, "expired", ev.take(), "gate/expired")

	b := e.newBrowser("bob")
	b.get(b.atGitHub(b.toGitHub(authzQuery(c, newPKCE()))).String())
	got2 := ev.take()
	wantEvents(t, "bob", got2, "authorization_started", "authorization_denied/not_allowed")

	b = e.newBrowser("alice")
	form := consentForm(t, b.authorize(authzQuery(c, newPKCE())))
	form.Set("action", "deny")
	b.postForm("/consent", form)
	wantEvents(t, "consent denied", ev.take(), "authorization_started", "authorization_denied/consent_denied")

	code, p := e.codeFor(c, "alice")
	e.mustTokens(e.exchange(c, code, p.Verifier))
	ev.take()
	e.exchange(c, code, p.Verifier)
	wantEvents(t, "code replay", ev.take(), "grant_revoked/code_replayed")
}

// TestEventsCarryNoSecrets: no field of any event holds a token, code or
// secret the flow produced.
func TestEventsCarryNoSecrets(t *testing.T) {
	ev := &events{}
	e := newEnvWith(t, envOptions{observer: ev.observe})
	c := e.confidentialClient()
	code, p := e.codeFor(c, "alice")
	tk := e.mustTokens(e.exchange(c, code, p.Verifier))
	e.expectOK("/mcp", tk.Access)
	e.mustTokens(e.refresh(c, tk.Refresh))
	ev.mu.Lock()
	defer ev.mu.Unlock()
	if len(ev.all) < 5 {
		t.Fatalf("only %d events", len(ev.all))
	}
	for _, x := range ev.all {
		fields := strings.Join([]string{string(x.Kind), x.Reason, x.ClientID, x.ClientName, x.User.Login, x.User.Name,
			x.User.Email, x.GrantID, x.Resource, x.Scope}, " ")
		for _, s := range []string{c.Secret, code, p.Verifier, tk.Access, tk.Refresh} {
			if s != "" && strings.Contains(fields, s) {
				t.Errorf("event %s carries a secret", x.Kind)
			}
		}
	}
}
