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

// TestApprovalCoversWhatWasShown: an approval skips consent only for the
// exact redirect URI, resource and scope the user saw.
func TestApprovalCoversWhatWasShown(t *testing.T) {
	e := newEnv(t)
	const other = "https://evil.example.com/cb"
	c := e.publicClient(clientRedirect, other)
	b := e.newBrowser("alice")
	b.login(authzQuery(c, newPKCE()))

	if r := b.authorize(authzQuery(c, newPKCE())); r.Status != http.StatusFound {
		t.Fatalf("the approved request again: %d, want straight to GitHub", r.Status)
	}
	for name, mod := range map[string]func(map[string][]string){
		"the client's other redirect URI": func(q map[string][]string) { q["redirect_uri"] = []string{other} },
		"another resource":                func(q map[string][]string) { q["resource"] = []string{e.issuer + "/sse"} },
		"one resource of the site":        func(q map[string][]string) { q["resource"] = []string{e.issuer + "/mcp"} },
		"another scope":                   func(q map[string][]string) { q["scope"] = []string{"read"} },
	} {
		q := authzQuery(c, newPKCE())
		mod(q)
		r := b.authorize(q)
		if r.Status != http.StatusOK || !strings.Contains(r.Body, `action="/consent"`) {
			t.Errorf("%s: %d, want the consent page", name, r.Status)
		}
	}
	// A confidential client proves itself at the token endpoint, so its
	// approved loopback redirect URI holds whatever port the app gets.
	conf := e.confidentialClient("http://127.0.0.1:1234/cb")
	b.login(authzQuery(conf, newPKCE()))
	q := authzQuery(conf, newPKCE())
	q.Set("redirect_uri", "http://127.0.0.1:5678/cb")
	if r := b.authorize(q); r.Status != http.StatusFound {
		t.Errorf("approved loopback redirect of a confidential client on another port: %d, want straight to GitHub", r.Status)
	}
}

// TestConsentAlwaysForUnverifiableClients: a public client whose redirect
// goes to a program on this computer (a loopback port, an app scheme) sees
// the consent page every time, however often it was approved: any local
// program can pose as it, and its client_id is no secret (RFC 8252
// section 8.6). A web client's https redirect keeps its remembered
// approval.
func TestConsentAlwaysForUnverifiableClients(t *testing.T) {
	e := newEnv(t)
	b := e.newBrowser("alice")
	for _, redirect := range []string{"http://127.0.0.1:1234/cb", "http://localhost:9876/callback", "cursor://anysphere.cursor-retrieval/oauth/callback"} {
		c := e.publicClient(redirect)
		for i := range 3 {
			consentForm(t, b.authorize(authzQuery(c, newPKCE()))) // fails unless the page is shown
			if i == 0 {
				b.login(authzQuery(c, newPKCE()))
			}
		}
	}
	web := e.publicClient(clientRedirect)
	b.login(authzQuery(web, newPKCE()))
	if r := b.authorize(authzQuery(web, newPKCE())); r.Status != http.StatusFound {
		t.Errorf("an approved web client: %d, want straight to GitHub", r.Status)
	}
}

// TestRegisteredGrantTypesAreKept: a client that registered only the
// authorization_code grant gets no refresh token and cannot refresh.
func TestRegisteredGrantTypesAreKept(t *testing.T) {
	e := newEnv(t)
	c := e.register(map[string]any{
		"redirect_uris":              []string{clientRedirect},
		"token_endpoint_auth_method": "none",
		"grant_types":                []string{"authorization_code"},
	})
	code, p := e.codeFor(c, "alice")
	r := e.exchange(c, code, p.Verifier)
	if r.Status != http.StatusOK || r.str("access_token") == "" {
		t.Fatalf("exchange: %d %s", r.Status, r.Body)
	}
	e.remember(r.str("access_token"))
	if r.str("refresh_token") != "" {
		t.Error("a refresh token was issued to a client without the refresh_token grant")
	}
	expectOAuthError(t, e.refresh(c, "mcp_rt_anything"), http.StatusBadRequest, "unauthorized_client")
}
