package oauth_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// revoke posts to /revoke as c.
func (e *env) revoke(c *testClient, token string, mods ...func(url.Values)) *response {
	e.t.Helper()
	form := url.Values{"token": {token}}
	basic := c.auth(form)
	for _, m := range mods {
		m(form)
	}
	return e.postForm("/revoke", form, basic)
}

func expectRevoked200(t *testing.T, r *response) {
	t.Helper()
	if r.Status != http.StatusOK {
		t.Fatalf("revoke: %d, want 200: %s", r.Status, r.Body)
	}
	if r.Body != "" {
		t.Errorf("revoke answered a body: %q", r.Body)
	}
}

func TestRevoke(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	conf := e.confidentialClient()
	other := e.publicClient()

	t.Run("refresh token revokes the grant", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		t2 := e.mustTokens(e.refresh(c, t1.Refresh))
		expectRevoked200(t, e.revoke(c, t2.Refresh, set("token_type_hint", "refresh_token")))
		e.expectRefused("/mcp", t1.Access, http.StatusUnauthorized)
		e.expectRefused("/mcp", t2.Access, http.StatusUnauthorized)
		expectOAuthError(t, e.refresh(c, t2.Refresh), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("access token revokes only itself", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		t2 := e.mustTokens(e.refresh(c, t1.Refresh))
		// A wrong hint does not matter: the token is found by its form.
		expectRevoked200(t, e.revoke(c, t1.Access, set("token_type_hint", "refresh_token")))
		e.expectRefused("/mcp", t1.Access, http.StatusUnauthorized)
		e.expectOK("/mcp", t2.Access)
		e.mustTokens(e.refresh(c, t2.Refresh))
	})
	t.Run("another client's tokens are not revoked", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		expectRevoked200(t, e.revoke(other, t1.Access))
		expectRevoked200(t, e.revoke(other, t1.Refresh))
		e.expectOK("/mcp", t1.Access)
		e.mustTokens(e.refresh(c, t1.Refresh))
	})
	t.Run("unknown token", func(t *testing.T) {
		e := e.sub(t)
		for _, tok := range []string{"mcp_at_unknown", "mcp_rt_unknown", "whatever", strings.Repeat("x", 1000)} {
			expectRevoked200(t, e.revoke(c, tok))
		}
	})
	t.Run("revoking twice", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		expectRevoked200(t, e.revoke(c, t1.Refresh))
		expectRevoked200(t, e.revoke(c, t1.Refresh))
		expectRevoked200(t, e.revoke(c, t1.Access))
	})
	t.Run("missing token", func(t *testing.T) {
		e := e.sub(t)
		expectOAuthError(t, e.revoke(c, "", del("token")), http.StatusBadRequest, "invalid_request")
		expectOAuthError(t, e.revoke(c, ""), http.StatusBadRequest, "invalid_request")
	})
	t.Run("duplicate token", func(t *testing.T) {
		e := e.sub(t)
		expectOAuthError(t, e.revoke(c, "a", add("token", "b")), http.StatusBadRequest, "invalid_request")
	})
	t.Run("client authentication required", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		r := e.postForm("/revoke", url.Values{"token": {t1.Refresh}}, nil)
		expectOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
		r = e.postForm("/revoke", url.Values{"token": {t1.Refresh}, "client_id": {"mcp_client_nope"}}, nil)
		expectOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
		e.mustTokens(e.refresh(c, t1.Refresh))
	})
	t.Run("confidential client", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(conf, "alice")
		r := e.postForm("/revoke", url.Values{"token": {t1.Refresh}}, []string{conf.ID, "wrong"})
		expectOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
		if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic ") {
			t.Errorf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
		}
		r = e.postForm("/revoke", url.Values{"token": {t1.Refresh}, "client_id": {conf.ID}}, nil)
		expectOAuthError(t, r, http.StatusUnauthorized, "invalid_client")
		e.expectOK("/mcp", t1.Access)
		expectRevoked200(t, e.revoke(conf, t1.Refresh))
		e.expectRefused("/mcp", t1.Access, http.StatusUnauthorized)
	})
	t.Run("wrong method and content type", func(t *testing.T) {
		e := e.sub(t)
		expectOAuthError(t, e.get("/revoke?token=x"), http.StatusMethodNotAllowed, "invalid_request")
		expectOAuthError(t, e.postJSON("/revoke", "application/json", `{"token":"x"}`), http.StatusBadRequest, "invalid_request")
	})
}
