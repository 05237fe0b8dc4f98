package oauth_test

import (
	"encoding/json"
	"fmt"
	"net/http"

	"slices"
	"strings"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/githubidp"
	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// TestRegistrationClosed: with registration closed, /register refuses
// and the metadata does not offer it; pre-registered clients still work.
func TestRegistrationClosed(t *testing.T) {
	e := newEnvWith(t, envOptions{config: func(c *oauth.Config) {
		c.RegistrationClosed = true
		c.Clients = []oauth.StaticClient{{ID: "inspector", Name: "MCP Inspector", RedirectURIs: []string{"http://localhost:6274/oauth/callback"}}}
	}})
	r := e.postJSON("/register", "application/json", `{"redirect_uris":["https://client.example.com/cb"]}`)
	expectOAuthError(t, r, http.StatusForbidden, "access_denied")
	if md := e.get("/.well-known/oauth-authorization-server"); md.JSON["registration_endpoint"] != nil {
		t.Errorf("closed registration is still advertised: %v", md.JSON["registration_endpoint"])
	}
	c := &testClient{ID: "inspector", RedirectURIs: []string{"http://localhost:6274/oauth/callback"}}
	page := e.newBrowser("alice").authorize(authzQuery(c, newPKCE()))
	consentForm(t, page)
	if !strings.Contains(page.Body, "registered by the operator") {
		t.Errorf("consent page does not say the client is the operator's")
	}
	e.expectOK("/mcp", e.loginTokens(c, "alice").Access)
}

// TestStaticConfidentialClient: a pre-registered client with a secret
// must present it.
func TestStaticConfidentialClient(t *testing.T) {
	const secret = "ci-bot-secret-0123456789"
	e := newEnvWith(t, envOptions{config: func(c *oauth.Config) {
		c.Clients = []oauth.StaticClient{{ID: "ci-bot", Secret: secret, RedirectURIs: []string{clientRedirect}}}
	}})
	e.remember(secret)
	c := &testClient{ID: "ci-bot", Secret: secret, RedirectURIs: []string{clientRedirect}}
	tok := e.loginTokens(c, "alice")
	e.expectOK("/mcp", tok.Access)
	e.mustTokens(e.refresh(c, tok.Refresh))

	wrong := &testClient{ID: "ci-bot", Secret: "not-the-secret", RedirectURIs: []string{clientRedirect}}
	code, p := e.codeFor(c, "alice")
	expectOAuthError(t, e.exchange(wrong, code, p.Verifier), http.StatusUnauthorized, "invalid_client")
	public := &testClient{ID: "ci-bot", RedirectURIs: []string{clientRedirect}}
	code, p = e.codeFor(c, "alice")
	expectOAuthError(t, e.exchange(public, code, p.Verifier), http.StatusUnauthorized, "invalid_client")
}

// TestStaticClientsChecked: the configuration's clients follow the
// registration rules.
func TestStaticClientsChecked(t *testing.T) {
	for name, sc := range map[string]oauth.StaticClient{
		"colon in id":     {ID: "https://x", RedirectURIs: []string{clientRedirect}},
		"empty id":        {RedirectURIs: []string{clientRedirect}},
		"no redirect":     {ID: "a"},
		"http redirect":   {ID: "a", RedirectURIs: []string{"http://client.example.com/cb"}},
		"fragment":        {ID: "a", RedirectURIs: []string{"https://client.example.com/cb#x"}},
		"javascript":      {ID: "a", RedirectURIs: []string{"javascript:alert(1)"}},
		"space in the id": {ID: "a b", RedirectURIs: []string{clientRedirect}},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			_, err := oauth.New(oauth.Config{Resources: defaultResources, Clients: []oauth.StaticClient{sc}}, e.st, e.idp, testKeys(t), nil)
			if err == nil {
				t.Fatalf("client %+v accepted", sc)
			}
		})
	}
	e := newEnv(t)
	twice := []oauth.StaticClient{{ID: "a", RedirectURIs: []string{clientRedirect}}, {ID: "a", RedirectURIs: []string{clientRedirect}}}
	if _, err := oauth.New(oauth.Config{Resources: defaultResources, Clients: twice}, e.st, e.idp, testKeys(t), nil); err == nil {
		t.Errorf("a client listed twice was accepted")
	}
}

// TestRegisterAgain: a public client registering the same metadata again
// gets the same client (loopback ports aside), costing nothing; a
// confidential one gets a new client each time.
func TestRegisterAgain(t *testing.T) {
	e := newEnv(t)
	meta := `{"client_name":"Claude Code","token_endpoint_auth_method":"none","redirect_uris":["http://localhost:%d/callback"]}`
	first := e.postJSON("/register", "application/json", fmt.Sprintf(meta, 40001))
	again := e.postJSON("/register", "application/json", fmt.Sprintf(meta, 40002))
	if first.Status != http.StatusCreated || again.Status != http.StatusCreated {
		t.Fatalf("registrations: %d, %d", first.Status, again.Status)
	}
	if first.str("client_id") != again.str("client_id") {
		t.Errorf("the same public metadata got two clients: %s, %s", first.str("client_id"), again.str("client_id"))
	}
	if first.JSON["client_id_issued_at"] != again.JSON["client_id_issued_at"] {
		t.Errorf("client_id_issued_at changed: %v, %v", first.JSON["client_id_issued_at"], again.JSON["client_id_issued_at"])
	}
	if got := again.JSON["redirect_uris"].([]any)[0]; got != "http://localhost:40002/callback" {
		t.Errorf("the response names %v, not the client's own redirect URI", got)
	}
	// The client authorizes with a third port.
	c := &testClient{ID: again.str("client_id"), RedirectURIs: []string{"http://localhost:40003/callback"}}
	e.expectOK("/mcp", e.loginTokens(c, "alice").Access)

	other := e.postJSON("/register", "application/json", `{"client_name":"Claude Code 2","token_endpoint_auth_method":"none","redirect_uris":["http://localhost:1/callback"]}`)
	if other.str("client_id") == first.str("client_id") {
		t.Errorf("different metadata got the same client")
	}
	conf := `{"client_name":"Server","redirect_uris":["https://server.example/cb"]}`
	a, b := e.postJSON("/register", "application/json", conf), e.postJSON("/register", "application/json", conf)
	e.remember(a.str("client_secret"), b.str("client_secret"))
	if a.str("client_id") == b.str("client_id") || a.str("client_secret") == "" {
		t.Errorf("confidential registrations share a client: %s", a.str("client_id"))
	}
}

// TestScopeRestricted: a scope restricted to an organization is granted to
// its members only; a member who leaves loses it at the next refresh, and
// the resource that requires it then refuses the token.
func TestScopeRestricted(t *testing.T) {
	e := newEnvWith(t, envOptions{scopeRules: []githubidp.ScopeRule{{Scope: "admin", Allow: githubidp.Audience{Orgs: []string{"acme"}}}}})
	c := e.publicClient()
	admin := set("resource", e.issuer+"/mcp/admin")

	aliceTok := e.loginTokens(c, "alice", admin) // alice is in acme
	if aliceTok.Scope != "admin" {
		t.Fatalf("alice's scope %q, want admin", aliceTok.Scope)
	}
	e.expectOK("/mcp/admin", aliceTok.Access)

	bobTok := e.loginTokens(c, "bob", admin) // bob is not
	if strings.Contains(bobTok.Scope, "admin") {
		t.Errorf("bob was granted %q", bobTok.Scope)
	}
	r := e.expectRefused("/mcp/admin", bobTok.Access, http.StatusForbidden)
	if wa := r.Header.Get("WWW-Authenticate"); !strings.Contains(wa, `error="insufficient_scope"`) || !strings.Contains(wa, `scope="admin"`) {
		t.Errorf("challenge %q", wa)
	}

	e.gh.SetUserOrgs("alice", nil)
	next := e.mustTokens(e.refresh(c, aliceTok.Refresh))
	if strings.Contains(next.Scope, "admin") {
		t.Errorf("alice kept admin after leaving acme: %q", next.Scope)
	}
	e.expectRefused("/mcp/admin", next.Access, http.StatusForbidden)
	// ...and the grant itself lost it: asking for it back is refused.
	expectOAuthError(t, e.refresh(c, next.Refresh, set("scope", "admin")), http.StatusBadRequest, "invalid_scope")
}

// TestConsentWithdrawn: disconnecting a client (revoking its refresh
// token) withdraws the user's consent; a sign-in that did not complete
// records none.
func TestConsentWithdrawn(t *testing.T) {
	e := newEnvWith(t, envOptions{allowUsers: []string{"alice"}})
	c := e.publicClient()
	b := e.newBrowser("alice")
	b.login(authzQuery(c, newPKCE()))
	tok := e.loginTokens(c, "alice") // another browser, the same user
	if r := b.authorize(authzQuery(c, newPKCE())); r.Status != http.StatusFound {
		t.Fatalf("an approved client again: %d, want straight to GitHub", r.Status)
	}
	if r := e.revoke(c, tok.Refresh); r.Status != http.StatusOK {
		t.Fatalf("revoke: %d", r.Status)
	}
	consentForm(t, b.authorize(authzQuery(c, newPKCE())))

	// bob approves but is not allowed: nothing is remembered for him.
	bb := e.newBrowser("bob")
	r := bb.authorize(authzQuery(c, newPKCE()))
	form := consentForm(t, r)
	form.Set("action", "approve")
	r = bb.postForm("/consent", form)
	back := bb.get(bb.atGitHub(r.loc(t)).String())
	if q := back.loc(t).Query(); q.Get("error") != "access_denied" {
		t.Fatalf("bob's sign-in: %v", q)
	}
	consentForm(t, bb.authorize(authzQuery(c, newPKCE())))
}

// TestResourceDocumentScopes: a protected resource's document lists the
// configured scopes and its own, not other resources'.
func TestResourceDocumentScopes(t *testing.T) {
	e := newEnv(t)
	for path, want := range map[string][]string{
		"":                 {"admin", "read", "tools"},
		"/mcp":             {"read"},
		"/mcp/admin":       {"admin", "read"},
		"/mcp/admin/tools": {"admin", "read"},
		"/sse":             {"read", "tools"},
	} {
		r := e.get("/.well-known/oauth-protected-resource" + path)
		var got []string
		for _, s := range r.JSON["scopes_supported"].([]any) {
			got = append(got, s.(string))
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: scopes_supported %v, want %v", path, got, want)
		}
	}
}

func testKeys(t *testing.T) *oauth.Keys {
	k, err := oauth.NewKeys([]byte(strings.Repeat("k", oauth.KeySize)))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestCodeExchangeNarrowsScope: the code exchange may ask for fewer of the
// granted scopes, never more; the grant keeps them all for refresh.
func TestCodeExchangeNarrowsScope(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	code, p := e.codeFor(c, "alice", set("resource", e.issuer+"/sse"), set("scope", "read tools"))
	tok := e.mustTokens(e.exchange(c, code, p.Verifier, set("scope", "tools")))
	if tok.Scope != "tools" {
		t.Errorf("narrowed token scope %q, want tools", tok.Scope)
	}
	if full := e.mustTokens(e.refresh(c, tok.Refresh)); full.Scope != "read tools" {
		t.Errorf("refreshed scope %q, want the whole grant", full.Scope)
	}
	code, p = e.codeFor(c, "alice", set("resource", e.issuer+"/sse"), set("scope", "tools"))
	expectOAuthError(t, e.exchange(c, code, p.Verifier, set("scope", "tools admin")), http.StatusBadRequest, "invalid_scope")
}

// TestRemovedStaticClientStops: a pre-registered client's stored stand-in
// (kept so its grants hang off a client) does not keep the client alive
// once the operator removes it from the configuration, old secret or not.
func TestRemovedStaticClientStops(t *testing.T) {
	const secret = "leaked-static-client-secret-0123456789"
	configured := func(c *oauth.Config) {
		c.Clients = []oauth.StaticClient{{ID: "ci-bot", Secret: secret, RedirectURIs: []string{clientRedirect}}}
	}
	e := newEnvWith(t, envOptions{config: configured})
	e.remember(secret)
	c := &testClient{ID: "ci-bot", Secret: secret, RedirectURIs: []string{clientRedirect}}
	tok := e.loginTokens(c, "alice")
	code, p := e.codeFor(c, "alice")

	// The same state file, the client no longer configured.
	e2 := newEnvWith(t, envOptions{shared: e.st})
	expectOAuthError(t, e2.refresh(c, tok.Refresh), http.StatusUnauthorized, "invalid_client")
	expectOAuthError(t, e2.exchange(c, code, p.Verifier), http.StatusUnauthorized, "invalid_client")
	public := &testClient{ID: "ci-bot", RedirectURIs: []string{clientRedirect}}
	expectOAuthError(t, e2.refresh(public, tok.Refresh), http.StatusUnauthorized, "invalid_client")
	r := e2.newBrowser("alice").authorize(authzQuery(c, newPKCE()))
	expectPage(t, r, http.StatusBadRequest)
	if !strings.Contains(r.Body, "not registered") {
		t.Errorf("authorize for a removed client: %.300s", r.Body)
	}
}

// TestDeletedClientLosesApprovals: a public client deleted by an operator
// and registered again with the same metadata (and so the same client_id)
// is a new client: the approvals of the old one do not skip its consent.
func TestDeletedClientLosesApprovals(t *testing.T) {
	e := newEnv(t)
	meta := `{"client_name":"Claude","token_endpoint_auth_method":"none","redirect_uris":["https://client.example.com/cb"]}`
	first := e.postJSON("/register", "application/json", meta)
	c := &testClient{ID: first.str("client_id"), RedirectURIs: []string{clientRedirect}}
	b := e.newBrowser("alice")
	b.login(authzQuery(c, newPKCE())) // approved and signed in; the code is never redeemed
	if r := b.authorize(authzQuery(c, newPKCE())); r.Status != http.StatusFound {
		t.Fatalf("the approved client: %d, want straight to GitHub", r.Status)
	}
	if err := e.st.DeleteClient(t.Context(), c.ID); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Second) // a new record, in another second
	again := e.postJSON("/register", "application/json", meta)
	if again.str("client_id") != c.ID {
		t.Fatalf("the same metadata got another ID (%s); this test needs the same", again.str("client_id"))
	}
	consentForm(t, b.authorize(authzQuery(c, newPKCE())))
	// An error is not redirected to it on the strength of the old approval either.
	expectPage(t, b.authorize(authzQuery(c, newPKCE(), del("code_challenge"))), http.StatusBadRequest)
}

// TestRegistrationTooLarge: the fields are bounded one by one and the
// record as a whole.
func TestRegistrationTooLarge(t *testing.T) {
	e := newEnv(t)
	var uris []string
	for i := range 20 {
		uris = append(uris, fmt.Sprintf("https://client.example.com/%d/%s", i, strings.Repeat("p", 1000)))
	}
	body, _ := json.Marshal(map[string]any{"redirect_uris": uris, "token_endpoint_auth_method": "none"})
	r := e.postJSON("/register", "application/json", string(body))
	expectOAuthError(t, r, http.StatusBadRequest, "invalid_client_metadata")
	if !strings.Contains(r.str("error_description"), "too large") {
		t.Errorf("description %q", r.str("error_description"))
	}
}
