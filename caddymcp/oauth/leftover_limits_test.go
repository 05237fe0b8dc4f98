package oauth_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// addrs lets a test choose the client address of each request.
type addrs struct {
	mu  sync.Mutex
	cur string
}

func (a *addrs) set(addr string) {
	a.mu.Lock()
	a.cur = addr
	a.mu.Unlock()
}

func (a *addrs) get(*http.Request) string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur
}

// envFrom is an env whose requests come from the address a names, with
// the given bounds on what anonymous callers leave behind.
func envFrom(t *testing.T, a *addrs, reg, pending oauth.LeftoverLimits) *env {
	a.set("203.0.113.1")
	return newEnvWith(t, envOptions{config: func(c *oauth.Config) {
		c.ClientAddr = a.get
		c.RegistrationLimits = reg
		c.PendingSignIns = pending
	}})
}

func (e *env) registerNamed(name string) *response {
	e.t.Helper()
	return e.postJSON("/register", "application/json",
		fmt.Sprintf(`{"client_name":%q,"token_endpoint_auth_method":"none","redirect_uris":["https://client.example.com/cb"]}`, name))
}

// expectTooMany asserts a 429 whose Retry-After is a whole number of
// seconds between 1 and an hour.
func expectTooMany(t *testing.T, r *response) {
	t.Helper()
	if r.Status != http.StatusTooManyRequests {
		t.Fatalf("got %d, want 429: %.300s", r.Status, r.Body)
	}
	n, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || n < 1 || n > 3600 {
		t.Errorf("Retry-After %q, want 1 to 3600 seconds", r.Header.Get("Retry-After"))
	}
}

// TestRegistrationBoundsUnusedClients: an address may leave only so many
// clients that never obtained a grant; one that obtains a grant stops
// counting at once, registering the same public client again never
// counts, other addresses are not affected, and the bound lifts when the
// store would have collected the unused clients.
func TestRegistrationBoundsUnusedClients(t *testing.T) {
	var a addrs
	e := envFrom(t, &a, oauth.LeftoverLimits{PerAddress: 5, Total: 1000}, oauth.LeftoverLimits{})
	var first *testClient
	for i := range 5 {
		c := e.publicClient()
		if i == 0 {
			first = c
		}
	}
	for range 10 {
		if r := e.registerNamed("Test Client 1"); r.Status != http.StatusCreated {
			t.Fatalf("registering the same public client again: %d %s", r.Status, r.Body)
		}
	}
	r := e.registerNamed("one too many")
	expectTooMany(t, r)
	expectOAuthError(t, r, http.StatusTooManyRequests, "temporarily_unavailable")

	a.set("2001:db8:1:2::1") // another address registers
	e.publicClient()
	a.set("2001:db8:1:2::ffff") // the same /64 shares its bound, so it holds one
	for range 4 {
		e.publicClient()
	}
	expectTooMany(t, e.registerNamed("the /64 is full"))

	a.set("203.0.113.1")
	e.loginTokens(first, "alice") // a client that obtains a grant stops counting
	e.publicClient()
	expectTooMany(t, e.registerNamed("full again"))

	e.clock.Advance(24*time.Hour + time.Second) // the store has collected them
	for range 5 {
		e.publicClient()
	}
}

// TestRegistrationServerWideBoundIsNoLockout: when addresses together
// reach the server-wide bound, those already holding a few unused
// clients are refused, and a newcomer is still served.
func TestRegistrationServerWideBoundIsNoLockout(t *testing.T) {
	var a addrs
	e := envFrom(t, &a, oauth.LeftoverLimits{PerAddress: 20, Total: 40}, oauth.LeftoverLimits{})
	for host := range 2 {
		a.set(fmt.Sprintf("198.51.100.%d", host+1))
		for range 20 {
			e.publicClient()
		}
	}
	a.set("198.51.100.3") // the total is reached: a newcomer still gets a few
	for range 5 {
		e.publicClient()
	}
	expectTooMany(t, e.registerNamed("past the floor"))
	a.set("198.51.100.4")
	e.publicClient()
}

// TestRegistrationDefaultsAdmitHostedClients: with the default bounds, a
// hosted client registering 120 confidential clients from one address
// within a minute, each followed by a completed authorization, is never
// refused; a flood of registrations that never obtain a grant is refused
// after a thousand, and another address registers meanwhile.
func TestRegistrationDefaultsAdmitHostedClients(t *testing.T) {
	var a addrs
	e := envFrom(t, &a, oauth.LeftoverLimits{}, oauth.LeftoverLimits{})
	for range 120 {
		c := e.confidentialClient()
		e.loginTokens(c, "alice")
	}
	accepted := 0
	var r *response
	for accepted < 2000 {
		if r = e.registerNamed(fmt.Sprintf("flood %d", accepted)); r.Status != http.StatusCreated {
			break
		}
		accepted++
	}
	if accepted != oauth.DefaultRegistrationLimits.PerAddress {
		t.Fatalf("a flood from one address registered %d unused clients, want %d", accepted, oauth.DefaultRegistrationLimits.PerAddress)
	}
	expectTooMany(t, r)
	a.set("203.0.113.2")
	c := e.confidentialClient()
	e.loginTokens(c, "bob")
}

// TestPendingSignInsBounded: an address may leave only so many sign-ins
// approved on the consent page and never brought back from GitHub; one
// that completes stops counting, another address signs in meanwhile, and
// the bound lifts when they would have expired.
func TestPendingSignInsBounded(t *testing.T) {
	var a addrs
	e := envFrom(t, &a, oauth.LeftoverLimits{}, oauth.LeftoverLimits{PerAddress: 3, Total: 100})
	c := e.publicClient()
	b := e.newBrowser("alice")
	var atGitHub []string
	for range 3 {
		atGitHub = append(atGitHub, b.toGitHub(authzQuery(c, newPKCE())).String())
	}
	page := b.authorize(authzQuery(c, newPKCE()))
	if page.Status == http.StatusOK {
		form := consentForm(t, page)
		form.Set("action", "approve")
		page = b.postForm("/consent", form)
	}
	expectTooMany(t, page)

	a.set("203.0.113.9") // another address signs in
	e.loginTokens(e.publicClient(), "bob")

	a.set("203.0.113.1")
	cb := b.atGitHub(mustParse(t, atGitHub[0])) // one of them completes
	if r := b.get(cb.String()); r.Status != http.StatusFound {
		t.Fatalf("callback: %d %.300s", r.Status, r.Body)
	}
	b.toGitHub(authzQuery(c, newPKCE()))
	e.clock.Advance(10*time.Minute + time.Second) // the rest expired
	for range 3 {
		b.toGitHub(authzQuery(c, newPKCE()))
	}
}

func mustParse(t *testing.T, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
