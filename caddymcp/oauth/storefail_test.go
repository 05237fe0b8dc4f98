package oauth_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

var errBoom = errors.New("simulated store failure")

// failStore is a store whose operations can be made to fail.
type failStore struct {
	store.Store
	mu   sync.Mutex
	fail map[string]bool
}

func (f *failStore) set(op string, failing bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op] = failing
}

func (f *failStore) failing(op string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail[op]
}

func (f *failStore) PutClient(ctx context.Context, c *store.Client) error {
	if f.failing("PutClient") {
		return errBoom
	}
	return f.Store.PutClient(ctx, c)
}

func (f *failStore) GetClient(ctx context.Context, id string) (*store.Client, error) {
	if f.failing("GetClient") {
		return nil, errBoom
	}
	return f.Store.GetClient(ctx, id)
}

func (f *failStore) PutPending(ctx context.Context, p *store.Pending) error {
	if f.failing("PutPending") {
		return errBoom
	}
	return f.Store.PutPending(ctx, p)
}

func (f *failStore) TakePending(ctx context.Context, h []byte, now time.Time) (*store.Pending, error) {
	if f.failing("TakePending") {
		return nil, errBoom
	}
	return f.Store.TakePending(ctx, h, now)
}

func (f *failStore) PutCode(ctx context.Context, c *store.Code) error {
	if f.failing("PutCode") {
		return errBoom
	}
	return f.Store.PutCode(ctx, c)
}

func (f *failStore) GetCode(ctx context.Context, h []byte, now time.Time) (*store.Code, error) {
	if f.failing("GetCode") {
		return nil, errBoom
	}
	return f.Store.GetCode(ctx, h, now)
}

func (f *failStore) RedeemCode(ctx context.Context, h []byte, now time.Time) (*store.Code, error) {
	if f.failing("RedeemCode") {
		return nil, errBoom
	}
	return f.Store.RedeemCode(ctx, h, now)
}

func (f *failStore) CreateGrant(ctx context.Context, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken, h []byte) error {
	if f.failing("CreateGrant") {
		return errBoom
	}
	return f.Store.CreateGrant(ctx, g, at, rt, h)
}

func (f *failStore) GetAccessToken(ctx context.Context, h []byte, now time.Time) (*store.AccessToken, error) {
	if f.failing("GetAccessToken") {
		return nil, errBoom
	}
	return f.Store.GetAccessToken(ctx, h, now)
}

func (f *failStore) GetRefreshToken(ctx context.Context, h []byte, use store.RefreshUse) (*store.RefreshToken, *store.Grant, store.RefreshVerdict, error) {
	if f.failing("GetRefreshToken") {
		return nil, nil, 0, errBoom
	}
	return f.Store.GetRefreshToken(ctx, h, use)
}

func (f *failStore) RotateRefresh(ctx context.Context, old []byte, use store.RefreshUse, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken) (store.RefreshVerdict, error) {
	if f.failing("RotateRefresh") {
		return 0, errBoom
	}
	return f.Store.RotateRefresh(ctx, old, use, g, at, rt)
}

func (f *failStore) RevokeGrant(ctx context.Context, id string) error {
	if f.failing("RevokeGrant") {
		return errBoom
	}
	return f.Store.RevokeGrant(ctx, id)
}

// TestStoreFailures: when the store fails, every endpoint answers 503
// temporarily_unavailable (or redirects it to the client), never 500.
func TestStoreFailures(t *testing.T) {
	fs := &failStore{fail: map[string]bool{}}
	e := newEnvWith(t, envOptions{allow5xx: true, wrapStore: func(s store.Store) store.Store {
		fs.Store = s
		return fs
	}})
	c := e.publicClient()
	// expect503 checks a token or revocation endpoint's answer.
	expect503 := func(t *testing.T, r *response) {
		t.Helper()
		expectOAuthError(t, r, http.StatusServiceUnavailable, "temporarily_unavailable")
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("no Retry-After")
		}
	}
	with := func(t *testing.T, op string, f func(t *testing.T, e *env)) {
		t.Run(op, func(t *testing.T) {
			e := e.sub(t)
			fs.set(op, true)
			defer fs.set(op, false)
			f(t, e)
		})
	}

	with(t, "PutClient", func(t *testing.T, e *env) {
		r := e.postJSON("/register", "application/json", `{"redirect_uris":["https://client.example.com/cb"]}`)
		expect503(t, r)
	})
	with(t, "GetClient", func(t *testing.T, e *env) {
		r := e.newBrowser("alice").authorize(authzQuery(c, newPKCE()))
		expectPage(t, r, http.StatusServiceUnavailable)
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("the authorization endpoint's 503 page has no Retry-After")
		}
		expect503(t, e.exchange(c, "mcp_ac_x", newPKCE().Verifier))
	})
	with(t, "PutPending", func(t *testing.T, e *env) {
		b := e.newBrowser("alice")
		form := consentForm(t, b.authorize(authzQuery(c, newPKCE())))
		form.Set("action", "approve")
		e.expectClientRedirect(b.postForm("/consent", form), clientRedirect, "temporarily_unavailable", "client-state-123")
	})
	t.Run("TakePending", func(t *testing.T) {
		e := e.sub(t)
		b := e.newBrowser("alice")
		cb := b.atGitHub(b.toGitHub(authzQuery(c, newPKCE())))
		fs.set("TakePending", true)
		r := b.get(cb.String())
		fs.set("TakePending", false)
		expectPage(t, r, http.StatusServiceUnavailable)
		if r.Header.Get("Retry-After") == "" {
			t.Errorf("the callback's 503 page has no Retry-After")
		}
	})
	t.Run("PutCode", func(t *testing.T) {
		e := e.sub(t)
		b := e.newBrowser("alice")
		cb := b.atGitHub(b.toGitHub(authzQuery(c, newPKCE())))
		fs.set("PutCode", true)
		r := b.get(cb.String())
		fs.set("PutCode", false)
		e.expectClientRedirect(r, clientRedirect, "temporarily_unavailable", "client-state-123")
	})
	t.Run("GetCode and CreateGrant", func(t *testing.T) {
		e := e.sub(t)
		code, p := e.codeFor(c, "alice")
		fs.set("GetCode", true)
		expect503(t, e.exchange(c, code, p.Verifier))
		fs.set("GetCode", false)
		fs.set("CreateGrant", true)
		expect503(t, e.exchange(c, code, p.Verifier))
		fs.set("CreateGrant", false)
		// Nothing was written by the attempts that failed, so the code
		// is still good: a retry gets the tokens, and only once.
		e.mustTokens(e.exchange(c, code, p.Verifier))
		expectOAuthError(t, e.exchange(c, code, p.Verifier), http.StatusBadRequest, "invalid_grant")
	})
	t.Run("RedeemCode", func(t *testing.T) {
		// A request that fails its checks is refused for what it got
		// wrong even when using the code up fails.
		e := e.sub(t)
		code, _ := e.codeFor(c, "alice")
		fs.set("RedeemCode", true)
		expectOAuthError(t, e.exchange(c, code, newPKCE().Verifier), http.StatusBadRequest, "invalid_grant")
		fs.set("RedeemCode", false)
	})
	t.Run("tokens", func(t *testing.T) {
		e := e.sub(t)
		tk := e.loginTokens(c, "alice")

		fs.set("GetAccessToken", true)
		r := e.call("/sse", tk.Access)
		fs.set("GetAccessToken", false)
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || r.str("error") != "temporarily_unavailable" {
			t.Errorf("gate: %d %v %s", r.Status, r.Header, r.Body)
		}
		if wa := r.Header.Get("WWW-Authenticate"); strings.Contains(wa, "error=") {
			t.Errorf("gate 503 with an RFC 6750 error: %q", wa)
		}

		fs.set("GetRefreshToken", true)
		expect503(t, e.refresh(c, tk.Refresh))
		expect503(t, e.revoke(c, tk.Refresh))
		fs.set("GetRefreshToken", false)

		fs.set("RotateRefresh", true)
		expect503(t, e.refresh(c, tk.Refresh))
		fs.set("RotateRefresh", false)

		fs.set("GetAccessToken", true)
		expect503(t, e.revoke(c, tk.Access))
		fs.set("GetAccessToken", false)

		fs.set("RevokeGrant", true)
		expect503(t, e.revoke(c, tk.Refresh))
		fs.set("RevokeGrant", false)

		// None of this harmed the grant.
		e.expectOK("/mcp", tk.Access)
		e.mustTokens(e.refresh(c, tk.Refresh))
	})
}
