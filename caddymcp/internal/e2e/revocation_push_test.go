package e2e

import (
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store/pgstore"
)

// TestRevocationPushedTwoInstances: two Caddy processes (A and B) on one
// PostgreSQL database. B has checked an access token, so it serves it from
// memory for up to pgstore.CacheTTL; the token is revoked at A, through
// RFC 7009 /revoke (the access token itself, then a refresh token, which
// revokes its grant) and through the admin CLI (`revoke --user`). B
// refuses it before its cached copy is CacheTTL old, which only the
// notification A's revocation sent can explain; the delay is logged.
func TestRevocationPushedTwoInstances(t *testing.T) {
	c := newCluster(t)
	a := c.newInstance("A")
	b := c.newInstance("B")
	eA, eB := a.env(), b.env()
	eA.admin = adminAddress(t, a)
	mcpResource := url.Values{"resource": {c.site + "/mcp"}}
	// One client and connection for B, so that each gate request costs a
	// request and not a TLS handshake.
	hcB := eB.httpClient(nil)

	cases := []struct {
		name   string
		user   string
		revoke func(t *testing.T, cl *oauthClient, access, refresh string)
	}{
		{"/revoke with the access token", "alice", func(t *testing.T, cl *oauthClient, access, _ string) {
			if status, out := cl.form(t, "/revoke", url.Values{"token": {access}, "token_type_hint": {"access_token"}}); status != http.StatusOK {
				t.Fatalf("revoke on A: %d %v", status, out)
			}
		}},
		{"/revoke with the refresh token", "alice", func(t *testing.T, cl *oauthClient, _, refresh string) {
			if status, out := cl.form(t, "/revoke", url.Values{"token": {refresh}}); status != http.StatusOK {
				t.Fatalf("revoke on A: %d %v", status, out)
			}
		}},
		{"caddy mcp-auth revoke --user", "bob", func(t *testing.T, _ *oauthClient, _, _ string) {
			if out := eA.mustCLI(t, "revoke", "--user", "bob"); !strings.Contains(out, "revoked 1 grant") {
				t.Fatalf("revoke --user bob on A said %q", out)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cl := eA.register(t, false)
			q, verifier := cl.authorizeAs(t, eA.browser(tc.user), "st", mcpResource)
			tok := cl.exchange(t, q, verifier, mcpResource)

			// B checks the token (the database, then its memory).
			cachedAt := time.Now()
			if got := gateVia(hcB, eB, tok.AccessToken); got.status != http.StatusOK {
				t.Fatalf("B refuses a fresh token: %+v", got)
			}
			start := time.Now()
			if got := gateVia(hcB, eB, tok.AccessToken); got.status != http.StatusOK {
				t.Fatalf("B refuses a fresh token: %+v", got)
			}
			served := time.Since(start) // a request B answers from memory

			tc.revoke(t, cl, tok.AccessToken, tok.RefreshToken)
			revoked := time.Now()
			// B cached the token at cachedAt or later, so its copy lives
			// until cachedAt+CacheTTL at least: only a refusal answered
			// before then proves the push.
			for tries := 1; ; tries++ {
				got := gateVia(hcB, eB, tok.AccessToken)
				done := time.Now()
				if got.status != http.StatusOK && got.status != http.StatusUnauthorized {
					t.Fatalf("B after the revocation on A: %+v", got)
				}
				if since := done.Sub(cachedAt); since >= pgstore.CacheTTL {
					what := "still accepts"
					if got.status == http.StatusUnauthorized {
						what = "refused only"
					}
					t.Fatalf("B %s the token %v after A revoked it, %v after caching it, when its cache TTL (%v) may have expired it",
						what, done.Sub(revoked), since, pgstore.CacheTTL)
				}
				if got.status == http.StatusUnauthorized {
					t.Logf("refused at B %v after A's revocation returned, at request %d (a request B serves from memory takes %v)",
						done.Sub(revoked), tries, served)
					break
				}
				time.Sleep(2 * time.Millisecond)
			}
			if got := gate(eA, tok.AccessToken); got.status != http.StatusUnauthorized {
				t.Errorf("A after its own revocation: %+v, want 401", got)
			}
		})
	}
}

// adminAddress reads an instance's admin endpoint from its Caddyfile.
func adminAddress(t *testing.T, in *instance) string {
	t.Helper()
	config, err := os.ReadFile(in.config)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*admin (\S+)$`).FindSubmatch(config)
	if m == nil {
		t.Fatalf("no admin address in %s", in.config)
	}
	return string(m[1])
}
