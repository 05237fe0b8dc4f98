package oauth_test

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

func strList(t *testing.T, v any) []string {
	t.Helper()
	raw, ok := v.([]any)
	if !ok {
		t.Fatalf("%v is not a JSON array", v)
	}
	out := make([]string, 0, len(raw))
	for _, x := range raw {
		s, ok := x.(string)
		if !ok {
			t.Fatalf("%v is not a string", x)
		}
		out = append(out, s)
	}
	return out
}

func TestAuthorizationServerMetadata(t *testing.T) {
	e := newEnv(t)
	r := e.get("/.well-known/oauth-authorization-server")
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	if r.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("no CORS header on the metadata")
	}
	wantStr := map[string]string{
		"issuer":                 e.issuer,
		"authorization_endpoint": e.issuer + "/authorize",
		"token_endpoint":         e.issuer + "/token",
		"registration_endpoint":  e.issuer + "/register",
		"revocation_endpoint":    e.issuer + "/revoke",
	}
	for k, v := range wantStr {
		if got := r.str(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	wantList := map[string][]string{
		"code_challenge_methods_supported":           {"S256"},
		"response_types_supported":                   {"code"},
		"grant_types_supported":                      {"authorization_code", "refresh_token"},
		"token_endpoint_auth_methods_supported":      {"client_secret_basic", "client_secret_post", "none"},
		"revocation_endpoint_auth_methods_supported": {"client_secret_basic", "client_secret_post", "none"},
		"scopes_supported":                           {"admin", "read", "tools"},
	}
	for k, want := range wantList {
		got := strList(t, r.JSON[k])
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", k, got, want)
		}
	}
	if r.JSON["authorization_response_iss_parameter_supported"] != true {
		t.Errorf("authorization_response_iss_parameter_supported = %v, want true", r.JSON["authorization_response_iss_parameter_supported"])
	}
	for _, sc := range strList(t, r.JSON["scopes_supported"]) {
		if sc == "offline_access" {
			t.Errorf("offline_access is advertised")
		}
	}
	if strings.Contains(r.Body, "plain") {
		t.Errorf("metadata mentions plain: %s", r.Body)
	}
}

func TestProtectedResourceMetadata(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		path     string
		resource string
	}{
		{"/.well-known/oauth-protected-resource", e.issuer},
		{"/.well-known/oauth-protected-resource/mcp", e.issuer + "/mcp"},
		{"/.well-known/oauth-protected-resource/mcp/admin", e.issuer + "/mcp/admin"},
		{"/.well-known/oauth-protected-resource/sse", e.issuer + "/sse"},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			e := e.sub(t)
			r := e.get(tc.path)
			if r.Status != http.StatusOK {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if got := r.str("resource"); got != tc.resource {
				t.Errorf("resource = %q, want %q", got, tc.resource)
			}
			if got := strList(t, r.JSON["authorization_servers"]); !slices.Equal(got, []string{e.issuer}) {
				t.Errorf("authorization_servers = %v", got)
			}
			if got := strList(t, r.JSON["bearer_methods_supported"]); !slices.Equal(got, []string{"header"}) {
				t.Errorf("bearer_methods_supported = %v", got)
			}
			if r.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Errorf("no CORS header")
			}
		})
	}
}

// TestMetadataForEndpointsBelowAProtectedPath: an MCP endpoint may lie
// below its protected prefix (https://site/notes/sse under protect /notes),
// and clients accept only a document naming exactly the URL they used.
func TestMetadataForEndpointsBelowAProtectedPath(t *testing.T) {
	e := newEnv(t)
	for _, sub := range []string{"/mcp/", "/mcp/admin/x", "/sse/messages", "/mcpx"} {
		r := e.get("/.well-known/oauth-protected-resource" + sub)
		if r.Status != http.StatusOK || r.str("resource") != e.issuer+sub {
			t.Errorf("PRM for %s: %d resource %q, want %q", sub, r.Status, r.str("resource"), e.issuer+sub)
		}
	}
	// A token asked for with such a URL is bound to the protected
	// resource it lies under, and works there only.
	c := e.publicClient()
	tok := e.loginTokens(c, "alice", set("resource", e.issuer+"/mcp/v2/endpoint"))
	e.expectOK("/mcp", tok.Access)
	e.expectOK("/mcp/other", tok.Access)
	e.expectRefused("/sse", tok.Access, http.StatusUnauthorized)
	// /mcp/admin is its own (scoped) resource: the longest prefix wins.
	e.expectRefused("/mcp/admin", tok.Access, http.StatusUnauthorized)
}

func TestMetadataRefusals(t *testing.T) {
	e := newEnv(t)
	for _, path := range []string{
		"/.well-known/oauth-protected-resource/nope",
		"/.well-known/oauth-protected-resource/mc",
		"/.well-known/oauth-protected-resource/",
		"/.well-known/oauth-protected-resource/mcp/../sse",
		"/.well-known/oauth-protected-resource/mcp//x",
		"/.well-known/oauth-protected-resource/mcp/%3Cscript%3E",
	} {
		if r := e.get(path); r.Status != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404: %s", path, r.Status, r.Body)
		}
	}
	for _, path := range []string{
		"/.well-known/oauth-authorization-server",
		"/.well-known/oauth-protected-resource",
		"/.well-known/oauth-protected-resource/mcp",
	} {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
			req, _ := http.NewRequest(m, e.issuer+path, strings.NewReader("{}"))
			r := e.do(req)
			expectOAuthError(t, r, http.StatusMethodNotAllowed, "invalid_request")
			if allow := r.Header.Get("Allow"); !strings.Contains(allow, "GET") {
				t.Errorf("%s %s: Allow %q", m, path, allow)
			}
		}
		req, _ := http.NewRequest(http.MethodHead, e.issuer+path, nil)
		if r := e.do(req); r.Status != http.StatusOK {
			t.Errorf("HEAD %s: %d", path, r.Status)
		}
	}
}

func TestCORSPreflight(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		path, method string
	}{
		{"/.well-known/oauth-authorization-server", "GET"},
		{"/.well-known/oauth-protected-resource/mcp", "GET"},
		{"/register", "POST"},
		{"/token", "POST"},
		{"/revoke", "POST"},
	} {
		req, _ := http.NewRequest(http.MethodOptions, e.issuer+tc.path, nil)
		req.Header.Set("Origin", "https://inspector.example")
		req.Header.Set("Access-Control-Request-Method", tc.method)
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		r := e.do(req)
		if r.Status != http.StatusNoContent {
			t.Errorf("OPTIONS %s: %d, want 204", tc.path, r.Status)
		}
		h := r.Header
		if h.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("OPTIONS %s: Allow-Origin %q", tc.path, h.Get("Access-Control-Allow-Origin"))
		}
		if !strings.Contains(h.Get("Access-Control-Allow-Methods"), tc.method) {
			t.Errorf("OPTIONS %s: Allow-Methods %q", tc.path, h.Get("Access-Control-Allow-Methods"))
		}
		allowHeaders := strings.ToLower(h.Get("Access-Control-Allow-Headers"))
		if !strings.Contains(allowHeaders, "authorization") || !strings.Contains(allowHeaders, "content-type") {
			t.Errorf("OPTIONS %s: Allow-Headers %q", tc.path, allowHeaders)
		}
	}
}

// TestScopesAlwaysListed: a server that offers no scope at all still
// lists scopes_supported, as an empty array, in both documents, and every
// token response carries scope, even empty. Clients that find neither
// invent scopes (mcp-remote asks for OpenID Connect's) and repeat them.
func TestScopesAlwaysListed(t *testing.T) {
	e := newEnvWith(t, envOptions{config: func(c *oauth.Config) {
		c.ScopesSupported = nil
		c.Resources = []oauth.Resource{{Path: "/mcp"}}
	}})
	for _, path := range []string{"/.well-known/oauth-authorization-server", "/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"} {
		r := e.get(path)
		if r.Status != http.StatusOK {
			t.Fatalf("%s: status %d", path, r.Status)
		}
		if !strings.Contains(r.Body, `"scopes_supported":[]`) {
			t.Errorf("%s: no empty scopes_supported: %s", path, r.Body)
		}
	}
	c := e.confidentialClient()
	code, p := e.codeFor(c, "alice", func(v url.Values) { v.Set("scope", "openid email profile") })
	r := e.exchange(c, code, p.Verifier)
	tk := e.mustTokens(r)
	if _, ok := r.JSON["scope"]; !ok || tk.Scope != "" {
		t.Fatalf("token response scope %v (present %v), want present and empty: %s", r.JSON["scope"], ok, r.Body)
	}
	r = e.refresh(c, tk.Refresh, func(v url.Values) { v.Set("scope", "openid email profile") })
	e.mustTokens(r)
	if _, ok := r.JSON["scope"]; !ok {
		t.Errorf("refresh response without scope: %s", r.Body)
	}
}
