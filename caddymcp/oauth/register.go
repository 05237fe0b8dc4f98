package oauth

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Client authentication methods at the token and revocation endpoints.
const (
	authMethodBasic = "client_secret_basic"
	authMethodPost  = "client_secret_post"
	authMethodNone  = "none"
)

// Grant types.
const (
	grantAuthorizationCode = "authorization_code"
	grantRefreshToken      = "refresh_token"
)

// Application types (OpenID Connect Dynamic Client Registration, which
// RFC 7591 clients such as the MCP SDKs send).
const (
	appTypeWeb    = "web"
	appTypeNative = "native"
)

// Bounds on registration metadata.
const (
	maxClientNameLen = 200
	maxURLFieldLen   = 2048
	maxScopeLen      = 1024
)

// registrationRequest is the RFC 7591 client metadata we act on. Unknown
// members are ignored, as RFC 7591 section 2 asks.
type registrationRequest struct {
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ApplicationType         string   `json:"application_type"`
	ClientName              string   `json:"client_name"`
	ClientURI               string   `json:"client_uri"`
	LogoURI                 string   `json:"logo_uri"`
	Scope                   string   `json:"scope"`
	SoftwareID              string   `json:"software_id"`
	SoftwareVersion         string   `json:"software_version"`
}

// registrationResponse is the RFC 7591 section 3.2.1 response.
type registrationResponse struct {
	ClientID                string   `json:"client_id"`
	ClientSecret            string   `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64    `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64   `json:"client_secret_expires_at,omitempty"`
	RedirectURIs            []string `json:"redirect_uris"`
	TokenEndpointAuthMethod string   `json:"token_endpoint_auth_method"`
	GrantTypes              []string `json:"grant_types"`
	ResponseTypes           []string `json:"response_types"`
	ApplicationType         string   `json:"application_type"`
	ClientName              string   `json:"client_name,omitempty"`
	ClientURI               string   `json:"client_uri,omitempty"`
	LogoURI                 string   `json:"logo_uri,omitempty"`
	Scope                   string   `json:"scope,omitempty"`
	SoftwareID              string   `json:"software_id,omitempty"`
	SoftwareVersion         string   `json:"software_version,omitempty"`
}

func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	if s.cfg.RegistrationClosed {
		newError(ErrAccessDenied, "this server does not accept dynamic client registration; use a pre-registered client or a client ID metadata document").Write(w)
		return
	}
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct != "application/json" {
		newError(ErrInvalidClientMetadata, "the body must be application/json").Write(w)
		return
	}
	var req registrationRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err := dec.Decode(&req); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			newError(ErrInvalidClientMetadata, "the registration request is too large").withStatus(http.StatusRequestEntityTooLarge).Write(w)
			return
		}
		newError(ErrInvalidClientMetadata, "the body is not a JSON object of client metadata").Write(w)
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		newError(ErrInvalidClientMetadata, "the body must hold exactly one JSON object").Write(w)
		return
	}
	c, cerr := newClient(&req)
	if cerr != nil {
		cerr.Write(w)
		return
	}
	c.CreatedAt = s.now().UTC().Truncate(time.Second)
	c.Issuer = s.issuer(r)
	var secret string
	existing := false
	requestedURIs := c.RedirectURIs
	if c.TokenEndpointAuthMethod == authMethodNone {
		// A public client that registers the same metadata again (on
		// every start, say) gets the same client back: no new record and
		// no charge against its address's registration budget.
		c.ID = s.publicClientID(c)
		prev, err := s.store.GetClient(r.Context(), c.ID)
		switch {
		case err == nil:
			c, existing = prev, true
		case !errors.Is(err, store.ErrNotFound):
			s.log.Error("looking up a client", zapErr(err))
			errNotStored.Write(w)
			return
		}
	} else {
		c.ID = newClientID()
		secret = newSecret(prefixClientSecret)
		c.SecretHash = hashSecret(secret)
	}
	if !existing {
		// Counted until the client obtains a grant: what a caller that
		// never signs anyone in leaves behind is bounded, how often
		// clients that do sign in register is not.
		ok, wait, err := s.leaveBehind(r, store.LeftoverClient, c.ID, c.CreatedAt.Add(store.UnusedClientTTL), s.registrationLimits)
		if err != nil {
			s.log.Error("counting a registration", zapErr(err))
			errNotStored.Write(w)
			return
		}
		if !ok {
			s.log.Debug("registration refused: too many clients without a grant", zap.String("client_addr", limitKey(s.cfg.ClientAddr(r))))
			e := newError(ErrTemporarilyUnavailable, "too many clients registered from this address have not been used yet; try again later").withStatus(http.StatusTooManyRequests)
			e.RetryAfter = wait
			e.Write(w)
			return
		}
		// ErrExists: the same public client registered twice at once;
		// both get the one record.
		if err := s.store.PutClient(r.Context(), c); err != nil && !errors.Is(err, store.ErrExists) {
			s.forgetLeftover(r, store.LeftoverClient, c.ID)
			s.log.Error("storing a registered client", zapErr(err))
			errNotStored.Write(w)
			return
		}
		s.log.Debug("client registered", clientFields(c)...)
		s.emit(Event{Kind: EventClientRegistered, ClientID: c.ID, ClientName: c.Name})
	}
	resp := registrationResponse{
		ClientID:         c.ID,
		ClientSecret:     secret,
		ClientIDIssuedAt: c.CreatedAt.Unix(),
		// The client's own list: for a client registered again it may
		// differ from the stored one only in loopback ports, which
		// match any port anyway (RFC 8252 section 7.3).
		RedirectURIs:            requestedURIs,
		TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
		GrantTypes:              c.GrantTypes,
		ResponseTypes:           c.ResponseTypes,
		ApplicationType:         c.ApplicationType,
		ClientName:              c.Name,
		ClientURI:               c.ClientURI,
		LogoURI:                 c.LogoURI,
		Scope:                   c.Scope,
		SoftwareID:              c.SoftwareID,
		SoftwareVersion:         c.SoftwareVersion,
	}
	if secret != "" {
		never := int64(0)
		resp.ClientSecretExpiresAt = &never
	}
	writeJSON(w, http.StatusCreated, resp)
}

// errNotStored answers a registration the store did not take.
var errNotStored = newError(ErrTemporarilyUnavailable, "the client could not be stored; try again")

// newClient validates client metadata (registered, pre-registered or in
// a metadata document) and returns the client it describes, without an
// ID or creation time, which each of those sets its own way; or an RFC
// 7591 error.
func newClient(req *registrationRequest) (*store.Client, *Error) {
	c := &store.Client{
		TokenEndpointAuthMethod: req.TokenEndpointAuthMethod,
		GrantTypes:              req.GrantTypes,
		ResponseTypes:           req.ResponseTypes,
		ApplicationType:         req.ApplicationType,
	}
	if c.ApplicationType == "" {
		// Clients that predate application_type, such as Cursor with its
		// cursor:// callback, say they are native by their redirect URIs.
		c.ApplicationType = appTypeWeb
		for _, u := range req.RedirectURIs {
			if scheme, _, ok := strings.Cut(u, ":"); ok && !strings.EqualFold(scheme, "https") && !strings.EqualFold(scheme, "http") {
				c.ApplicationType = appTypeNative
			}
		}
	}
	if c.ApplicationType != appTypeWeb && c.ApplicationType != appTypeNative {
		return nil, newError(ErrInvalidClientMetadata, `application_type must be "web" or "native"`)
	}
	if len(req.RedirectURIs) == 0 {
		return nil, newError(ErrInvalidRedirectURI, "redirect_uris is required")
	}
	if len(req.RedirectURIs) > maxRedirectURIs {
		return nil, newError(ErrInvalidRedirectURI, "too many redirect_uris")
	}
	for _, u := range req.RedirectURIs {
		if err := checkRedirectURI(u, c.ApplicationType); err != nil {
			return nil, newError(ErrInvalidRedirectURI, err.Error())
		}
	}
	c.RedirectURIs = slices.Compact(slices.Clone(req.RedirectURIs))

	if c.TokenEndpointAuthMethod == "" {
		c.TokenEndpointAuthMethod = authMethodBasic // RFC 7591 section 2
	}
	if !slices.Contains(clientAuthMethods, c.TokenEndpointAuthMethod) {
		return nil, newError(ErrInvalidClientMetadata, "token_endpoint_auth_method must be one of "+strings.Join(clientAuthMethods, ", "))
	}
	// Without grant_types we assume the client wants both grants we offer,
	// rather than RFC 7591's authorization_code alone: MCP clients that
	// omit it still expect to stay signed in.
	if len(c.GrantTypes) == 0 {
		c.GrantTypes = []string{grantAuthorizationCode, grantRefreshToken}
	}
	for _, g := range c.GrantTypes {
		if g != grantAuthorizationCode && g != grantRefreshToken {
			return nil, newError(ErrInvalidClientMetadata, "grant type "+quote(g)+" is not supported; use authorization_code and refresh_token")
		}
	}
	if !slices.Contains(c.GrantTypes, grantAuthorizationCode) {
		return nil, newError(ErrInvalidClientMetadata, "grant_types must include authorization_code")
	}
	c.GrantTypes = slices.Compact(slices.Sorted(slices.Values(c.GrantTypes)))
	if len(c.ResponseTypes) == 0 {
		c.ResponseTypes = []string{"code"}
	}
	for _, rt := range c.ResponseTypes {
		if rt != "code" {
			return nil, newError(ErrInvalidClientMetadata, "response type "+quote(rt)+" is not supported; only code is")
		}
	}
	c.ResponseTypes = []string{"code"}

	c.Name = cleanText(req.ClientName, maxClientNameLen)
	var ok bool
	if c.ClientURI, ok = httpsURL(req.ClientURI); !ok {
		return nil, newError(ErrInvalidClientMetadata, "client_uri must be an https URL")
	}
	if c.LogoURI, ok = httpsURL(req.LogoURI); !ok {
		return nil, newError(ErrInvalidClientMetadata, "logo_uri must be an https URL")
	}
	if len(req.Scope) > maxScopeLen {
		return nil, newError(ErrInvalidClientMetadata, "scope is too long")
	}
	c.Scope = strings.Join(strings.Fields(req.Scope), " ")
	c.SoftwareID = cleanText(req.SoftwareID, maxClientNameLen)
	c.SoftwareVersion = cleanText(req.SoftwareVersion, maxClientNameLen)
	if size := clientSize(c); size > maxClientSize {
		return nil, newError(ErrInvalidClientMetadata, "the client metadata is too large (at most 8 KiB of redirect URIs, names and URLs)")
	}
	return c, nil
}

// maxClientSize bounds what one client record holds, whatever the
// combination of fields: each is bounded, but twenty 2 KB redirect URIs
// would still make every record 40 KB.
const maxClientSize = 8 << 10

// clientSize is the size of the client's variable fields.
func clientSize(c *store.Client) int {
	n := len(c.Name) + len(c.ClientURI) + len(c.LogoURI) + len(c.Scope) + len(c.SoftwareID) + len(c.SoftwareVersion)
	for _, u := range c.RedirectURIs {
		n += len(u)
	}
	return n
}

// publicDedupWindow is how long a public client registering the same
// metadata again gets the same client_id. It is half of
// store.UnusedClientTTL, so a client handed out again has at least half
// a day before an unused one is collected.
const publicDedupWindow = store.UnusedClientTTL / 2

// publicClientID derives a public client's ID from its metadata (loopback
// redirect URIs without their port, which changes on every run) and the
// current dedup window. Only the server's key makes it; it is as
// unguessable as a random one to anyone who has not sent the same
// metadata, and sending the same metadata gains nothing: the client is
// public and its redirect URIs are the same.
func (s *Server) publicClientID(c *store.Client) string {
	uris := make([]string, len(c.RedirectURIs))
	for i, u := range c.RedirectURIs {
		uris[i] = loopbackPortless(u)
	}
	window := strconv.FormatInt(s.now().UnixNano()/int64(publicDedupWindow), 10)
	// The issuer too: the same metadata registered at two sites sharing
	// a store is two clients, each its own site's.
	return "mcp_client_" + s.digest("public-client", c.Issuer, window, c.Name, strings.Join(uris, "\n"),
		strings.Join(c.GrantTypes, " "), c.ApplicationType, c.ClientURI, c.LogoURI, c.Scope, c.SoftwareID, c.SoftwareVersion)
}

// newClientID is an unguessable identifier. Client IDs are not secrets,
// but unguessable ones cannot be enumerated.
func newClientID() string {
	return newSecret("mcp_client_")[:len("mcp_client_")+22]
}

// cleanText trims s, drops control and format characters (which could
// disguise a name on the consent page), and bounds its length in runes.
func cleanText(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range strings.TrimSpace(s) {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			continue
		}
		if n == max {
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// httpsURL accepts an empty value or an https URL of bounded length.
func httpsURL(s string) (string, bool) {
	if s == "" {
		return "", true
	}
	u, err := url.Parse(s)
	if err != nil || len(s) > maxURLFieldLen || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return "", false
	}
	return s, true
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + cleanText(s, 64) + `"`
}
