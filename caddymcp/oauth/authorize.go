package oauth

import (
	"net/http"
	"net/url"
	"slices"
	"strings"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// authzRequest is a validated authorization request.
type authzRequest struct {
	client      *store.Client
	redirectURI string
	state       string
	challenge   string
	resource    string // a protected resource's URL, or the issuer for the whole site
	scope       string // granted scope, space-separated
}

// serveAuthorize validates an authorization request, then either shows the
// consent page or, for a client this browser already approved, sends the
// browser on to GitHub.
func (s *Server) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeErrorPage(w, http.StatusMethodNotAllowed, "Method not allowed", "The authorization endpoint takes GET requests.")
		return
	}
	req, aerr := s.parseAuthzRequest(r, r.URL.Query())
	if aerr != nil {
		// Registration is open, so a registered redirect URI proves
		// nothing: sending the browser there straight away would make
		// this server an open redirector (RFC 9700 section 4.11.2).
		// Errors are redirected only to where this browser's user
		// already consented to be sent.
		to := req
		if !s.approvedTarget(r, req) {
			to = nil
		}
		s.refuseAuthz(w, r, to, aerr)
		return
	}
	browser := s.browserID(w, r)
	s.emit(Event{Kind: EventAuthorizationStarted, ClientID: req.client.ID, ClientName: req.client.Name, Resource: req.resource, Scope: req.scope})
	if by, ok := s.approved(r, req); ok {
		s.sendToGitHub(w, r, req, browser, by)
		return
	}
	s.showConsent(w, r, req, browser)
}

// parseAuthzRequest validates the parameters of an authorization request.
// It returns a partially filled request with the error once the client
// and redirect URI are known, so the error can be sent there; before
// that, the request is nil and the error is for a page.
func (s *Server) parseAuthzRequest(r *http.Request, q url.Values) (*authzRequest, *Error) {
	for _, name := range []string{"client_id", "redirect_uri"} {
		if _, dup := single(q, name); dup {
			return nil, newError(ErrInvalidRequest, "the parameter "+name+" was sent more than once")
		}
	}
	clientID := q.Get("client_id")
	if clientID == "" {
		return nil, newError(ErrInvalidRequest, "the request has no client_id")
	}
	if len(clientID) > maxParamLen {
		return nil, newError(ErrInvalidRequest, "the client_id is too long")
	}
	client, err := s.lookupClient(r, clientID)
	if msg, status, _, ok := clientRefusal(err); ok {
		e := newError(ErrInvalidRequest, msg)
		if status != 0 {
			e.Status = status
		}
		return nil, e
	}
	if err != nil {
		s.log.Error("looking up a client", zapErr(err))
		return nil, newError(ErrTemporarilyUnavailable, "the server could not look up the client; try again")
	}
	redirectURI := q.Get("redirect_uri")
	switch {
	case redirectURI == "" && len(client.RedirectURIs) == 1:
		redirectURI = client.RedirectURIs[0]
	case redirectURI == "":
		return nil, newError(ErrInvalidRequest, "the request has no redirect_uri and the client registered several")
	case !matchRedirectURI(client.RedirectURIs, redirectURI):
		return nil, newError(ErrInvalidRequest, "the redirect_uri is not one the client registered")
	}
	req := &authzRequest{client: client, redirectURI: redirectURI}

	// From here on, errors go back to the client's redirect URI, with its
	// state when that is sound enough to echo.
	state, dupState := single(q, "state")
	if !dupState && len(state) <= maxParamLen {
		req.state = state
	}
	for _, name := range []string{"state", "response_type", "code_challenge", "code_challenge_method", "scope", "resource"} {
		if _, dup := single(q, name); dup {
			return req, newError(ErrInvalidRequest, "the parameter "+name+" was sent more than once")
		}
	}
	if len(state) > maxParamLen {
		return req, newError(ErrInvalidRequest, "the state is too long")
	}
	if rt := q.Get("response_type"); rt != "code" {
		return req, newError(ErrUnsupportedResponseType, "only response_type=code is supported")
	}
	req.challenge = q.Get("code_challenge")
	if req.challenge == "" {
		return req, newError(ErrInvalidRequest, "PKCE is required: send code_challenge with code_challenge_method=S256")
	}
	if m := q.Get("code_challenge_method"); m != "S256" {
		return req, newError(ErrInvalidRequest, "code_challenge_method must be S256")
	}
	if !validChallenge(req.challenge) {
		return req, newError(ErrInvalidRequest, "code_challenge must be the 43-character base64url SHA-256 of the verifier")
	}
	res, aerr := s.requestedResource(r, q.Get("resource"), q.Has("resource"))
	if aerr != nil {
		return req, aerr
	}
	req.resource = s.resourceURL(r, res)
	req.scope, aerr = s.grantScope(q.Get("scope"), res)
	if aerr != nil {
		return req, aerr
	}
	return req, nil
}

// requestedResource validates an RFC 8707 resource parameter. Absent, or
// the issuer itself, means the whole site: such tokens carry the issuer as
// their audience and work on every protected path of this site (and no
// other site, even one sharing the store). Either way the result is nil.
func (s *Server) requestedResource(r *http.Request, raw string, present bool) (*Resource, *Error) {
	if !present {
		return nil, nil
	}
	if raw == "" || len(raw) > maxParamLen {
		return nil, newError(ErrInvalidTarget, "the resource parameter is empty or too long")
	}
	res, ok := s.resourceByURL(r, raw)
	if !ok {
		return nil, newError(ErrInvalidTarget, "this server protects no resource "+quote(raw))
	}
	return res, nil
}

// grantScope decides the scope to grant for a request: the requested
// scopes this server supports (others are dropped, as RFC 6749 section 3.3
// allows), or, when none of those were requested, those the resource
// requires. The consent form posts the granted scope back through here, so
// granting must be idempotent: an empty grant must mean the default.
func (s *Server) grantScope(requested string, res *Resource) (string, *Error) {
	if len(requested) > maxScopeLen {
		return "", newError(ErrInvalidScope, "the scope parameter is too long")
	}
	var granted []string
	for _, sc := range strings.Fields(requested) {
		if slices.Contains(s.scopes, sc) && !slices.Contains(granted, sc) {
			granted = append(granted, sc)
		}
	}
	if len(granted) == 0 {
		if res != nil {
			granted = slices.Clone(res.Scopes)
		} else {
			for _, rr := range s.cfg.Resources {
				granted = append(granted, rr.Scopes...)
			}
		}
	}
	slices.Sort(granted)
	return strings.Join(slices.Compact(granted), " "), nil
}

// refuseAuthz reports an authorization error: by redirect to the client
// of to, or, if to is nil (the client or redirect URI is not to be
// trusted), on a page.
func (s *Server) refuseAuthz(w http.ResponseWriter, r *http.Request, to *authzRequest, e *Error) {
	if to == nil {
		if e.Status == http.StatusTooManyRequests {
			// Over the document fetch budget, as the page says: "try
			// again in a minute". A 503 gets writeErrorPage's, like
			// every other 503 of the server.
			w.Header().Set("Retry-After", "60")
		}
		writeErrorPage(w, e.Status, "This sign-in request cannot be used", capitalize(e.Description)+".")
		return
	}
	s.redirectToClient(w, r, to.redirectURI, e.query(), to.state)
}

// redirectToClient sends the browser back to the client with params, the
// client's state and our issuer (RFC 9207) on every response.
func (s *Server) redirectToClient(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values, state string) {
	u, err := url.Parse(redirectURI)
	if err != nil {
		// Only validated URIs get here; refuse rather than guess.
		writeErrorPage(w, http.StatusBadRequest, "This sign-in request cannot be used", "The redirect URI is invalid.")
		return
	}
	q := url.Values{}
	for k, vs := range params {
		q[k] = vs
	}
	if state != "" {
		q.Set("state", state)
	}
	q.Set("iss", s.issuer(r))
	// Keep the registered query exactly as registered (RFC 6749 section
	// 3.1.2) and add ours after it.
	if u.RawQuery != "" {
		u.RawQuery += "&" + q.Encode()
	} else {
		u.RawQuery = q.Encode()
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, u.String(), http.StatusFound)
}

// sendToGitHub records the request under a fresh state bound to this
// browser and redirects the browser to GitHub.
//
// approvedBy is the user whose remembered approval skipped the consent
// page (0 when the user just consented).
func (s *Server) sendToGitHub(w http.ResponseWriter, r *http.Request, req *authzRequest, browser string, approvedBy int64) {
	state := store.NewSecret("")
	verifier := oauth2.GenerateVerifier()
	p := &store.Pending{
		StateHash: store.SecretKey("", state),
		// Sealed under the key ring, so that a key rotated in while the
		// user is at GitHub still opens it at the callback.
		GitHubVerifier: s.keys.Seal([]byte(verifier), []byte("github-pkce")),
		ClientID:       req.client.ID,
		RedirectURI:    req.redirectURI,
		ClientState:    req.state,
		CodeChallenge:  req.challenge,
		Resource:       req.resource,
		Scope:          req.scope,
		BrowserHash:    hashSecret(browser),
		ApprovedBy:     approvedBy,
		ExpiresAt:      s.now().Add(pendingTTL),
	}
	// Counted until GitHub's callback brings it back: a caller that
	// approves and never signs in leaves a record behind, one that
	// finishes leaves nothing.
	key := store.SignInKey(p.StateHash)
	ok, wait, err := s.leaveBehind(r, store.LeftoverSignIn, key, p.ExpiresAt, s.pendingLimits)
	if err != nil {
		s.log.Error("counting a pending authorization", zapErr(err))
		s.refuseAuthz(w, r, req, newError(ErrTemporarilyUnavailable, "the server could not start the login; try again"))
		return
	}
	if !ok {
		s.log.Debug("sign-in refused: too many unfinished sign-ins", zap.String("client_addr", limitKey(s.cfg.ClientAddr(r))))
		w.Header().Set("Retry-After", retryAfterValue(wait))
		writeErrorPage(w, http.StatusTooManyRequests, "Too many sign-ins in progress",
			"Too many sign-ins from your network were started and not finished. Try again in a few minutes.")
		return
	}
	if err := s.store.PutPending(r.Context(), p); err != nil {
		s.forgetLeftover(r, store.LeftoverSignIn, key)
		s.log.Error("storing a pending authorization", zapErr(err))
		s.refuseAuthz(w, r, req, newError(ErrTemporarilyUnavailable, "the server could not start the login; try again"))
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	http.Redirect(w, r, s.idp.AuthCodeURL(state, s.issuer(r)+pathCallback, verifier), http.StatusFound)
}

// validChallenge checks the form of an S256 code challenge: the unpadded
// base64url encoding of 32 bytes.
func validChallenge(c string) bool {
	if len(c) != 43 {
		return false
	}
	return isBase64URL(c)
}

// validVerifier checks RFC 7636 section 4.1: 43 to 128 unreserved characters.
func validVerifier(v string) bool {
	if len(v) < 43 || len(v) > 128 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validScopeToken checks RFC 6749 section 3.3's scope-token grammar.
func validScopeToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c == 0x22 || c == 0x5c || c > 0x7e {
			return false
		}
	}
	return true
}

func capitalize(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
