package caddymcp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// nestedGate is a benchGate that also protects /mcp/admin, nested in /mcp,
// longest first as Provision sorts them; its token is good on both.
func nestedGate(t *testing.T) *benchGate {
	t.Helper()
	g := newBenchGate(t)
	admin := caddyhttp.MatchPath{"/mcp/admin*"}
	if err := admin.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	// Borrowing /mcp's resource keeps the token's audience good: what
	// is tested is which requests reach the next handler.
	g.m.resources = append([]gatedResource{{res: g.m.resources[0].res, matcher: admin, lowerPath: "/mcp/admin"}}, g.m.resources...)
	return g
}

// seen is a next handler that records what reached it.
type seen struct {
	called      bool
	body        string
	contentLen  int64
	login, name string
	known       bool
}

func (s *seen) ServeHTTP(_ http.ResponseWriter, r *http.Request) error {
	s.called = true
	b, _ := io.ReadAll(r.Body)
	s.body, s.contentLen = string(b), r.ContentLength
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	s.login, s.known = repl.GetString("http.auth.user.login")
	s.name = repl.ReplaceKnown("{http.auth.user.name}", "")
	return nil
}

// serve sends a request with a raw request target through the gate.
func (g *benchGate) serve(t *testing.T, method, target string, body string, header http.Header) (*httptest.ResponseRecorder, *seen) {
	t.Helper()
	base := httptest.NewRequest(method, "https://mcp.example.com"+target, strings.NewReader(body))
	r := g.request(base)
	for k, v := range header {
		r.Header[k] = v
	}
	next := &seen{}
	w := httptest.NewRecorder()
	if err := g.m.ServeHTTP(w, r, next); err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	return w, next
}

// TestGateAmbiguousPaths: a path that an upstream could read as another
// protected resource than the gate does, or as protected where the gate
// reads it as not, is refused with 400 even with a good token; paths
// outside every protected reading pass untouched.
func TestGateAmbiguousPaths(t *testing.T) {
	g := nestedGate(t)
	for _, p := range []string{
		"/mcp;/admin",             // servlet upstreams drop ";" path parameters: /mcp/admin
		"/mcp;x=1/admin",          // the same
		"/mcp/admin;jsessionid=1", // gated as /mcp/admin, but refused like the rest
		"/mcp%3B/admin",           // an encoded semicolon
		"/mcp%3b/admin",
		"/mcp/%252e%252e/admin",    // decoded twice: /mcp/../admin
		"/mcp/admin%252F..",        // decoded twice: /mcp/admin/..
		"/mcp/%25",                 // a percent sign, which another decoding reads
		"/mcp/..%2fx",              // Caddy cleans it to /x; a raw router serves it under /mcp
		"/mcp/..%2Fadmin%2F..%2Fx", //
		"/%6Dcp/..%2fx",            // the same with an encoded letter
		"/MCP/..%5Cx",              // backslash, upper case
		"/x/..%2fmcp",              // cleans into /mcp
		"/mcp/admin%2F..",          // the forms refused before
		"/mcp/.",
		"/x/../mcp",
		`/mcp\..\x`,
	} {
		for _, method := range []string{http.MethodPost, http.MethodOptions} {
			w, next := g.serve(t, method, p, "{}", http.Header{
				"Origin": {"https://inspector.example"}, "Access-Control-Request-Method": {"POST"}})
			if w.Code != http.StatusBadRequest || next.called {
				t.Errorf("%s %s: %d, next handler called %v; want 400 and not called", method, p, w.Code, next.called)
			}
		}
	}
	for _, p := range []string{"/static/a%2fb", "/files;v=1/x", "/other/..%2fmcq", "/%2e%2e/elsewhere"} {
		if w, next := g.serve(t, http.MethodGet, p, "", nil); w.Code != http.StatusOK || !next.called {
			t.Errorf("GET %s, outside every protected path: %d, passed on %v", p, w.Code, next.called)
		}
	}
	for _, p := range []string{"/mcp", "/mcp/admin", "/mcp/%41dmin", "/mcpextra"} {
		if w, next := g.serve(t, http.MethodPost, p, "{}", nil); w.Code != http.StatusOK || !next.called || next.login != "octocat" {
			t.Errorf("POST %s: %d, passed on %v as %q", p, w.Code, next.called, next.login)
		}
	}
}

// TestGatePreflight: a CORS preflight on a protected path goes on to the
// protected server (which knows its origins and headers) only after the
// path checks, without a body, and with every identity placeholder
// known and empty, whatever was set before the gate.
func TestGatePreflight(t *testing.T) {
	g := nestedGate(t)
	preflight := http.Header{
		"Origin":                         {"http://localhost:6274"},
		"Access-Control-Request-Method":  {"POST"},
		"Access-Control-Request-Headers": {"authorization, content-type, mcp-protocol-version, mcp-method, mcp-name, mcp-param-uri"},
	}
	base := httptest.NewRequest(http.MethodOptions, "https://mcp.example.com/mcp", strings.NewReader(`{"jsonrpc":"2.0"}`))
	r := g.request(base)
	r.Header = preflight
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.login", "mallory")
	next := &seen{}
	if err := g.m.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
		t.Fatal(err)
	}
	if !next.called {
		t.Fatal("the preflight did not reach the protected server")
	}
	if next.body != "" || next.contentLen != 0 {
		t.Errorf("the preflight reached it with a body %q (length %d)", next.body, next.contentLen)
	}
	if next.login != "" || !next.known {
		t.Errorf("{http.auth.user.login} is %q (known %v), want known and empty", next.login, next.known)
	}
	if next.name != "" {
		t.Errorf("{http.auth.user.name} expands to %q, want empty rather than left as a placeholder", next.name)
	}
	// With the same headers, the path checks still apply.
	if w, next := g.serve(t, http.MethodOptions, "/mcp/a%2f..%2fx", "", preflight); next.called {
		t.Errorf("a preflight on an ambiguous path passed on (%d)", w.Code)
	}
}

// TestPlaceholdersAreData: profile fields reach an upstream as literal
// data: a placeholder in a GitHub name is not expanded, and control
// characters cannot split a header.
func TestPlaceholdersAreData(t *testing.T) {
	tok := &store.AccessToken{ClientID: "c\x00", Scope: "read", User: store.Identity{ID: 7,
		Login: "eve", Name: "{env.HOME} Eve\r\nX-Injected: 1", Email: "eve@example.com\n"}}
	repl := caddy.NewReplacer()
	repl.Map(tokenPlaceholders(tok))
	got := repl.ReplaceAll("{http.auth.user.name}|{http.auth.user.email}|{mcp_auth.client_id}|{http.auth.user.login}", "")
	if want := "{env.HOME} Eve  X-Injected: 1|eve@example.com |c |eve"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	h := http.Header{}
	h.Set("X-Forwarded-Name", got)
	if len(h.Values("X-Forwarded-Name")) != 1 || h.Get("X-Injected") != "" {
		t.Errorf("the header split: %v", h)
	}
}

// TestHeaderSafeAllocations: a clean value, which every real one is, is
// returned as it is, so the placeholders cost no allocation.
func TestHeaderSafeAllocations(t *testing.T) {
	name := "The Octocat ☺"
	if n := testing.AllocsPerRun(100, func() { _ = headerSafe(name) }); n != 0 {
		t.Errorf("headerSafe of a clean value allocates %v times", n)
	}
	if got := headerSafe("a\tb\x7fc"); got != "a b c" {
		t.Errorf("headerSafe = %q", got)
	}
}

// TestProtectTrailingSlashRefused: protect /mcp/ would gate /mcp/x but not
// /mcp, which handle /mcp* serves; it is refused, in the Caddyfile and in
// JSON (Provision), with the reason.
func TestProtectTrailingSlashRefused(t *testing.T) {
	_, err := adapt(t, "localhost {\nmcp_auth {\nprotect /mcp /github/mcp/\n}\n}\n")
	if err == nil || !strings.Contains(err.Error(), `"/github/mcp/" must not end in /`) || !strings.Contains(err.Error(), `write "/github/mcp"`) {
		t.Errorf("Caddyfile: %v", err)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	// A state file of the test's own, should the refusal come too late.
	storage, _ := json.Marshal(map[string]string{"backend": "bbolt", "path": filepath.Join(t.TempDir(), "state.db")})
	m := &MCPAuth{GitHub: &GitHubConfig{ClientID: "a", ClientSecret: "b"}, Protect: []ProtectedPath{{Path: "/mcp/"}}, StorageRaw: storage}
	if err := m.Provision(ctx); err == nil || !strings.Contains(err.Error(), "must not end in /") {
		t.Errorf("Provision: %v", err)
	}
}
