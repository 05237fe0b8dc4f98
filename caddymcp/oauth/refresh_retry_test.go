package oauth_test

import (
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// The refresh rules for clients that retry (see store/refresh.go): a
// refresh whose answer was lost, or two processes refreshing one token at
// once, keep the grant; a rotated token coming back after its successor
// was used, after the grace, or too often, revokes it.

// TestRefreshRetriedAfterLostAnswer: a client that never saw the answer
// to its refresh sends the same token again and gets a fresh pair; the
// lost answer's tokens work too, and the grant lives on.
func TestRefreshRetriedAfterLostAnswer(t *testing.T) {
	e := newEnv(t)
	c := e.confidentialClient()
	t1 := e.loginTokens(c, "alice")
	lost := e.mustTokens(e.refresh(c, t1.Refresh)) // the client never sees this
	e.clock.Advance(oauth.DefaultRefreshReuseGrace - time.Second)
	t2 := e.mustTokens(e.refresh(c, t1.Refresh))
	if t2.Refresh == lost.Refresh || t2.Access == lost.Access {
		t.Fatal("the retry got the lost answer's tokens again")
	}
	e.expectOK("/mcp", t2.Access)
	e.expectOK("/mcp", lost.Access)
	t3 := e.mustTokens(e.refresh(c, t2.Refresh))
	e.expectOK("/mcp", t3.Access)
	e.mustTokens(e.refresh(c, t3.Refresh))
}

// TestRefreshRacingBothSucceed: two processes sharing one token store
// refresh the same token at once; both succeed, and whichever answer the
// store keeps refreshes next.
func TestRefreshRacingBothSucceed(t *testing.T) {
	e := newEnv(t)
	c := e.confidentialClient()
	for _, keep := range []int{0, 1} {
		t1 := e.loginTokens(c, "alice")
		var got [2]*response
		var wg sync.WaitGroup
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i] = e.refresh(c, t1.Refresh)
			}()
		}
		wg.Wait()
		var answers [2]tokens
		for i, r := range got {
			answers[i] = e.mustTokens(r)
		}
		e.mustTokens(e.refresh(c, answers[keep].Refresh))
	}
}

// TestRefreshReuseStillRevokes: the grace serves a lost answer, not a
// thief: a rotated token presented after its successor was used, after
// the grace, or more often than the retry bound revokes the grant.
func TestRefreshReuseStillRevokes(t *testing.T) {
	e := newEnv(t)
	c := e.confidentialClient()
	revoked := func(t *testing.T, e *env, r *response, live ...tokens) {
		t.Helper()
		expectOAuthError(t, r, http.StatusBadRequest, "invalid_grant")
		for _, tk := range live {
			e.expectRefused("/mcp", tk.Access, http.StatusUnauthorized)
			expectOAuthError(t, e.refresh(c, tk.Refresh), http.StatusBadRequest, "invalid_grant")
		}
	}
	t.Run("successor used", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		t2 := e.mustTokens(e.refresh(c, t1.Refresh))
		t3 := e.mustTokens(e.refresh(c, t2.Refresh))
		revoked(t, e, e.refresh(c, t1.Refresh), t3)
	})
	t.Run("after the grace", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		t2 := e.mustTokens(e.refresh(c, t1.Refresh))
		e.clock.Advance(oauth.DefaultRefreshReuseGrace + time.Second)
		revoked(t, e, e.refresh(c, t1.Refresh), t2)
	})
	t.Run("retries bounded", func(t *testing.T) {
		e := e.sub(t)
		t1 := e.loginTokens(c, "alice")
		var all []tokens
		for range 1 + oauth.DefaultRefreshReuseRetries {
			all = append(all, e.mustTokens(e.refresh(c, t1.Refresh)))
		}
		revoked(t, e, e.refresh(c, t1.Refresh), all...)
	})
}

// TestRefreshStrictWithoutGrace: a negative grace (the Caddyfile's
// refresh_reuse_grace 0) is the strict rule: any reuse revokes.
func TestRefreshStrictWithoutGrace(t *testing.T) {
	e := newEnvWith(t, envOptions{config: func(c *oauth.Config) { c.RefreshReuseGrace = -1 }})
	c := e.confidentialClient()
	t1 := e.loginTokens(c, "alice")
	t2 := e.mustTokens(e.refresh(c, t1.Refresh))
	expectOAuthError(t, e.refresh(c, t1.Refresh), http.StatusBadRequest, "invalid_grant")
	e.expectRefused("/mcp", t2.Access, http.StatusUnauthorized)
}

// TestRefreshTokenOfAnotherClient: a refresh token presented by a client
// it was not issued to changes nothing, at /token or /revoke, even a
// rotated one that its owner could no longer use: it must not let one
// client end another's grant, nor skip a confidential client's
// authentication (RFC 7009 section 2.1).
func TestRefreshTokenOfAnotherClient(t *testing.T) {
	e := newEnvWith(t, envOptions{config: func(c *oauth.Config) { c.RefreshReuseGrace = -1 }})
	owner := e.confidentialClient()
	other := e.publicClient()
	t1 := e.loginTokens(owner, "alice")
	t2 := e.mustTokens(e.refresh(owner, t1.Refresh))
	for _, rt := range []string{t1.Refresh, t2.Refresh} {
		expectOAuthError(t, e.refresh(other, rt), http.StatusBadRequest, "invalid_grant")
		if r := e.postForm("/revoke", url.Values{"token": {rt}, "client_id": {other.ID}}, nil); r.Status != http.StatusOK {
			t.Errorf("revoking another client's token: %d %s", r.Status, r.Body)
		}
	}
	e.expectOK("/mcp", t2.Access)
	e.mustTokens(e.refresh(owner, t2.Refresh))
}
