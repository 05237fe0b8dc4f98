// Package oauth is the OAuth 2.1 authorization server of caddymcp: discovery
// metadata (RFC 8414, RFC 9728), client registration (RFC 7591), the
// authorization endpoint with consent and GitHub login, the token endpoint
// (authorization code with PKCE, refresh rotation), revocation (RFC 7009)
// and the bearer-token gate for protected resources (RFC 6750, RFC 8707).
//
// It knows nothing of Caddy: it is plain net/http over a store.Store and an
// IdentityProvider, so it can be tested and reasoned about on its own.
package oauth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Fixed lifetimes. Codes and states are short-lived by specification; there
// is nothing an operator gains by tuning them.
const (
	codeTTL    = 10 * time.Minute
	pendingTTL = 10 * time.Minute
)

// Defaults for the configurable lifetimes.
const (
	DefaultAccessTokenTTL      = time.Hour
	DefaultRefreshTokenTTL     = 30 * 24 * time.Hour
	DefaultRefreshReuseGrace   = 30 * time.Second
	DefaultRefreshReuseRetries = 5
)

// IdentityProvider logs users in upstream (GitHub) and admits them.
type IdentityProvider interface {
	// AuthCodeURL is where the browser is sent to log in; redirectURI is
	// our callback, verifier the sign-in's PKCE verifier (RFC 7636), whose
	// S256 challenge the URL carries.
	AuthCodeURL(state, redirectURI, verifier string) string
	// Exchange trades the upstream code, with the sign-in's verifier, for
	// the upstream token.
	Exchange(ctx context.Context, code, redirectURI, verifier string) (*oauth2.Token, error)
	// Admit identifies the token's owner and checks that they may use
	// this server, and returns the scopes the operator restricted to
	// other users that they may not be granted (nil if none). It wraps
	// ErrNotAllowed (returning the identity) when they may not use it,
	// ErrUpstreamRevoked when the token is refused, and
	// ErrUpstreamUnavailable (an *UpstreamUnavailableError, which may
	// say when to try again) when the upstream cannot be asked.
	Admit(ctx context.Context, tok *oauth2.Token) (who store.Identity, withheld []string, err error)
	// Recheck confirms on refresh that the token still speaks for the
	// user (by numeric ID) and that they are still admitted, and returns
	// their current profile (login, name, email: a login changes when its
	// owner renames) and the scopes now withheld from them, with the same
	// errors as Admit.
	Recheck(ctx context.Context, tok *oauth2.Token, who store.Identity) (current store.Identity, withheld []string, err error)
}

// Errors an IdentityProvider wraps to say why it refused.
var (
	// ErrNotAllowed means the upstream identified the user but no
	// allow-list admits them.
	ErrNotAllowed = errors.New("the user is not on any allow-list")
	// ErrUpstreamRevoked means the upstream no longer accepts the user's
	// token (it was revoked, or the app was deauthorized).
	ErrUpstreamRevoked = errors.New("the upstream no longer accepts the user's token")
)

// Resource is a protected resource: a path prefix of the site whose
// resource identifier is the issuer followed by Path.
type Resource struct {
	// Path is the path prefix, such as "/mcp".
	Path string
	// Scopes must all be granted to a token used on this resource.
	Scopes []string
}

// Config configures a Server.
type Config struct {
	// Issuer is the authorization server's identifier (scheme://host).
	// Empty means the scheme and host of each request.
	Issuer string
	// Resources are the protected resources. At least one is required.
	Resources []Resource
	// ScopesSupported lists the scopes clients may request; requested
	// scopes outside it are dropped. Resources' scopes are added to it.
	ScopesSupported []string
	// AccessTokenTTL and RefreshTokenTTL default to one hour and 30 days.
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	// RefreshReuseGrace is how long a rotated refresh token may be
	// presented again by its own client, while no token issued after it
	// was used, and get a fresh pair instead of revoking the grant (see
	// store/refresh.go): answers get lost and processes sharing one
	// token store refresh at once. Zero means DefaultRefreshReuseGrace;
	// negative means none, so that every reuse revokes.
	RefreshReuseGrace time.Duration
	// RefreshReuseRetries bounds how many such retries one generation of
	// tokens may serve; zero means DefaultRefreshReuseRetries.
	RefreshReuseRetries int
	// GitHubOutageGrace is how long after GitHub last confirmed a user a
	// refresh is still served while GitHub cannot be asked (down, slow,
	// rate limiting): a client that refreshes once per access-token
	// lifetime rides out an outage of about that long unnoticed, and
	// one outside it gets 503 with Retry-After, never invalid_grant.
	// Zero means twice AccessTokenTTL; negative means never.
	GitHubOutageGrace time.Duration

	// RegistrationClosed turns dynamic client registration (RFC 7591)
	// off: only pre-registered clients and, if enabled, clients with a
	// metadata document can sign in.
	RegistrationClosed bool
	// CIMD configures Client ID Metadata Documents, which are on unless
	// CIMD.Disabled.
	CIMD CIMDConfig
	// Clients are pre-registered by the operator.
	Clients []StaticClient
	// ClientAddr names the client address a request comes from, for rate
	// limits; the connection's IP if nil. Behind a proxy it should
	// return the real client's address.
	ClientAddr func(*http.Request) string
	// Observer, if set, receives the server's decisions for metrics and
	// the audit log.
	Observer Observer

	// RegistrationLimits bound the dynamically registered clients that
	// have not obtained a grant; zero fields take
	// DefaultRegistrationLimits'. A registration past them is refused
	// with 429.
	RegistrationLimits LeftoverLimits
	// PendingSignIns bound the sign-ins approved on the consent page
	// whose callback has not come back from GitHub; zero fields take
	// DefaultPendingSignIns'. An approval past them gets a page saying
	// to try again later.
	PendingSignIns LeftoverLimits
}

// StaticClient is a client the operator registers in the configuration,
// for clients that cannot register themselves.
type StaticClient struct {
	// ID is the client_id. It must not look like a URL.
	ID string
	// Secret makes the client confidential (client_secret_basic or
	// client_secret_post); empty means a public client.
	Secret string
	// Name is shown on the consent page.
	Name string
	// RedirectURIs are the client's redirect URIs.
	RedirectURIs []string
}

// Server serves the authorization server's endpoints and authenticates
// requests to protected resources. Create it with New.
type Server struct {
	cfg     Config
	scopes  []string // supported scopes, sorted, deduplicated
	store   store.Store
	idp     IdentityProvider
	keys    *Keys
	log     *zap.Logger
	now     func() time.Time
	clients map[string]*store.Client // pre-registered
	cimd    *cimdResolver            // nil when disabled

	plainHTTP sync.Once // warns once of a default issuer made https for a plain-HTTP request
	// Bounds on what anonymous callers leave behind (leftovers.go), with
	// the defaults applied.
	registrationLimits LeftoverLimits
	pendingLimits      LeftoverLimits
}

// Bounds on what anonymous callers leave behind (leftovers.go), by
// default. Clients registered that have not obtained a grant: 1,000 per
// address, because a hosted client registers for all of its users from a
// few egress addresses and some of those users never finish signing in
// (the store collects such a client after a day), and 20,000 in all, a
// few megabytes of store. Sign-ins approved on the consent page and not
// back from GitHub: 200 per address (a company behind one NAT signing in
// at once) and 10,000 in all; they expire after 10 minutes.
var (
	DefaultRegistrationLimits = LeftoverLimits{PerAddress: 1000, Total: 20000}
	DefaultPendingSignIns     = LeftoverLimits{PerAddress: 200, Total: 10000}
)

// Rate limits on fetching Client ID Metadata Documents, which make this
// server send requests: per client address a burst of 30 cache misses,
// then one every 10 seconds; server-wide a burst of 300 then one a
// second, at most 16 at a time, so that it cannot be turned into a
// crawler.
const (
	fetchBurst       = 30
	fetchEvery       = 10 * time.Second
	fetchGlobalBurst = 300
	fetchGlobalEvery = time.Second
	maxFetching      = 16
)

// New checks cfg and returns a Server.
func New(cfg Config, st store.Store, idp IdentityProvider, keys *Keys, log *zap.Logger) (*Server, error) {
	if st == nil || idp == nil || keys == nil {
		return nil, errors.New("oauth: store, identity provider and keys are required")
	}
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Issuer != "" {
		iss, err := ParseIssuer(cfg.Issuer)
		if err != nil {
			return nil, err
		}
		cfg.Issuer = iss
	}
	if len(cfg.Resources) == 0 {
		return nil, errors.New("oauth: at least one protected resource is required")
	}
	seen := map[string]bool{}
	scopes := slices.Clone(cfg.ScopesSupported)
	for _, r := range cfg.Resources {
		if err := checkResourcePath(r.Path); err != nil {
			return nil, err
		}
		if seen[r.Path] {
			return nil, fmt.Errorf("oauth: protected path %q is listed twice", r.Path)
		}
		seen[r.Path] = true
		scopes = append(scopes, r.Scopes...)
	}
	for _, sc := range scopes {
		if !validScopeToken(sc) {
			return nil, fmt.Errorf("oauth: %q is not a valid scope", sc)
		}
	}
	slices.Sort(scopes)
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = DefaultAccessTokenTTL
	}
	if cfg.RefreshTokenTTL <= 0 {
		cfg.RefreshTokenTTL = DefaultRefreshTokenTTL
	}
	switch {
	case cfg.GitHubOutageGrace == 0:
		cfg.GitHubOutageGrace = 2 * cfg.AccessTokenTTL
	case cfg.GitHubOutageGrace < 0:
		cfg.GitHubOutageGrace = 0
	}
	switch {
	case cfg.RefreshReuseGrace == 0:
		cfg.RefreshReuseGrace = DefaultRefreshReuseGrace
	case cfg.RefreshReuseGrace < 0:
		cfg.RefreshReuseGrace = 0
	}
	if cfg.RefreshReuseRetries < 0 {
		return nil, errors.New("oauth: refresh reuse retries must not be negative")
	}
	if cfg.RefreshReuseRetries == 0 {
		cfg.RefreshReuseRetries = DefaultRefreshReuseRetries
	}
	for _, l := range []LeftoverLimits{cfg.RegistrationLimits, cfg.PendingSignIns} {
		if l.PerAddress < 0 || l.Total < 0 {
			return nil, errors.New("oauth: limits must not be negative")
		}
	}
	clients, err := staticClients(cfg.Clients)
	if err != nil {
		return nil, err
	}
	if cfg.ClientAddr == nil {
		cfg.ClientAddr = remoteAddr
	}
	s := &Server{
		cfg:                cfg,
		scopes:             slices.Compact(scopes),
		store:              st,
		idp:                idp,
		keys:               keys,
		log:                log,
		now:                time.Now,
		clients:            clients,
		registrationLimits: withDefaults(cfg.RegistrationLimits, DefaultRegistrationLimits),
		pendingLimits:      withDefaults(cfg.PendingSignIns, DefaultPendingSignIns),
	}
	if !cfg.CIMD.Disabled {
		s.cimd = newCIMDResolver(s, cfg.CIMD)
	}
	return s, nil
}

// withDefaults fills the zero fields of l from def.
func withDefaults(l, def LeftoverLimits) LeftoverLimits {
	if l.PerAddress == 0 {
		l.PerAddress = def.PerAddress
	}
	if l.Total == 0 {
		l.Total = def.Total
	}
	return l
}

// staticClients checks the pre-registered clients with the registration
// rules and returns them by ID.
func staticClients(list []StaticClient) (map[string]*store.Client, error) {
	out := make(map[string]*store.Client, len(list))
	for _, sc := range list {
		if sc.ID == "" || len(sc.ID) > 200 || strings.ContainsAny(sc.ID, ": \t\r\n") {
			return nil, fmt.Errorf("oauth: client id %q must be 1 to 200 characters without colons or spaces", sc.ID)
		}
		if out[sc.ID] != nil {
			return nil, fmt.Errorf("oauth: client %q is listed twice", sc.ID)
		}
		req := registrationRequest{RedirectURIs: sc.RedirectURIs, ClientName: sc.Name, TokenEndpointAuthMethod: authMethodNone}
		if sc.Secret != "" {
			req.TokenEndpointAuthMethod = authMethodBasic
		}
		c, cerr := newClient(&req)
		if cerr != nil {
			return nil, fmt.Errorf("oauth: client %q: %s", sc.ID, cerr.Description)
		}
		c.ID = sc.ID
		if sc.Secret != "" {
			c.SecretHash = hashSecret(sc.Secret)
		}
		out[sc.ID] = c
	}
	return out, nil
}

// Why a client_id names no client we can use.
var (
	errUnknownClient = errors.New("the client is not registered with this server; it must register again")
	errCIMDDisabled  = errors.New("this server does not accept client metadata documents; the client must register")
)

// clientRefusal returns the message to show for a lookupClient error
// that is not a failure of ours, with the status of the authorization
// endpoint's page (0 for 400) and whether trying again later may work, or
// ok false for a failure of ours.
func clientRefusal(err error) (msg string, status int, transient, ok bool) {
	var ce *cimdError
	switch {
	case errors.Is(err, errUnknownClient), errors.Is(err, errCIMDDisabled):
		return err.Error(), 0, false, true
	case errors.As(err, &ce):
		return ce.description, ce.status, ce.transient, true
	}
	return "", 0, false, false
}

// lookupClient finds a client: pre-registered, described by a metadata
// document, or registered dynamically. It returns errUnknownClient, a
// *cimdError to show, or a store failure.
func (s *Server) lookupClient(r *http.Request, id string) (*store.Client, error) {
	if c := s.clients[id]; c != nil {
		return c, nil
	}
	if isClientIDURL(id) {
		if s.cimd == nil {
			return nil, errCIMDDisabled
		}
		return s.cimd.client(r.Context(), id, s.cfg.ClientAddr(r))
	}
	c, err := s.store.GetClient(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (c.Origin != "" || !s.ownClient(r, c))) {
		// A stored stand-in of a configured client that is no longer
		// configured is not a client: removing a client from the
		// configuration (say, because its secret leaked) must stop it.
		// Nor is a client another site registered: sites may share a
		// store, and one whose registration is closed must not honour
		// the clients of one whose registration is open.
		return nil, errUnknownClient
	}
	return c, err
}

// ownClient reports whether a registered client belongs to this site: it
// registered at this issuer. One registered before clients recorded their
// site is honoured only where registration is open, where it could have
// registered anyway.
func (s *Server) ownClient(r *http.Request, c *store.Client) bool {
	if c.Issuer == "" {
		return !s.cfg.RegistrationClosed
	}
	return c.Issuer == s.issuer(r)
}

// clientKind is how a client came to be known. Its value is the Origin
// of the client's stored stand-in (see store.Client.Origin): a client
// that registered itself is stored as itself, with none.
type clientKind string

const (
	clientRegistered clientKind = ""                     // RFC 7591 dynamic registration
	clientConfigured clientKind = store.OriginConfigured // the server's configuration
	clientDocument   clientKind = store.OriginDocument   // a client ID metadata document
)

// clientKind says how a client came to be known.
func (s *Server) clientKind(c *store.Client) clientKind {
	switch {
	case s.clients[c.ID] != nil:
		return clientConfigured
	case isClientIDURL(c.ID):
		return clientDocument
	}
	return clientRegistered
}

// SetClock replaces the clock; for tests.
func (s *Server) SetClock(now func() time.Time) { s.now = now }

// Endpoint returns the handler for one of the authorization server's own
// paths, or nil if path is not one of them.
func (s *Server) Endpoint(path string) http.HandlerFunc {
	switch path {
	case pathASMetadata:
		return s.serveASMetadata
	case pathRegister:
		return s.serveRegister
	case pathAuthorize, pathAuthorizeAlias:
		return s.serveAuthorize
	case pathConsent:
		return s.serveConsent
	case pathCallback:
		return s.serveCallback
	case PathToken:
		return s.serveToken
	case pathRevoke:
		return s.serveRevoke
	}
	if path == pathPRM || strings.HasPrefix(path, pathPRM+"/") {
		return s.servePRM
	}
	return nil
}

// The endpoints, at the site root.
const (
	pathASMetadata     = "/.well-known/oauth-authorization-server"
	pathPRM            = "/.well-known/oauth-protected-resource"
	pathRegister       = "/register"
	pathAuthorize      = "/authorize"
	pathAuthorizeAlias = "/auth"
	pathConsent        = "/consent"
	pathCallback       = "/callback"
	pathRevoke         = "/revoke"
)

// PathToken is the token endpoint's path, exported for the glue, which
// times the requests to it.
const PathToken = "/token"

// Issuer is the issuer this server serves r under: the configured one, or
// DefaultIssuer(r). Handlers that judge a request's Origin use it, so that
// they agree with the metadata this server advertises.
func (s *Server) Issuer(r *http.Request) string { return s.issuer(r) }

func (s *Server) issuer(r *http.Request) string {
	if s.cfg.Issuer != "" {
		return s.cfg.Issuer
	}
	iss := DefaultIssuer(r)
	if r.TLS == nil && strings.HasPrefix(iss, "https:") {
		s.plainHTTP.Do(func() {
			s.log.Warn("a plain-HTTP request to a public host: advertising an https issuer; set issuer to the public https URL", zap.String("issuer", iss))
		})
	}
	return iss
}

// DefaultIssuer is the issuer for r when none is configured: the scheme
// (requestScheme) and the lower-cased host the request came in on.
func DefaultIssuer(r *http.Request) string {
	return requestScheme(r) + "://" + strings.ToLower(r.Host)
}

// requestScheme is the scheme of the default issuer for r: https, except
// for a plain-HTTP request to a loopback host (local development). RFC
// 8414 requires an https issuer, so a plain-HTTP request to any other host
// (a site behind a TLS-terminating proxy, most likely) is given https
// URLs, never http ones; set Config.Issuer to say so explicitly.
func requestScheme(r *http.Request) string {
	if r.TLS == nil && isLoopbackHost((&url.URL{Host: r.Host}).Hostname()) {
		return "http"
	}
	return "https"
}

// resourceURL is the identifier of a protected resource; for nil, the
// whole site, it is the issuer.
func (s *Server) resourceURL(r *http.Request, res *Resource) string {
	if res == nil {
		return s.issuer(r)
	}
	return s.issuer(r) + res.Path
}

// ownAudience reports whether aud, the audience of a code, grant or
// token, is this site or one of its resources. A store may be shared by
// several sites; what one issued must not work at another.
func (s *Server) ownAudience(r *http.Request, aud string) bool {
	iss := s.issuer(r)
	return aud == iss || strings.HasPrefix(aud, iss+"/")
}

// resourceByURL finds the protected resource a `resource` parameter names:
// the one whose path is the longest prefix of the URL's path, so that a
// client that names its exact MCP endpoint (https://site/notes/sse under
// protect /notes) gets a token for /notes. The issuer itself (with or
// without a trailing slash) names all of them, which is what clients that
// discover the root metadata document ask for; it is returned as a nil
// Resource and ok true.
func (s *Server) resourceByURL(r *http.Request, u string) (res *Resource, ok bool) {
	iss := s.issuer(r)
	if u == iss || u == iss+"/" {
		return nil, true
	}
	path, found := strings.CutPrefix(u, iss)
	if !found || !cleanSubPath(path) {
		return nil, false
	}
	res = s.ResourceFor(path)
	return res, res != nil
}

// cleanSubPath accepts the path of a URL under a protected prefix as we
// would echo it in a metadata document: absolute, ASCII, no query,
// fragment, escapes, empty or dot segments, bounded.
func cleanSubPath(p string) bool {
	if !strings.HasPrefix(p, "/") || len(p) > 512 || strings.ContainsAny(p, "?#%\\ \t\r\n\"'<>") ||
		strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../") ||
		strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..") {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < 0x21 || p[i] > 0x7e {
			return false
		}
	}
	return true
}

// ParseIssuer checks an issuer identifier (RFC 8414 section 2: https, no
// query or fragment; http only for a loopback host, for local testing) and
// returns it without a trailing slash.
func ParseIssuer(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil || strings.Contains(raw, "?") {
		return "", fmt.Errorf("oauth: issuer %q must be an absolute URL such as https://mcp.example.com", raw)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
		return "", fmt.Errorf("oauth: issuer %q must use https", raw)
	}
	if u.Path != "" && u.Path != "/" {
		// The endpoints and well-known documents live at the site root,
		// so an issuer with a path would name documents we do not serve.
		return "", fmt.Errorf("oauth: issuer %q must not have a path", raw)
	}
	u.Path = ""
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host), nil
}

// checkResourcePath validates a protected path prefix.
func checkResourcePath(p string) error {
	// The same rules as for a URL below it (cleanSubPath): a protected
	// path must be one its metadata document and resource URL can name.
	if p == "/" || !cleanSubPath(p) || strings.Contains(p, "*") {
		return fmt.Errorf("oauth: protected path %q must be a clean path prefix such as /mcp (not / and without wildcards)", p)
	}
	if ReservedPath(p) {
		return fmt.Errorf("oauth: protected path %q overlaps an endpoint of the authorization server", p)
	}
	return checkPrefixEnd(p)
}

// ReservedPath reports whether p is a path the authorization server
// answers itself (its endpoints, and everything under /.well-known/),
// which no other use of the site's paths may take.
func ReservedPath(p string) bool {
	switch p {
	case pathRegister, PathToken, pathRevoke, pathCallback, pathAuthorize, pathAuthorizeAlias, pathConsent:
		return true
	}
	return strings.HasPrefix(p, "/.well-known/")
}
