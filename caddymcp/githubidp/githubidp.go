// Package githubidp logs users in with GitHub or GitHub Enterprise Server
// and decides whether the allow-lists admit them.
//
// It uses golang.org/x/oauth2 for the web flow and go-github for the REST
// API, so the only GitHub-specific knowledge here is which URLs a
// deployment lives at and what "admitted" means.
package githubidp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-github/v75/github"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/endpoints"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// DefaultScopes are the GitHub scopes requested when none are configured:
// enough to read the profile and see organization and team membership.
var DefaultScopes = []string{"read:user", "read:org"}

// ErrNotAllowed means GitHub identified the user but no allow-list admits
// them. It is the authorization server's sentinel, so both packages agree.
var ErrNotAllowed = oauth.ErrNotAllowed

// maxPages bounds how many pages of organizations or teams are read while
// checking an allow-list: 10 pages of 100 is far beyond any real member.
const maxPages = 10

// Config configures a Provider.
type Config struct {
	ClientID     string
	ClientSecret string
	// EnterpriseURL is the web address of a GitHub Enterprise Server,
	// such as https://ghe.example.com. Empty means github.com.
	EnterpriseURL string
	// Scopes are requested from GitHub; DefaultScopes if empty.
	Scopes []string

	// Allow admits the users it names. Empty admits every GitHub user.
	Allow Audience

	// ScopeRules restrict scopes of the authorization server to some
	// users, organizations or teams.
	ScopeRules []ScopeRule

	// HTTPClient makes the calls to GitHub; http.DefaultClient if nil.
	HTTPClient *http.Client
	// Timeout bounds each Exchange, Admit and Recheck as a whole, every
	// GitHub request it makes from dial to last byte; DefaultTimeout if
	// zero. Past it the call fails as oauth.ErrUpstreamUnavailable.
	Timeout time.Duration
}

// DefaultTimeout bounds a sign-in step or a re-check when Config.Timeout
// is zero. A healthy GitHub answers in well under a second; a user in many
// organizations and teams takes a few pages of each.
const DefaultTimeout = 10 * time.Second

// Provider is a configured GitHub identity provider.
type Provider struct {
	oauth   oauth2.Config
	apiBase *url.URL
	client  *http.Client
	timeout time.Duration

	allow audience

	scopeRules []scopeRule
}

// New validates cfg and returns a Provider.
func New(cfg Config) (*Provider, error) {
	if cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("githubidp: client_id and client_secret are required")
	}
	p := &Provider{
		client:  cfg.HTTPClient,
		timeout: cfg.Timeout,
	}
	if p.client == nil {
		p.client = http.DefaultClient
	}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	var err error
	if p.allow, err = cfg.Allow.compile(); err != nil {
		return nil, err
	}
	if p.scopeRules, err = compileScopeRules(cfg.ScopeRules); err != nil {
		return nil, err
	}
	scopes := cfg.Scopes
	if len(scopes) == 0 {
		scopes = DefaultScopes
	}
	endpoint := endpoints.GitHub
	p.apiBase, _ = url.Parse("https://api.github.com/")
	if cfg.EnterpriseURL != "" {
		base, err := ParseEnterpriseURL(cfg.EnterpriseURL)
		if err != nil {
			return nil, err
		}
		endpoint = oauth2.Endpoint{
			AuthURL:  base + "/login/oauth/authorize",
			TokenURL: base + "/login/oauth/access_token",
		}
		p.apiBase, _ = url.Parse(base + "/api/v3/")
	}
	// GitHub accepts credentials in the body; saying so spares x/oauth2's
	// auto-detection a failed round trip.
	endpoint.AuthStyle = oauth2.AuthStyleInParams
	p.oauth = oauth2.Config{
		ClientID:     cfg.ClientID,
		ClientSecret: cfg.ClientSecret,
		Endpoint:     endpoint,
		Scopes:       scopes,
	}
	return p, nil
}

// ParseEnterpriseURL checks a GitHub Enterprise Server address and returns
// it without a trailing slash. It must be https, except on a loopback host
// (a local stand-in for tests and demos), and carry no query or fragment.
func ParseEnterpriseURL(raw string) (string, error) {
	u, err := url.Parse(raw)
	// A bare "?" or "#" leaves RawQuery and Fragment empty but survives
	// u.String(), which would put the endpoint paths in the query.
	if err != nil || u.Host == "" || strings.ContainsAny(raw, "?#") || u.User != nil {
		return "", fmt.Errorf("githubidp: enterprise_url %q must be an absolute URL such as https://ghe.example.com", raw)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
		return "", fmt.Errorf("githubidp: enterprise_url %q must use https", raw)
	}
	return strings.TrimRight(u.String(), "/"), nil
}

// HasAllowLists reports whether any allow-list is configured, that is
// whether admission needs more than a valid GitHub login.
func (p *Provider) HasAllowLists() bool {
	return !p.allow.empty()
}

// AuthCodeURL is GitHub's authorization URL for our state and callback,
// with the S256 PKCE challenge of verifier: GitHub accepts any sub-path
// of the registered callback, so a GitHub code that leaked from one
// sign-in must not be redeemable in another (RFC 9700 section 2.1.1).
func (p *Provider) AuthCodeURL(state, redirectURI, verifier string) string {
	c := p.oauth
	c.RedirectURL = redirectURI
	return c.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier))
}

// Exchange trades the code GitHub sent to our callback, with the PKCE
// verifier of its sign-in, for a GitHub token.
func (p *Provider) Exchange(ctx context.Context, code, redirectURI, verifier string) (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	c := p.oauth
	c.RedirectURL = redirectURI
	tok, err := c.Exchange(p.ctx(ctx), code, oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, describe("exchanging the code", err)
	}
	return tok, nil
}

// Admit identifies the owner of tok and checks the allow-lists. It returns
// ErrNotAllowed (with the identity) when GitHub knows the user but no list
// admits them. It also returns the restricted scopes the user may not be
// granted (withheldScopes): one reading of the user, their organizations
// and teams answers both, at every login and every refresh.
func (p *Provider) Admit(ctx context.Context, tok *oauth2.Token) (store.Identity, []string, error) {
	// One deadline for every page read, so a slow GitHub cannot hold a
	// sign-in open for a timeout per page.
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	gh := p.api(ctx, tok)
	id, err := currentUser(ctx, gh)
	if err != nil {
		return store.Identity{}, nil, describe("reading the user", err)
	}
	if id.ID == 0 || id.Login == "" {
		return store.Identity{}, nil, errors.New("githubidp: GitHub returned a user without id or login")
	}
	m := newMember(gh, id)
	if p.HasAllowLists() {
		ok, err := m.in(ctx, p.allow)
		if err != nil {
			return id, nil, err
		}
		if !ok {
			return id, nil, fmt.Errorf("githubidp: %s: %w", id.Login, ErrNotAllowed)
		}
	}
	withheld, err := p.withheldScopes(ctx, m)
	if err != nil {
		return id, nil, err
	}
	return id, withheld, nil
}

// Recheck confirms, when refreshing a grant, that GitHub still accepts the
// user's token (they may have revoked the app), that it still belongs to
// the same user (by numeric ID: a login changes when its owner renames,
// and GitHub frees it for someone else), and that the allow-lists still
// admit them as they are now; and returns the user's current profile and
// the scopes now withheld from them, as Admit does.
func (p *Provider) Recheck(ctx context.Context, tok *oauth2.Token, want store.Identity) (store.Identity, []string, error) {
	got, withheld, err := p.Admit(ctx, tok)
	if err != nil {
		return store.Identity{}, nil, err
	}
	if got.ID != want.ID {
		// Permanent: the token no longer speaks for the grant's user, so
		// the grant must go rather than fail as if GitHub were down.
		return store.Identity{}, nil, fmt.Errorf("githubidp: the GitHub token now belongs to another user: %w", oauth.ErrUpstreamRevoked)
	}
	return got, withheld, nil
}

// currentUser reads GET /user into the fields of an Identity. It goes
// through go-github (authentication, errors, rate limits) but decodes
// only what it keeps: go-github's whole User, some fifty pointer fields,
// was a sixth of the CPU of a refresh, which calls this every time.
func currentUser(ctx context.Context, gh *github.Client) (store.Identity, error) {
	req, err := gh.NewRequest(http.MethodGet, "user", nil)
	if err != nil {
		return store.Identity{}, err
	}
	var u struct {
		ID        int64  `json:"id"`
		Login     string `json:"login"`
		Name      string `json:"name"`
		Email     string `json:"email"`
		AvatarURL string `json:"avatar_url"`
	}
	if _, err := gh.Do(ctx, req, &u); err != nil {
		return store.Identity{}, err
	}
	return store.Identity{ID: u.ID, Login: u.Login, Name: u.Name, Email: u.Email, AvatarURL: u.AvatarURL}, nil
}

// Host names the GitHub this provider signs users in with (api.github.com,
// or the Enterprise Server's host): user IDs are unique within it only.
func (p *Provider) Host() string { return p.apiBase.Host }

// API returns a go-github client that acts as the owner of tok against
// the configured GitHub.
func (p *Provider) API(ctx context.Context, tok *oauth2.Token) *github.Client {
	return p.api(ctx, tok)
}

func (p *Provider) api(ctx context.Context, tok *oauth2.Token) *github.Client {
	hc := oauth2.NewClient(p.ctx(ctx), oauth2.StaticTokenSource(tok))
	gh := github.NewClient(hc)
	gh.BaseURL = p.apiBase
	return gh
}

// ctx carries our HTTP client to x/oauth2.
func (p *Provider) ctx(ctx context.Context) context.Context {
	return context.WithValue(ctx, oauth2.HTTPClient, p.client)
}

func lowerSet(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		if x = strings.TrimSpace(x); x != "" {
			m[strings.ToLower(x)] = true
		}
	}
	return m
}

// checkTeams refuses a team not written as org/team-slug.
func checkTeams(teams map[string]bool) error {
	for t := range teams {
		if org, slug, ok := strings.Cut(t, "/"); !ok || org == "" || slug == "" || strings.Contains(slug, "/") {
			return fmt.Errorf("githubidp: team %q must be written as org/team-slug", t)
		}
	}
	return nil
}

// isLoopbackHost reports whether host names this machine: "localhost" or a
// loopback IP literal.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
