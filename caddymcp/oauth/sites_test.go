package oauth_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// TestSitesSharingAStore: two sites of one Caddy share the default state
// file. What one issued, including a whole-site token, must not work at
// the other, whose allow-lists may be stricter.
func TestSitesSharingAStore(t *testing.T) {
	a := newEnv(t)
	b := newEnvWith(t, envOptions{shared: a.st, allowOrgs: []string{"nobody-is-in-this-org"}})
	c := a.publicClient()

	whole := a.loginTokens(c, "alice", del("resource"))
	a.expectOK("/mcp", whole.Access)
	b.expectRefused("/mcp", whole.Access, http.StatusUnauthorized)
	b.expectRefused("/sse", whole.Access, http.StatusUnauthorized)
	// Its refresh token does not mint tokens at the other site either,
	// where its client is unknown.
	expectOAuthError(t, b.refresh(c, whole.Refresh), http.StatusUnauthorized, "invalid_client")

	scoped := a.loginTokens(c, "alice")
	b.expectRefused("/mcp", scoped.Access, http.StatusUnauthorized)

	// A code issued by one site cannot be redeemed at the other.
	code, p := a.codeFor(c, "alice")
	expectOAuthError(t, b.exchange(c, code, p.Verifier), http.StatusUnauthorized, "invalid_client")
}

// TestClientsBelongToTheirSite: two sites share one store; a client that
// registered itself at the site with open registration is an unknown
// client at the site whose registration is closed (and at any other
// site): on the authorization page, at the token endpoint and at
// revocation. The same public metadata registered at both sites is two
// clients.
func TestClientsBelongToTheirSite(t *testing.T) {
	open := newEnv(t)
	closed := newEnvWith(t, envOptions{shared: open.st, config: func(c *oauth.Config) { c.RegistrationClosed = true }})
	other := newEnvWith(t, envOptions{shared: open.st})
	for _, c := range []*testClient{open.publicClient(), open.confidentialClient()} {
		for _, e := range []*env{closed, other} {
			page := e.newBrowser("alice").authorize(authzQuery(c, newPKCE()))
			if page.Status != http.StatusBadRequest || !strings.Contains(page.Body, "not registered with this server") {
				t.Errorf("another site's client at /authorize: %d %.200s", page.Status, page.Body)
			}
			expectOAuthError(t, e.refresh(c, "mcp_rt_anything"), http.StatusUnauthorized, "invalid_client")
		}
		open.loginTokens(c, "alice") // at its own site, it works
	}
	// A client registered before clients recorded their site is honoured
	// only where registration is open, where it could have registered.
	legacy := &store.Client{ID: "mcp_client_legacy0123456789", RedirectURIs: []string{clientRedirect},
		TokenEndpointAuthMethod: "none", GrantTypes: []string{"authorization_code", "refresh_token"}, CreatedAt: time.Now()}
	if err := open.st.PutClient(t.Context(), legacy); err != nil {
		t.Fatal(err)
	}
	lc := &testClient{ID: legacy.ID, RedirectURIs: legacy.RedirectURIs}
	if page := closed.newBrowser("alice").authorize(authzQuery(lc, newPKCE())); page.Status != http.StatusBadRequest {
		t.Errorf("a legacy client at the closed site: %d", page.Status)
	}
	other.loginTokens(lc, "alice")

	meta := map[string]any{"client_name": "Same", "token_endpoint_auth_method": "none", "redirect_uris": []string{clientRedirect}}
	if a, b := open.register(meta), other.register(meta); a.ID == b.ID {
		t.Errorf("the same public metadata at two sites got one client %s", a.ID)
	}
}
