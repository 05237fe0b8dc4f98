package caddymcp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/githubidp"
	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
)

func init() {
	caddy.RegisterModule(MCPAuth{})
}

// MCPAuth is an OAuth 2.1 authorization server for MCP, with GitHub as the
// identity provider, and the gate in front of the MCP servers it protects.
//
// It serves the authorization server's endpoints at the site root
// (/.well-known/oauth-authorization-server, /.well-known/oauth-protected-resource[/<path>],
// /register, /authorize and /auth, /consent, /callback, /token, /revoke).
// A request to a protected path needs a valid access token for that path's
// resource; anything else passes through untouched.
//
// After a token is accepted, the client's Authorization header is removed
// (tokens are never passed through) and these placeholders are set:
//
// Placeholder | Description
// ------------|-------------
// `{http.auth.user.id}` | GitHub numeric user ID
// `{http.auth.user.login}` | GitHub login
// `{http.auth.user.name}` | GitHub display name
// `{http.auth.user.email}` | GitHub public email
// `{mcp_auth.client_id}` | the OAuth client that holds the token
// `{mcp_auth.scope}` | the token's scopes, space-separated
type MCPAuth struct {
	// Issuer is the authorization server's identifier, an https URL
	// without a path. Default: the scheme and host of each request.
	Issuer string `json:"issuer,omitempty"`

	// GitHub configures login with GitHub. Required.
	GitHub *GitHubConfig `json:"github,omitempty"`

	// Audience's allow_users, allow_orgs and allow_teams admit the GitHub
	// users they name (logins, or id:<n>), the members of those
	// organizations and of those teams (written org/team-slug). Default:
	// empty. When all three lists are empty, any GitHub user is admitted.
	// The lists are re-checked at every refresh.
	githubidp.Audience

	// Protect lists the protected resources, each a path prefix with its
	// own RFC 9728 document. A request belongs to the resource with the
	// longest matching prefix. Default: /mcp, /sse and /messages.
	Protect []ProtectedPath `json:"protect,omitempty"`

	// ScopesSupported lists the scopes clients may request, in addition
	// to those any protected path requires. Default: empty.
	ScopesSupported []string `json:"scopes_supported,omitempty"`

	// StorageRaw selects where state is kept. Default: bbolt at
	// mcp_auth/state.db in Caddy's data directory.
	StorageRaw json.RawMessage `json:"storage,omitempty" caddy:"namespace=mcp_auth.storage inline_key=backend"`

	// AccessTokenTTL is the lifetime of access tokens. Default: 1h.
	AccessTokenTTL caddy.Duration `json:"access_token_ttl,omitempty"`
	// RefreshTokenTTL is how long a grant lives without being refreshed;
	// each refresh extends it. Default: 30d.
	RefreshTokenTTL caddy.Duration `json:"refresh_token_ttl,omitempty"`
	// RefreshReuseGrace is how long a rotated refresh token may be
	// presented again by its own client, while no token issued after it
	// was used, and get a fresh pair rather than revoking the grant:
	// clients retry a refresh whose answer was lost, and processes
	// sharing one token store refresh at once. 0 means never (every
	// reuse revokes). Default: 30s.
	RefreshReuseGrace *caddy.Duration `json:"refresh_reuse_grace,omitempty"`
	// RefreshReuseRetries bounds how many such retries one refresh
	// token's successors may serve before a reuse revokes the grant.
	// Default: 5.
	RefreshReuseRetries int `json:"refresh_reuse_retries,omitempty"`

	// SecretKey is 32 random bytes in base64 that seal GitHub tokens at
	// rest and sign cookies. Placeholders such as {env.*} and {file.*}
	// are replaced. Default: a key generated once into
	// mcp_auth/secret.key in Caddy's data directory (mode 0600); with
	// postgres storage, a key generated once into the database and shared
	// by every instance.
	SecretKey string `json:"secret_key,omitempty"`
	// PreviousSecretKeys are keys being rotated out, in the same form:
	// GitHub tokens sealed and cookies signed under them still open and
	// verify, while everything new uses SecretKey, so rotating the key
	// logs nobody out. Default: none.
	PreviousSecretKeys []string `json:"previous_secret_keys,omitempty"`

	// Registration is "open" (clients register themselves with RFC 7591
	// dynamic registration) or "closed" (only pre-registered clients and
	// clients with a metadata document). Default: open.
	Registration string `json:"registration,omitempty"`
	// RegistrationLimits bound the clients registered through open
	// registration that have not obtained a grant. Default: 1000 per
	// address, 20000 in all.
	RegistrationLimits *LeftoverLimits `json:"registration_limits,omitempty"`
	// PendingSignIns bound the sign-ins approved on the consent page that
	// have not come back from GitHub. Default: 200 per address, 10000 in
	// all.
	PendingSignIns *LeftoverLimits `json:"pending_sign_ins,omitempty"`
	// ClientIDMetadataDocuments configures clients that identify
	// themselves by the https URL of a metadata document. Default: on,
	// fetching from public addresses only.
	ClientIDMetadataDocuments *CIMDConfig `json:"client_id_metadata_documents,omitempty"`
	// Clients are pre-registered clients. Default: none.
	Clients []StaticClient `json:"clients,omitempty"`
	// RestrictScopes restricts scopes to some GitHub users, organizations
	// or teams. Default: none; every admitted user may be granted every
	// scope.
	RestrictScopes []ScopeRestriction `json:"restrict_scopes,omitempty"`
	// HealthPath, if set, is a path of the site where GET answers 200
	// with {"status":"ok"} while the state store answers, and 503
	// otherwise, for load balancers. It is matched exactly and needs no
	// token. Default: none (off).
	HealthPath string `json:"health_path,omitempty"`

	server    *oauth.Server
	idp       *githubidp.Provider
	resources []gatedResource // longest path first
	storage   StorageBackend
	logger    *zap.Logger
}

// GitHubConfig configures the GitHub OAuth app users log in through.
type GitHubConfig struct {
	// ClientID of the GitHub OAuth app. Required. Placeholders such as
	// {env.*} and {file.*} are replaced.
	ClientID string `json:"client_id,omitempty"`
	// ClientSecret of the GitHub OAuth app. Required. Placeholders such
	// as {env.*} and {file.*} are replaced.
	ClientSecret string `json:"client_secret,omitempty"`
	// EnterpriseURL is the address of a GitHub Enterprise Server, whose
	// web flow is at <url>/login/oauth/* and API at <url>/api/v3/.
	// Default: github.com.
	EnterpriseURL string `json:"enterprise_url,omitempty"`
	// Scopes are requested from GitHub. Default: read:user read:org.
	Scopes []string `json:"scopes,omitempty"`
	// OutageGrace is how long after GitHub last confirmed a user (at
	// sign-in or at a refresh) their refreshes are still served while
	// GitHub cannot be asked (down, slow, rate limiting); past it they
	// get 503 with Retry-After, and a GitHub outage never revokes. 0
	// means no grace. Default: twice access_token_ttl.
	OutageGrace *caddy.Duration `json:"outage_grace,omitempty"`
}

// ProtectedPath is one protected resource.
type ProtectedPath struct {
	// Path is the path prefix, such as /mcp; the resource identifier is
	// the issuer followed by Path.
	Path string `json:"path"`
	// Scopes must all be held by a token used on this path. Default:
	// none.
	Scopes []string `json:"scopes,omitempty"`
	// ForwardGitHubToken, when "Authorization", makes requests to this
	// path carry the user's GitHub token (from their login) to the
	// upstream as "Bearer <token>", for MCP servers that call GitHub as
	// the user; the client's value is dropped. No other header is
	// accepted: Caddy's debug logs redact only credential headers.
	// Default: not forwarded.
	ForwardGitHubToken string `json:"forward_github_token,omitempty"`
}

// DefaultProtect are the protected paths when none are configured.
var DefaultProtect = []string{"/mcp", "/sse", "/messages"}

// gatedResource pairs a resource with Caddy's own path matcher, so the
// gate matches requests exactly as `handle <path>*` does (case-insensitive,
// cleaned, slashes merged) and nothing a handle block routes slips past.
type gatedResource struct {
	res     *oauth.Resource
	matcher caddyhttp.MatchPath
	// lowerPath is res.Path in lower case, as the matcher compares it.
	lowerPath string
	// forwardGitHub sends the user's GitHub token upstream in the
	// Authorization header (the only header forward_github_token takes).
	forwardGitHub bool
}

// CaddyModule returns the Caddy module information.
func (MCPAuth) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_auth",
		New: func() caddy.Module { return new(MCPAuth) },
	}
}

// Provision sets up the authorization server.
func (m *MCPAuth) Provision(ctx caddy.Context) error {
	m.logger = ctx.Logger()
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return fmt.Errorf("mcp_auth: registering metrics: %w", err)
	}
	if err := checkHealthPath(m.HealthPath); err != nil {
		return fmt.Errorf("mcp_auth: %w", err)
	}
	if m.GitHub == nil {
		return fmt.Errorf("mcp_auth: a github block with client_id and client_secret is required")
	}
	if len(m.Protect) == 0 {
		for _, p := range DefaultProtect {
			m.Protect = append(m.Protect, ProtectedPath{Path: p})
		}
	}
	for _, p := range m.Protect {
		// Here, and not only in the Caddyfile, because JSON configs
		// reach Provision directly.
		if err := oauth.CheckProtectedPath(p.Path); err != nil {
			return fmt.Errorf("mcp_auth: %w", err)
		}
	}

	if m.StorageRaw == nil {
		m.StorageRaw = json.RawMessage(`{"backend":"bbolt"}`)
	}
	mod, err := ctx.LoadModule(m, "StorageRaw")
	if err != nil {
		return fmt.Errorf("mcp_auth: loading storage: %w", err)
	}
	m.storage = mod.(StorageBackend)

	previous, err := previousKeys(m.PreviousSecretKeys, m.SecretKey)
	if err != nil {
		return fmt.Errorf("mcp_auth: %w", err)
	}
	key, err := secretKeyFor(m.storage, m.SecretKey, previous, m.logger)
	if err != nil {
		return fmt.Errorf("mcp_auth: %w", err)
	}
	keys, err := oauth.NewKeys(key, previous...)
	if err != nil {
		return fmt.Errorf("mcp_auth: %w", err)
	}

	repl := caddy.NewReplacer()
	idp, err := githubidp.New(githubidp.Config{
		ClientID:      repl.ReplaceKnown(m.GitHub.ClientID, ""),
		ClientSecret:  repl.ReplaceKnown(m.GitHub.ClientSecret, ""),
		EnterpriseURL: repl.ReplaceKnown(m.GitHub.EnterpriseURL, ""),
		Scopes:        m.GitHub.Scopes,
		Allow:         m.Audience,
		ScopeRules:    m.scopeRules(),
		HTTPClient:    &http.Client{Timeout: 15 * time.Second, Transport: githubTimer{base: githubTransport()}},
	})
	if err != nil {
		return fmt.Errorf("mcp_auth: %w", err)
	}

	cfg := oauth.Config{
		Issuer:          repl.ReplaceKnown(m.Issuer, ""),
		ScopesSupported: m.ScopesSupported,
		AccessTokenTTL:  time.Duration(m.AccessTokenTTL),
		RefreshTokenTTL: time.Duration(m.RefreshTokenTTL),
		Observer:        observer(m.logger.Named("audit")),
	}
	for _, p := range m.Protect {
		cfg.Resources = append(cfg.Resources, oauth.Resource{Path: p.Path, Scopes: p.Scopes})
	}
	m.refreshConfig(&cfg)
	if err := m.clientsConfig(&cfg, repl); err != nil {
		return fmt.Errorf("mcp_auth: %w", err)
	}
	m.idp = idp
	m.server, err = oauth.New(cfg, m.storage.Store(), idp, keys, m.logger)
	if err != nil {
		return fmt.Errorf("mcp_auth: %w", err)
	}
	for _, p := range m.Protect {
		matcher := caddyhttp.MatchPath{p.Path + "*"}
		if err := matcher.Provision(ctx); err != nil {
			return err
		}
		forward := http.CanonicalHeaderKey(strings.TrimSpace(p.ForwardGitHubToken))
		if forward != "" && forward != "Authorization" {
			// Caddy's reverse_proxy logs upstream request headers at
			// debug level, redacting only credential headers such as
			// Authorization: a token in any other header would be logged.
			return fmt.Errorf("mcp_auth: forward_github_token %q: only Authorization is supported, because Caddy's logs redact no other header", p.ForwardGitHubToken)
		}
		m.resources = append(m.resources, gatedResource{res: m.server.ResourceFor(p.Path), matcher: matcher,
			lowerPath: strings.ToLower(p.Path), forwardGitHub: forward != ""})
	}
	slices.SortStableFunc(m.resources, func(a, b gatedResource) int { return len(b.res.Path) - len(a.res.Path) })
	paths := make([]string, len(m.resources))
	for i, g := range m.resources {
		paths[i] = g.res.Path + "*"
	}
	m.logger.Info("gating protected paths; requests to other paths pass through without a token", zap.Strings("paths", paths))
	if !idp.HasAllowLists() {
		m.logger.Warn("no allow_users, allow_orgs or allow_teams: every GitHub user can sign in")
	}
	return nil
}

// ServeHTTP serves the authorization server's endpoints, gates protected
// paths, and passes everything else on.
func (m *MCPAuth) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if h := m.server.Endpoint(r.URL.Path); h != nil {
		if r.URL.Path == oauth.PathToken {
			timeTokenRequest(w, r, h)
		} else {
			h(w, r)
		}
		return nil
	}
	if m.HealthPath != "" && r.URL.Path == m.HealthPath {
		m.serveHealth(w, r)
		return nil
	}
	g, err := m.resourceFor(r)
	if err != nil {
		return err
	}
	// The path checks come before anything else the gate decides, CORS
	// preflights included: a request the gate does not gate, or passes
	// without a token, must not be one an upstream reads as protected.
	if g == nil {
		if ambiguousPath(r) && m.underProtectedPath(r) {
			refuseAmbiguousPath(w)
			return nil
		}
		// No token of ours reaches any upstream, gated or not: a client
		// that sends its access token to another path of the site
		// (probing, or misconfigured) must not hand it on.
		if oauth.CarriesAccessToken(r) {
			r.Header.Del("Authorization")
		}
		return next.ServeHTTP(w, r)
	}
	if ambiguousPath(r) {
		refuseAmbiguousPath(w)
		return nil
	}
	// Static values win over providers, so identity placeholders set
	// earlier in the chain (by basic_auth, or a client-influenced `vars`)
	// are removed from every request the gate gates, whatever it
	// decides: the identity an upstream sees is the token's or none.
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	for _, k := range placeholderKeys {
		repl.Delete(k)
	}
	if isPreflight(r) {
		// A CORS preflight never carries credentials, and whether the
		// origin may call, with which headers (Mcp-Session-Id,
		// MCP-Protocol-Version, and from 2026-07-28 Mcp-Method,
		// Mcp-Name and Mcp-Param-*), is the protected server's decision:
		// it goes on, but as what a browser sends, without a body, and
		// with every identity placeholder empty (an unknown placeholder
		// would reach the upstream as its literal name).
		r.Body, r.ContentLength, r.TransferEncoding = http.NoBody, 0, nil
		r.Header.Del("Content-Length")
		r.Header.Del("Transfer-Encoding")
		repl.Map(noIdentity)
		// mcp_server judges the preflight's origin against this site's
		// issuer (issuer.go), which without a verdict it learns here.
		setSiteGate(r.Context(), m)
		return next.ServeHTTP(w, r)
	}
	tok, refusal := m.server.Authenticate(r, g.res)
	if refusal != nil {
		// Browser-based clients must be able to read the challenge to
		// discover where to get a token.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Expose-Headers", "WWW-Authenticate")
		refusal.Write(w)
		return nil
	}
	r.Header.Del("Authorization") // never the client's token
	if g.forwardGitHub {
		gh, err := m.server.UpstreamToken(r.Context(), tok.GrantID, tok.User.ID)
		if err != nil {
			m.logger.Warn("the GitHub token of a grant cannot be forwarded", zap.String("grant", tok.GrantID), zap.Error(err))
			http.Error(w, "the GitHub login behind this token is no longer available; sign in again", http.StatusUnauthorized)
			return nil
		}
		r.Header.Set("Authorization", "Bearer "+gh.AccessToken)
	}
	if mayBeLegacySSE(r) {
		w = newSSEEndpointRewriter(w, r, m.logger)
	}
	// One provider answers the placeholders when something asks for one,
	// rather than six static values set (and boxed) on every request.
	repl.Map(tokenPlaceholders(tok))
	setAuthenticated(r.Context(), &authenticated{token: tok, gate: m})
	return next.ServeHTTP(w, r)
}

// refuseAmbiguousPath answers a request whose path the gate and an
// upstream could read as different resources.
func refuseAmbiguousPath(w http.ResponseWriter) {
	http.Error(w, "encoded slashes, dots, backslashes or percent signs, semicolons and dot segments are not allowed in protected paths", http.StatusBadRequest)
}

// placeholderKeys are the placeholders tokenPlaceholders answers.
var placeholderKeys = []string{"http.auth.user.id", "http.auth.user.login", "http.auth.user.name",
	"http.auth.user.email", "mcp_auth.client_id", "mcp_auth.scope"}

// tokenPlaceholders provides the placeholders of an accepted token.
//
// Their values are data from a GitHub profile (a name is whatever its
// user typed) and from client registration. Caddy's replacer inserts a
// value as it is, never expanding placeholders within it, so a name such
// as "{env.HOME}" reaches an upstream literally. Control characters are
// replaced by spaces (headerSafe): in a header they would either split it
// or make Go refuse to send the request at all, which would lock that
// user out of every upstream that forwards their name.
func tokenPlaceholders(tok *store.AccessToken) caddy.ReplacerFunc {
	return func(key string) (any, bool) {
		switch key {
		case "http.auth.user.id":
			return strconv.FormatInt(tok.User.ID, 10), true
		case "http.auth.user.login":
			return headerSafe(tok.User.Login), true
		case "http.auth.user.name":
			return headerSafe(tok.User.Name), true
		case "http.auth.user.email":
			return headerSafe(tok.User.Email), true
		case "mcp_auth.client_id":
			return headerSafe(tok.ClientID), true
		case "mcp_auth.scope":
			return headerSafe(tok.Scope), true
		}
		return nil, false
	}
}

// noIdentity answers the identity placeholders with nothing, for a
// request the gate passes on without a token.
func noIdentity(key string) (any, bool) {
	if slices.Contains(placeholderKeys, key) {
		return "", true
	}
	return nil, false
}

// headerSafe returns s with each ASCII control character (what an HTTP
// field value must not hold, RFC 9110 section 5.5) replaced by a space.
// It allocates only when there is one to replace.
func headerSafe(s string) string {
	i := strings.IndexFunc(s, isControl)
	if i < 0 {
		return s
	}
	b := []byte(s)
	for ; i < len(b); i++ {
		if isControl(rune(b[i])) {
			b[i] = ' '
		}
	}
	return string(b)
}

func isControl(c rune) bool { return c < 0x20 || c == 0x7f }

// githubTransport is the connection pool for GitHub. Every refresh asks
// GitHub who the user is, many at once under load: Go's default keeps two
// idle connections per host, so the rest were closed and dialed again,
// each a new TLS handshake with GitHub.
func githubTransport() http.RoundTripper {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 128
	t.MaxIdleConnsPerHost = 64
	return t
}

// isPreflight reports whether r is a CORS preflight request.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != "" && r.Header.Get("Authorization") == ""
}

// ambiguousPath reports whether the path could mean one thing to the gate,
// which matches the decoded, cleaned path as Caddy does, and another to an
// upstream that routes on the raw path, decodes it once more, treats a
// backslash as a slash, or strips servlet path parameters (";jsessionid=")
// from each segment: "/mcp/admin%2F.." and "/mcp;/admin" are gated as
// /mcp but may be routed under /mcp/admin. No MCP client sends these.
func ambiguousPath(r *http.Request) bool {
	return ambiguousEscapedPath(r.URL.EscapedPath(), r.URL.Path)
}

// ambiguousEscapedPath is ambiguousPath for a path in its escaped (raw)
// and decoded forms.
func ambiguousEscapedPath(raw, decoded string) bool {
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '\\', ';':
			return true
		case '%':
			if i+2 < len(raw) {
				// %2F /, %2E ., %5C \, %3B ;, and %25 %, which another
				// decoding turns into any of them.
				switch hi, lo := raw[i+1], raw[i+2]|0x20; {
				case hi == '2' && (lo == 'f' || lo == 'e' || lo == '5'),
					hi == '5' && lo == 'c', hi == '3' && lo == 'b':
					return true
				}
			}
		}
	}
	p := decoded
	return strings.Contains(p, "/./") || strings.Contains(p, "/../") || strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/..")
}

// underProtectedPath reports whether an ambiguous path falls under a
// protected path in any reading an upstream may give it: raw, decoded
// once or twice, without its path parameters, with backslashes as
// slashes, with its dot segments resolved or kept. The gate's own
// reading, Caddy's, may put "/mcp/..%2fx" outside /mcp (it cleans to
// /x), while an upstream routing on the raw path serves it under /mcp.
func (m *MCPAuth) underProtectedPath(r *http.Request) bool {
	p := r.URL.EscapedPath()
	for range 3 {
		if m.hasProtectedPrefix(p) || m.hasProtectedPrefix(withoutPathParams(p)) {
			return true
		}
		next, err := url.PathUnescape(p)
		if err != nil || next == p {
			break
		}
		p = next
	}
	return false
}

// hasProtectedPrefix reports whether p, read as Caddy's matcher would
// (lower case, slashes merged) with backslashes as slashes, cleaned or
// not, starts with a protected path.
func (m *MCPAuth) hasProtectedPrefix(p string) bool {
	p = strings.ToLower(strings.ReplaceAll(p, "\\", "/"))
	for _, s := range [2]string{caddyhttp.CleanPath(p, true), mergeSlashes(p)} {
		for i := range m.resources {
			if strings.HasPrefix(s, m.resources[i].lowerPath) {
				return true
			}
		}
	}
	return false
}

// mergeSlashes replaces each run of slashes in p by one.
func mergeSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	return p
}

// withoutPathParams removes from each segment of p what follows a ";",
// as servlet containers do.
func withoutPathParams(p string) string {
	if !strings.Contains(p, ";") {
		return p
	}
	segs := strings.Split(p, "/")
	for i, s := range segs {
		segs[i], _, _ = strings.Cut(s, ";")
	}
	return strings.Join(segs, "/")
}

// resourceFor returns the protected resource r falls under, longest
// prefix first, or nil.
func (m *MCPAuth) resourceFor(r *http.Request) (*gatedResource, error) {
	for i := range m.resources {
		ok, err := m.resources[i].matcher.MatchWithError(r)
		if err != nil {
			return nil, caddyhttp.Error(http.StatusBadRequest, err)
		}
		if ok {
			return &m.resources[i], nil
		}
	}
	return nil, nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*MCPAuth)(nil)
	_ caddyhttp.MiddlewareHandler = (*MCPAuth)(nil)
)
