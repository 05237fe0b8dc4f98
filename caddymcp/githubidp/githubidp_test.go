package githubidp_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/githubidp"
	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
)

const (
	ghClientID     = "gh-idp-client-id"
	ghClientSecret = "gh-idp-client-secret-0a1b2c3d4e5f"
	callbackURL    = "https://mcp.example.com/callback"
)

var (
	alice = fakegithub.User{ID: 1001, Login: "alice", Name: "Alice Liddell", Email: "alice@example.com",
		AvatarURL: "https://avatars.example.com/alice",
		Orgs:      []string{"acme"}, Teams: []fakegithub.Team{{Org: "acme", Slug: "platform"}}}
	bob   = fakegithub.User{ID: 1002, Login: "bob", Orgs: []string{"other"}, Teams: []fakegithub.Team{{Org: "acme", Slug: "sales"}}}
	carol = fakegithub.User{ID: 1003, Login: "carol"}
)

// fake starts the GitHub stand-in on loopback.
func fake(t *testing.T) (*fakegithub.Server, string) {
	t.Helper()
	gh := fakegithub.New(fakegithub.Options{
		Apps:  []fakegithub.App{{ClientID: ghClientID, ClientSecret: ghClientSecret, CallbackURL: callbackURL}},
		Users: []fakegithub.User{alice, bob, carol},
	})
	base, err := gh.Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gh.Close() })
	return gh, base
}

// recorder is a transport that records the requests it carries.
type recorder struct {
	next http.RoundTripper
	// rewrite, if set, changes a request before it is sent.
	rewrite func(*http.Request)
	mu      sync.Mutex
	seen    []string // "host path"
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.seen = append(r.seen, req.URL.Host+" "+req.URL.Path)
	r.mu.Unlock()
	if r.rewrite != nil {
		req = req.Clone(req.Context())
		r.rewrite(req)
	}
	next := r.next
	if next == nil {
		next = http.DefaultTransport
	}
	return next.RoundTrip(req)
}

func (r *recorder) requests() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.seen...)
}

// provider is a GHES-shaped provider for the stand-in at base.
func provider(t *testing.T, base string, mod func(*githubidp.Config)) (*githubidp.Provider, *recorder) {
	t.Helper()
	rec := &recorder{}
	cfg := githubidp.Config{
		ClientID:      ghClientID,
		ClientSecret:  ghClientSecret,
		EnterpriseURL: base,
		HTTPClient:    &http.Client{Transport: rec, Timeout: 10 * time.Second},
	}
	if mod != nil {
		mod(&cfg)
	}
	p, err := githubidp.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p, rec
}

// githubCode signs login in at the stand-in through authURL and returns
// the code it sends to the callback.
func githubCode(t *testing.T, authURL, login string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, authURL, nil)
	req.AddCookie(&http.Cookie{Name: fakegithub.LoginCookie, Value: login})
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("stand-in authorize: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if !strings.HasPrefix(loc.String(), callbackURL+"?") || loc.Query().Get("state") != "the-state" {
		t.Fatalf("stand-in redirected to %s", loc)
	}
	code := loc.Query().Get("code")
	if code == "" {
		t.Fatalf("no code in %s", loc)
	}
	return code
}

func token(t *testing.T, gh *fakegithub.Server, login string) *oauth2.Token {
	t.Helper()
	tok, err := gh.IssueToken(login, "read:user", "read:org")
	if err != nil {
		t.Fatal(err)
	}
	return &oauth2.Token{AccessToken: tok, TokenType: "bearer"}
}

// noSecrets fails if err mentions the client secret or any of the tokens.
func noSecrets(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error")
	}
	for _, s := range append([]string{ghClientSecret}, secrets...) {
		if s != "" && strings.Contains(err.Error(), s) {
			t.Errorf("error %q contains a secret (%.8s...)", err, s)
		}
	}
}

func TestNew(t *testing.T) {
	for name, cfg := range map[string]githubidp.Config{
		"no client id":           {ClientSecret: "s"},
		"no client secret":       {ClientID: "i"},
		"team without slug":      {ClientID: "i", ClientSecret: "s", Allow: githubidp.Audience{Teams: []string{"acme"}}},
		"team with empty slug":   {ClientID: "i", ClientSecret: "s", Allow: githubidp.Audience{Teams: []string{"acme/"}}},
		"team with empty org":    {ClientID: "i", ClientSecret: "s", Allow: githubidp.Audience{Teams: []string{"/platform"}}},
		"team with two slashes":  {ClientID: "i", ClientSecret: "s", Allow: githubidp.Audience{Teams: []string{"acme/a/b"}}},
		"one bad team of two":    {ClientID: "i", ClientSecret: "s", Allow: githubidp.Audience{Teams: []string{"acme/platform", "bad"}}},
		"scope rule, bad team":   {ClientID: "i", ClientSecret: "s", ScopeRules: []githubidp.ScopeRule{{Scope: "admin", Allow: githubidp.Audience{Teams: []string{"acme"}}}}},
		"scope rule for nobody":  {ClientID: "i", ClientSecret: "s", ScopeRules: []githubidp.ScopeRule{{Scope: "admin"}}},
		"scope rule given twice": {ClientID: "i", ClientSecret: "s", ScopeRules: []githubidp.ScopeRule{{Scope: "a", Allow: githubidp.Audience{Users: []string{"x"}}}, {Scope: "a", Allow: githubidp.Audience{Users: []string{"y"}}}}},
		"enterprise URL http":    {ClientID: "i", ClientSecret: "s", EnterpriseURL: "http://ghe.example.com"},
		"enterprise URL garbage": {ClientID: "i", ClientSecret: "s", EnterpriseURL: "::not a url"},
	} {
		p, err := githubidp.New(cfg)
		if err == nil || p != nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
			continue
		}
		if cfg.ClientSecret != "" && strings.Contains(err.Error(), cfg.ClientSecret+"\"") {
			t.Errorf("%s: error repeats the secret: %v", name, err)
		}
	}
	p, err := githubidp.New(githubidp.Config{ClientID: "i", ClientSecret: "s",
		Allow: githubidp.Audience{Teams: []string{" Acme/Platform "}, Users: []string{"", "  "}}})
	if err != nil {
		t.Fatal(err)
	}
	if !p.HasAllowLists() {
		t.Error("HasAllowLists false with a team")
	}
	p, err = githubidp.New(githubidp.Config{ClientID: "i", ClientSecret: "s", Allow: githubidp.Audience{Users: []string{"", " "}}})
	if err != nil {
		t.Fatal(err)
	}
	if p.HasAllowLists() {
		t.Error("blank user names count as an allow-list")
	}
}

func TestParseEnterpriseURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://ghe.example.com":          "https://ghe.example.com",
		"https://ghe.example.com/":         "https://ghe.example.com",
		"https://ghe.example.com:8443/":    "https://ghe.example.com:8443",
		"https://ghe.example.com/github/":  "https://ghe.example.com/github",
		"http://127.0.0.1:8080":            "http://127.0.0.1:8080",
		"http://localhost:3000/":           "http://localhost:3000",
		"http://[::1]:9000":                "http://[::1]:9000",
		"HTTPS://ghe.example.com":          "https://ghe.example.com",
		"https://ghe.example.com/?foo#bar": "",
	} {
		got, err := githubidp.ParseEnterpriseURL(in)
		if want == "" {
			if err == nil {
				t.Errorf("ParseEnterpriseURL(%q) = %q, want an error", in, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("ParseEnterpriseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"",
		"ghe.example.com",
		"//ghe.example.com",
		"https://",
		"http://ghe.example.com",
		"http://10.0.0.1",
		"http://127.0.0.1.example.com",
		"ftp://ghe.example.com",
		"https://ghe.example.com?x=1",
		"https://ghe.example.com/?x=1",
		"https://ghe.example.com?",
		"https://ghe.example.com/?",
		"https://ghe.example.com#frag",
		"https://ghe.example.com/#",
		"https://ghe.example.com#",
		"https://user:pw@ghe.example.com",
		"https://user@ghe.example.com",
	} {
		if got, err := githubidp.ParseEnterpriseURL(in); err == nil {
			t.Errorf("ParseEnterpriseURL(%q) = %q, want an error", in, got)
		}
	}
}

// testVerifier is the PKCE verifier of the tests' sign-ins at GitHub.
const testVerifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

// TestGitHubPKCE: every sign-in at GitHub, github.com and Enterprise
// Server alike, carries the S256 challenge of its verifier, and GitHub
// (the stand-in checks it as GitHub does) refuses the code with any other
// verifier: a GitHub code that leaked cannot be injected into another
// sign-in.
func TestGitHubPKCE(t *testing.T) {
	_, base := fake(t)
	for _, enterprise := range []bool{false, true} {
		var p *githubidp.Provider
		if enterprise {
			p, _ = provider(t, base, nil)
		} else {
			gc, err := githubidp.New(githubidp.Config{ClientID: ghClientID, ClientSecret: ghClientSecret})
			if err != nil {
				t.Fatal(err)
			}
			p = gc
		}
		u, err := url.Parse(p.AuthCodeURL("st", callbackURL, testVerifier))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(testVerifier))
		if q := u.Query(); q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") != base64.RawURLEncoding.EncodeToString(sum[:]) {
			t.Errorf("enterprise=%v: authorize URL without the S256 challenge: %v", enterprise, q)
		}
	}
	p, _ := provider(t, base, nil)
	ctx := context.Background()
	code := githubCode(t, p.AuthCodeURL("the-state", callbackURL, testVerifier), "alice")
	if _, err := p.Exchange(ctx, code, callbackURL, "another-verifier-0123456789-0123456789-0123456789"); err == nil {
		t.Fatal("GitHub exchanged the code with another verifier")
	}
	code = githubCode(t, p.AuthCodeURL("the-state", callbackURL, testVerifier), "alice")
	if _, err := p.Exchange(ctx, code, callbackURL, testVerifier); err != nil {
		t.Fatalf("exchange with the sign-in's verifier: %v", err)
	}
}

func TestAuthCodeURL(t *testing.T) {
	_, base := fake(t)
	p, _ := provider(t, base+"/", nil)
	u, err := url.Parse(p.AuthCodeURL("st", "https://mcp.example.com/callback", testVerifier))
	if err != nil {
		t.Fatal(err)
	}
	if got := u.Scheme + "://" + u.Host + u.Path; got != base+"/login/oauth/authorize" {
		t.Errorf("authorize URL %s", got)
	}
	q := u.Query()
	if q.Get("client_id") != ghClientID || q.Get("state") != "st" || q.Get("redirect_uri") != "https://mcp.example.com/callback" ||
		q.Get("scope") != "read:user read:org" || q.Get("response_type") != "code" {
		t.Errorf("query %v", q)
	}
	if strings.Contains(u.String(), ghClientSecret) {
		t.Errorf("the authorize URL carries the client secret")
	}

	p2, _ := provider(t, base, func(c *githubidp.Config) { c.Scopes = []string{"read:user"} })
	u, _ = url.Parse(p2.AuthCodeURL("st", callbackURL, testVerifier))
	if u.Query().Get("scope") != "read:user" {
		t.Errorf("configured scopes: %q", u.Query().Get("scope"))
	}
	// The configured callback does not stick between calls.
	u, _ = url.Parse(p.AuthCodeURL("st2", "https://other.example/callback", testVerifier))
	if u.Query().Get("redirect_uri") != "https://other.example/callback" {
		t.Errorf("redirect_uri %q", u.Query().Get("redirect_uri"))
	}

	gc, err := githubidp.New(githubidp.Config{ClientID: ghClientID, ClientSecret: ghClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	u, _ = url.Parse(gc.AuthCodeURL("st", callbackURL, testVerifier))
	if got := u.Scheme + "://" + u.Host + u.Path; got != "https://github.com/login/oauth/authorize" {
		t.Errorf("github.com authorize URL %s", got)
	}
}

// TestExchangeAndAdmitGHES runs the web flow against the GHES-shaped
// stand-in: web endpoints at the root, the API under /api/v3.
func TestExchangeAndAdmitGHES(t *testing.T) {
	gh, base := fake(t)
	p, rec := provider(t, base, func(c *githubidp.Config) { c.Allow.Orgs = []string{"acme"} })
	ctx := context.Background()
	code := githubCode(t, p.AuthCodeURL("the-state", callbackURL, testVerifier), "alice")
	tok, err := p.Exchange(ctx, code, callbackURL, testVerifier)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.AccessToken, "gho_") {
		t.Fatalf("token %q", tok.AccessToken)
	}
	who, _, err := p.Admit(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	want := store.Identity{ID: 1001, Login: "alice", Name: "Alice Liddell", Email: "alice@example.com", AvatarURL: "https://avatars.example.com/alice"}
	if who != want {
		t.Errorf("identity %+v, want %+v", who, want)
	}
	host := strings.TrimPrefix(base, "http://")
	wantSeen := []string{host + " /login/oauth/access_token", host + " /api/v3/user", host + " /api/v3/user/orgs"}
	if got := rec.requests(); strings.Join(got, ",") != strings.Join(wantSeen, ",") {
		t.Errorf("requests %v, want %v", got, wantSeen)
	}
	if gh.TokenExchanges() != 1 {
		t.Errorf("%d token exchanges, want 1 (credentials in the body, no probing)", gh.TokenExchanges())
	}
	if got := p.API(ctx, tok).BaseURL.String(); got != base+"/api/v3/" {
		t.Errorf("API base %s", got)
	}
	// A code works once.
	_, err = p.Exchange(ctx, code, callbackURL, testVerifier)
	noSecrets(t, err, code, tok.AccessToken)
}

func TestExchangeFailures(t *testing.T) {
	gh, base := fake(t)
	ctx := context.Background()
	p, _ := provider(t, base, nil)

	t.Run("unknown code", func(t *testing.T) {
		_, err := p.Exchange(ctx, "0123456789abcdef", callbackURL, testVerifier)
		noSecrets(t, err, "0123456789abcdef")
		if errors.Is(err, oauth.ErrNotAllowed) || errors.Is(err, oauth.ErrUpstreamRevoked) {
			t.Errorf("a failed exchange is %v", err)
		}
	})
	t.Run("wrong client secret", func(t *testing.T) {
		bad, _ := provider(t, base, func(c *githubidp.Config) { c.ClientSecret = "wrong-secret-value-123" })
		code := githubCode(t, p.AuthCodeURL("the-state", callbackURL, testVerifier), "alice")
		_, err := bad.Exchange(ctx, code, callbackURL, testVerifier)
		noSecrets(t, err, code, "wrong-secret-value-123")
		if !strings.Contains(err.Error(), "incorrect_client_credentials") {
			t.Errorf("error %q does not say why", err)
		}
	})
	t.Run("redirect_uri mismatch", func(t *testing.T) {
		code := githubCode(t, p.AuthCodeURL("the-state", callbackURL, testVerifier), "alice")
		_, err := p.Exchange(ctx, code, "https://mcp.example.com/callback/other", testVerifier)
		noSecrets(t, err, code)
	})
	t.Run("GitHub unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := "http://" + l.Addr().String()
		l.Close()
		dp, _ := provider(t, dead, nil)
		_, err = dp.Exchange(ctx, "somecode", callbackURL, testVerifier)
		noSecrets(t, err, "somecode")
		if !strings.Contains(err.Error(), "could not reach GitHub") {
			t.Errorf("error %q", err)
		}
		tok := token(t, gh, "alice")
		_, _, err = dp.Admit(ctx, tok)
		noSecrets(t, err, tok.AccessToken)
	})
}

func TestAdmitAllowLists(t *testing.T) {
	gh, base := fake(t)
	ctx := context.Background()
	tests := []struct {
		name              string
		users, orgs, team []string
		admitted          map[string]bool
	}{
		{"no lists admit everyone", nil, nil, nil, map[string]bool{"alice": true, "bob": true, "carol": true}},
		{"users, case-insensitive", []string{"ALICE", " Carol "}, nil, nil, map[string]bool{"alice": true, "bob": false, "carol": true}},
		{"orgs, case-insensitive", nil, []string{"ACME"}, nil, map[string]bool{"alice": true, "bob": false, "carol": false}},
		{"teams", nil, nil, []string{"Acme/Platform"}, map[string]bool{"alice": true, "bob": false, "carol": false}},
		{"team of another org with the same slug", nil, nil, []string{"other/platform"}, map[string]bool{"alice": false, "bob": false}},
		{"other team of the org", nil, nil, []string{"acme/sales"}, map[string]bool{"alice": false, "bob": true}},
		{"any list admits", []string{"carol"}, []string{"other"}, []string{"acme/platform"}, map[string]bool{"alice": true, "bob": true, "carol": true}},
		{"unknown org", nil, []string{"nobody-org"}, nil, map[string]bool{"alice": false, "bob": false, "carol": false}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := provider(t, base, func(c *githubidp.Config) {
				c.Allow.Users, c.Allow.Orgs, c.Allow.Teams = tc.users, tc.orgs, tc.team
			})
			for login, ok := range tc.admitted {
				tok := token(t, gh, login)
				who, _, err := p.Admit(ctx, tok)
				if who.Login != login {
					t.Errorf("%s: identity %+v", login, who)
				}
				if ok {
					if err != nil {
						t.Errorf("%s refused: %v", login, err)
					}
					continue
				}
				if !errors.Is(err, githubidp.ErrNotAllowed) || !errors.Is(err, oauth.ErrNotAllowed) {
					t.Errorf("%s: error %v, want ErrNotAllowed", login, err)
				}
				if errors.Is(err, oauth.ErrUpstreamRevoked) {
					t.Errorf("%s: not-allowed is also upstream-revoked", login)
				}
				noSecrets(t, err, tok.AccessToken)
			}
		})
	}
}

// TestAdmitUserListNeedsNoAPI: a user on allow_users is admitted from the
// profile alone, without listing organizations or teams.
func TestAdmitUserListNeedsNoAPI(t *testing.T) {
	gh, base := fake(t)
	p, rec := provider(t, base, func(c *githubidp.Config) {
		c.Allow.Users, c.Allow.Orgs, c.Allow.Teams = []string{"alice"}, []string{"acme"}, []string{"acme/platform"}
	})
	if _, _, err := p.Admit(context.Background(), token(t, gh, "alice")); err != nil {
		t.Fatal(err)
	}
	if got := rec.requests(); len(got) != 1 || !strings.HasSuffix(got[0], " /api/v3/user") {
		t.Errorf("requests %v, want /user alone", got)
	}
}

func TestAdmitPagination(t *testing.T) {
	gh, base := fake(t)
	ctx := context.Background()
	orgs := make([]string, 150)
	for i := range orgs {
		orgs[i] = fmt.Sprintf("org-%03d", i)
	}
	teams := make([]fakegithub.Team, 250)
	for i := range teams {
		teams[i] = fakegithub.Team{Org: "big", Slug: fmt.Sprintf("team-%03d", i)}
	}
	gh.AddUser(fakegithub.User{ID: 2000, Login: "dave"})
	gh.SetUserOrgs("dave", orgs)
	gh.SetUserTeams("dave", teams)
	tok := token(t, gh, "dave")

	for _, tc := range []struct {
		name       string
		orgs, team []string
		ok         bool
		orgCalls   int
		teamCalls  int
	}{
		{"org on the second page", []string{"org-140"}, nil, true, 2, 0},
		{"org on the first page", []string{"ORG-005"}, nil, true, 1, 0},
		{"org on no page", []string{"org-999"}, nil, false, 2, 0},
		{"team on the third page", nil, []string{"big/team-230"}, true, 0, 3},
		{"team on no page", nil, []string{"big/team-999"}, false, 0, 3},
		{"org missing, team found", []string{"nope"}, []string{"big/team-120"}, true, 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, _ := provider(t, base, func(c *githubidp.Config) { c.Allow.Orgs, c.Allow.Teams = tc.orgs, tc.team })
			o0, t0 := gh.Calls("/user/orgs"), gh.Calls("/user/teams")
			_, _, err := p.Admit(ctx, tok)
			if tc.ok && err != nil {
				t.Errorf("refused: %v", err)
			}
			if !tc.ok && !errors.Is(err, oauth.ErrNotAllowed) {
				t.Errorf("error %v, want ErrNotAllowed", err)
			}
			if got := gh.Calls("/user/orgs") - o0; got != tc.orgCalls {
				t.Errorf("%d pages of organizations read, want %d", got, tc.orgCalls)
			}
			if got := gh.Calls("/user/teams") - t0; got != tc.teamCalls {
				t.Errorf("%d pages of teams read, want %d", got, tc.teamCalls)
			}
		})
	}

	t.Run("pages are bounded", func(t *testing.T) {
		many := make([]string, 1500)
		for i := range many {
			many[i] = fmt.Sprintf("m-%04d", i)
		}
		gh.SetUserOrgs("dave", many)
		p, _ := provider(t, base, func(c *githubidp.Config) { c.Allow.Orgs = []string{"m-1400"} })
		o0 := gh.Calls("/user/orgs")
		_, _, err := p.Admit(ctx, tok)
		if !errors.Is(err, oauth.ErrNotAllowed) {
			t.Errorf("error %v", err)
		}
		if got := gh.Calls("/user/orgs") - o0; got != 10 {
			t.Errorf("%d pages read, want the bound of 10", got)
		}
	})
}

func TestRecheck(t *testing.T) {
	gh, base := fake(t)
	ctx := context.Background()
	aliceID := store.Identity{ID: 1001, Login: "alice"}

	t.Run("no lists: GitHub still confirms the token", func(t *testing.T) {
		p, _ := provider(t, base, nil)
		before := gh.Calls("/user")
		if _, _, err := p.Recheck(ctx, token(t, gh, "alice"), aliceID); err != nil {
			t.Errorf("Recheck: %v", err)
		}
		if gh.Calls("/user") != before+1 {
			t.Errorf("Recheck without lists made %d /user calls, want 1", gh.Calls("/user")-before)
		}
		_, _, err := p.Recheck(ctx, &oauth2.Token{AccessToken: "gho_revoked_or_bogus"}, aliceID)
		if !errors.Is(err, oauth.ErrUpstreamRevoked) {
			t.Errorf("Recheck with a revoked token: %v, want ErrUpstreamRevoked", err)
		}
	})

	p, _ := provider(t, base, func(c *githubidp.Config) { c.Allow.Orgs = []string{"acme"} })
	t.Run("still admitted", func(t *testing.T) {
		before := gh.Calls("/user")
		if _, _, err := p.Recheck(ctx, token(t, gh, "alice"), aliceID); err != nil {
			t.Fatal(err)
		}
		if gh.Calls("/user") != before+1 {
			t.Errorf("Recheck with lists did not ask GitHub")
		}
	})
	t.Run("another user", func(t *testing.T) {
		tok := token(t, gh, "alice")
		_, _, err := p.Recheck(ctx, tok, store.Identity{ID: 9999, Login: "alice"})
		noSecrets(t, err, tok.AccessToken)
		// Permanent: the grant must be revoked, not retried.
		if !errors.Is(err, oauth.ErrUpstreamRevoked) {
			t.Errorf("error %v, want ErrUpstreamRevoked", err)
		}
	})
	t.Run("no longer admitted", func(t *testing.T) {
		tok := token(t, gh, "alice")
		gh.SetUserOrgs("alice", nil)
		defer gh.SetUserOrgs("alice", alice.Orgs)
		_, _, err := p.Recheck(ctx, tok, aliceID)
		if !errors.Is(err, oauth.ErrNotAllowed) {
			t.Errorf("error %v, want ErrNotAllowed", err)
		}
		noSecrets(t, err, tok.AccessToken)
	})
	t.Run("token revoked", func(t *testing.T) {
		tok := token(t, gh, "alice")
		gh.RevokeToken(tok.AccessToken)
		_, _, err := p.Recheck(ctx, tok, aliceID)
		if !errors.Is(err, oauth.ErrUpstreamRevoked) || errors.Is(err, oauth.ErrNotAllowed) {
			t.Errorf("error %v, want ErrUpstreamRevoked alone", err)
		}
		noSecrets(t, err, tok.AccessToken)
	})
}

func TestAdmitErrors(t *testing.T) {
	gh, base := fake(t)
	ctx := context.Background()
	p, _ := provider(t, base, func(c *githubidp.Config) { c.Allow.Orgs = []string{"acme"} })

	t.Run("revoked token", func(t *testing.T) {
		tok := token(t, gh, "alice")
		gh.RevokeUserTokens("alice")
		_, _, err := p.Admit(ctx, tok)
		if !errors.Is(err, oauth.ErrUpstreamRevoked) {
			t.Errorf("error %v, want ErrUpstreamRevoked", err)
		}
		noSecrets(t, err, tok.AccessToken)
	})
	t.Run("bogus token", func(t *testing.T) {
		tok := &oauth2.Token{AccessToken: "gho_bogusbogusbogus", TokenType: "bearer"}
		_, _, err := p.Admit(ctx, tok)
		if !errors.Is(err, oauth.ErrUpstreamRevoked) {
			t.Errorf("error %v, want ErrUpstreamRevoked", err)
		}
		noSecrets(t, err, tok.AccessToken)
	})
	t.Run("rate limited", func(t *testing.T) {
		tok := token(t, gh, "alice")
		gh.SetRateLimited(true)
		defer gh.SetRateLimited(false)
		_, _, err := p.Admit(ctx, tok)
		if err == nil || errors.Is(err, oauth.ErrUpstreamRevoked) || errors.Is(err, oauth.ErrNotAllowed) {
			t.Errorf("error %v, want a temporary one", err)
		}
		noSecrets(t, err, tok.AccessToken)
	})
}

// hostile answers every request with an error whose body repeats what it
// was sent: the request body (client secret, code) and the Authorization
// header (token).
type hostile struct {
	status      int
	contentType string
}

func (h hostile) RoundTrip(r *http.Request) (*http.Response, error) {
	var body []byte
	if r.Body != nil {
		body, _ = io.ReadAll(r.Body)
		r.Body.Close()
	}
	echo := fmt.Sprintf("you sent %s with %s", body, r.Header.Get("Authorization"))
	if h.contentType == "application/json" {
		echo = fmt.Sprintf(`{"error":"bad","error_description":%q,"message":"nope","documentation_url":%q}`, echo, echo)
	}
	return &http.Response{
		StatusCode: h.status,
		Status:     fmt.Sprintf("%d %s", h.status, http.StatusText(h.status)),
		Header:     http.Header{"Content-Type": {h.contentType}},
		Body:       io.NopCloser(strings.NewReader(echo)),
		Request:    r,
	}, nil
}

// TestSecretsNeverInErrors: whatever GitHub (or something posing as it)
// answers, the errors never repeat the client secret, the code or a token.
func TestSecretsNeverInErrors(t *testing.T) {
	ctx := context.Background()
	const code = "code-0123456789abcdef"
	tok := &oauth2.Token{AccessToken: "gho_secretaccesstoken0123456789abcdef", TokenType: "bearer"}
	for _, h := range []hostile{
		{http.StatusBadRequest, "text/plain"},
		{http.StatusInternalServerError, "text/html"},
		{http.StatusUnauthorized, "application/json"},
		{http.StatusOK, "application/json"},
		{http.StatusBadRequest, "application/x-www-form-urlencoded"},
	} {
		t.Run(fmt.Sprintf("%d %s", h.status, h.contentType), func(t *testing.T) {
			p, err := githubidp.New(githubidp.Config{
				ClientID: ghClientID, ClientSecret: ghClientSecret,
				EnterpriseURL: "https://ghe.example.com",
				Allow:         githubidp.Audience{Orgs: []string{"acme"}},
				HTTPClient:    &http.Client{Transport: h},
			})
			if err != nil {
				t.Fatal(err)
			}
			_, err = p.Exchange(ctx, code, callbackURL, testVerifier)
			noSecrets(t, err, code, tok.AccessToken)
			_, _, err = p.Admit(ctx, tok)
			noSecrets(t, err, tok.AccessToken)
			_, _, err = p.Recheck(ctx, tok, store.Identity{ID: 1, Login: "x"})
			noSecrets(t, err, tok.AccessToken)
		})
	}
}

// TestGitHubComShape: without EnterpriseURL the provider talks to
// github.com and api.github.com, with the API at the root (no /api/v3).
// The requests are carried to the stand-in by a rewriting transport.
func TestGitHubComShape(t *testing.T) {
	gh, base := fake(t)
	fakeHost := strings.TrimPrefix(base, "http://")
	rec := &recorder{rewrite: func(r *http.Request) {
		switch r.URL.Host {
		case "github.com", "api.github.com":
			r.URL.Scheme = "http"
			r.URL.Host = fakeHost
			r.Host = fakeHost
		default:
			panic("request to " + r.URL.Host)
		}
	}}
	p, err := githubidp.New(githubidp.Config{
		ClientID:     ghClientID,
		ClientSecret: ghClientSecret,
		Allow:        githubidp.Audience{Orgs: []string{"acme"}, Teams: []string{"acme/platform"}},
		HTTPClient:   &http.Client{Transport: rec, Timeout: 10 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	authURL, _ := url.Parse(p.AuthCodeURL("the-state", callbackURL, testVerifier))
	if authURL.Host != "github.com" || authURL.Path != "/login/oauth/authorize" {
		t.Fatalf("authorize URL %s", authURL)
	}
	authURL.Scheme, authURL.Host = "http", fakeHost
	code := githubCode(t, authURL.String(), "bob")
	tok, err := p.Exchange(ctx, code, callbackURL, testVerifier)
	if err != nil {
		t.Fatal(err)
	}
	who, _, err := p.Admit(ctx, tok) // bob: neither acme nor acme/platform
	if !errors.Is(err, oauth.ErrNotAllowed) || who.ID != 1002 {
		t.Fatalf("Admit: %+v %v", who, err)
	}
	want := []string{
		"github.com /login/oauth/access_token",
		"api.github.com /user",
		"api.github.com /user/orgs",
		"api.github.com /user/teams",
	}
	if got := rec.requests(); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("requests %v, want %v", got, want)
	}
	for _, r := range rec.requests() {
		if strings.Contains(r, "/api/v3") {
			t.Errorf("github.com shape used %s", r)
		}
	}
	if got := p.API(ctx, tok).BaseURL.String(); got != "https://api.github.com/" {
		t.Errorf("API base %s", got)
	}
	if gh.Calls("/user") != 1 {
		t.Errorf("stand-in saw %d /user calls", gh.Calls("/user"))
	}
}

// TestAllowUsersByID: allow_users may name a user by numeric ID
// (id:<n>), which, unlike a login, GitHub never gives to someone else; a
// login is judged as GitHub reports it now; a malformed id: entry is
// refused at configuration.
func TestAllowUsersByID(t *testing.T) {
	gh, base := fake(t)
	p, _ := provider(t, base, func(c *githubidp.Config) { c.Allow.Users = []string{"id:1002", "alice"} })
	ctx := context.Background()
	if _, _, err := p.Admit(ctx, token(t, gh, "bob")); err != nil {
		t.Errorf("bob, listed by ID: %v", err)
	}
	gh.RenameUser("bob", "robert")
	if who, _, err := p.Admit(ctx, token(t, gh, "robert")); err != nil || who.Login != "robert" {
		t.Errorf("bob renamed, listed by ID: %+v, %v", who, err)
	}
	gh.RenameUser("alice", "alicia")
	who, _, err := p.Recheck(ctx, token(t, gh, "alicia"), store.Identity{ID: 1001, Login: "alice"})
	if !errors.Is(err, githubidp.ErrNotAllowed) {
		t.Errorf("alice renamed to a login no list names: %+v, %v; want not allowed", who, err)
	}
	for _, bad := range []string{"id:", "id:abc", "id:-4", "id:007"} {
		if _, err := githubidp.New(githubidp.Config{ClientID: "a", ClientSecret: "b", Allow: githubidp.Audience{Users: []string{bad}}}); err == nil {
			t.Errorf("allow_users %q accepted", bad)
		}
	}
}
