package oauth_test

import (
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

func TestCallbackHappy(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	b := e.newBrowser("alice")
	cb := b.atGitHub(b.toGitHub(authzQuery(c, newPKCE())))
	r := b.get(cb.String())
	q := e.expectClientRedirect(r, clientRedirect, "", "client-state-123")
	code := q.Get("code")
	if !strings.HasPrefix(code, "mcp_ac_") {
		t.Errorf("code %q", code)
	}
	e.remember(code)
	if r.Header.Get("Cache-Control") != "no-store" || r.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("redirect headers %v", r.Header)
	}
	// Without a client state, none is sent back.
	cb = b.atGitHub(b.toGitHub(authzQuery(c, newPKCE(), del("state"))))
	r = b.get(cb.String())
	if q := e.expectClientRedirect(r, clientRedirect, "", ""); q.Get("code") == "" {
		t.Errorf("no code")
	}
}

func TestCallbackRefusals(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()

	t.Run("state replay", func(t *testing.T) {
		e := e.sub(t)
		b := e.newBrowser("alice")
		cb := b.atGitHub(b.toGitHub(authzQuery(c, newPKCE())))
		if r := b.get(cb.String()); r.Status != http.StatusFound {
			t.Fatalf("first callback: %d", r.Status)
		}
		expectPage(t, b.get(cb.String()), http.StatusBadRequest)
	})
	t.Run("unknown state", func(t *testing.T) {
		e := e.sub(t)
		b := e.newBrowser("alice")
		cb := b.atGitHub(b.toGitHub(authzQuery(c, newPKCE())))
		q := cb.Query()
		q.Set("state", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
		expectPage(t, b.get(e.issuer+"/callback?"+q.Encode()), http.StatusBadRequest)
	})
	t.Run("missing state", func(t *testing.T) {
		e := e.sub(t)
		b := e.newBrowser("alice")
		cb := b.atGitHub(b.toGitHub(authzQuery(c, newPKCE())))
		q := cb.Query()
		q.Del("state")
		expectPage(t, b.get(e.issuer+"/callback?"+q.Encode()), http.StatusBadRequest)
	})
	t.Run("oversize state", func(t *testing.T) {
		e := e.sub(t)
		b := e.newBrowser("alice")
		expectPage(t, b.get(e.issuer+"/callback?code=x&state="+strings.Repeat("s", 5000)), http.StatusBadRequest)
	})
	t.Run("POST", func(t *testing.T) {
		e := e.sub(t)
		b := e.newBrowser("alice")
		expectPage(t, b.postForm("/callback", url.Values{"state": {"x"}, "code": {"y"}}), http.StatusMethodNotAllowed)
	})
	t.Run("another browser without cookies", func(t *testing.T) {
		e := e.sub(t)
		a := e.newBrowser("alice")
		cb := a.atGitHub(a.toGitHub(authzQuery(c, newPKCE())))
		r := e.newBrowser("").get(cb.String())
		expectPage(t, r, http.StatusForbidden)
		// The state is used up: the browser that started cannot finish
		// either, so a stolen callback URL is worth nothing to anyone.
		expectPage(t, a.get(cb.String()), http.StatusBadRequest)
	})
	t.Run("another browser with its own binding", func(t *testing.T) {
		e := e.sub(t)
		a := e.newBrowser("alice")
		cb := a.atGitHub(a.toGitHub(authzQuery(c, newPKCE())))
		other := e.newBrowser("bob")
		consentForm(t, other.authorize(authzQuery(c, newPKCE()))) // gets a binding cookie
		if other.cookie(cookieBrowser) == "" || other.cookie(cookieBrowser) == a.cookie(cookieBrowser) {
			t.Fatalf("browsers do not have distinct bindings")
		}
		expectPage(t, other.get(cb.String()), http.StatusForbidden)
	})
	t.Run("expired pending request", func(t *testing.T) {
		e := e.sub(t)
		b := e.newBrowser("alice")
		cb := b.atGitHub(b.toGitHub(authzQuery(c, newPKCE())))
		e.clock.Advance(11 * time.Minute)
		expectPage(t, b.get(cb.String()), http.StatusBadRequest)
	})
	t.Run("GitHub denial", func(t *testing.T) {
		e := e.sub(t)
		e.gh.SetDeny(true)
		defer e.gh.SetDeny(false)
		b := e.newBrowser("alice")
		gh := b.toGitHub(authzQuery(c, newPKCE()))
		r := b.get(gh.String())
		cb := r.loc(t)
		if cb.Query().Get("error") != "access_denied" || !strings.HasPrefix(cb.String(), e.issuer+"/callback?") {
			t.Fatalf("GitHub sent the browser to %s", cb)
		}
		e.expectClientRedirect(b.get(cb.String()), clientRedirect, "access_denied", "client-state-123")
	})
	t.Run("no code from GitHub", func(t *testing.T) {
		e := e.sub(t)
		b := e.newBrowser("alice")
		cb := b.atGitHub(b.toGitHub(authzQuery(c, newPKCE())))
		q := cb.Query()
		q.Del("code")
		e.expectClientRedirect(b.get(e.issuer+"/callback?"+q.Encode()), clientRedirect, "access_denied", "client-state-123")
	})
	t.Run("code exchange fails", func(t *testing.T) {
		e := e.sub(t)
		b := e.newBrowser("alice")
		cb := b.atGitHub(b.toGitHub(authzQuery(c, newPKCE())))
		q := cb.Query()
		q.Set("code", "not-a-github-code")
		e.expectClientRedirect(b.get(e.issuer+"/callback?"+q.Encode()), clientRedirect, "access_denied", "client-state-123")
	})
	t.Run("GitHub token revoked before the user lookup", func(t *testing.T) {
		e := e.sub(t)
		e.afterGitHub(func(r *http.Request, _ *http.Response) {
			if r.URL.Path == "/login/oauth/access_token" {
				e.gh.RevokeUserTokens("alice")
			}
		})
		defer e.afterGitHub(nil)
		b := e.newBrowser("alice")
		cb := b.atGitHub(b.toGitHub(authzQuery(c, newPKCE())))
		r := b.get(cb.String())
		if r.Status != http.StatusFound {
			t.Fatalf("status %d: %s", r.Status, r.Body)
		}
		u := r.loc(t)
		if !strings.HasPrefix(u.String(), clientRedirect+"?") || u.Query().Get("error") == "" || u.Query().Has("code") || u.Query().Get("iss") != e.issuer {
			t.Fatalf("redirect %s", u)
		}
	})
}

func TestCallbackAllowLists(t *testing.T) {
	e := newEnvWith(t, envOptions{allowOrgs: []string{"acme"}, allowUsers: []string{"Carol"}})
	c := e.publicClient()
	for _, tc := range []struct {
		login string
		ok    bool
	}{
		{"alice", true}, // member of acme
		{"carol", true}, // listed user (case-insensitively)
		{"bob", false},  // neither
	} {
		t.Run(tc.login, func(t *testing.T) {
			e := e.sub(t)
			b := e.newBrowser(tc.login)
			cb := b.atGitHub(b.toGitHub(authzQuery(c, newPKCE())))
			r := b.get(cb.String())
			if tc.ok {
				if q := e.expectClientRedirect(r, clientRedirect, "", "client-state-123"); q.Get("code") == "" {
					t.Fatal("no code")
				}
				return
			}
			// The client, which may be anyone's, learns that someone was
			// refused, not who: the login goes to the server's log only.
			q := e.expectClientRedirect(r, clientRedirect, "access_denied", "client-state-123")
			if d := q.Get("error_description"); d == "" || strings.Contains(strings.ToLower(d), tc.login) {
				t.Errorf("error_description %q names the refused user", d)
			}
			logged := false
			for _, l := range e.logs.FilterMessage("user not allowed").All() {
				logged = logged || l.ContextMap()["login"] == tc.login
			}
			if !logged {
				t.Errorf("the refused login is not in the server's log")
			}
		})
	}
}

// TestGitHubState: the state sent to GitHub is ours, not the client's:
// fresh for each sign-in, even for the same request in the same browser,
// at least 256 bits long, and good at the callback for its 10 minutes.
// (Single use and expiry are in TestCallbackRefusals.)
func TestGitHubState(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	b := e.newBrowser("alice")
	p := newPKCE()
	first := b.toGitHub(authzQuery(c, p)).Query().Get("state")
	second := b.toGitHub(authzQuery(c, p))
	for _, s := range []string{first, second.Query().Get("state")} {
		if s == "" || strings.Contains(s, "client-state-123") || len(s) < 43 {
			t.Errorf("state towards GitHub %q: want our own of 256 bits or more", s)
		}
	}
	if first == second.Query().Get("state") {
		t.Errorf("two sign-ins were sent to GitHub with the same state %q", first)
	}
	cb := b.atGitHub(second)
	e.clock.Advance(10*time.Minute - time.Second)
	e.expectClientRedirect(b.get(cb.String()), clientRedirect, "", "client-state-123")
}

var retryLink = regexp.MustCompile(`<a href="([^"]+)">Sign in again</a>`)

// TestCallbackGitHubFaults: when GitHub fails at the code exchange or
// while reading the user, their organizations or teams, the browser gets
// a page saying so (502, or 503 with Retry-After when GitHub said when),
// the client gets no error that would end its flow, the failure is
// counted as github_error, and the page's link starts the same sign-in
// again: once GitHub is back it ends at the client with a code that
// redeems with the client's original verifier and state.
func TestCallbackGitHubFaults(t *testing.T) {
	ev := &events{}
	e := newEnvWith(t, envOptions{
		allow5xx: true, observer: ev.observe,
		// Nobody is in the org, so the teams are read too.
		allowOrgs: []string{"nobody-is-here"}, allowTeams: []string{"acme/platform"},
	})
	c := e.publicClient()
	for _, tc := range []struct {
		name       string
		fault      fakegithub.Fault
		pause      bool   // GitHub refuses connections instead
		status     int    // of the page
		retryAfter string // of the page, "" for none
	}{
		{name: "code exchange 502", fault: fakegithub.Fault{On: fakegithub.OnTokenEndpoint, Fail: fakegithub.ServerError}, status: 502},
		{name: "code exchange secondary rate limit", fault: fakegithub.Fault{On: fakegithub.OnTokenEndpoint, Fail: fakegithub.SecondaryRateLimit, RetryAfter: 30 * time.Second}, status: 503, retryAfter: "30"},
		{name: "user 503", fault: fakegithub.Fault{On: fakegithub.OnAPI, Path: "/user", Fail: fakegithub.ServerError, Status: 503}, status: 502},
		{name: "user primary rate limit for the hour", fault: fakegithub.Fault{On: fakegithub.OnAPI, Path: "/user", Fail: fakegithub.PrimaryRateLimit, RetryAfter: time.Hour}, status: 503, retryAfter: "300"},
		{name: "orgs 429", fault: fakegithub.Fault{On: fakegithub.OnAPI, Path: "/user/orgs", Fail: fakegithub.TooManyRequests, RetryAfter: 45 * time.Second}, status: 503, retryAfter: "45"},
		{name: "teams secondary rate limit", fault: fakegithub.Fault{On: fakegithub.OnAPI, Path: "/user/teams", Fail: fakegithub.SecondaryRateLimit, RetryAfter: 20 * time.Second}, status: 503, retryAfter: "20"},
		{name: "connection refused", pause: true, status: 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := e.sub(t)
			b := e.newBrowser("alice")
			p := newPKCE()
			cb := b.atGitHub(b.toGitHub(authzQuery(c, p)))
			ghCode, ourState := cb.Query().Get("code"), cb.Query().Get("state")
			e.remember(ghCode, ourState)
			ev.take()

			if tc.pause {
				if err := e.gh.Pause(); err != nil {
					t.Fatal(err)
				}
			} else {
				e.gh.SetFault(tc.fault)
			}
			r := b.get(cb.String())
			if tc.pause {
				if err := e.gh.Resume(); err != nil {
					t.Fatal(err)
				}
			} else {
				e.gh.SetFault(fakegithub.Fault{})
			}

			expectPage(t, r, tc.status)
			if got := r.Header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
			if !strings.Contains(r.Body, "GitHub is not answering right now; try signing in again in a minute.") {
				t.Errorf("page does not say what happened: %s", r.Body)
			}
			if strings.Contains(strings.ToLower(r.Body), "token") || strings.Contains(r.Body, ghCode) || strings.Contains(r.Body, ourState) {
				t.Errorf("page mentions a token, GitHub's code or our state: %s", r.Body)
			}
			wantEvents(t, "GitHub failing", ev.take(), "authorization_denied/github_error")

			m := retryLink.FindStringSubmatch(r.Body)
			if m == nil {
				t.Fatalf("no link to sign in again: %s", r.Body)
			}
			link, err := url.Parse(html.UnescapeString(m[1]))
			if err != nil || link.Path != "/authorize" || link.Host != "" {
				t.Fatalf("link %q is not this server's authorization endpoint", m[1])
			}
			done := b.login(link.Query()).Query()
			if done.Get("state") != "client-state-123" || done.Get("iss") != e.issuer {
				t.Errorf("the retry ended with state %q iss %q", done.Get("state"), done.Get("iss"))
			}
			e.mustTokens(e.exchange(c, done.Get("code"), p.Verifier))
		})
	}
}

// TestCallbackSlowGitHub: a GitHub slower than usual but within the
// deadline signs the user in as usual.
func TestCallbackSlowGitHub(t *testing.T) {
	e := newEnvWith(t, envOptions{allowTeams: []string{"acme/platform"}})
	c := e.publicClient()
	b := e.newBrowser("alice")
	p := newPKCE()
	cb := b.atGitHub(b.toGitHub(authzQuery(c, p)))
	e.gh.SetFault(fakegithub.Fault{Delay: 100 * time.Millisecond})
	defer e.gh.SetFault(fakegithub.Fault{})
	q := e.expectClientRedirect(b.get(cb.String()), clientRedirect, "", "client-state-123")
	e.mustTokens(e.exchange(c, q.Get("code"), p.Verifier))
}

// TestGitHubSignInUsesPKCE: every sign-in at GitHub carries its own S256
// challenge, and a GitHub code from one sign-in brought back with
// another's state (a leaked code injected into a victim's sign-in) is
// refused by GitHub: the verifier is the other sign-in's.
func TestGitHubSignInUsesPKCE(t *testing.T) {
	e := newEnv(t)
	c := e.publicClient()
	b := e.newBrowser("alice")
	first := b.toGitHub(authzQuery(c, newPKCE()))
	second := b.toGitHub(authzQuery(c, newPKCE()))
	for _, u := range []*url.URL{first, second} {
		if q := u.Query(); q.Get("code_challenge_method") != "S256" || len(q.Get("code_challenge")) != 43 {
			t.Fatalf("sign-in at GitHub without an S256 challenge: %v", q)
		}
	}
	if first.Query().Get("code_challenge") == second.Query().Get("code_challenge") {
		t.Error("two sign-ins share a challenge")
	}
	leaked := b.atGitHub(first).Query().Get("code")
	victim := b.atGitHub(second)
	q := victim.Query()
	q.Set("code", leaked)
	victim.RawQuery = q.Encode()
	e.expectClientRedirect(b.get(victim.String()), clientRedirect, "access_denied", "client-state-123")
}
