package oauth_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// TestGitHubTokenSealed: the GitHub token is stored sealed, bound to its
// user, and GitHubToken opens it into a token GitHub accepts.
func TestGitHubTokenSealed(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	tk := e.loginTokens(c, "alice")
	_, g, _, err := e.st.GetRefreshToken(t.Context(), store.SecretKey("mcp_rt_", tk.Refresh), store.RefreshUse{ClientID: c.ID, Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	if len(g.GitHubToken) == 0 || bytes.Contains(g.GitHubToken, []byte("gho_")) {
		t.Fatalf("the GitHub token is not sealed: %q", g.GitHubToken)
	}
	stored, _ := json.Marshal(g)
	if bytes.Contains(stored, []byte("gho_")) {
		t.Fatalf("the grant record holds the GitHub token in the clear")
	}

	ghTok, err := e.srv.GitHubToken(g.GitHubToken, g.User.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ghTok.AccessToken, "gho_") {
		t.Fatalf("opened token %q", ghTok.AccessToken)
	}
	who, _, err := e.idp.Admit(t.Context(), ghTok)
	if err != nil || who.Login != "alice" {
		t.Fatalf("GitHub does not accept the opened token: %+v %v", who, err)
	}

	// Bound to the user: it does not open as another user's.
	if _, err := e.srv.GitHubToken(g.GitHubToken, g.User.ID+1); err == nil {
		t.Error("the sealed token opened for another user")
	}
	tampered := bytes.Clone(g.GitHubToken)
	tampered[len(tampered)-1] ^= 1
	for _, bad := range [][]byte{nil, {1, 2, 3}, tampered} {
		if _, err := e.srv.GitHubToken(bad, g.User.ID); err == nil {
			t.Errorf("GitHubToken opened %x", bad)
		}
	}
	// Another master key cannot open it.
	keys2, _ := oauth.NewKeys(bytes.Repeat([]byte{0x43}, oauth.KeySize))
	srv2, err := oauth.New(oauth.Config{Resources: defaultResources}, e.st, e.idp, keys2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv2.GitHubToken(g.GitHubToken, g.User.ID); err == nil {
		t.Error("another key opened the sealed token")
	}
}

// TestRefreshAfterKeyChange: a grant whose GitHub token the server can no
// longer open (the master key changed) cannot be refreshed, and is revoked.
func TestRefreshAfterKeyChange(t *testing.T) {
	e := newEnvWith(t, envOptions{allowOrgs: []string{"acme"}})
	c := e.publicClient()
	tk := e.loginTokens(c, "alice")

	keys2, _ := oauth.NewKeys(bytes.Repeat([]byte{0x43}, oauth.KeySize))
	srv2, err := oauth.New(oauth.Config{Resources: defaultResources, ScopesSupported: []string{"read"}}, e.st, e.idp, keys2, nil)
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tk.Refresh}, "client_id": {c.ID}}
	req := httptest.NewRequest(http.MethodPost, e.issuer+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	rec := httptest.NewRecorder()
	srv2.Endpoint("/token")(rec, req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), `"invalid_grant"`) {
		t.Fatalf("refresh under another key: %d %s", rec.Code, rec.Body)
	}
	e.expectRefused("/mcp", tk.Access, http.StatusUnauthorized)
	expectOAuthError(t, e.refresh(c, tk.Refresh), http.StatusBadRequest, "invalid_grant")
}

// TestKeyRotation: with the old master key kept as a previous key, a
// grant sealed under it still refreshes (nobody is logged out), the new
// GitHub token is sealed under the new key, and the old key alone no
// longer opens it.
func TestKeyRotation(t *testing.T) {
	e := newEnvWith(t, envOptions{allowOrgs: []string{"acme"}})
	c := e.publicClient()
	tk := e.loginTokens(c, "alice")

	oldKey, newKey := bytes.Repeat([]byte{0x42}, oauth.KeySize), bytes.Repeat([]byte{0x44}, oauth.KeySize)
	rotated, err := oauth.NewKeys(newKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	srv2, err := oauth.New(oauth.Config{Resources: defaultResources, ScopesSupported: []string{"read"}}, e.st, e.idp, rotated, nil)
	if err != nil {
		t.Fatal(err)
	}
	refresh := func(srv *oauth.Server, rt string) *httptest.ResponseRecorder {
		form := url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {c.ID}}
		req := httptest.NewRequest(http.MethodPost, e.issuer+"/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		rec := httptest.NewRecorder()
		srv.Endpoint("/token")(rec, req)
		return rec
	}
	rec := refresh(srv2, tk.Refresh)
	if rec.Code != http.StatusOK {
		t.Fatalf("refresh after rotation, old key kept: %d %s", rec.Code, rec.Body)
	}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatal(err)
	}
	e.remember(out.AccessToken)
	at, err := e.st.GetAccessToken(t.Context(), store.SecretKey("mcp_at_", out.AccessToken), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	g, err := e.st.GetGrant(t.Context(), at.GrantID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := srv2.GitHubToken(g.GitHubToken, g.User.ID); err != nil {
		t.Errorf("the rotated server cannot open the grant's GitHub token: %v", err)
	}
	// The refresh sealed the GitHub token anew: the old key can go.
	onlyOld, _ := oauth.NewKeys(oldKey)
	newOnly, _ := oauth.NewKeys(newKey)
	srvNew, _ := oauth.New(oauth.Config{Resources: defaultResources}, e.st, e.idp, newOnly, nil)
	if _, err := srvNew.GitHubToken(g.GitHubToken, g.User.ID); err != nil {
		t.Errorf("after a refresh, the grant still needs the old key: %v", err)
	}
	if sealed := newOnly.Seal([]byte("x"), nil); func() bool { _, err := onlyOld.Open(sealed, nil); return err == nil }() {
		t.Errorf("the old key alone opens what the new one sealed")
	}
	if _, err := rotated.Open(onlyOld.Seal([]byte("x"), nil), nil); err != nil {
		t.Errorf("the rotated keys do not open what the old key sealed: %v", err)
	}
}

// TestOlderTokensStillWork: tokens of the format issued before keys were
// ordered (43 random characters, stored under their plain SHA-256) are
// still accepted by the gate and revoked at /revoke.
func TestOlderTokensStillWork(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	now := time.Now()
	access, refresh := "mcp_at_"+strings.Repeat("a", 43), "mcp_rt_"+strings.Repeat("r", 43)
	digest := func(s string) []byte {
		sum := sha256.Sum256([]byte(s))
		return sum[:]
	}
	g := &store.Grant{ID: "older-grant", ClientID: c.ID, User: store.Identity{ID: 1001, Login: "alice"},
		Scope: "tools", Resource: e.issuer + "/mcp", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	at := &store.AccessToken{Hash: digest(access), GrantID: g.ID, ClientID: c.ID, User: g.User,
		Scope: g.Scope, Resource: g.Resource, ExpiresAt: now.Add(time.Hour)}
	rt := &store.RefreshToken{Hash: digest(refresh), GrantID: g.ID, ClientID: c.ID, ExpiresAt: g.ExpiresAt}
	if err := e.st.CreateGrant(t.Context(), g, at, rt, nil); err != nil {
		t.Fatal(err)
	}
	e.expectOK("/mcp", access)
	if r := e.revoke(c, refresh); r.Status != http.StatusOK {
		t.Fatalf("revoking the refresh token: %d %s", r.Status, r.Body)
	}
	e.expectRefused("/mcp", access, http.StatusUnauthorized)
}

// TestSignInAcrossKeyRotation: a key rotated in while the user is at
// GitHub (the old key kept as a previous one) does not break the sign-in:
// the PKCE verifier sent to GitHub is sealed under the key ring, so the
// callback still presents it. With the old key dropped, the sign-in is
// refused cleanly and the next one works.
func TestSignInAcrossKeyRotation(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	b := e.newBrowser("alice")
	callback := func(keys *oauth.Keys) *httptest.ResponseRecorder {
		t.Helper()
		srv, err := oauth.New(oauth.Config{Resources: defaultResources, ScopesSupported: []string{"read"}}, e.st, e.idp, keys, nil)
		if err != nil {
			t.Fatal(err)
		}
		cb := b.atGitHub(b.toGitHub(authzQuery(c, newPKCE())))
		req := httptest.NewRequest(http.MethodGet, cb.String(), nil)
		for _, ck := range b.Jar.Cookies(cb) {
			req.AddCookie(ck)
		}
		rec := httptest.NewRecorder()
		srv.Endpoint("/callback")(rec, req)
		return rec
	}
	old, neu := bytes.Repeat([]byte{0x42}, oauth.KeySize), bytes.Repeat([]byte{0x44}, oauth.KeySize)
	rotated, _ := oauth.NewKeys(neu, old)
	rec := callback(rotated)
	if loc, _ := url.Parse(rec.Header().Get("Location")); rec.Code != http.StatusFound || loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("callback after the key was rotated in: %d %s %s", rec.Code, rec.Header().Get("Location"), rec.Body)
	}
	dropped, _ := oauth.NewKeys(neu)
	rec = callback(dropped)
	if loc, _ := url.Parse(rec.Header().Get("Location")); rec.Code != http.StatusFound || loc == nil || loc.Query().Get("error") != "access_denied" {
		t.Fatalf("callback after the old key was dropped: %d %s", rec.Code, rec.Header().Get("Location"))
	}
	e.loginTokens(c, "alice")
}
