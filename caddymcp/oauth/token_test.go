package oauth_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

func TestTokenAuthorizationCode(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	code, p := e.codeFor(c, "alice", set("resource", e.issuer+"/sse"))
	r := e.exchange(c, code, p.Verifier, set("redirect_uri", clientRedirect))
	tk := e.mustTokens(r)
	if r.str("token_type") != "Bearer" {
		t.Errorf("token_type %q", r.str("token_type"))
	}
	if exp, _ := r.JSON["expires_in"].(float64); exp != accessTTL.Seconds() {
		t.Errorf("expires_in %v, want %v", r.JSON["expires_in"], accessTTL.Seconds())
	}
	if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Pragma") != "no-cache" {
		t.Errorf("Cache-Control %q Pragma %q", r.Header.Get("Cache-Control"), r.Header.Get("Pragma"))
	}
	if tk.Scope != "tools" {
		t.Errorf("scope %q", tk.Scope)
	}
	if !strings.HasPrefix(tk.Access, "mcp_at_") || !strings.HasPrefix(tk.Refresh, "mcp_rt_") || tk.Access == tk.Refresh {
		t.Errorf("tokens %q %q", tk.Access, tk.Refresh)
	}
	body := e.expectOK("/sse", tk.Access).Body
	if !strings.Contains(body, "user=alice id=1001") || !strings.Contains(body, "client="+c.ID) {
		t.Errorf("gate saw %q", body)
	}
	// The token is bound to /sse.
	e.expectRefused("/mcp", tk.Access, http.StatusUnauthorized)
	// Nothing the client sent is stored in the clear.
	for _, s := range []string{code, tk.Access, tk.Refresh} {
		if _, err := e.st.GetClient(t.Context(), s); err == nil {
			t.Errorf("a secret is a client key")
		}
	}
}

func TestTokenCodeRefusals(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	other := e.publicClient()

	t.Run("wrong verifier burns the code", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice")
		expectOAuthError(t, e.exchange(c, code, newPKCE().Verifier), http.StatusBadRequest, "invalid_grant")
		expectOAuthError(t, e.exchange(c, code, p.Verifier), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("malformed verifier burns the code", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice")
		expectOAuthError(t, e.exchange(c, code, "short"), http.StatusBadRequest, "invalid_grant")
		expectOAuthError(t, e.exchange(c, code, p.Verifier), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("the challenge is not the verifier", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice")
		expectOAuthError(t, e.exchange(c, code, p.Challenge), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("replay revokes what the code produced", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice")
		tk := e.mustTokens(e.exchange(c, code, p.Verifier))
		e.expectOK("/mcp", tk.Access)
		expectOAuthError(t, e.exchange(c, code, p.Verifier), http.StatusBadRequest, "invalid_grant")
		e.expectRefused("/mcp", tk.Access, http.StatusUnauthorized)
		expectOAuthError(t, e.refresh(c, tk.Refresh), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("concurrent exchanges of one code keep no tokens", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice")
		const n = 8
		rs := make([]*response, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { rs[i] = e.exchange(c, code, p.Verifier) })
		}
		wg.Wait()
		won := 0
		for _, r := range rs {
			if r.Status == http.StatusOK {
				won++
				tk := e.mustTokens(r)
				// Every other exchange was a replay, which revoked it.
				e.expectRefused("/mcp", tk.Access, http.StatusUnauthorized)
				expectOAuthError(t, e.refresh(c, tk.Refresh), http.StatusBadRequest, "invalid_grant")
				continue
			}
			expectOAuthError(t, r, http.StatusBadRequest, "invalid_grant")
		}
		if won > 1 {
			t.Errorf("%d of %d exchanges of one code got tokens", won, n)
		}
	})
	t.Run("code of another client", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice")
		expectOAuthError(t, e.exchange(other, code, p.Verifier), http.StatusBadRequest, "invalid_grant")
		// It is burned for its own client too.
		expectOAuthError(t, e.exchange(c, code, p.Verifier), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("expired code", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice")
		e.clock.Advance(11 * time.Minute)
		expectOAuthError(t, e.exchange(c, code, p.Verifier), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("code just before expiry", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice")
		e.clock.Advance(9 * time.Minute)
		e.mustTokens(e.exchange(c, code, p.Verifier))
	})
	t.Run("unknown code", func(t *testing.T) {
		e := e.sub(t)
		expectOAuthError(t, e.exchange(c, "mcp_ac_unknown", newPKCE().Verifier), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("oversize code", func(t *testing.T) {
		e := e.sub(t)
		expectOAuthError(t, e.exchange(c, strings.Repeat("c", 1000), newPKCE().Verifier), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("redirect_uri mismatch", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice")
		expectOAuthError(t, e.exchange(c, code, p.Verifier, set("redirect_uri", "https://client.example.com/other")), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("resource mismatch", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice", set("resource", e.issuer+"/mcp"))
		expectOAuthError(t, e.exchange(c, code, p.Verifier, set("resource", e.issuer+"/sse")), http.StatusBadRequest, "invalid_target")
	})
	t.Run("resource widened to the site", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice", set("resource", e.issuer+"/mcp"))
		expectOAuthError(t, e.exchange(c, code, p.Verifier, set("resource", e.issuer)), http.StatusBadRequest, "invalid_target")
	})
	t.Run("resource unknown", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice")
		expectOAuthError(t, e.exchange(c, code, p.Verifier, set("resource", "https://evil.example/mcp")), http.StatusBadRequest, "invalid_target")
	})
	t.Run("resource repeated as granted", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice", set("resource", e.issuer+"/mcp"))
		tk := e.mustTokens(e.exchange(c, code, p.Verifier, set("resource", e.issuer+"/mcp")))
		e.expectOK("/mcp", tk.Access)
	})

	// Malformed requests, refused before the code is looked at.
	code, p := e.codeFor(c, "alice")
	for _, tc := range []struct {
		name   string
		mods   []func(url.Values)
		status int
		err    string
	}{
		{"missing grant_type", []func(url.Values){del("grant_type")}, 400, "invalid_request"},
		{"missing code", []func(url.Values){del("code")}, 400, "invalid_request"},
		{"missing verifier", []func(url.Values){del("code_verifier")}, 400, "invalid_request"},
		{"unsupported grant", []func(url.Values){set("grant_type", "password")}, 400, "unsupported_grant_type"},
		{"client_credentials", []func(url.Values){set("grant_type", "client_credentials")}, 400, "unsupported_grant_type"},
		{"implicit", []func(url.Values){set("grant_type", "implicit")}, 400, "unsupported_grant_type"},
		{"duplicate code", []func(url.Values){add("code", code)}, 400, "invalid_request"},
		{"duplicate grant_type", []func(url.Values){add("grant_type", "authorization_code")}, 400, "invalid_request"},
		{"duplicate verifier", []func(url.Values){add("code_verifier", p.Verifier)}, 400, "invalid_request"},
		{"duplicate client_id", []func(url.Values){add("client_id", c.ID)}, 400, "invalid_request"},
		{"duplicate resource", []func(url.Values){add("resource", e.issuer), add("resource", e.issuer)}, 400, "invalid_request"},
		{"no client", []func(url.Values){del("client_id")}, 401, "invalid_client"},
		{"unknown client", []func(url.Values){set("client_id", "mcp_client_nope")}, 401, "invalid_client"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			expectOAuthError(t, e.exchange(c, code, p.Verifier, tc.mods...), tc.status, tc.err)
		})
	}
	t.Run("wrong content type", func(t *testing.T) {
		e := e.sub(t)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {p.Verifier}, "client_id": {c.ID}}
		for _, ct := range []string{"application/json", "text/plain", "", "multipart/form-data"} {
			req, _ := http.NewRequest(http.MethodPost, e.issuer+"/token", strings.NewReader(form.Encode()))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			expectOAuthError(t, e.do(req), http.StatusBadRequest, "invalid_request")
		}
	})
	t.Run("parameters in the query are not read", func(t *testing.T) {
		e := e.sub(t)
		q := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {p.Verifier}, "client_id": {c.ID}}
		req, _ := http.NewRequest(http.MethodPost, e.issuer+"/token?"+q.Encode(), strings.NewReader(""))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		r := e.do(req)
		if r.Status < 400 || r.Status >= 500 {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
	})
	t.Run("oversize body", func(t *testing.T) {
		e := e.sub(t)
		expectOAuthError(t, e.exchange(c, code, p.Verifier, set("padding", strings.Repeat("x", 100<<10))), http.StatusBadRequest, "invalid_request")
	})
	t.Run("GET", func(t *testing.T) {
		e := e.sub(t)
		expectOAuthError(t, e.get("/token?grant_type=authorization_code"), http.StatusMethodNotAllowed, "invalid_request")
	})
	// None of the malformed requests used the code up.
	e.mustTokens(e.exchange(c, code, p.Verifier))
}

// TestTokenResourceNarrowing: a code for the whole site may be redeemed for
// one protected resource (RFC 8707 section 2.2).
func TestTokenResourceNarrowing(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()

	code, p := e.codeFor(c, "alice")
	site := e.mustTokens(e.exchange(c, code, p.Verifier))
	for _, path := range []string{"/mcp", "/mcp/admin", "/sse", "/mcp/anything"} {
		e.expectOK(path, site.Access)
	}

	code, p = e.codeFor(c, "alice")
	narrow := e.mustTokens(e.exchange(c, code, p.Verifier, set("resource", e.issuer+"/mcp")))
	e.expectOK("/mcp", narrow.Access)
	e.expectOK("/mcp/tools/call", narrow.Access)
	e.expectRefused("/sse", narrow.Access, http.StatusUnauthorized)
	e.expectRefused("/mcp/admin", narrow.Access, http.StatusUnauthorized)

	// The grant stays site-wide: a refresh may pick another resource.
	r := e.refresh(c, narrow.Refresh, set("resource", e.issuer+"/sse"))
	sse := e.mustTokens(r)
	e.expectOK("/sse", sse.Access)
	e.expectRefused("/mcp", sse.Access, http.StatusUnauthorized)
}

func TestTokenConfidentialClient(t *testing.T) {
	e := newEnv(t)
	c := e.confidentialClient()
	pub := e.publicClient()

	codeReq := func(e *env) url.Values {
		code, p := e.codeFor(c, "alice")
		return url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {p.Verifier}}
	}
	t.Run("Basic", func(t *testing.T) {
		e := e.sub(t)
		e.mustTokens(e.postForm("/token", codeReq(e), []string{c.ID, c.Secret}))
	})
	t.Run("Basic with matching client_id in the body", func(t *testing.T) {
		e := e.sub(t)
		form := codeReq(e)
		form.Set("client_id", c.ID)
		e.mustTokens(e.postForm("/token", form, []string{c.ID, c.Secret}))
	})
	t.Run("client_secret_post", func(t *testing.T) {
		e := e.sub(t)
		form := codeReq(e)
		form.Set("client_id", c.ID)
		form.Set("client_secret", c.Secret)
		e.mustTokens(e.postForm("/token", form, nil))
	})
	t.Run("wrong secret with Basic", func(t *testing.T) {
		e := e.sub(t)
		r := e.postForm("/token", codeReq(e), []string{c.ID, c.Secret + "x"})
		expectOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
		if wa := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(wa, "Basic ") {
			t.Errorf("WWW-Authenticate %q", wa)
		}
	})
	t.Run("wrong secret in the body", func(t *testing.T) {
		e := e.sub(t)
		form := codeReq(e)
		form.Set("client_id", c.ID)
		form.Set("client_secret", "mcp_cs_wrong")
		r := e.postForm("/token", form, nil)
		expectOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
		if wa := r.Header.Get("WWW-Authenticate"); wa != "" {
			t.Errorf("WWW-Authenticate %q without Basic", wa)
		}
	})
	t.Run("no secret", func(t *testing.T) {
		e := e.sub(t)
		form := codeReq(e)
		form.Set("client_id", c.ID)
		expectOAuthError(t, e.postForm("/token", form, nil), http.StatusUnauthorized, "invalid_client")
	})
	t.Run("Basic and body secret", func(t *testing.T) {
		e := e.sub(t)
		form := codeReq(e)
		form.Set("client_secret", c.Secret)
		expectOAuthError(t, e.postForm("/token", form, []string{c.ID, c.Secret}), http.StatusBadRequest, "invalid_request")
	})
	t.Run("Basic and another client_id", func(t *testing.T) {
		e := e.sub(t)
		form := codeReq(e)
		form.Set("client_id", pub.ID)
		expectOAuthError(t, e.postForm("/token", form, []string{c.ID, c.Secret}), http.StatusBadRequest, "invalid_request")
	})
	t.Run("Basic badly encoded", func(t *testing.T) {
		e := e.sub(t)
		req, _ := http.NewRequest(http.MethodPost, e.issuer+"/token", strings.NewReader(codeReq(e).Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(c.ID, "%zz")
		r := e.do(req)
		expectOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
		if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("Basic for an unknown client", func(t *testing.T) {
		e := e.sub(t)
		expectOAuthError(t, e.postForm("/token", codeReq(e), []string{"mcp_client_nope", "x"}), http.StatusUnauthorized, "invalid_client")
	})
	t.Run("public client sending a secret", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(pub, "alice")
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {p.Verifier},
			"client_id": {pub.ID}, "client_secret": {"anything"}}
		expectOAuthError(t, e.postForm("/token", form, nil), http.StatusUnauthorized, "invalid_client")
		form.Del("client_id")
		form.Del("client_secret")
		expectOAuthError(t, e.postForm("/token", form, []string{pub.ID, "anything"}), http.StatusUnauthorized, "invalid_client")
	})
	t.Run("public client with empty Basic password", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(pub, "alice")
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "code_verifier": {p.Verifier}}
		e.mustTokens(e.postForm("/token", form, []string{pub.ID, ""}))
	})
	t.Run("another client's secret", func(t *testing.T) {
		e := e.sub(t)
		c2 := e.confidentialClient()
		expectOAuthError(t, e.postForm("/token", codeReq(e), []string{c.ID, c2.Secret}), http.StatusUnauthorized, "invalid_client")
	})
}

func TestRefresh(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	other := e.publicClient()

	t.Run("rotation", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		t2 := e.mustTokens(e.refresh(c, t1.Refresh))
		if t2.Refresh == t1.Refresh || t2.Access == t1.Access {
			t.Fatal("refresh did not rotate")
		}
		if t2.Scope != t1.Scope {
			t.Errorf("scope %q became %q", t1.Scope, t2.Scope)
		}
		// The old access token lives on until it expires; the new one works.
		e.expectOK("/mcp", t1.Access)
		e.expectOK("/mcp", t2.Access)
		t3 := e.mustTokens(e.refresh(c, t2.Refresh))
		e.expectOK("/mcp", t3.Access)
	})
	t.Run("reuse after the successor was used revokes the grant", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		t2 := e.mustTokens(e.refresh(c, t1.Refresh))
		t3 := e.mustTokens(e.refresh(c, t2.Refresh))
		expectOAuthError(t, e.refresh(c, t1.Refresh), http.StatusBadRequest, "invalid_grant")
		expectOAuthError(t, e.refresh(c, t3.Refresh), http.StatusBadRequest, "invalid_grant")
		e.expectRefused("/mcp", t1.Access, http.StatusUnauthorized)
		e.expectRefused("/mcp", t3.Access, http.StatusUnauthorized)
	})
	t.Run("another client", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		expectOAuthError(t, e.refresh(other, t1.Refresh), http.StatusBadRequest, "invalid_grant")
		// The owner is not harmed.
		e.mustTokens(e.refresh(c, t1.Refresh))
	})
	t.Run("scope narrowing", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice") // site-wide: "admin tools"
		if t1.Scope != "admin tools" {
			t.Fatalf("scope %q", t1.Scope)
		}
		e.expectOK("/mcp/admin", t1.Access)
		t2 := e.mustTokens(e.refresh(c, t1.Refresh, set("scope", "tools")))
		if t2.Scope != "tools" {
			t.Errorf("narrowed scope %q", t2.Scope)
		}
		e.expectOK("/sse", t2.Access)
		r := e.expectRefused("/mcp/admin", t2.Access, http.StatusForbidden)
		if !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
			t.Errorf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
		}
		// The grant keeps its scope: the next refresh may ask for all of it.
		t3 := e.mustTokens(e.refresh(c, t2.Refresh))
		if t3.Scope != "admin tools" {
			t.Errorf("scope after narrowing %q, want the grant's", t3.Scope)
		}
		// "read" is offered but was never granted.
		expectOAuthError(t, e.refresh(c, t3.Refresh, set("scope", "tools read")), http.StatusBadRequest, "invalid_scope")
		// A refused narrowing did not use the token up.
		t4 := e.mustTokens(e.refresh(c, t3.Refresh, set("scope", "admin")))
		if t4.Scope != "admin" {
			t.Errorf("narrowed scope %q", t4.Scope)
		}
		// Scopes the server does not offer are dropped, as the
		// authorization request dropped them; what is left narrows.
		t5 := e.mustTokens(e.refresh(c, t4.Refresh, set("scope", "tools bogus")))
		if t5.Scope != "tools" {
			t.Errorf("scope %q, want tools", t5.Scope)
		}
	})
	t.Run("unoffered scopes repeated at refresh", func(t *testing.T) {
		// mcp-remote asks for OpenID Connect's scopes when it finds
		// none it likes, and repeats them at every refresh: the
		// authorization dropped them, and so must the refresh.
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice", set("scope", "openid email profile"))
		if t1.Scope != "admin tools" {
			t.Fatalf("scope %q, want the default", t1.Scope)
		}
		t2 := e.mustTokens(e.refresh(c, t1.Refresh, set("scope", "openid email profile")))
		if t2.Scope != t1.Scope {
			t.Errorf("scope at refresh %q, want the granted %q", t2.Scope, t1.Scope)
		}
		e.expectOK("/mcp/admin", t2.Access)
	})
	t.Run("resource must match the grant", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice", set("resource", e.issuer+"/mcp"))
		expectOAuthError(t, e.refresh(c, t1.Refresh, set("resource", e.issuer+"/sse")), http.StatusBadRequest, "invalid_target")
		expectOAuthError(t, e.refresh(c, t1.Refresh, set("resource", "https://evil.example")), http.StatusBadRequest, "invalid_target")
		e.mustTokens(e.refresh(c, t1.Refresh, set("resource", e.issuer+"/mcp")))
	})
	t.Run("expired refresh token", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		e.clock.Advance(refreshTTL + time.Minute)
		expectOAuthError(t, e.refresh(c, t1.Refresh), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("refresh extends the grant", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		e.clock.Advance(refreshTTL - time.Hour)
		t2 := e.mustTokens(e.refresh(c, t1.Refresh))
		e.clock.Advance(2 * time.Hour)
		e.mustTokens(e.refresh(c, t2.Refresh))
	})
	t.Run("malformed", func(t *testing.T) {
		e := e.sub(t)
		expectOAuthError(t, e.refresh(c, ""), http.StatusBadRequest, "invalid_request")
		expectOAuthError(t, e.refresh(c, "mcp_rt_unknown"), http.StatusBadRequest, "invalid_grant")
		expectOAuthError(t, e.refresh(c, strings.Repeat("r", 1000)), http.StatusBadRequest, "invalid_grant")
		t1 := e.loginTokens(c, "alice")
		expectOAuthError(t, e.refresh(c, t1.Access), http.StatusBadRequest, "invalid_grant")
		expectOAuthError(t, e.refresh(c, t1.Refresh, add("refresh_token", t1.Refresh)), http.StatusBadRequest, "invalid_request")
		expectOAuthError(t, e.refresh(c, t1.Refresh, add("scope", "tools"), add("scope", "tools")), http.StatusBadRequest, "invalid_request")
		e.mustTokens(e.refresh(c, t1.Refresh))
	})
	t.Run("no allow-lists: GitHub still confirms the login", func(t *testing.T) {
		// Revoking the app on GitHub must end MCP access at the next
		// refresh, allow-lists or not.
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		before := e.gh.Calls("/user")
		t2 := e.mustTokens(e.refresh(c, t1.Refresh))
		if got := e.gh.Calls("/user"); got != before+1 {
			t.Errorf("refresh called GitHub /user %d times, want 1", got-before)
		}
		e.gh.RevokeUserTokens("alice")
		expectOAuthError(t, e.refresh(c, t2.Refresh), http.StatusBadRequest, "invalid_grant")
		e.expectRefused("/mcp", t2.Access, http.StatusUnauthorized)
	})
}

func TestRefreshRechecksAllowLists(t *testing.T) {
	e := newEnvWith(t, envOptions{allowOrgs: []string{"acme"}})
	c := e.publicClient()

	t.Run("still a member", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		before := e.gh.Calls("/user")
		e.mustTokens(e.refresh(c, t1.Refresh))
		if e.gh.Calls("/user") != before+1 {
			t.Errorf("refresh did not re-check with GitHub")
		}
	})
	t.Run("left the organization", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		e.gh.SetUserOrgs("alice", nil)
		defer e.gh.SetUserOrgs("alice", alice.Orgs)
		expectOAuthError(t, e.refresh(c, t1.Refresh), http.StatusBadRequest, "invalid_grant")
		e.expectRefused("/mcp", t1.Access, http.StatusUnauthorized)
		// Revoked, not just refused: rejoining does not bring it back.
		e.gh.SetUserOrgs("alice", alice.Orgs)
		expectOAuthError(t, e.refresh(c, t1.Refresh), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("GitHub token revoked", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		e.gh.RevokeUserTokens("alice")
		expectOAuthError(t, e.refresh(c, t1.Refresh), http.StatusBadRequest, "invalid_grant")
		e.expectRefused("/mcp", t1.Access, http.StatusUnauthorized)
	})
	t.Run("GitHub account replaced", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		// The login now names another account (deleted and re-created),
		// which the old GitHub token now reads as.
		replaced := alice
		replaced.ID = 4242
		e.gh.AddUser(replaced)
		defer e.gh.AddUser(alice)
		expectOAuthError(t, e.refresh(c, t1.Refresh), http.StatusBadRequest, "invalid_grant")
		e.expectRefused("/mcp", t1.Access, http.StatusUnauthorized)
	})
}

// TestRefreshGitHubUnavailable: a GitHub failure during the re-check
// never revokes nor answers invalid_grant. A user GitHub confirmed within
// the outage grace (twice the access-token lifetime) is served from that
// check, without moving it; past it, the refresh is a 503 with GitHub's
// retry hint, and the same refresh token works once GitHub is back.
func TestRefreshGitHubUnavailable(t *testing.T) {
	e := newEnvWith(t, envOptions{allowOrgs: []string{"acme"}, allow5xx: true})
	c := e.publicClient()
	t1 := e.loginTokens(c, "alice")
	e.gh.SetFault(fakegithub.Fault{Fail: fakegithub.PrimaryRateLimit, RetryAfter: 40 * time.Second})
	e.clock.Advance(accessTTL)
	t2 := e.mustTokens(e.refresh(c, t1.Refresh)) // checked at sign-in, an hour ago
	e.expectOK("/mcp", t2.Access)
	e.clock.Advance(accessTTL + time.Minute) // the check at sign-in is now too old
	r := e.refresh(c, t2.Refresh)
	expectOAuthError(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")
	if n, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || n < 40 {
		t.Errorf("Retry-After %q, want GitHub's 40 s or more", r.Header.Get("Retry-After"))
	}
	e.gh.SetFault(fakegithub.Fault{})
	t3 := e.mustTokens(e.refresh(c, t2.Refresh))
	e.expectOK("/mcp", t3.Access)
	// That refresh reached GitHub, so the window starts again from it.
	e.gh.SetFault(fakegithub.Fault{Fail: fakegithub.ServerError})
	e.clock.Advance(accessTTL)
	e.mustTokens(e.refresh(c, t3.Refresh))
}

// TestRefreshGitHubUnavailableWithoutGrace: with no outage grace, every
// refresh during an outage is deferred, and none revokes.
func TestRefreshGitHubUnavailableWithoutGrace(t *testing.T) {
	e := newEnvWith(t, envOptions{allow5xx: true, config: func(c *oauth.Config) { c.GitHubOutageGrace = -1 }})
	c := e.publicClient()
	t1 := e.loginTokens(c, "alice")
	e.gh.SetFault(fakegithub.Fault{Fail: fakegithub.ServerError})
	for range 3 {
		expectOAuthError(t, e.refresh(c, t1.Refresh), http.StatusServiceUnavailable, "temporarily_unavailable")
	}
	e.gh.SetFault(fakegithub.Fault{})
	e.mustTokens(e.refresh(c, t1.Refresh))
}
