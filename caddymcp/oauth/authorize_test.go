package oauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestAuthorizePageErrors covers requests whose client or redirect URI
// cannot be trusted: a page, never a redirect (RFC 6749 section 4.1.2.1).
func TestAuthorizePageErrors(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	two := e.publicClient("https://client.example.com/a", "https://client.example.com/b")
	p := newPKCE()
	tests := []struct {
		name string
		q    url.Values
	}{
		{"unknown client", authzQuery(c, p, set("client_id", "mcp_client_doesnotexist"))},
		{"missing client_id", authzQuery(c, p, del("client_id"))},
		{"empty client_id", authzQuery(c, p, set("client_id", ""))},
		{"long client_id", authzQuery(c, p, set("client_id", strings.Repeat("x", 5000)))},
		{"duplicate client_id", authzQuery(c, p, add("client_id", c.ID))},
		{"duplicate client_id, other", authzQuery(c, p, add("client_id", two.ID))},
		{"unregistered redirect_uri", authzQuery(c, p, set("redirect_uri", "https://evil.example/cb"))},
		{"redirect_uri with extra path", authzQuery(c, p, set("redirect_uri", clientRedirect+"/x"))},
		{"redirect_uri with query", authzQuery(c, p, set("redirect_uri", clientRedirect+"?x=1"))},
		{"redirect_uri with other case", authzQuery(c, p, set("redirect_uri", "https://CLIENT.example.com/cb"))},
		{"redirect_uri of another client", authzQuery(c, p, set("redirect_uri", "https://client.example.com/a"))},
		{"duplicate redirect_uri", authzQuery(c, p, add("redirect_uri", clientRedirect))},
		{"no redirect_uri, several registered", authzQuery(two, p, del("redirect_uri"))},
		// A broken request from an unknown client is still a page.
		{"unknown client, no PKCE", authzQuery(c, p, set("client_id", "nope"), del("code_challenge"))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			r := e.newBrowser("alice").authorize(tc.q)
			expectPage(t, r, http.StatusBadRequest)
		})
	}
	t.Run("POST", func(t *testing.T) {
		e := e.sub(t)
		b := e.newBrowser("alice")
		r := b.postForm("/authorize", authzQuery(c, p))
		expectPage(t, r, http.StatusMethodNotAllowed)
	})
	t.Run("no redirect_uri, one registered", func(t *testing.T) {
		e := e.sub(t)
		r := e.newBrowser("alice").authorize(authzQuery(c, p, del("redirect_uri")))
		form := consentForm(t, r)
		if form.Get("redirect_uri") != clientRedirect {
			t.Errorf("redirect_uri %q", form.Get("redirect_uri"))
		}
	})
}

// TestAuthorizeRedirectErrors covers bad requests from a client whose
// redirect URI this browser's user approved before: the error goes back to
// the client, with state when sound and always iss. Without that approval
// the same requests get a page: registration is open, so an instant
// redirect to any registered URI would make an open redirector.
func TestAuthorizeRedirectErrors(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	p := newPKCE()
	const state = "client-state-123"
	tests := []struct {
		name  string
		q     url.Values
		code  string
		state string
	}{
		{"missing code_challenge", authzQuery(c, p, del("code_challenge")), "invalid_request", state},
		{"method plain", authzQuery(c, p, set("code_challenge_method", "plain")), "invalid_request", state},
		{"method plain with a plain challenge", authzQuery(c, p, set("code_challenge_method", "plain"), set("code_challenge", p.Verifier+"abc")), "invalid_request", state},
		{"method missing", authzQuery(c, p, del("code_challenge_method")), "invalid_request", state},
		{"method lower case", authzQuery(c, p, set("code_challenge_method", "s256")), "invalid_request", state},
		{"challenge too short", authzQuery(c, p, set("code_challenge", p.Challenge[:42])), "invalid_request", state},
		{"challenge too long", authzQuery(c, p, set("code_challenge", p.Challenge+"A")), "invalid_request", state},
		{"challenge not base64url", authzQuery(c, p, set("code_challenge", "+/"+p.Challenge[2:])), "invalid_request", state},
		{"challenge padded", authzQuery(c, p, set("code_challenge", p.Challenge[:42]+"=")), "invalid_request", state},
		{"response_type token", authzQuery(c, p, set("response_type", "token")), "unsupported_response_type", state},
		{"response_type code token", authzQuery(c, p, set("response_type", "code token")), "unsupported_response_type", state},
		{"response_type missing", authzQuery(c, p, del("response_type")), "unsupported_response_type", state},
		{"duplicate response_type", authzQuery(c, p, add("response_type", "code")), "invalid_request", state},
		{"duplicate code_challenge", authzQuery(c, p, add("code_challenge", p.Challenge)), "invalid_request", state},
		{"duplicate code_challenge_method", authzQuery(c, p, add("code_challenge_method", "S256")), "invalid_request", state},
		{"duplicate scope", authzQuery(c, p, set("scope", "read"), add("scope", "tools")), "invalid_request", state},
		{"duplicate resource", authzQuery(c, p, set("resource", e.issuer+"/mcp"), add("resource", e.issuer+"/mcp")), "invalid_request", state},
		{"duplicate state", authzQuery(c, p, add("state", "other")), "invalid_request", ""},
		{"oversize state", authzQuery(c, p, set("state", strings.Repeat("s", 3000))), "invalid_request", ""},
		{"no state, bad request", authzQuery(c, p, del("state"), del("code_challenge")), "invalid_request", ""},
		{"resource elsewhere", authzQuery(c, p, set("resource", "https://evil.example/mcp")), "invalid_target", state},
		{"resource unknown path", authzQuery(c, p, set("resource", e.issuer+"/nope")), "invalid_target", state},
		{"resource prefix of a path", authzQuery(c, p, set("resource", e.issuer+"/mc")), "invalid_target", state},
		{"resource with a dot segment", authzQuery(c, p, set("resource", e.issuer+"/mcp/../sse")), "invalid_target", state},
		{"resource with an escape", authzQuery(c, p, set("resource", e.issuer+"/mcp/%2e%2e/sse")), "invalid_target", state},
		{"resource http", authzQuery(c, p, set("resource", strings.Replace(e.issuer, "https:", "http:", 1)+"/mcp")), "invalid_target", state},
		{"resource empty", authzQuery(c, p, set("resource", "")), "invalid_target", state},
		{"resource too long", authzQuery(c, p, set("resource", e.issuer+"/"+strings.Repeat("r", 3000))), "invalid_target", state},
		{"scope too long", authzQuery(c, p, set("scope", strings.Repeat("read ", 300))), "invalid_scope", state},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			b := e.newBrowser("alice")
			expectPage(t, b.authorize(tc.q), http.StatusBadRequest)
			b.toGitHub(authzQuery(c, newPKCE()))
			e.expectClientRedirect(b.authorize(tc.q), clientRedirect, tc.code, tc.state)
		})
	}
	t.Run("alias /auth", func(t *testing.T) {
		e := e.sub(t)
		b := e.newBrowser("alice")
		b.login(authzQuery(c, newPKCE()))
		r := b.get(e.issuer + "/auth?" + authzQuery(c, p, del("code_challenge")).Encode())
		e.expectClientRedirect(r, clientRedirect, "invalid_request", state)
		// The alias serves the same endpoint: the approved request goes
		// straight to GitHub, another one gets the consent page.
		r = b.get(e.issuer + "/auth?" + authzQuery(c, p).Encode())
		if u := r.loc(t); !strings.HasSuffix(u.Path, "/login/oauth/authorize") {
			t.Errorf("approved request via /auth went to %s", u)
		}
		r = b.get(e.issuer + "/auth?" + authzQuery(c, p, set("resource", e.issuer+"/sse")).Encode())
		consentForm(t, r)
	})
	t.Run("redirect URI query kept", func(t *testing.T) {
		e := e.sub(t)
		cq := e.publicClient("https://client.example.com/cb?tenant=7")
		b := e.newBrowser("alice")
		b.toGitHub(authzQuery(cq, newPKCE()))
		r := b.authorize(authzQuery(cq, p, del("code_challenge")))
		u := r.loc(t)
		if u.Query().Get("tenant") != "7" || u.Query().Get("error") != "invalid_request" || u.Query().Get("iss") != e.issuer {
			t.Errorf("redirect %s", u)
		}
	})
}

// TestAuthorizeScopes checks which scope is granted: requested scopes the
// server supports, unknown ones dropped, and by default the resource's.
func TestAuthorizeScopes(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	tests := []struct {
		name      string
		resource  string // path, "" for none
		scope     string // "-" for none
		wantScope string
	}{
		{"default, scoped resource", "/sse", "-", "tools"},
		{"default, unscoped resource", "/mcp", "-", ""},
		{"default, site-wide", "", "-", "admin tools"},
		{"default, issuer as resource", "issuer", "-", "admin tools"},
		{"requested, unknown dropped", "/sse", "tools bogus offline_access", "tools"},
		{"requested, sorted and deduplicated", "", "tools read tools admin", "admin read tools"},
		{"requested, beyond the resource", "/mcp", "read", "read"},
		{"requested, only unknown: the default", "/sse", "openid offline_access", "tools"},
		{"requested, only unknown, site-wide", "", "bogus", "admin tools"},
		{"requested, blank: the default", "/sse", "   ", "tools"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			mods := []func(url.Values){}
			switch tc.resource {
			case "":
			case "issuer":
				mods = append(mods, set("resource", e.issuer+"/"))
			default:
				mods = append(mods, set("resource", e.issuer+tc.resource))
			}
			if tc.scope != "-" {
				mods = append(mods, set("scope", tc.scope))
			}
			p := newPKCE()
			b := e.newBrowser("alice")
			page := b.authorize(authzQuery(c, p, mods...))
			form := consentForm(t, page)
			if got := form.Get("scope"); got != tc.wantScope {
				t.Errorf("consent form scope %q, want %q", got, tc.wantScope)
			}
			for _, sc := range strings.Fields(tc.wantScope) {
				if !strings.Contains(page.Body, "<code>"+sc+"</code>") {
					t.Errorf("consent page does not show scope %s", sc)
				}
			}
			if strings.Contains(page.Body, "bogus") || strings.Contains(page.Body, "offline_access") {
				t.Errorf("consent page shows a dropped scope")
			}
			u := b.login(authzQuery(c, p, mods...))
			tk := e.mustTokens(e.exchange(c, u.Query().Get("code"), p.Verifier))
			if tk.Scope != tc.wantScope {
				t.Errorf("token scope %q, want %q", tk.Scope, tc.wantScope)
			}
		})
	}
}

// TestAuthorizeOnlyUnknownScopes: a client asking only for scopes the
// server does not know must still be able to complete consent.
func TestAuthorizeOnlyUnknownScopes(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	for _, res := range []string{"/sse", "/mcp", ""} {
		t.Run("resource="+res, func(t *testing.T) {
			e := e.sub(t)
			mods := []func(url.Values){set("scope", "openid offline_access")}
			if res != "" {
				mods = append(mods, set("resource", e.issuer+res))
			}
			code, p := e.codeFor(c, "alice", mods...)
			tk := e.mustTokens(e.exchange(c, code, p.Verifier))
			if res == "" {
				res = "/mcp/admin"
			}
			e.expectOK(res, tk.Access)
		})
	}
}

// TestNativeClientFlow: a native app's private-use redirect URI gets the
// code, state and iss like any other.
func TestNativeClientFlow(t *testing.T) {
	e := newEnv(t)
	c := e.register(map[string]any{
		"redirect_uris":              []string{"com.example.app:/oauth/cb"},
		"application_type":           "native",
		"token_endpoint_auth_method": "none",
	})
	p := newPKCE()
	b := e.newBrowser("alice")
	page := b.authorize(authzQuery(c, p))
	if !strings.Contains(page.Body, `<p class="host">com.example.app:/oauth/cb</p>`) {
		t.Errorf("consent page does not show the redirect URI: %s", page.Body)
	}
	u := b.login(authzQuery(c, p))
	if u.Scheme != "com.example.app" || u.Path != "/oauth/cb" || u.Query().Get("iss") != e.issuer || u.Query().Get("state") != "client-state-123" {
		t.Fatalf("redirect %s", u)
	}
	e.mustTokens(e.exchange(c, u.Query().Get("code"), p.Verifier))
	// Errors go there too.
	r := b.authorize(authzQuery(c, p, set("code_challenge_method", "plain")))
	e.expectClientRedirect(r, "com.example.app:/oauth/cb", "invalid_request", "client-state-123")
}
