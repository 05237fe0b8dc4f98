package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
)

func TestDiscoveryDocuments(t *testing.T) {
	e := start(t, options{authExtra: "protect /mcp /sse /messages\n\t\tprotect /admin/mcp {\n\t\t\tscopes admin\n\t\t}\n\t\tscopes_supported read"})
	get := func(path string, v any) int {
		resp, err := e.httpClient(nil).Get(e.site + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s Content-Type %q", path, ct)
			}
			if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
				t.Errorf("%s: %v", path, err)
			}
		}
		return resp.StatusCode
	}

	var as map[string]any
	if status := get("/.well-known/oauth-authorization-server", &as); status != http.StatusOK {
		t.Fatalf("AS metadata: %d", status)
	}
	for k, want := range map[string]any{
		"issuer":                 e.site,
		"authorization_endpoint": e.site + "/authorize",
		"token_endpoint":         e.site + "/token",
		"registration_endpoint":  e.site + "/register",
		"revocation_endpoint":    e.site + "/revoke",
		"authorization_response_iss_parameter_supported": true,
	} {
		if as[k] != want {
			t.Errorf("AS metadata %s = %v, want %v", k, as[k], want)
		}
	}
	strs := func(v any) []string {
		var out []string
		for _, x := range v.([]any) {
			out = append(out, x.(string))
		}
		return out
	}
	if got := strs(as["code_challenge_methods_supported"]); !slices.Equal(got, []string{"S256"}) {
		t.Errorf("code_challenge_methods_supported = %v, want only S256", got)
	}
	for _, m := range []string{"none", "client_secret_basic", "client_secret_post"} {
		if !slices.Contains(strs(as["token_endpoint_auth_methods_supported"]), m) {
			t.Errorf("token_endpoint_auth_methods_supported lacks %s", m)
		}
	}
	if slices.Contains(strs(as["scopes_supported"]), "offline_access") {
		t.Error("offline_access is advertised")
	}

	for path, resource := range map[string]string{
		"":           e.site,
		"/mcp":       e.site + "/mcp",
		"/sse":       e.site + "/sse",
		"/messages":  e.site + "/messages",
		"/admin/mcp": e.site + "/admin/mcp",
	} {
		var prm struct {
			Resource             string   `json:"resource"`
			AuthorizationServers []string `json:"authorization_servers"`
		}
		if status := get("/.well-known/oauth-protected-resource"+path, &prm); status != http.StatusOK {
			t.Errorf("PRM for %q: %d", path, status)
			continue
		}
		if prm.Resource != resource || !slices.Equal(prm.AuthorizationServers, []string{e.site}) {
			t.Errorf("PRM for %q = %+v, want resource %s served by %s", path, prm, resource, e.site)
		}
	}
	var none any
	if status := get("/.well-known/oauth-protected-resource/nothing-here", &none); status != http.StatusNotFound {
		t.Errorf("PRM for an unprotected path: %d, want 404", status)
	}

	// The scoped resource names its scope in the challenge.
	resp := e.mcpPost(t, "/admin/mcp", "")
	chal := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(chal, `resource_metadata="`+e.site+`/.well-known/oauth-protected-resource/admin/mcp"`) || !strings.Contains(chal, `scope="admin"`) {
		t.Errorf("/admin/mcp without a token: %s %q", resp.Status, chal)
	}
	// /admin/mcp/x is under /admin/mcp, not /mcp: the longest prefix wins.
	c := e.register(t, false)
	tok := c.login(t, e.browser("alice"), e.site+"/mcp")
	if resp := e.mcpPost(t, "/admin/mcp/x", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a /mcp token at /admin/mcp/x: %s, want 401", resp.Status)
	}
	// Without a scope parameter, a token for /admin/mcp gets the scope
	// that resource requires, and works there.
	admin := c.login(t, e.browser("alice"), e.site+"/admin/mcp")
	if admin.Extra("scope") != "admin" {
		t.Errorf("default scope for /admin/mcp = %v, want admin", admin.Extra("scope"))
	}
	if resp := e.mcpPost(t, "/admin/mcp", "Bearer "+admin.AccessToken); resp.StatusCode != http.StatusOK {
		t.Errorf("an admin-scoped /admin/mcp token: %s", resp.Status)
	}
	// Asking for another scope explicitly leaves admin out: 403 with the
	// scope needed, in one challenge.
	c.scopes = []string{"read"}
	reader := c.login(t, e.browser("alice"), e.site+"/admin/mcp")
	resp = e.mcpPost(t, "/admin/mcp", "Bearer "+reader.AccessToken)
	chal = resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(chal, `error="insufficient_scope"`) || !strings.Contains(chal, `scope="admin"`) {
		t.Errorf("a read-scoped token at /admin/mcp: %s %q, want 403 insufficient_scope naming admin", resp.Status, chal)
	}
	// A refresh cannot widen a grant.
	status, out := c.form(t, "/token", map[string][]string{"grant_type": {"refresh_token"}, "refresh_token": {reader.RefreshToken}, "scope": {"admin"}})
	if status != http.StatusBadRequest || out["error"] != "invalid_scope" {
		t.Errorf("refresh widening the scope: %d %v, want invalid_scope", status, out)
	}
}

// TestNoServerErrorsOnGarbage throws malformed requests at every endpoint
// through Caddy: each must get a clear 4xx, never a 5xx.
func TestNoServerErrorsOnGarbage(t *testing.T) {
	e := start(t, options{})
	client := e.httpClient(nil)
	paths := []string{"/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource",
		"/.well-known/oauth-protected-resource/mcp", "/register", "/authorize", "/auth", "/consent",
		"/callback", "/token", "/revoke", "/mcp"}
	bodies := map[string]struct{ contentType, body string }{
		"empty":          {"", ""},
		"form garbage":   {"application/x-www-form-urlencoded", "%%%&&&===;;"},
		"json garbage":   {"application/json", `{"redirect_uris": [1,2,{"x":null}], "client_name": {}}`},
		"invalid utf8":   {"application/x-www-form-urlencoded", "grant_type=\xff\xfe&code=\xc3\x28"},
		"huge form":      {"application/x-www-form-urlencoded", "code=" + strings.Repeat("a", 3<<20)},
		"huge json":      {"application/json", `{"redirect_uris":["https://a/` + strings.Repeat("b", 3<<20) + `"]}`},
		"duplicate form": {"application/x-www-form-urlencoded", "grant_type=authorization_code&grant_type=refresh_token&code=a&code=b"},
		"multipart":      {"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nb\r\n--x--\r\n"},
	}
	queries := []string{"", "?client_id=&redirect_uri=", "?client_id=%00&state=%ff", "?state=" + strings.Repeat("s", 4000),
		"?code=x&state=y", "?error=access_denied&state=nope", "?resource=javascript:alert(1)&client_id=x"}
	for _, path := range paths {
		for _, method := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, http.MethodHead} {
			for name, b := range bodies {
				for _, q := range queries {
					req, _ := http.NewRequest(method, e.site+path+q, bytes.NewReader([]byte(b.body)))
					if b.contentType != "" {
						req.Header.Set("Content-Type", b.contentType)
					}
					resp, err := client.Do(req)
					if err != nil {
						t.Fatalf("%s %s%s (%s): %v", method, path, q, name, err)
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode >= 500 {
						t.Errorf("%s %s%s (%s): %s", method, path, truncate(q), name, resp.Status)
					}
				}
			}
		}
	}
}

func truncate(s string) string {
	if len(s) > 60 {
		return fmt.Sprintf("%s…(%d bytes)", s[:60], len(s))
	}
	return s
}
