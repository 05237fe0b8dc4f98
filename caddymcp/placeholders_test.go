package caddymcp

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2"
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
