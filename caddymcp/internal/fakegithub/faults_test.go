package fakegithub_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-github/v75/github"
	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

// exchangeAnswer posts a fresh code to the token endpoint and returns the
// raw answer, so a test sees exactly what a faulted GitHub sends.
func exchangeAnswer(t *testing.T, base string) *http.Response {
	t.Helper()
	conf := oauthConfig(base)
	code := authorizeCode(t, conf, "st")
	resp, err := http.PostForm(base+"/login/oauth/access_token", map[string][]string{
		"client_id": {clientID}, "client_secret": {clientSecret}, "code": {code},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// apiAnswer GETs /user with tok and returns the raw answer.
func apiAnswer(t *testing.T, base, tok string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/user", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestFaultServerError: a ServerError answers its status (502 by
// default) with GitHub's HTML edge page on the endpoints it targets, and
// leaves the others working; clearing it heals GitHub.
func TestFaultServerError(t *testing.T) {
	s, base := newTestServer(t, nil)
	tok := login(t, base).AccessToken
	for _, tc := range []struct {
		name           string
		fault          fakegithub.Fault
		status         int
		api, tokenEndp bool // which endpoints fail
	}{
		{"default status everywhere", fakegithub.Fault{Fail: fakegithub.ServerError}, 502, true, true},
		{"503 on the API", fakegithub.Fault{On: fakegithub.OnAPI, Fail: fakegithub.ServerError, Status: 503}, 503, true, false},
		{"500 on the token endpoint", fakegithub.Fault{On: fakegithub.OnTokenEndpoint, Fail: fakegithub.ServerError, Status: 500}, 500, false, true},
		{"not a server error status", fakegithub.Fault{Fail: fakegithub.ServerError, Status: 404}, 502, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The code is made before the fault: the authorize page is
			// never faulted, and the check is of the exchange.
			conf := oauthConfig(base)
			code := authorizeCode(t, conf, "st")
			s.SetFault(tc.fault)
			defer s.SetFault(fakegithub.Fault{})

			want := http.StatusOK
			if tc.api {
				want = tc.status
			}
			resp := apiAnswer(t, base, tok)
			if resp.StatusCode != want {
				t.Errorf("API answered %d, want %d", resp.StatusCode, want)
			}
			if tc.api && !strings.Contains(body(t, resp), "No server is currently available") {
				t.Errorf("API error page is not GitHub's")
			}
			_, err := conf.Exchange(context.Background(), code)
			var re *oauth2.RetrieveError
			switch {
			case tc.tokenEndp && (!errors.As(err, &re) || re.Response.StatusCode != tc.status):
				t.Errorf("exchange: %v, want HTTP %d", err, tc.status)
			case !tc.tokenEndp && err != nil:
				t.Errorf("exchange failed outside the fault's target: %v", err)
			}
		})
	}
	if resp := apiAnswer(t, base, tok); resp.StatusCode != http.StatusOK {
		t.Errorf("after SetFault(Fault{}): %d", resp.StatusCode)
	}
}

// TestFaultPrimaryRateLimit: GitHub's primary limit on both endpoints:
// 403, X-RateLimit-Remaining 0 and a reset RetryAfter away, which
// go-github reads as a *RateLimitError. A revoked token is still a 401,
// as GitHub authenticates before it counts.
func TestFaultPrimaryRateLimit(t *testing.T) {
	s, base := newTestServer(t, nil)
	tok := login(t, base)
	s.SetFault(fakegithub.Fault{Fail: fakegithub.PrimaryRateLimit, RetryAfter: 90 * time.Second})
	defer s.SetFault(fakegithub.Fault{})

	_, _, err := ghClient(t, base, tok).Users.Get(context.Background(), "")
	var rle *github.RateLimitError
	if !errors.As(err, &rle) {
		t.Fatalf("API: %v (%T), want *github.RateLimitError", err, err)
	}
	if rle.Rate.Remaining != 0 || rle.Response.StatusCode != http.StatusForbidden || !strings.HasPrefix(rle.Message, "API rate limit exceeded") {
		t.Errorf("rate limit error %+v", rle)
	}
	if until := time.Until(rle.Rate.Reset.Time); until <= 0 || until > 91*time.Second {
		t.Errorf("reset %v from now, want within RetryAfter", until)
	}

	resp := exchangeAnswer(t, base)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-RateLimit-Remaining") != "0" ||
		resp.Header.Get("X-RateLimit-Reset") == "" || !strings.Contains(body(t, resp), "API rate limit exceeded") {
		t.Errorf("token endpoint: %d %v", resp.StatusCode, resp.Header)
	}

	s.RevokeToken(tok.AccessToken)
	if resp := apiAnswer(t, base, tok.AccessToken); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("revoked token under a rate limit: %d, want 401", resp.StatusCode)
	}
}

// TestFaultSecondaryRateLimit: 403 with Retry-After and GitHub's message
// and documentation URL, which go-github reads as an
// *AbuseRateLimitError carrying the Retry-After.
func TestFaultSecondaryRateLimit(t *testing.T) {
	s, base := newTestServer(t, nil)
	tok := login(t, base)
	s.SetFault(fakegithub.Fault{Fail: fakegithub.SecondaryRateLimit, RetryAfter: 30 * time.Second})
	defer s.SetFault(fakegithub.Fault{})

	_, _, err := ghClient(t, base, tok).Users.Get(context.Background(), "")
	var are *github.AbuseRateLimitError
	if !errors.As(err, &are) {
		t.Fatalf("API: %v (%T), want *github.AbuseRateLimitError", err, err)
	}
	if are.RetryAfter == nil || *are.RetryAfter != 30*time.Second || !strings.Contains(are.Message, "secondary rate limit") {
		t.Errorf("secondary rate limit error %+v", are)
	}
	resp := exchangeAnswer(t, base)
	if resp.StatusCode != http.StatusForbidden || resp.Header.Get("Retry-After") != "30" ||
		!strings.Contains(body(t, resp), "secondary rate limit") {
		t.Errorf("token endpoint: %d %v", resp.StatusCode, resp.Header)
	}
}

// TestFaultTooManyRequests: 429 with Retry-After (60 seconds unless set)
// on the API and the token endpoint.
func TestFaultTooManyRequests(t *testing.T) {
	s, base := newTestServer(t, nil)
	tok := login(t, base).AccessToken
	s.SetFault(fakegithub.Fault{Fail: fakegithub.TooManyRequests})
	defer s.SetFault(fakegithub.Fault{})
	for name, resp := range map[string]*http.Response{"API": apiAnswer(t, base, tok), "token endpoint": exchangeAnswer(t, base)} {
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "60" {
			t.Errorf("%s: %d Retry-After %q, want 429 and 60", name, resp.StatusCode, resp.Header.Get("Retry-After"))
		}
	}
	s.SetFault(fakegithub.Fault{On: fakegithub.OnAPI, Fail: fakegithub.TooManyRequests, RetryAfter: 1500 * time.Millisecond})
	if got := apiAnswer(t, base, tok).Header.Get("Retry-After"); got != "2" {
		t.Errorf("Retry-After %q for 1.5s, want whole seconds rounded up", got)
	}
}

// TestFaultDelay: a delayed answer still comes, right; a client that
// gives up first is not kept waiting, and the stand-in stays healthy.
func TestFaultDelay(t *testing.T) {
	s, base := newTestServer(t, nil)
	tok := login(t, base)
	s.SetFault(fakegithub.Fault{Delay: 20 * time.Millisecond})
	if u, _, err := ghClient(t, base, tok).Users.Get(context.Background(), ""); err != nil || u.GetLogin() != "alice" {
		t.Errorf("slow API: %v %v", u, err)
	}
	if _, err := oauthConfig(base).Exchange(context.Background(), authorizeCode(t, oauthConfig(base), "st")); err != nil {
		t.Errorf("slow exchange: %v", err)
	}

	// A GitHub that never answers: the client's deadline ends the call.
	s.SetFault(fakegithub.Fault{Delay: time.Hour, Fail: fakegithub.ServerError})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := ghClient(t, base, tok).Users.Get(ctx, ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hung API: %v, want the client's deadline", err)
	}
	s.SetFault(fakegithub.Fault{})
	if _, _, err := ghClient(t, base, tok).Users.Get(context.Background(), ""); err != nil {
		t.Errorf("after the delay was cleared: %v", err)
	}
}

// TestFaultTargets: OnAPI spares the token endpoint and OnTokenEndpoint
// the API; the authorize page is never faulted.
func TestFaultTargets(t *testing.T) {
	s, base := newTestServer(t, nil)
	tok := login(t, base).AccessToken
	defer s.SetFault(fakegithub.Fault{})

	s.SetFault(fakegithub.Fault{On: fakegithub.OnAPI, Fail: fakegithub.TooManyRequests})
	if resp := exchangeAnswer(t, base); resp.StatusCode != http.StatusOK || !strings.Contains(body(t, resp), "access_token=gho_") {
		t.Errorf("token endpoint under an API fault: %d", resp.StatusCode)
	}
	s.SetFault(fakegithub.Fault{On: fakegithub.OnTokenEndpoint, Fail: fakegithub.TooManyRequests})
	if resp := apiAnswer(t, base, tok); resp.StatusCode != http.StatusOK {
		t.Errorf("API under a token endpoint fault: %d", resp.StatusCode)
	}
	s.SetFault(fakegithub.Fault{Fail: fakegithub.ServerError})
	authorizeCode(t, oauthConfig(base), "st") // fails the test if faulted

	// Faulted requests are still counted: a test can tell GitHub was asked.
	before := s.Calls("/user")
	apiAnswer(t, base, tok)
	if s.Calls("/user") != before+1 {
		t.Errorf("a faulted API call was not counted")
	}
}

// TestSetRateLimitedIsAFault: SetRateLimited is the API's primary limit,
// and switching it off clears a fault set with SetFault.
func TestSetRateLimitedIsAFault(t *testing.T) {
	s, base := newTestServer(t, nil)
	tok := login(t, base).AccessToken
	s.SetRateLimited(true)
	if resp := apiAnswer(t, base, tok); resp.StatusCode != http.StatusForbidden || resp.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Errorf("SetRateLimited(true): %d", resp.StatusCode)
	}
	if resp := exchangeAnswer(t, base); resp.StatusCode != http.StatusOK {
		t.Errorf("SetRateLimited limited the token endpoint: %d", resp.StatusCode)
	}
	s.SetFault(fakegithub.Fault{Fail: fakegithub.ServerError})
	s.SetRateLimited(false)
	if resp := apiAnswer(t, base, tok); resp.StatusCode != http.StatusOK {
		t.Errorf("after SetRateLimited(false): %d", resp.StatusCode)
	}
}

// TestPauseResume: a paused stand-in refuses connections at its address,
// and after Resume answers there again with its state intact.
func TestPauseResume(t *testing.T) {
	s := fakegithub.New(fakegithub.Options{Apps: fixtureApps(), Users: fixtureUsers(), DefaultLogin: "alice"})
	if err := s.Resume(); err == nil {
		t.Error("Resume before Start succeeded")
	}
	base, err := s.Start("")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	tok := login(t, base)
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := s.Pause(); err != nil {
		t.Errorf("second Pause: %v", err)
	}
	_, _, err = ghClient(t, base, tok).Users.Get(context.Background(), "")
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("paused: %v, want connection refused", err)
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if err := s.Resume(); err != nil {
		t.Errorf("second Resume: %v", err)
	}
	u, _, err := ghClient(t, base, tok).Users.Get(context.Background(), "")
	if err != nil || u.GetLogin() != "alice" {
		t.Errorf("resumed at %s: %v %v", base, u, err)
	}
	// A delayed request is cut off by Pause rather than left hanging.
	s.SetFault(fakegithub.Fault{Delay: time.Hour})
	gh := ghClient(t, base, tok)
	done := make(chan error, 1)
	go func() {
		_, _, err := gh.Users.Get(context.Background(), "")
		done <- err
	}()
	for s.Calls("/user") < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	if err := s.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Error("a request in flight when paused succeeded")
	}
}

// TestFaultPath: a fault with a Path fails only that API path, in either
// shape, and spares the rest of the API and the token endpoint.
func TestFaultPath(t *testing.T) {
	s, base := newTestServer(t, nil)
	tok := login(t, base)
	s.SetFault(fakegithub.Fault{Path: "/user/teams", Fail: fakegithub.ServerError, Status: 503})
	defer s.SetFault(fakegithub.Fault{})
	gh := ghClient(t, base, tok) // GHES-shaped: /api/v3/user/teams
	if _, _, err := gh.Users.Get(context.Background(), ""); err != nil {
		t.Errorf("/user under a /user/teams fault: %v", err)
	}
	_, _, err := gh.Teams.ListUserTeams(context.Background(), nil)
	var er *github.ErrorResponse
	if !errors.As(err, &er) || er.Response.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("/api/v3/user/teams: %v, want 503", err)
	}
	if resp := exchangeAnswer(t, base); resp.StatusCode != http.StatusOK {
		t.Errorf("token endpoint under an API path fault: %d", resp.StatusCode)
	}
}
