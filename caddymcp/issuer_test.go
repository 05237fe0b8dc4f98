package caddymcp

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore"
)

// originSite is an mcp_auth gate (issuer as given, "" for the default)
// with mcp_server behind it on /mcp, and access tokens for its resource.
type originSite struct {
	m   *MCPAuth
	s   *MCPServer
	tok map[string]string // by audience
}

func newOriginSite(t *testing.T, issuer string, audiences ...string) *originSite {
	t.Helper()
	st, err := bboltstore.Open(filepath.Join(t.TempDir(), "state.db"), bboltstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := oauth.NewKeys(make([]byte, oauth.KeySize))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := oauth.New(oauth.Config{Issuer: issuer, Resources: []oauth.Resource{{Path: "/mcp"}}}, st, noIdP{}, keys, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	m := &MCPAuth{Issuer: issuer, server: srv, idp: testGate(t).idp, logger: zap.NewNop()}
	matcher := caddyhttp.MatchPath{"/mcp*"}
	if err := matcher.Provision(caddy.Context{}); err != nil {
		t.Fatal(err)
	}
	m.resources = []gatedResource{{res: srv.ResourceFor("/mcp"), matcher: matcher}}
	s := &MCPServer{MaxRequestBody: defaultMaxRequestBody, logger: zap.NewNop()}
	s.transports = s.newTransports()

	site := &originSite{m: m, s: s, tok: map[string]string{}}
	ctx := context.Background()
	now := time.Now()
	if err := st.PutClient(ctx, &store.Client{ID: "client-1", RedirectURIs: []string{"http://127.0.0.1/cb"}, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	for i, aud := range audiences {
		token := store.NewSecret("mcp_at_")
		who := store.Identity{ID: 583231, Login: "octocat"}
		g := &store.Grant{ID: "grant-" + aud, ClientID: "client-1", User: who, Resource: aud, CreatedAt: now, ExpiresAt: now.Add(24 * time.Hour)}
		at := &store.AccessToken{Hash: store.SecretKey("mcp_at_", token), GrantID: g.ID, ClientID: g.ClientID, User: who, Resource: aud, ExpiresAt: now.Add(time.Hour)}
		rsum := sha256.Sum256([]byte{byte(i)})
		if err := st.CreateGrant(ctx, g, at, &store.RefreshToken{Hash: rsum[:], GrantID: g.ID, ClientID: g.ClientID, ExpiresAt: g.ExpiresAt}, nil); err != nil {
			t.Fatal(err)
		}
		site.tok[aud] = token
	}
	return site
}

// do sends a request through the gate to mcp_server: a POST of
// initialize with the token for audience aud, or a CORS preflight when
// aud is "". target is the URL the request arrived at (its scheme says
// whether over TLS, its host is the Host header).
func (o *originSite) do(t *testing.T, target, origin, aud string) *httptest.ResponseRecorder {
	t.Helper()
	var r *http.Request
	if aud == "" {
		r = httptest.NewRequest(http.MethodOptions, target, nil)
		r.Header.Set("Access-Control-Request-Method", "POST")
	} else {
		r = httptest.NewRequest(http.MethodPost, target, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`))
		r.Header.Set("Authorization", "Bearer "+o.tok[aud])
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Accept", "application/json, text/event-stream")
	}
	if !strings.HasPrefix(target, "https:") {
		r.TLS = nil
	}
	r.Header.Set("Origin", origin)
	ctx := context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer())
	r = r.WithContext(context.WithValue(ctx, caddyhttp.VarsCtxKey, map[string]any{}))
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return o.s.ServeHTTP(w, r, nil) })
	if err := o.m.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	return w
}

// TestOriginJudgedByIssuer: the site's own origin is its issuer's, for
// requests and preflights alike, whatever scheme and Host the request
// arrived with; without an issuer, it is the default issuer for the
// request, as the gate derives it.
func TestOriginJudgedByIssuer(t *testing.T) {
	const pub = "https://mcp.example.com"
	configured := newOriginSite(t, pub, pub+"/mcp")
	deflt := newOriginSite(t, "", pub+"/mcp", "http://localhost:8080/mcp", "https://evil.example/mcp")
	for _, c := range []struct {
		name           string
		site           *originSite
		target, origin string
		aud            string // "" for a preflight
		want           int
	}{
		// Behind a balancer terminating TLS: plain HTTP to the instance.
		{"issuer, public origin, Host kept", configured, "http://mcp.example.com/mcp", pub, pub + "/mcp", http.StatusOK},
		{"issuer, public origin, Host rewritten", configured, "http://10.0.0.11:8080/mcp", pub, pub + "/mcp", http.StatusOK},
		{"issuer, preflight, Host rewritten", configured, "http://10.0.0.11:8080/mcp", pub, "", http.StatusNoContent},
		{"issuer, preflight on loopback", configured, "http://localhost:8080/mcp", pub, "", http.StatusNoContent},
		{"issuer, the instance's own plain origin", configured, "http://mcp.example.com/mcp", "http://mcp.example.com", pub + "/mcp", http.StatusForbidden},
		{"issuer, preflight from the plain origin", configured, "http://localhost:8080/mcp", "http://localhost:8080", "", http.StatusForbidden},
		// DNS rebinding: a page at evil.example resolving to the server.
		{"issuer, rebinding", configured, "http://evil.example/mcp", "http://evil.example", pub + "/mcp", http.StatusForbidden},
		{"issuer, rebinding over TLS", configured, "https://evil.example/mcp", "https://evil.example", pub + "/mcp", http.StatusForbidden},
		{"issuer, rebinding preflight", configured, "http://evil.example/mcp", "http://evil.example", "", http.StatusForbidden},
		{"issuer, foreign", configured, "http://mcp.example.com/mcp", "https://evil.example", pub + "/mcp", http.StatusForbidden},
		// The default issuer: https for a public host even over plain
		// HTTP, http only on loopback.
		{"default, public host over plain HTTP", deflt, "http://mcp.example.com/mcp", pub, pub + "/mcp", http.StatusOK},
		{"default, public host, preflight", deflt, "http://mcp.example.com/mcp", pub, "", http.StatusNoContent},
		{"default, public host, plain origin", deflt, "http://mcp.example.com/mcp", "http://mcp.example.com", pub + "/mcp", http.StatusForbidden},
		{"default, public host, plain-origin preflight", deflt, "http://mcp.example.com/mcp", "http://mcp.example.com", "", http.StatusForbidden},
		{"default, TLS", deflt, "https://mcp.example.com/mcp", pub, pub + "/mcp", http.StatusOK},
		{"default, loopback", deflt, "http://localhost:8080/mcp", "http://localhost:8080", "http://localhost:8080/mcp", http.StatusOK},
		{"default, loopback preflight", deflt, "http://localhost:8080/mcp", "http://localhost:8080", "", http.StatusNoContent},
		{"default, loopback, https origin", deflt, "http://localhost:8080/mcp", "https://localhost:8080", "http://localhost:8080/mcp", http.StatusForbidden},
		{"default, foreign", deflt, "https://mcp.example.com/mcp", "https://evil.example", pub + "/mcp", http.StatusForbidden},
		// Without an issuer the site is whatever Host says, and so are
		// its tokens: the gate accepts at evil.example only a token for
		// https://evil.example, which no browser page obtains unnoticed.
		{"default, a site of its own", deflt, "https://evil.example/mcp", "https://evil.example", "https://evil.example/mcp", http.StatusOK},
	} {
		w := c.site.do(t, c.target, c.origin, c.aud)
		if w.Code != c.want {
			t.Errorf("%s: %s from %s: %d %s, want %d", c.name, c.target, c.origin, w.Code, strings.TrimSpace(w.Body.String()), c.want)
			continue
		}
		if c.want != http.StatusForbidden && w.Header().Get("Access-Control-Allow-Origin") != c.origin {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want %q", c.name, w.Header().Get("Access-Control-Allow-Origin"), c.origin)
		}
	}
}

// TestSiteOriginIsTheIssuer: mcp_server's idea of the site's origin is the
// issuer the oauth package advertises for the same request, configured
// or default.
func TestSiteOriginIsTheIssuer(t *testing.T) {
	for _, issuer := range []string{"", "https://MCP.example.com/", "http://127.0.0.1:9999"} {
		site := newOriginSite(t, issuer)
		metadata := site.m.server.Endpoint("/.well-known/oauth-authorization-server")
		for _, target := range []string{"http://mcp.example.com/x", "https://mcp.example.com/x", "http://Localhost:8080/x", "https://localhost:8443/x",
			"http://127.0.0.1:8080/x", "http://[::1]:8080/x", "http://10.0.0.11:8080/x", "http://evil.example/x", "https://EVIL.example:8443/x"} {
			r := httptest.NewRequest(http.MethodGet, target, nil)
			if !strings.HasPrefix(target, "https:") {
				r.TLS = nil
			}
			w := httptest.NewRecorder()
			metadata(w, r)
			var meta struct {
				Issuer string `json:"issuer"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &meta); err != nil || meta.Issuer == "" {
				t.Fatalf("metadata for %s: %d %s", target, w.Code, w.Body)
			}
			if got := site.m.siteOrigin(r); got != meta.Issuer {
				t.Errorf("issuer %q, request %s: site origin %q, the gate's issuer %q", issuer, target, got, meta.Issuer)
			}
			if issuer == "" {
				if got := oauth.DefaultIssuer(r); got != meta.Issuer {
					t.Errorf("request %s: default issuer %q, the gate's %q", target, got, meta.Issuer)
				}
			}
		}
	}
}

func TestOriginOf(t *testing.T) {
	for in, want := range map[string]string{
		"https://mcp.example.com/mcp": "https://mcp.example.com", "https://mcp.example.com": "https://mcp.example.com",
		"http://localhost:8080/a/b?c": "http://localhost:8080", "https://h?x": "https://h", "": "", "mcp.example.com/mcp": "", "https:///mcp": "",
	} {
		if got, ok := originOf(in); got != want || ok != (want != "") {
			t.Errorf("originOf(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}
