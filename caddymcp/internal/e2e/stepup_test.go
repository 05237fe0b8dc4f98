package e2e

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Per-resource scopes, step-up authorization with the SDK client, and
// scopes restricted by GitHub identity.

// scopedConfig protects /mcp with the given required scopes (the other
// default paths without any) and restricts the scope write to restrict.
func scopedConfig(required, restrict string) string {
	return "protect /mcp {\n\t\t\tscopes " + required + "\n\t\t}\n\t\tprotect /sse /messages\n\t\t" +
		"restrict_scope write {\n\t\t\t" + restrict + "\n\t\t}"
}

// sdkScope is the scope of the token the SDK client holds.
func sdkScope(t *testing.T, h *auth.AuthorizationCodeHandler) []string {
	t.Helper()
	ts, err := h.TokenSource(t.Context())
	if err != nil || ts == nil {
		t.Fatalf("the SDK client has no token source: %v", err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	scope, _ := tok.Extra("scope").(string)
	return strings.Fields(scope)
}

// TestSDKStepUp: /mcp needs read; the SDK client signs in with read and
// calls a tool. The operator then requires read and write. alice's next
// call gets 403 insufficient_scope naming both, the SDK client signs in
// again (a new consent, as the scope differs) and the call succeeds with
// both scopes. bob, to whom write is not granted, signs in again too but
// gets a token without write, and his call fails with 403.
func TestSDKStepUp(t *testing.T) {
	restrict := "allow_users alice"
	e := start(t, options{authExtra: scopedConfig("read", restrict)})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	resp := e.mcpPost(t, "/mcp", "")
	if chal := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(chal, `scope="read"`) {
		t.Errorf("/mcp without a token: %s %q, want 401 with scope=\"read\"", resp.Status, chal)
	}

	type user struct {
		b       *browser
		h       *auth.AuthorizationCodeHandler
		session *mcp.ClientSession
		token   string
	}
	users := map[string]*user{}
	for _, login := range []string{"alice", "bob"} {
		u := &user{b: e.browser(login)}
		u.h = e.sdkHandler(t, u.b)
		var err error
		if u.session, err = e.connect(ctx, t, "/mcp", u.h); err != nil {
			t.Fatalf("%s connecting: %v", login, err)
		}
		defer u.session.Close()
		if who, _ := whoami(ctx, t, u.session); who != login {
			t.Errorf("upstream saw %q, want %s", who, login)
		}
		if got := sdkScope(t, u.h); !slices.Equal(got, []string{"read"}) {
			t.Errorf("%s's first token has scope %v, want [read]", login, got)
		}
		ts, _ := u.h.TokenSource(ctx)
		tok, _ := ts.Token()
		u.token = tok.AccessToken
		e.logs.addSecret(tok.AccessToken)
		e.logs.addSecret(tok.RefreshToken)
		users[login] = u
	}

	e.reload(t, options{authExtra: scopedConfig("read write", restrict)})

	// What the SDK client is about to see: a 403 naming every scope.
	resp = e.mcpPost(t, "/mcp", "Bearer "+users["alice"].token)
	chal := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(chal, `error="insufficient_scope"`) || !strings.Contains(chal, `scope="read write"`) {
		t.Errorf("a read token after the reload: %s %q, want 403 insufficient_scope with scope=\"read write\"", resp.Status, chal)
	}
	var prm struct {
		ScopesSupported []string `json:"scopes_supported"`
	}
	if e.getJSON(t, e.site+"/.well-known/oauth-protected-resource/mcp", &prm); !slices.Contains(prm.ScopesSupported, "write") {
		t.Errorf("/mcp's metadata lists scopes %v, want write among them", prm.ScopesSupported)
	}

	alice := users["alice"]
	if who, _ := whoami(ctx, t, alice.session); who != "alice" {
		t.Errorf("after step-up the upstream saw %q, want alice", who)
	}
	if alice.b.ConsentPages() != 2 {
		t.Errorf("alice saw %d consent pages, want 2 (a wider scope needs a new approval)", alice.b.ConsentPages())
	}
	if got := sdkScope(t, alice.h); !slices.Contains(got, "read") || !slices.Contains(got, "write") {
		t.Errorf("alice's stepped-up token has scope %v, want read and write", got)
	}
	ts, _ := alice.h.TokenSource(ctx)
	if tok, _ := ts.Token(); tok != nil {
		e.logs.addSecret(tok.AccessToken)
		e.logs.addSecret(tok.RefreshToken)
	}

	bob := users["bob"]
	_, err := bob.session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err == nil || !strings.Contains(err.Error(), http.StatusText(http.StatusForbidden)) {
		t.Errorf("bob's call after the step-up: %v, want it refused as Forbidden", err)
	}
	if bob.b.ConsentPages() != 2 {
		t.Errorf("bob saw %d consent pages, want 2 (he was asked for write too)", bob.b.ConsentPages())
	}
	got := sdkScope(t, bob.h)
	if slices.Contains(got, "write") || !slices.Contains(got, "read") {
		t.Errorf("bob's new token has scope %v, want read without write", got)
	}
	ts, _ = bob.h.TokenSource(ctx)
	if tok, _ := ts.Token(); tok != nil {
		e.logs.addSecret(tok.AccessToken)
		e.logs.addSecret(tok.RefreshToken)
		resp := e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken)
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
			t.Errorf("bob's new token at /mcp: %s, want 403 insufficient_scope", resp.Status)
		}
	}
}

// TestRestrictedScopeRecheckedAtRefresh: a scope restricted to a team is
// granted to its member and taken away at the refresh after they leave
// it, while the rest of the grant goes on.
func TestRestrictedScopeRecheckedAtRefresh(t *testing.T) {
	e := start(t, options{authExtra: scopedConfig("read write", "allow_teams acme/platform")})
	c := e.register(t, false)
	c.scopes = []string{"read", "write"}

	tok := c.login(t, e.browser("alice"), e.site+"/mcp")
	if tok.Extra("scope") != "read write" {
		t.Fatalf("alice's scope %v, want read write", tok.Extra("scope"))
	}
	if resp := e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusOK {
		t.Fatalf("alice's token at /mcp: %s", resp.Status)
	}
	bobs := c.login(t, e.browser("bob"), e.site+"/mcp")
	if bobs.Extra("scope") != "read" {
		t.Errorf("bob's scope %v, want read (write is for acme/platform)", bobs.Extra("scope"))
	}

	e.gh.SetUserTeams("alice", nil)
	status, out := c.refresh(t, tok.RefreshToken)
	if status != http.StatusOK {
		t.Fatalf("refresh after leaving the team: %d %v, want 200 with less scope", status, out)
	}
	access, refresh := e.tokensIn(out)
	if out["scope"] != "read" {
		t.Errorf("scope after leaving the team: %v, want read", out["scope"])
	}
	resp := e.mcpPost(t, "/mcp", "Bearer "+access)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="read write"`) {
		t.Errorf("the narrowed token at /mcp: %s %q, want 403 naming read write", resp.Status, resp.Header.Get("WWW-Authenticate"))
	}
	// The withdrawal sticks to the grant: the next refresh cannot ask
	// for write back.
	status, out = c.form(t, "/token", map[string][]string{"grant_type": {"refresh_token"}, "refresh_token": {refresh}, "scope": {"read write"}})
	if status != http.StatusBadRequest || out["error"] != "invalid_scope" {
		t.Errorf("refresh asking for write again: %d %v, want invalid_scope", status, out)
	}
}

// TestResourceScopesInMetadata: each resource's RFC 9728 document lists
// the configured scopes and its own required ones, not other resources';
// the root document and the AS metadata list them all; the 401 challenge
// names the resource's scopes.
func TestResourceScopesInMetadata(t *testing.T) {
	e := start(t, options{authExtra: "scopes_supported profile\n\t\tprotect /mcp {\n\t\t\tscopes read write\n\t\t}\n\t\t" +
		"protect /admin {\n\t\t\tscopes admin\n\t\t}\n\t\tprotect /sse /messages"})
	all := []string{"admin", "profile", "read", "write"}
	for path, want := range map[string][]string{
		"/.well-known/oauth-protected-resource/mcp":   {"profile", "read", "write"},
		"/.well-known/oauth-protected-resource/admin": {"admin", "profile"},
		"/.well-known/oauth-protected-resource/sse":   {"profile"},
		"/.well-known/oauth-protected-resource":       all,
		"/.well-known/oauth-authorization-server":     all,
	} {
		var doc struct {
			ScopesSupported []string `json:"scopes_supported"`
		}
		if status := e.getJSON(t, e.site+path, &doc); status != http.StatusOK || !slices.Equal(doc.ScopesSupported, want) {
			t.Errorf("%s: %d scopes_supported %v, want %v", path, status, doc.ScopesSupported, want)
		}
	}
	for path, want := range map[string]string{"/mcp": `scope="read write"`, "/admin": `scope="admin"`} {
		resp := e.mcpPost(t, path, "")
		if chal := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.Contains(chal, want) {
			t.Errorf("%s without a token: %s %q, want 401 with %s", path, resp.Status, chal, want)
		}
	}
	if chal := e.mcpPost(t, "/sse", "").Header.Get("WWW-Authenticate"); strings.Contains(chal, "scope=") {
		t.Errorf("/sse requires no scope, but its challenge %q names one", chal)
	}
}
