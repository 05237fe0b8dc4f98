package oauth_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

func TestGateChallenges(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		path      string
		metadata  string
		scopeAttr string // "" for none
	}{
		{"/mcp", "/.well-known/oauth-protected-resource/mcp", ""},
		{"/mcp/tools", "/.well-known/oauth-protected-resource/mcp/tools", ""},
		{"/mcpx", "/.well-known/oauth-protected-resource/mcpx", ""},
		{"/mcp/a%2Fb", "/.well-known/oauth-protected-resource/mcp", ""},
		{"/mcp/admin", "/.well-known/oauth-protected-resource/mcp/admin", `scope="admin"`},
		{"/mcp/admin/x", "/.well-known/oauth-protected-resource/mcp/admin/x", `scope="admin"`},
		{"/sse", "/.well-known/oauth-protected-resource/sse", `scope="tools"`},
	}
	for _, tc := range tests {
		t.Run(tc.path, func(t *testing.T) {
			e := e.sub(t)
			r := e.expectRefused(tc.path, "", http.StatusUnauthorized)
			wa := r.Header.Get("WWW-Authenticate")
			if !strings.HasPrefix(wa, `Bearer resource_metadata="`+e.issuer+tc.metadata+`"`) {
				t.Errorf("WWW-Authenticate %q", wa)
			}
			if tc.scopeAttr != "" && !strings.Contains(wa, tc.scopeAttr) {
				t.Errorf("WWW-Authenticate %q lacks %s", wa, tc.scopeAttr)
			}
			if tc.scopeAttr == "" && strings.Contains(wa, "scope=") {
				t.Errorf("WWW-Authenticate %q has a scope", wa)
			}
			if strings.Contains(wa, "error=") {
				t.Errorf("a request without credentials got an error code: %q", wa)
			}
			if r.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("Cache-Control %q", r.Header.Get("Cache-Control"))
			}
			// The document it names exists and is about this resource.
			doc := e.get(tc.metadata)
			if doc.Status != http.StatusOK || doc.str("resource") != e.issuer+strings.TrimPrefix(tc.metadata, "/.well-known/oauth-protected-resource") {
				t.Errorf("metadata %s: %d %s", tc.metadata, doc.Status, doc.Body)
			}
		})
	}
	if r := e.get("/elsewhere"); r.Status != http.StatusNotFound {
		t.Errorf("unprotected path: %d", r.Status)
	}
}

func TestGateRefusals(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	site := e.loginTokens(c, "alice")
	mcpOnly := e.loginTokens(c, "alice", set("resource", e.issuer+"/mcp"))
	readOnly := e.loginTokens(c, "alice", set("scope", "read"))

	header := func(path string, values ...string) *response {
		req, _ := http.NewRequest(http.MethodGet, e.issuer+path, nil)
		for _, v := range values {
			req.Header.Add("Authorization", v)
		}
		return e.do(req)
	}
	expect := func(t *testing.T, r *response, status int, code string) {
		t.Helper()
		if r.Status != status {
			t.Fatalf("status %d, want %d: %s", r.Status, status, r.Body)
		}
		wa := r.Header.Get("WWW-Authenticate")
		if !strings.HasPrefix(wa, `Bearer resource_metadata="`+e.issuer+"/.well-known/oauth-protected-resource/") {
			t.Errorf("WWW-Authenticate %q", wa)
		}
		if code != "" {
			if r.str("error") != code || !strings.Contains(wa, `error="`+code+`"`) {
				t.Errorf("error %q, WWW-Authenticate %q, want %s", r.str("error"), wa, code)
			}
		}
	}

	t.Run("valid", func(t *testing.T) {
		e := e.sub(t)
		e.expectOK("/mcp", site.Access)
		if r := header("/mcp", "bearer "+site.Access); r.Status != http.StatusOK {
			t.Errorf("lower-case scheme: %d", r.Status)
		}
		if r := header("/mcp", "Bearer   "+site.Access); r.Status != http.StatusOK {
			t.Errorf("extra spaces: %d", r.Status)
		}
	})
	t.Run("insufficient scope", func(t *testing.T) {
		r := header("/sse", "Bearer "+readOnly.Access)
		expect(t, r, http.StatusForbidden, "insufficient_scope")
		if !strings.Contains(r.Header.Get("WWW-Authenticate"), `scope="tools"`) {
			t.Errorf("WWW-Authenticate %q", r.Header.Get("WWW-Authenticate"))
		}
		if r := header("/mcp", "Bearer "+readOnly.Access); r.Status != http.StatusOK {
			t.Errorf("unscoped resource: %d", r.Status)
		}
	})
	t.Run("token of another resource", func(t *testing.T) {
		expect(t, header("/sse", "Bearer "+mcpOnly.Access), http.StatusUnauthorized, "invalid_token")
		expect(t, header("/mcp/admin", "Bearer "+mcpOnly.Access), http.StatusUnauthorized, "invalid_token")
	})
	t.Run("unknown token", func(t *testing.T) {
		expect(t, header("/mcp", "Bearer mcp_at_unknown"), http.StatusUnauthorized, "invalid_token")
	})
	t.Run("refresh token as access token", func(t *testing.T) {
		expect(t, header("/mcp", "Bearer "+site.Refresh), http.StatusUnauthorized, "invalid_token")
	})
	t.Run("oversize token", func(t *testing.T) {
		expect(t, header("/mcp", "Bearer "+strings.Repeat("t", 1000)), http.StatusUnauthorized, "invalid_token")
	})
	t.Run("other schemes", func(t *testing.T) {
		for _, v := range []string{"Basic " + site.Access, "Token " + site.Access, site.Access, "Bearer"} {
			r := header("/mcp", v)
			expect(t, r, http.StatusUnauthorized, "")
		}
	})
	t.Run("two Authorization headers", func(t *testing.T) {
		expect(t, header("/mcp", "Bearer "+site.Access, "Bearer "+site.Access), http.StatusBadRequest, "invalid_request")
	})
	t.Run("token in the query", func(t *testing.T) {
		expect(t, header("/mcp?access_token="+site.Access), http.StatusBadRequest, "invalid_request")
		// Even next to a valid header.
		expect(t, header("/mcp?access_token="+site.Access, "Bearer "+site.Access), http.StatusBadRequest, "invalid_request")
	})
	t.Run("expired", func(t *testing.T) {
		e := e.sub(t)
		tk := e.loginTokens(c, "alice")
		e.clock.Advance(accessTTL - time.Minute)
		e.expectOK("/mcp", tk.Access)
		e.clock.Advance(2 * time.Minute)
		expect(t, header("/mcp", "Bearer "+tk.Access), http.StatusUnauthorized, "invalid_token")
		// The refresh token outlives it.
		fresh := e.mustTokens(e.refresh(c, tk.Refresh))
		e.expectOK("/mcp", fresh.Access)
	})
}

func TestResourceFor(t *testing.T) {
	e := newEnv(t)
	for path, want := range map[string]string{
		"/mcp":               "/mcp",
		"/mcp/":              "/mcp",
		"/mcpx":              "/mcp",
		"/mcp/adm":           "/mcp",
		"/mcp/admin":         "/mcp/admin",
		"/mcp/admin/":        "/mcp/admin",
		"/mcp/administrator": "/mcp/admin",
		"/sse":               "/sse",
		"/sse/x":             "/sse",
		"/":                  "",
		"/mc":                "",
		"/MCP":               "",
		"/register":          "",
		"/x/mcp":             "",
	} {
		res := e.srv.ResourceFor(path)
		got := ""
		if res != nil {
			got = res.Path
		}
		if got != want {
			t.Errorf("ResourceFor(%q) = %q, want %q", path, got, want)
		}
	}
}

func TestNewConfigRefusals(t *testing.T) {
	e := newEnv(t)
	keys, err := oauth.NewKeys(make([]byte, oauth.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := oauth.NewKeys(make([]byte, 16)); err == nil {
		t.Error("NewKeys accepted a 16-byte key")
	}
	ok := []oauth.Resource{{Path: "/mcp"}}
	for name, cfg := range map[string]oauth.Config{
		"no resources":          {},
		"root path":             {Resources: []oauth.Resource{{Path: "/"}}},
		"relative path":         {Resources: []oauth.Resource{{Path: "mcp"}}},
		"wildcard":              {Resources: []oauth.Resource{{Path: "/mcp*"}}},
		"dot segment":           {Resources: []oauth.Resource{{Path: "/a/../mcp"}}},
		"non-ASCII":             {Resources: []oauth.Resource{{Path: "/café"}}},
		"quote":                 {Resources: []oauth.Resource{{Path: "/a'b"}}},
		"percent":               {Resources: []oauth.Resource{{Path: "/a%2Fb"}}},
		"endpoint overlap":      {Resources: []oauth.Resource{{Path: "/token"}}},
		"well-known":            {Resources: []oauth.Resource{{Path: "/.well-known/x"}}},
		"duplicate":             {Resources: []oauth.Resource{{Path: "/mcp"}, {Path: "/mcp"}}},
		"bad scope":             {Resources: []oauth.Resource{{Path: "/mcp", Scopes: []string{"a b"}}}},
		"bad supported scope":   {Resources: ok, ScopesSupported: []string{`q"uote`}},
		"issuer http":           {Resources: ok, Issuer: "http://mcp.example.com"},
		"issuer with path":      {Resources: ok, Issuer: "https://mcp.example.com/x"},
		"issuer with query":     {Resources: ok, Issuer: "https://mcp.example.com?"},
		"issuer with fragment":  {Resources: ok, Issuer: "https://mcp.example.com#f"},
		"issuer not a URL":      {Resources: ok, Issuer: "mcp.example.com"},
		"issuer with userinfo":  {Resources: ok, Issuer: "https://u@mcp.example.com"},
		"issuer without a host": {Resources: ok, Issuer: "https://"},
	} {
		if _, err := oauth.New(cfg, e.st, e.idp, keys, nil); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
	if _, err := oauth.New(oauth.Config{Resources: ok}, nil, e.idp, keys, nil); err == nil {
		t.Error("New accepted a nil store")
	}
	for _, iss := range []string{"https://MCP.example.com/", "http://127.0.0.1:8080", "http://localhost"} {
		if _, err := oauth.ParseIssuer(iss); err != nil {
			t.Errorf("ParseIssuer(%q): %v", iss, err)
		}
	}
	if got, _ := oauth.ParseIssuer("HTTPS://MCP.Example.com/"); got != "https://mcp.example.com" {
		t.Errorf("ParseIssuer normalised to %q", got)
	}
}

// TestConfiguredIssuer: with a configured issuer, every URL the server
// hands out uses it, whatever Host the request came with.
func TestConfiguredIssuer(t *testing.T) {
	e := newEnv(t)
	keys, _ := oauth.NewKeys(make([]byte, oauth.KeySize))
	srv, err := oauth.New(oauth.Config{Issuer: "https://MCP.example.com/", Resources: []oauth.Resource{{Path: "/mcp", Scopes: []string{"tools"}}}}, e.st, e.idp, keys, nil)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://attacker.example/mcp", nil)
	_, refusal := srv.Authenticate(req, srv.ResourceFor("/mcp"))
	if refusal == nil || refusal.Status != http.StatusUnauthorized {
		t.Fatalf("refusal %+v", refusal)
	}
	w := httptest.NewRecorder()
	refusal.Write(w)
	if wa := w.Header().Get("WWW-Authenticate"); wa != `Bearer resource_metadata="https://mcp.example.com/.well-known/oauth-protected-resource/mcp", scope="tools"` {
		t.Errorf("WWW-Authenticate %q", wa)
	}
}
