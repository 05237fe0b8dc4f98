package caddymcp

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddymcp/caddymcp/caddymcp/githubidp"
	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// TestPlaceholdersWinOverEarlierValues: identity placeholders that a
// handler earlier in the chain set are replaced by the token's, so an
// upstream never sees another source's identity under the gate's names.
func TestPlaceholdersWinOverEarlierValues(t *testing.T) {
	g := newBenchGate(t)
	r := g.request(httptest.NewRequest(http.MethodPost, "https://mcp.example.com/mcp", nil))
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.login", "mallory")
	repl.Set("http.auth.user.id", "1")
	next := &passed{}
	w := httptest.NewRecorder()
	if err := g.m.ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	if next.login != "octocat" || next.id != "583231" {
		t.Fatalf("placeholders login=%q id=%q, want the token's octocat 583231", next.login, next.id)
	}
}

// TestUserKeyPerGitHub: the same numeric ID on github.com and on an
// Enterprise Server are two users, so their MCP sessions never mix.
func TestUserKeyPerGitHub(t *testing.T) {
	provider := func(enterprise string) *githubidp.Provider {
		p, err := githubidp.New(githubidp.Config{ClientID: "a", ClientSecret: "b", EnterpriseURL: enterprise})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	tok := &store.AccessToken{User: store.Identity{ID: 42}}
	dotcom := &authenticated{token: tok, gate: &MCPAuth{idp: provider("")}}
	ghes := &authenticated{token: tok, gate: &MCPAuth{idp: provider("https://ghe.example.com")}}
	if dotcom.userKey() == ghes.userKey() {
		t.Errorf("user 42 of github.com and of ghe.example.com share the key %q", dotcom.userKey())
	}
	if other := (&authenticated{token: &store.AccessToken{User: store.Identity{ID: 43}}, gate: dotcom.gate}); other.userKey() == dotcom.userKey() {
		t.Errorf("users 42 and 43 share a key")
	}
}
