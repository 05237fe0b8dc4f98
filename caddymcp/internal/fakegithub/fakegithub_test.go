package fakegithub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-github/v75/github"
	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

const (
	clientID     = "Iv1.testclient"
	clientSecret = "test-secret-1"
	// loopbackCallback is registered without a port: GitHub accepts any port
	// for loopback redirect URIs.
	loopbackCallback = "http://127.0.0.1/callback"
	redirectURL      = "http://127.0.0.1:9999/callback/github"

	client2ID     = "client-two"
	client2Secret = "secret-two"
	client2CB     = "https://app.example.com/oauth/callback"
)

var baseTime = time.Date(2024, time.March, 1, 12, 0, 0, 0, time.UTC)

// fixtureUsers returns alice (75 repos, two orgs, two teams), bob and carol.
func fixtureUsers() []fakegithub.User {
	var repos []fakegithub.Repo
	for i := range 75 {
		r := fakegithub.Repo{
			Name:      fmt.Sprintf("repo-%02d", i),
			Private:   i%4 == 0,
			Stars:     i,
			Language:  "Go",
			UpdatedAt: baseTime.Add(time.Duration((i*37)%75) * time.Hour),
		}
		if i%15 == 0 {
			r.FullName = fmt.Sprintf("acme/svc-%02d", i)
			r.Name = ""
		}
		repos = append(repos, r)
	}
	return []fakegithub.User{
		{
			ID: 1, Login: "alice", Name: "Alice Liddell", Email: "alice@example.test",
			Orgs:  []string{"acme", "widgets"},
			Teams: []fakegithub.Team{{Org: "acme", Slug: "admins"}, {Org: "acme", Slug: "devs"}},
			Repos: repos,
		},
		{ID: 2, Login: "bob", Name: "Bob", Orgs: []string{"widgets"}},
		{Login: "carol"},
	}
}

func fixtureApps() []fakegithub.App {
	return []fakegithub.App{
		{ClientID: clientID, ClientSecret: clientSecret, CallbackURL: loopbackCallback},
		{ClientID: client2ID, ClientSecret: client2Secret, CallbackURL: client2CB},
	}
}

// newTestServer mounts a fake with the fixtures on an httptest server.
func newTestServer(t *testing.T, mod func(*fakegithub.Options)) (*fakegithub.Server, string) {
	t.Helper()
	opts := fakegithub.Options{Apps: fixtureApps(), Users: fixtureUsers(), DefaultLogin: "alice"}
	if mod != nil {
		mod(&opts)
	}
	s := fakegithub.New(opts)
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return s, ts.URL
}

func oauthConfig(base string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:     clientID,
		ClientSecret: clientSecret,
		Endpoint: oauth2.Endpoint{
			AuthURL:  base + "/login/oauth/authorize",
			TokenURL: base + "/login/oauth/access_token",
		},
		RedirectURL: redirectURL,
		Scopes:      []string{"read:user", "read:org"},
	}
}

// noRedirect is an HTTP client that returns redirects instead of following
// them.
var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

// getRedirect GETs authURL (with optional cookies) and returns the parsed
// Location of the 302 it must answer.
func getRedirect(t *testing.T, authURL string, cookies ...*http.Cookie) *url.URL {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, authURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("authorize: status %d, want 302; body %.300s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatalf("bad Location: %v", err)
	}
	return loc
}

// authorizeCode runs the authorize step and returns the code.
func authorizeCode(t *testing.T, conf *oauth2.Config, state string, opts ...oauth2.AuthCodeOption) string {
	t.Helper()
	loc := getRedirect(t, conf.AuthCodeURL(state, opts...))
	if e := loc.Query().Get("error"); e != "" {
		t.Fatalf("authorize returned error %q (%s)", e, loc.Query().Get("error_description"))
	}
	if got := loc.Query().Get("state"); got != state {
		t.Fatalf("state = %q, want %q", got, state)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	return code
}

// login does the whole OAuth flow and returns the token.
func login(t *testing.T, base string) *oauth2.Token {
	t.Helper()
	conf := oauthConfig(base)
	tok, err := conf.Exchange(context.Background(), authorizeCode(t, conf, "st"))
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	return tok
}

func ghClient(t *testing.T, base string, tok *oauth2.Token) *github.Client {
	t.Helper()
	c, err := github.NewClient(oauth2.NewClient(context.Background(), oauth2.StaticTokenSource(tok))).
		WithEnterpriseURLs(base, base)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func wantRetrieveError(t *testing.T, err error, code string) {
	t.Helper()
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		t.Fatalf("error = %v (%T), want *oauth2.RetrieveError %s", err, err, code)
	}
	if re.ErrorCode != code {
		t.Fatalf("ErrorCode = %q, want %q", re.ErrorCode, code)
	}
}

// recorder is a RoundTripper that records request paths.
type recorder struct {
	mu    sync.Mutex
	paths []string
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.paths = append(r.paths, req.URL.Path)
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := r.paths
	r.paths = nil
	return p
}

func TestFullFlowBothAPIShapes(t *testing.T) {
	s, base := newTestServer(t, nil)
	ctx := context.Background()
	conf := oauthConfig(base)

	loc := getRedirect(t, conf.AuthCodeURL("xyz-state"))
	if loc.Scheme != "http" || loc.Host != "127.0.0.1:9999" || loc.Path != "/callback/github" {
		t.Fatalf("redirected to %s, want %s", loc, redirectURL)
	}
	if loc.Query().Get("state") != "xyz-state" {
		t.Fatalf("state not echoed: %s", loc)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatal("no code")
	}
	tok, err := conf.Exchange(ctx, code)
	if err != nil {
		t.Fatalf("Exchange: %v", err)
	}
	if !strings.HasPrefix(tok.AccessToken, "gho_") || len(tok.AccessToken) != 40 {
		t.Errorf("access token %q does not look like gho_ + 36 chars", tok.AccessToken)
	}
	if tok.TokenType != "bearer" {
		t.Errorf("token_type = %q, want bearer", tok.TokenType)
	}
	if got := tok.Extra("scope"); got != "read:user,read:org" {
		t.Errorf("scope = %v, want read:user,read:org", got)
	}
	if n := s.TokenExchanges(); n != 1 {
		t.Errorf("TokenExchanges = %d, want 1", n)
	}

	rec := &recorder{}
	hc := conf.Client(context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: rec}), tok)

	ghes, err := github.NewClient(hc).WithEnterpriseURLs(base, base)
	if err != nil {
		t.Fatal(err)
	}
	if got := ghes.BaseURL.String(); got != base+"/api/v3/" {
		t.Fatalf("go-github GHES BaseURL = %q, want %q", got, base+"/api/v3/")
	}
	dotcom := github.NewClient(hc)
	dotcom.BaseURL, _ = url.Parse(base + "/")

	for _, tc := range []struct {
		name   string
		c      *github.Client
		prefix string
	}{
		{"ghes", ghes, "/api/v3/"},
		{"dotcom", dotcom, "/"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec.take()
			u, resp, err := tc.c.Users.Get(ctx, "")
			if err != nil {
				t.Fatalf("Users.Get: %v", err)
			}
			if u.GetLogin() != "alice" || u.GetID() != 1 || u.GetName() != "Alice Liddell" ||
				u.GetEmail() != "alice@example.test" || u.GetType() != "User" {
				t.Errorf("user = %+v", u)
			}
			if u.GetHTMLURL() != base+"/alice" || !strings.HasPrefix(u.GetAvatarURL(), "https://") {
				t.Errorf("html_url %q avatar_url %q", u.GetHTMLURL(), u.GetAvatarURL())
			}
			if got := resp.Header.Get("X-OAuth-Scopes"); got != "read:user, read:org" {
				t.Errorf("X-OAuth-Scopes = %q", got)
			}
			if resp.Header.Get("X-GitHub-Request-Id") == "" {
				t.Error("no X-GitHub-Request-Id")
			}
			if resp.Rate.Limit != 5000 || resp.Rate.Remaining >= 5000 || resp.Rate.Remaining <= 0 ||
				!resp.Rate.Reset.After(time.Now()) {
				t.Errorf("rate = %+v", resp.Rate)
			}

			orgs, _, err := tc.c.Organizations.List(ctx, "", nil)
			if err != nil {
				t.Fatalf("Organizations.List: %v", err)
			}
			var orgLogins []string
			for _, o := range orgs {
				orgLogins = append(orgLogins, o.GetLogin())
				if o.GetID() == 0 {
					t.Errorf("org %q has no id", o.GetLogin())
				}
			}
			if !slices.Equal(orgLogins, []string{"acme", "widgets"}) {
				t.Errorf("orgs = %v", orgLogins)
			}

			teams, _, err := tc.c.Teams.ListUserTeams(ctx, nil)
			if err != nil {
				t.Fatalf("Teams.ListUserTeams: %v", err)
			}
			if len(teams) != 2 || teams[0].GetSlug() != "admins" || teams[1].GetSlug() != "devs" ||
				teams[0].GetOrganization().GetLogin() != "acme" || teams[0].GetID() == 0 ||
				teams[0].GetID() == teams[1].GetID() || teams[0].GetName() != "admins" {
				t.Errorf("teams = %v", teams)
			}

			opt := &github.RepositoryListByAuthenticatedUserOptions{
				Sort:        "full_name",
				ListOptions: github.ListOptions{PerPage: 30},
			}
			var all []*github.Repository
			var resps []*github.Response
			for {
				repos, resp, err := tc.c.Repositories.ListByAuthenticatedUser(ctx, opt)
				if err != nil {
					t.Fatalf("ListByAuthenticatedUser page %d: %v", opt.Page, err)
				}
				all = append(all, repos...)
				resps = append(resps, resp)
				if resp.NextPage == 0 || len(resps) > 10 {
					break
				}
				opt.Page = resp.NextPage
			}
			if len(resps) != 3 {
				t.Fatalf("got %d pages, want 3", len(resps))
			}
			if r := resps[0]; r.NextPage != 2 || r.LastPage != 3 || r.PrevPage != 0 {
				t.Errorf("page 1 links: next %d last %d prev %d", r.NextPage, r.LastPage, r.PrevPage)
			}
			if r := resps[1]; r.NextPage != 3 || r.LastPage != 3 || r.PrevPage != 1 || r.FirstPage != 1 {
				t.Errorf("page 2 links: next %d last %d prev %d first %d", r.NextPage, r.LastPage, r.PrevPage, r.FirstPage)
			}
			if r := resps[2]; r.NextPage != 0 || r.PrevPage != 2 || r.FirstPage != 1 {
				t.Errorf("page 3 links: next %d prev %d first %d", r.NextPage, r.PrevPage, r.FirstPage)
			}
			wantLink := "<" + base + tc.prefix + "user/repos?"
			if l := resps[0].Header.Get("Link"); !strings.HasPrefix(l, wantLink) {
				t.Errorf("Link = %q, want prefix %q", l, wantLink)
			}
			if len(all) != 75 {
				t.Fatalf("listed %d repos, want 75", len(all))
			}
			ids := map[int64]bool{}
			var names []string
			for _, r := range all {
				ids[r.GetID()] = true
				names = append(names, r.GetFullName())
			}
			if len(ids) != 75 {
				t.Errorf("%d distinct ids, want 75", len(ids))
			}
			if !slices.IsSorted(names) {
				t.Errorf("repos not sorted by full_name: %v", names[:5])
			}
			if names[0] != "acme/svc-00" || names[74] != "alice/repo-74" {
				t.Errorf("first/last = %q/%q", names[0], names[74])
			}
			var acme *github.Repository
			for _, r := range all {
				if r.GetFullName() == "acme/svc-15" {
					acme = r
				}
			}
			if acme == nil || acme.GetOwner().GetLogin() != "acme" || acme.GetOwner().GetType() != "Organization" ||
				acme.GetName() != "svc-15" || acme.GetHTMLURL() != base+"/acme/svc-15" {
				t.Errorf("acme repo = %+v", acme)
			}

			byUpdated, _, err := tc.c.Repositories.ListByAuthenticatedUser(ctx, &github.RepositoryListByAuthenticatedUserOptions{
				Sort: "updated", ListOptions: github.ListOptions{PerPage: 100},
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(byUpdated) != 75 {
				t.Fatalf("per_page=100 gave %d repos", len(byUpdated))
			}
			for i := 1; i < len(byUpdated); i++ {
				if byUpdated[i].GetUpdatedAt().After(byUpdated[i-1].GetUpdatedAt().Time) {
					t.Fatalf("sort=updated not descending at %d", i)
				}
			}

			for _, p := range rec.take() {
				isGHES := strings.HasPrefix(p, "/api/v3/")
				if isGHES != (tc.prefix == "/api/v3/") {
					t.Errorf("%s client requested %q", tc.name, p)
				}
			}
		})
	}

	if got := s.Calls("/user"); got != 2 {
		t.Errorf("Calls(/user) = %d, want 2", got)
	}
	if got := s.Calls("/api/v3/user/repos"); got != 8 {
		t.Errorf("Calls(/api/v3/user/repos) = %d, want 8", got)
	}
	if got := s.Calls("/user/teams"); got != 2 {
		t.Errorf("Calls(/user/teams) = %d, want 2", got)
	}
}

func TestCodeReuseFails(t *testing.T) {
	s, base := newTestServer(t, nil)
	conf := oauthConfig(base)
	code := authorizeCode(t, conf, "s")
	if _, err := conf.Exchange(context.Background(), code); err != nil {
		t.Fatalf("first Exchange: %v", err)
	}
	_, err := conf.Exchange(context.Background(), code)
	wantRetrieveError(t, err, "bad_verification_code")
	_, err = conf.Exchange(context.Background(), "not-a-code")
	wantRetrieveError(t, err, "bad_verification_code")
	if s.TokenExchanges() < 3 {
		t.Errorf("TokenExchanges = %d, want >= 3", s.TokenExchanges())
	}
}

func TestWrongClientSecretFails(t *testing.T) {
	_, base := newTestServer(t, nil)
	conf := oauthConfig(base)
	code := authorizeCode(t, conf, "s")

	bad := *conf
	bad.ClientSecret = "wrong"
	_, err := bad.Exchange(context.Background(), code)
	wantRetrieveError(t, err, "incorrect_client_credentials")

	unknown := *conf
	unknown.ClientID = "nobody"
	_, err = unknown.Exchange(context.Background(), code)
	wantRetrieveError(t, err, "incorrect_client_credentials")

	// A failed exchange does not use the code up.
	if _, err := conf.Exchange(context.Background(), code); err != nil {
		t.Fatalf("Exchange with the right secret: %v", err)
	}
}

func TestCodeBoundToClientAndRedirect(t *testing.T) {
	_, base := newTestServer(t, nil)
	conf := oauthConfig(base)
	code := authorizeCode(t, conf, "s")

	other := *conf
	other.ClientID, other.ClientSecret = client2ID, client2Secret
	other.RedirectURL = ""
	_, err := other.Exchange(context.Background(), code)
	wantRetrieveError(t, err, "bad_verification_code")

	diff := *conf
	diff.RedirectURL = "http://127.0.0.1:9999/callback/elsewhere"
	_, err = diff.Exchange(context.Background(), code)
	wantRetrieveError(t, err, "redirect_uri_mismatch")

	if _, err := conf.Exchange(context.Background(), code); err != nil {
		t.Fatalf("Exchange: %v", err)
	}
}

func TestCodeExpires(t *testing.T) {
	var mu sync.Mutex
	now := baseTime
	_, base := newTestServer(t, func(o *fakegithub.Options) {
		o.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	conf := oauthConfig(base)
	code := authorizeCode(t, conf, "s")
	mu.Lock()
	now = now.Add(10*time.Minute + time.Second)
	mu.Unlock()
	_, err := conf.Exchange(context.Background(), code)
	wantRetrieveError(t, err, "bad_verification_code")

	code = authorizeCode(t, conf, "s")
	mu.Lock()
	now = now.Add(9 * time.Minute)
	mu.Unlock()
	if _, err := conf.Exchange(context.Background(), code); err != nil {
		t.Fatalf("Exchange within 10 minutes: %v", err)
	}
}

func TestTokenEndpointFormats(t *testing.T) {
	s, base := newTestServer(t, nil)
	conf := oauthConfig(base)
	tokenURL := base + "/login/oauth/access_token"

	post := func(form url.Values, accept string, basic bool) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		if basic {
			req.SetBasicAuth(clientID, clientSecret)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	// JSON success, credentials in the body.
	resp, body := post(url.Values{
		"client_id": {clientID}, "client_secret": {clientSecret},
		"code": {authorizeCode(t, conf, "a")}, "redirect_uri": {redirectURL},
	}, "application/json", false)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Fatalf("Content-Type = %q", ct)
	}
	var j map[string]string
	if err := json.Unmarshal(body, &j); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	if !strings.HasPrefix(j["access_token"], "gho_") || j["token_type"] != "bearer" || j["scope"] != "read:user,read:org" {
		t.Errorf("json = %v", j)
	}

	// Form-encoded success, credentials via Basic auth.
	resp, body = post(url.Values{"code": {authorizeCode(t, conf, "b")}}, "", true)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		t.Fatalf("Content-Type = %q", ct)
	}
	v, err := url.ParseQuery(string(body))
	if err != nil || !strings.HasPrefix(v.Get("access_token"), "gho_") || v.Get("token_type") != "bearer" {
		t.Errorf("form body = %q (%v)", body, err)
	}

	// Errors are HTTP 200 with an error field.
	resp, body = post(url.Values{"code": {"nope"}}, "application/json", true)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("error status = %d, want 200", resp.StatusCode)
	}
	j = nil
	json.Unmarshal(body, &j)
	if j["error"] != "bad_verification_code" || j["error_description"] == "" {
		t.Errorf("error json = %s", body)
	}
	_, body = post(url.Values{"code": {"nope"}, "client_id": {clientID}, "client_secret": {"x"}}, "", false)
	if v, _ := url.ParseQuery(string(body)); v.Get("error") != "incorrect_client_credentials" {
		t.Errorf("form error body = %s", body)
	}

	// Both x/oauth2 client-authentication styles work.
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		c := *conf
		c.Endpoint.AuthStyle = style
		before := s.TokenExchanges()
		if _, err := c.Exchange(context.Background(), authorizeCode(t, &c, "x")); err != nil {
			t.Errorf("AuthStyle %d: %v", style, err)
		}
		if d := s.TokenExchanges() - before; d != 1 {
			t.Errorf("AuthStyle %d took %d token requests", style, d)
		}
	}

	// GET is not allowed.
	r, err := http.Get(tokenURL)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET token endpoint = %d", r.StatusCode)
	}
}

func TestPKCE(t *testing.T) {
	_, base := newTestServer(t, nil)
	conf := oauthConfig(base)
	verifier := oauth2.GenerateVerifier()
	code := authorizeCode(t, conf, "p", oauth2.S256ChallengeOption(verifier))
	_, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
	wantRetrieveError(t, err, "bad_verification_code")
	_, err = conf.Exchange(context.Background(), code)
	wantRetrieveError(t, err, "bad_verification_code")
	if _, err := conf.Exchange(context.Background(), code, oauth2.VerifierOption(verifier)); err != nil {
		t.Fatalf("Exchange with verifier: %v", err)
	}

	loc := getRedirect(t, conf.AuthCodeURL("p",
		oauth2.SetAuthURLParam("code_challenge", verifier),
		oauth2.SetAuthURLParam("code_challenge_method", "plain")))
	if loc.Query().Get("error") != "invalid_request" || loc.Query().Get("code") != "" {
		t.Errorf("plain PKCE: %s", loc)
	}
}

func TestRevokedTokenGives401(t *testing.T) {
	s, base := newTestServer(t, nil)
	ctx := context.Background()
	tok := login(t, base)
	c := ghClient(t, base, tok)
	if _, _, err := c.Users.Get(ctx, ""); err != nil {
		t.Fatalf("before revoke: %v", err)
	}
	s.RevokeToken(tok.AccessToken)
	_, resp, err := c.Users.Get(ctx, "")
	var er *github.ErrorResponse
	if !errors.As(err, &er) || resp == nil || resp.StatusCode != http.StatusUnauthorized || er.Message != "Bad credentials" {
		t.Fatalf("after revoke: err %v resp %v", err, resp)
	}

	// RevokeUserTokens kills every token of that user only.
	a1, a2 := login(t, base), login(t, base)
	bobTok, err := s.IssueToken("bob", "read:org")
	if err != nil {
		t.Fatal(err)
	}
	s.RevokeUserTokens("ALICE")
	for _, tk := range []*oauth2.Token{a1, a2} {
		if _, resp, err := ghClient(t, base, tk).Users.Get(ctx, ""); err == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("alice token still works after RevokeUserTokens: %v", err)
		}
	}
	u, resp, err := ghClient(t, base, &oauth2.Token{AccessToken: bobTok}).Users.Get(ctx, "")
	if err != nil || u.GetLogin() != "bob" {
		t.Fatalf("bob: %v %v", u, err)
	}
	if got := resp.Header.Get("X-OAuth-Scopes"); got != "read:org" {
		t.Errorf("bob X-OAuth-Scopes = %q", got)
	}
}

func TestRateLimited(t *testing.T) {
	s, base := newTestServer(t, nil)
	ctx := context.Background()
	tok := login(t, base)
	s.SetRateLimited(true)
	_, _, err := ghClient(t, base, tok).Users.Get(ctx, "")
	var rle *github.RateLimitError
	if !errors.As(err, &rle) {
		t.Fatalf("err = %v (%T), want *github.RateLimitError", err, err)
	}
	if rle.Rate.Remaining != 0 || rle.Rate.Limit != 5000 || rle.Response.StatusCode != http.StatusForbidden ||
		!strings.HasPrefix(rle.Message, "API rate limit exceeded for user ID 1.") {
		t.Errorf("rate limit error = %+v", rle)
	}

	// Anonymous calls are limited too, with GitHub's anonymous message.
	resp, err := http.Get(base + "/users/alice")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "API rate limit exceeded for 127.0.0.1") {
		t.Errorf("anonymous rate limited: %d %s", resp.StatusCode, body)
	}

	s.SetRateLimited(false)
	// go-github remembers the limit until its reset; a fresh client works.
	if _, _, err := ghClient(t, base, tok).Users.Get(ctx, ""); err != nil {
		t.Fatalf("after SetRateLimited(false): %v", err)
	}
}

func TestStartLoopbackOnly(t *testing.T) {
	s := fakegithub.New(fakegithub.Options{Apps: fixtureApps(), Users: fixtureUsers()})
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "192.0.2.1:0", "example.com:80", "10.0.0.1:0", "nonsense"} {
		if base, err := s.Start(addr); err == nil {
			s.Close()
			t.Errorf("Start(%q) = %q, want an error", addr, base)
		}
	}
	base, err := s.Start("")
	if err != nil {
		t.Fatalf("Start(\"\"): %v", err)
	}
	if !strings.HasPrefix(base, "http://127.0.0.1:") {
		t.Errorf("base = %q", base)
	}
	if _, err := s.Start(""); err == nil {
		t.Error("second Start succeeded")
	}
	resp, err := http.Get(base + "/api/v3/user")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /api/v3/user without token = %d, want 401", resp.StatusCode)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if resp, err := http.Get(base + "/user"); err == nil {
		resp.Body.Close()
		t.Error("server still answering after Close")
	}
	base, err = s.Start("localhost:0")
	if err != nil {
		t.Fatalf("Start(localhost:0): %v", err)
	}
	defer s.Close()
	tok, err := s.IssueToken("carol")
	if err != nil {
		t.Fatal(err)
	}
	u, _, err := ghClient(t, base, &oauth2.Token{AccessToken: tok}).Users.Get(context.Background(), "")
	if err != nil || u.GetLogin() != "carol" || u.GetID() == 0 {
		t.Fatalf("carol via Start: %v %v", u, err)
	}
}

func TestCookieSelectsUser(t *testing.T) {
	_, base := newTestServer(t, nil)
	conf := oauthConfig(base)
	ctx := context.Background()
	for cookie, want := range map[string]string{"bob": "bob", "CAROL": "carol", "ghost": "alice", "": "alice"} {
		var cookies []*http.Cookie
		if cookie != "" {
			cookies = append(cookies, &http.Cookie{Name: fakegithub.LoginCookie, Value: cookie})
		}
		loc := getRedirect(t, conf.AuthCodeURL("c"), cookies...)
		tok, err := conf.Exchange(ctx, loc.Query().Get("code"))
		if err != nil {
			t.Fatalf("cookie %q: %v", cookie, err)
		}
		u, _, err := ghClient(t, base, tok).Users.Get(ctx, "")
		if err != nil || u.GetLogin() != want {
			t.Errorf("cookie %q: user %q (%v), want %q", cookie, u.GetLogin(), err, want)
		}
	}
}

func TestChooserPage(t *testing.T) {
	s, base := newTestServer(t, func(o *fakegithub.Options) { o.DefaultLogin = "" })
	conf := oauthConfig(base)
	resp, err := noRedirect.Get(conf.AuthCodeURL("pick"))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "This is a local stand-in for GitHub, NOT GitHub") {
		t.Fatalf("chooser: %d %s", resp.StatusCode, page)
	}
	if n := strings.Count(string(page), "<form"); n != 3 {
		t.Errorf("%d forms, want one per user (3)", n)
	}
	action := regexp.MustCompile(`action="([^"]+)"`).FindStringSubmatch(string(page))
	nonce := regexp.MustCompile(`name="authenticity_token" value="([^"]+)"`).FindStringSubmatch(string(page))
	if action == nil || nonce == nil {
		t.Fatalf("no form action/token in %s", page)
	}
	submit := func() *http.Response {
		t.Helper()
		resp, err := noRedirect.PostForm(base+html.UnescapeString(action[1]),
			url.Values{"login": {"carol"}, "authenticity_token": {nonce[1]}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	resp = submit()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("POST chooser = %d", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc.Query().Get("state") != "pick" || loc.Query().Get("code") == "" || loc.Host != "127.0.0.1:9999" {
		t.Fatalf("POST redirected to %s", loc)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == fakegithub.LoginCookie {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != "carol" {
		t.Fatalf("cookie = %v", cookie)
	}
	tok, err := conf.Exchange(context.Background(), loc.Query().Get("code"))
	if err != nil {
		t.Fatal(err)
	}
	if u, _, err := ghClient(t, base, tok).Users.Get(context.Background(), ""); err != nil || u.GetLogin() != "carol" {
		t.Errorf("chose carol, got %v (%v)", u.GetLogin(), err)
	}
	// The form cannot be replayed.
	if r := submit(); r.StatusCode != http.StatusUnprocessableEntity {
		t.Errorf("replayed form = %d, want 422", r.StatusCode)
	}
	// With the cookie, authorize redirects immediately.
	if loc := getRedirect(t, conf.AuthCodeURL("again"), cookie); loc.Query().Get("code") == "" {
		t.Errorf("cookie sign-in: %s", loc)
	}
	// prompt=select_account shows the chooser even when signed in.
	s.SetDefaultLogin("alice")
	r, err := noRedirect.Get(conf.AuthCodeURL("x", oauth2.SetAuthURLParam("prompt", "select_account")))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusOK {
		t.Errorf("prompt=select_account = %d, want 200 chooser", r.StatusCode)
	}
}

func TestDeny(t *testing.T) {
	s, base := newTestServer(t, nil)
	conf := oauthConfig(base)
	s.SetDeny(true)
	loc := getRedirect(t, conf.AuthCodeURL("d-state"))
	q := loc.Query()
	if q.Get("error") != "access_denied" || q.Get("error_description") == "" || q.Get("state") != "d-state" || q.Get("code") != "" {
		t.Fatalf("deny redirect = %s", loc)
	}
	if loc.Host != "127.0.0.1:9999" || loc.Path != "/callback/github" {
		t.Errorf("deny went to %s", loc)
	}
	s.SetDeny(false)
	authorizeCode(t, conf, "ok")
}

func TestAuthorizeValidation(t *testing.T) {
	_, base := newTestServer(t, nil)
	authURL := func(client, redirect string) string {
		v := url.Values{"client_id": {client}, "state": {"s1"}}
		if redirect != "" {
			v.Set("redirect_uri", redirect)
		}
		return base + "/login/oauth/authorize?" + v.Encode()
	}
	for _, client := range []string{"unknown", ""} {
		resp, err := noRedirect.Get(authURL(client, ""))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound || !strings.Contains(string(body), "NOT GitHub") {
			t.Errorf("client %q: %d", client, resp.StatusCode)
		}
	}

	good := []string{
		"", // defaults to the callback URL
		client2CB,
		client2CB + "/deeper/path",
		client2CB + "?x=1",
		"https://eu.app.example.com/oauth/callback",
		"https://app.example.com:443/oauth/callback",
	}
	bad := []string{
		"https://app.example.com/oauth/other",
		"https://app.example.com/oauth/callbackx",
		"https://app.example.com/",
		"https://app.example.com:8443/oauth/callback",
		"http://app.example.com/oauth/callback",
		"https://evil.example/oauth/callback",
		"https://app.example.com.evil.example/oauth/callback",
		"https://app.example.com/oauth/callback/../../admin",
		"https://user@app.example.com/oauth/callback",
		"/oauth/callback",
		"::not a url",
	}
	for _, ru := range good {
		loc := getRedirect(t, authURL(client2ID, ru))
		if loc.Query().Get("code") == "" {
			t.Errorf("redirect_uri %q rejected: %s", ru, loc)
		}
		want := ru
		if want == "" {
			want = client2CB
		}
		if w, _ := url.Parse(want); loc.Host != w.Host || loc.Path != w.Path {
			t.Errorf("redirect_uri %q: went to %s", ru, loc)
		}
	}
	for _, ru := range bad {
		loc := getRedirect(t, authURL(client2ID, ru))
		q := loc.Query()
		if q.Get("error") != "redirect_uri_mismatch" || q.Get("code") != "" || q.Get("state") != "s1" {
			t.Errorf("redirect_uri %q: %s", ru, loc)
		}
		if loc.Scheme+"://"+loc.Host+loc.Path != client2CB {
			t.Errorf("mismatch for %q redirected to %s, want the registered callback", ru, loc)
		}
	}

	// Loopback callbacks accept any port but not another host.
	if loc := getRedirect(t, authURL(clientID, "http://127.0.0.1:5555/callback")); loc.Query().Get("code") == "" {
		t.Errorf("loopback port: %s", loc)
	}
	if loc := getRedirect(t, authURL(clientID, "http://localhost:5555/callback")); loc.Query().Get("error") != "redirect_uri_mismatch" {
		t.Errorf("loopback host change: %s", loc)
	}
}

func TestAPIErrorsAndHeaders(t *testing.T) {
	s, base := newTestServer(t, nil)
	tok := login(t, base)

	do := func(method, path, auth string) (*http.Response, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return resp, m
	}

	for _, p := range []string{"/nope", "/api/v3/nope", "/user/nope", "/users/alice/repos/x", "/"} {
		resp, m := do("GET", p, "Bearer "+tok.AccessToken)
		if resp.StatusCode != http.StatusNotFound || m["message"] != "Not Found" {
			t.Errorf("GET %s = %d %v", p, resp.StatusCode, m)
		}
	}
	if resp, _ := do("POST", "/user", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /user = %d", resp.StatusCode)
	}
	for _, auth := range []string{"Bearer gho_doesnotexist", "token ", "Basic !!!", "Weird x", "Bearer " + strings.Repeat("a", 5000)} {
		resp, m := do("GET", "/user", auth)
		if resp.StatusCode != http.StatusUnauthorized || m["message"] != "Bad credentials" {
			t.Errorf("auth %.20q: %d %v", auth, resp.StatusCode, m)
		}
	}
	if resp, m := do("GET", "/api/v3/user", ""); resp.StatusCode != http.StatusUnauthorized || m["message"] != "Requires authentication" {
		t.Errorf("no auth: %d %v", resp.StatusCode, m)
	}

	resp, m := do("GET", "/api/v3/user", "token "+tok.AccessToken)
	if resp.StatusCode != http.StatusOK || m["login"] != "alice" {
		t.Fatalf("token scheme: %d %v", resp.StatusCode, m)
	}
	h := resp.Header
	for _, k := range []string{"X-OAuth-Scopes", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "X-GitHub-Request-Id"} {
		if h.Get(k) == "" {
			t.Errorf("missing header %s", k)
		}
	}
	limit, _ := strconv.Atoi(h.Get("X-RateLimit-Limit"))
	remaining, _ := strconv.Atoi(h.Get("X-RateLimit-Remaining"))
	reset, _ := strconv.ParseInt(h.Get("X-RateLimit-Reset"), 10, 64)
	if limit != 5000 || remaining != 4999 || time.Unix(reset, 0).Before(time.Now()) {
		t.Errorf("rate headers %d/%d/%d", limit, remaining, reset)
	}
	if _, m := do("GET", "/user", "token "+tok.AccessToken); m["email"] != "alice@example.test" {
		t.Errorf("email = %v", m["email"])
	}

	// Public profile, anonymous, with the anonymous limit.
	resp, m = do("GET", "/users/Bob", "")
	if resp.StatusCode != http.StatusOK || m["login"] != "bob" || m["name"] != "Bob" || resp.Header.Get("X-RateLimit-Limit") != "60" {
		t.Errorf("/users/Bob = %d %v", resp.StatusCode, m)
	}
	if _, m := do("GET", "/users/carol", ""); m["name"] != nil || m["email"] != nil {
		t.Errorf("carol's empty name/email should be null: %v", m)
	}
	if resp, _ := do("GET", "/users/nobody", ""); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/users/nobody = %d", resp.StatusCode)
	}
	if got := s.Calls("/users/Bob"); got != 1 {
		t.Errorf("Calls(/users/Bob) = %d, want 1", got)
	}
}

func TestRepoListingParameters(t *testing.T) {
	_, base := newTestServer(t, nil)
	tok := login(t, base)
	get := func(query string) (*http.Response, []map[string]any) {
		t.Helper()
		req, _ := http.NewRequest("GET", base+"/user/repos?"+query, nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out []map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return resp, out
	}
	if _, r := get(""); len(r) != 30 {
		t.Errorf("default per_page gave %d", len(r))
	}
	if _, r := get("per_page=500"); len(r) != 75 {
		t.Errorf("per_page=500 gave %d (want 75, capped at 100)", len(r))
	}
	if _, r := get("per_page=-3&page=abc"); len(r) != 30 {
		t.Errorf("bad per_page/page gave %d", len(r))
	}
	resp, r := get("per_page=30&page=99999999999999999999")
	if resp.StatusCode != 200 || len(r) != 30 {
		t.Errorf("overflowing page: %d %d", resp.StatusCode, len(r))
	}
	resp, r = get("per_page=30&page=7")
	if resp.StatusCode != 200 || r == nil || len(r) != 0 || !strings.Contains(resp.Header.Get("Link"), `rel="first"`) {
		t.Errorf("page past the end: %d %v %q", resp.StatusCode, r, resp.Header.Get("Link"))
	}
	if _, r := get("visibility=private&per_page=100"); len(r) != 19 {
		t.Errorf("visibility=private gave %d, want 19", len(r))
	}
	if _, r := get("type=owner&per_page=100"); len(r) != 70 {
		t.Errorf("type=owner gave %d, want 70", len(r))
	}
	if _, r := get("affiliation=organization_member&per_page=100"); len(r) != 5 {
		t.Errorf("affiliation=organization_member gave %d, want 5", len(r))
	}
	_, r = get("sort=full_name&direction=desc&per_page=1")
	if len(r) != 1 || r[0]["full_name"] != "alice/repo-74" {
		t.Errorf("desc: %v", r)
	}
	for _, q := range []string{"type=owner&visibility=all", "sort=stars", "direction=up", "affiliation=friend"} {
		if resp, _ := get(q); resp.StatusCode != http.StatusUnprocessableEntity {
			t.Errorf("%s = %d, want 422", q, resp.StatusCode)
		}
	}
}

func TestSetUserOrgsAndTeams(t *testing.T) {
	s, base := newTestServer(t, nil)
	ctx := context.Background()
	c := ghClient(t, base, login(t, base))
	s.SetUserOrgs("alice", []string{"neworg"})
	s.SetUserTeams("alice", nil)
	orgs, _, err := c.Organizations.List(ctx, "", nil)
	if err != nil || len(orgs) != 1 || orgs[0].GetLogin() != "neworg" {
		t.Fatalf("orgs after SetUserOrgs: %v %v", orgs, err)
	}
	teams, _, err := c.Teams.ListUserTeams(ctx, nil)
	if err != nil || teams == nil || len(teams) != 0 {
		t.Fatalf("teams after SetUserTeams(nil): %v %v", teams, err)
	}
	s.SetUserTeams("alice", []fakegithub.Team{{Org: "neworg", Slug: "ops"}})
	teams, _, err = c.Teams.ListUserTeams(ctx, nil)
	if err != nil || len(teams) != 1 || teams[0].GetSlug() != "ops" || teams[0].GetOrganization().GetLogin() != "neworg" {
		t.Fatalf("teams: %v %v", teams, err)
	}
	if got := s.Calls("/user/orgs"); got != 1 {
		t.Errorf("Calls(/user/orgs) = %d", got)
	}
	if got := s.Calls("/user/teams"); got != 2 {
		t.Errorf("Calls(/user/teams) = %d", got)
	}
	bobOrgs, _, err := c.Organizations.List(ctx, "bob", nil)
	if err != nil || len(bobOrgs) != 1 || bobOrgs[0].GetLogin() != "widgets" {
		t.Errorf("bob's orgs: %v %v", bobOrgs, err)
	}

	s.AddUser(fakegithub.User{Login: "dave", Orgs: []string{"acme"}})
	dtok, err := s.IssueToken("dave")
	if err != nil {
		t.Fatal(err)
	}
	u, _, err := ghClient(t, base, &oauth2.Token{AccessToken: dtok}).Users.Get(ctx, "")
	if err != nil || u.GetLogin() != "dave" || u.GetID() == 0 || u.GetID() == 1 || u.GetID() == 2 {
		t.Errorf("dave: %v %v", u, err)
	}
	if _, err := s.IssueToken("nobody"); err == nil {
		t.Error("IssueToken for an unknown user succeeded")
	}
}

func TestBadInputNeverBreaksTheServer(t *testing.T) {
	_, base := newTestServer(t, nil)
	big := strings.NewReader("code=" + strings.Repeat("x", 100<<10))
	resp, err := http.Post(base+"/login/oauth/access_token", "application/x-www-form-urlencoded", big)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized token request = %d, want 413", resp.StatusCode)
	}
	resp, err = http.Post(base+"/login/oauth/authorize?client_id="+clientID, "application/x-www-form-urlencoded",
		strings.NewReader("login="+strings.Repeat("y", 100<<10)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized authorize POST = %d, want 413", resp.StatusCode)
	}
	for _, p := range []string{
		"/login/oauth/authorize?client_id=%zz",
		"/login/oauth/authorize?client_id=" + clientID + "&redirect_uri=%00",
		"/login/oauth/authorize?client_id=" + clientID + "&code_challenge=short&code_challenge_method=S256",
		"/api/v3", "/api/v3/", "/api/v3//user", "/users/", "/users//orgs", "/%2e%2e/user",
		"/user/repos?per_page=%zz", "/login/oauth/access_token?code=%",
	} {
		resp, err := noRedirect.Get(base + p)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Errorf("GET %s = %d", p, resp.StatusCode)
		}
	}
	req, _ := http.NewRequest("POST", base+"/login/oauth/access_token", strings.NewReader("%%%=&&"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("%zz", "%")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode >= 500 {
		t.Errorf("garbage token request: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}
	// Still healthy.
	login(t, base)
}

func TestConcurrentUse(t *testing.T) {
	s, base := newTestServer(t, nil)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 8 {
		wg.Go(func() {
			conf := oauthConfig(base)
			resp, err := noRedirect.Get(conf.AuthCodeURL("c"))
			if err != nil {
				errs <- err
				return
			}
			resp.Body.Close()
			loc, err := url.Parse(resp.Header.Get("Location"))
			if err != nil {
				errs <- err
				return
			}
			tok, err := conf.Exchange(ctx, loc.Query().Get("code"))
			if err != nil {
				errs <- err
				return
			}
			c, err := github.NewClient(oauth2.NewClient(ctx, oauth2.StaticTokenSource(tok))).WithEnterpriseURLs(base, base)
			if err != nil {
				errs <- err
				return
			}
			for range 5 {
				if _, _, err := c.Users.Get(ctx, ""); err != nil {
					errs <- err
					return
				}
				s.SetUserOrgs("alice", []string{"o" + strconv.Itoa(i)})
				if _, _, err := c.Organizations.List(ctx, "", nil); err != nil {
					errs <- err
					return
				}
				s.AddUser(fakegithub.User{Login: "tmp" + strconv.Itoa(i)})
				_ = s.Calls("/user")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := s.Calls("/user"); got != 40 {
		t.Errorf("Calls(/user) = %d, want 40", got)
	}
	if got := s.TokenExchanges(); got != 8 {
		t.Errorf("TokenExchanges = %d, want 8", got)
	}
}
