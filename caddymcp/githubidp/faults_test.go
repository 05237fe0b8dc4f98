package githubidp_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/githubidp"
	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// shortTimeout is the provider's deadline in these tests, and hang the
// stand-in's delay when it is meant not to answer in time. hang is
// shorter than the test client's own 10-second timeout: if the deadline
// did not hold, the call would succeed after hang and the test would
// fail on that, rather than pass on the client's timeout or hang.
const (
	shortTimeout = 200 * time.Millisecond
	hang         = 5 * time.Second
)

// fault is one way GitHub fails, and the retry hint it must give.
type fault struct {
	name  string
	fault fakegithub.Fault
	// pause takes the stand-in off the network instead.
	pause bool
	// hint is the retry hint the error must carry (0: none); a primary
	// limit's reset is in whole seconds, so up to a second less is fine.
	hint time.Duration
}

var faults = []fault{
	{name: "slow past the deadline", fault: fakegithub.Fault{Delay: hang}},
	{name: "502", fault: fakegithub.Fault{Fail: fakegithub.ServerError}},
	{name: "503", fault: fakegithub.Fault{Fail: fakegithub.ServerError, Status: 503}},
	{name: "primary rate limit", fault: fakegithub.Fault{Fail: fakegithub.PrimaryRateLimit, RetryAfter: 90 * time.Second}, hint: 90 * time.Second},
	{name: "primary rate limit for the hour", fault: fakegithub.Fault{Fail: fakegithub.PrimaryRateLimit, RetryAfter: time.Hour}, hint: 5 * time.Minute},
	{name: "429", fault: fakegithub.Fault{Fail: fakegithub.TooManyRequests, RetryAfter: 45 * time.Second}, hint: 45 * time.Second},
	{name: "secondary rate limit", fault: fakegithub.Fault{Fail: fakegithub.SecondaryRateLimit, RetryAfter: 30 * time.Second}, hint: 30 * time.Second},
	{name: "connection refused", pause: true},
}

// inject starts f on the endpoints on (and, for the API, only at path if
// set) and returns what ends it.
func (f fault) inject(t *testing.T, gh *fakegithub.Server, on fakegithub.FaultTarget, path string) func() {
	t.Helper()
	if f.pause {
		if err := gh.Pause(); err != nil {
			t.Fatal(err)
		}
		return func() {
			if err := gh.Resume(); err != nil {
				t.Fatal(err)
			}
		}
	}
	ff := f.fault
	ff.On, ff.Path = on, path
	gh.SetFault(ff)
	return func() { gh.SetFault(fakegithub.Fault{}) }
}

// wantUnavailable checks that err says "GitHub cannot be asked", with the
// right hint, and nothing that would log the user out or refuse them.
func wantUnavailable(t *testing.T, err error, f fault, secrets ...string) {
	t.Helper()
	noSecrets(t, err, secrets...)
	if !errors.Is(err, oauth.ErrUpstreamUnavailable) || errors.Is(err, oauth.ErrUpstreamRevoked) || errors.Is(err, oauth.ErrNotAllowed) {
		t.Fatalf("error %v, want ErrUpstreamUnavailable alone", err)
	}
	hint, ok := oauth.UpstreamRetryAfter(err)
	switch {
	case f.hint == 0 && ok:
		t.Errorf("retry hint %v where GitHub gave none", hint)
	case f.hint != 0 && (!ok || hint > f.hint || hint < f.hint-time.Second):
		t.Errorf("retry hint %v (%v), want %v", hint, ok, f.hint)
	}
}

// TestFaultsAtSignIn: every GitHub fault during the code exchange or the
// reading of the user, their organizations or teams is "unavailable",
// never revoked or not allowed; once GitHub is back the same user is
// admitted (and a fresh code exchanged).
func TestFaultsAtSignIn(t *testing.T) {
	gh, base := fake(t)
	ctx := context.Background()
	p, _ := provider(t, base, func(c *githubidp.Config) {
		c.Timeout = shortTimeout
		c.Allow.Teams = []string{"acme/platform"} // read after /user/orgs finds nothing
		c.Allow.Orgs = []string{"nobody-is-in-this-org"}
	})
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			t.Run("code exchange", func(t *testing.T) {
				code := githubCode(t, p.AuthCodeURL("the-state", callbackURL, testVerifier), "alice")
				end := f.inject(t, gh, fakegithub.OnTokenEndpoint, "")
				_, err := p.Exchange(ctx, code, callbackURL, testVerifier)
				end()
				wantUnavailable(t, err, f, code)
				code = githubCode(t, p.AuthCodeURL("the-state", callbackURL, testVerifier), "alice")
				if _, err := p.Exchange(ctx, code, callbackURL, testVerifier); err != nil {
					t.Errorf("after GitHub came back: %v", err)
				}
			})
			paths := []string{"/user", "/user/orgs", "/user/teams"}
			if f.pause {
				paths = paths[:1] // a refused connection is not per path
			}
			for _, path := range paths {
				t.Run(path, func(t *testing.T) {
					tok := token(t, gh, "alice")
					end := f.inject(t, gh, fakegithub.OnAPI, path)
					_, _, err := p.Admit(ctx, tok)
					end()
					wantUnavailable(t, err, f, tok.AccessToken)
					if who, _, err := p.Admit(ctx, tok); err != nil || who.ID != alice.ID {
						t.Errorf("after GitHub came back: %+v %v", who, err)
					}
				})
			}
		})
	}
}

// TestFaultsAtRecheck: the re-check of a refresh under every fault is
// "unavailable" too, and passes once GitHub is back.
func TestFaultsAtRecheck(t *testing.T) {
	gh, base := fake(t)
	ctx := context.Background()
	p, _ := provider(t, base, func(c *githubidp.Config) {
		c.Timeout = shortTimeout
		c.Allow.Orgs = []string{"acme"}
	})
	want := store.Identity{ID: alice.ID, Login: alice.Login}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			tok := token(t, gh, "alice")
			end := f.inject(t, gh, fakegithub.OnAll, "")
			_, _, err := p.Recheck(ctx, tok, want)
			end()
			wantUnavailable(t, err, f, tok.AccessToken)
			if _, _, err := p.Recheck(ctx, tok, want); err != nil {
				t.Errorf("after GitHub came back: %v", err)
			}
		})
	}
}

// TestSlowGitHubWithinTheDeadline: a GitHub slower than usual but within
// the deadline signs the user in as usual.
func TestSlowGitHubWithinTheDeadline(t *testing.T) {
	gh, base := fake(t)
	p, _ := provider(t, base, func(c *githubidp.Config) { c.Allow.Teams = []string{"acme/platform"} })
	gh.SetFault(fakegithub.Fault{Delay: 50 * time.Millisecond})
	code := githubCode(t, p.AuthCodeURL("the-state", callbackURL, testVerifier), "alice")
	tok, err := p.Exchange(context.Background(), code, callbackURL, testVerifier)
	if err != nil {
		t.Fatal(err)
	}
	if who, _, err := p.Admit(context.Background(), tok); err != nil || who.ID != alice.ID {
		t.Errorf("Admit: %+v %v", who, err)
	}
}

// TestRevokedUnderARateLimit: a token GitHub refuses is revoked even
// while GitHub rate limits: GitHub authenticates before it counts, and a
// 401 is the one answer that means the user's login is gone.
func TestRevokedUnderARateLimit(t *testing.T) {
	gh, base := fake(t)
	p, _ := provider(t, base, nil)
	tok := token(t, gh, "alice")
	gh.RevokeToken(tok.AccessToken)
	gh.SetFault(fakegithub.Fault{Fail: fakegithub.SecondaryRateLimit})
	_, _, err := p.Recheck(context.Background(), tok, store.Identity{ID: alice.ID})
	if !errors.Is(err, oauth.ErrUpstreamRevoked) || errors.Is(err, oauth.ErrUpstreamUnavailable) {
		t.Errorf("error %v, want ErrUpstreamRevoked", err)
	}
}

// canned answers every request with one response.
type canned struct {
	status int
	header http.Header
	body   string
}

func (c canned) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: c.status, Status: http.StatusText(c.status), Header: c.header,
		Body: io.NopCloser(strings.NewReader(c.body)), Request: r,
	}, nil
}

// TestFaultShapes: answers the stand-in does not make, as GitHub or a
// proxy in front of it might: a Retry-After date, a secondary limit that
// names no time, and 403s and 404s that are refusals, not faults.
func TestFaultShapes(t *testing.T) {
	tok := &oauth2.Token{AccessToken: "gho_cannedcannedcanned0123456789", TokenType: "bearer"}
	json := http.Header{"Content-Type": {"application/json"}}
	for _, tc := range []struct {
		name string
		resp canned
		hint time.Duration // -1: not unavailable
	}{
		{"Retry-After as a date", canned{503, http.Header{"Retry-After": {time.Now().Add(2 * time.Minute).UTC().Format(http.TimeFormat)}}, "down"}, 2 * time.Minute},
		{"secondary limit without Retry-After", canned{403, json, `{"message":"You have exceeded a secondary rate limit."}`}, time.Minute},
		{"429 without Retry-After", canned{429, json, `{"message":"Too Many Requests"}`}, time.Minute},
		{"504 from a proxy", canned{504, http.Header{"Content-Type": {"text/html"}}, "<html>gateway timeout</html>"}, 0},
		{"403 that is no rate limit", canned{403, json, `{"message":"Resource not accessible by integration"}`}, -1},
		{"404", canned{404, json, `{"message":"Not Found"}`}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := githubidp.New(githubidp.Config{
				ClientID: ghClientID, ClientSecret: ghClientSecret, EnterpriseURL: "https://ghe.example.com",
				HTTPClient: &http.Client{Transport: tc.resp},
			})
			if err != nil {
				t.Fatal(err)
			}
			for what, err := range map[string]error{
				"exchange": func() error {
					_, err := p.Exchange(context.Background(), "code-canned-0123", callbackURL, testVerifier)
					return err
				}(),
				"admit": func() error { _, _, err := p.Admit(context.Background(), tok); return err }(),
			} {
				noSecrets(t, err, tok.AccessToken, "code-canned-0123")
				if errors.Is(err, oauth.ErrUpstreamRevoked) || errors.Is(err, oauth.ErrNotAllowed) {
					t.Errorf("%s: %v", what, err)
				}
				if tc.hint < 0 {
					if errors.Is(err, oauth.ErrUpstreamUnavailable) {
						t.Errorf("%s: %v is a refusal, not GitHub being unavailable", what, err)
					}
					continue
				}
				if !errors.Is(err, oauth.ErrUpstreamUnavailable) {
					t.Errorf("%s: %v, want ErrUpstreamUnavailable", what, err)
				}
				hint, _ := oauth.UpstreamRetryAfter(err)
				if hint > tc.hint || hint < tc.hint-2*time.Second {
					t.Errorf("%s: retry hint %v, want %v", what, hint, tc.hint)
				}
			}
		})
	}
}
