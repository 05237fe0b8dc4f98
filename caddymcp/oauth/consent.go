package oauth

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Cookies. Both are __Host- cookies: Secure, Path=/, no Domain, so no other
// host or path can set or read them.
const (
	// cookieBrowser identifies this browser for the length of a sign-in:
	// a pending request and the consent form are bound to it, so a link
	// to GitHub or to the consent form that someone else started does not
	// work in a victim's browser.
	cookieBrowser = "__Host-mcp_browser"
	// cookieApproved lists the clients this browser approved, signed.
	cookieApproved = "__Host-mcp_approved"
)

// Consent approvals are remembered for this long, for at most this many
// clients per browser.
const (
	approvalTTL  = 30 * 24 * time.Hour
	maxApprovals = 20
)

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		MaxAge:   int(maxAge / time.Second),
		Secure:   true,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
	})
}

// browserID returns this browser's binding value, setting the cookie if
// the browser has none yet.
func (s *Server) browserID(w http.ResponseWriter, r *http.Request) string {
	if id, ok := browserCookie(r); ok {
		return id
	}
	id := newSecret("")
	// A session cookie: it only needs to outlive one sign-in.
	s.setCookie(w, cookieBrowser, id, 0)
	return id
}

// browserCookie returns the binding value if the request carries a
// well-formed one.
func browserCookie(r *http.Request) (string, bool) {
	c, err := r.Cookie(cookieBrowser)
	if err != nil || len(c.Value) != 43 || !isBase64URL(c.Value) {
		return "", false
	}
	return c.Value, true
}

// approval is one remembered consent: what the user saw and approved,
// as a digest, with its expiry.
type approval struct {
	Key     string `json:"k"` // the whole request: see approvalKey
	Target  string `json:"t"` // the client and redirect URI alone
	Expires int64  `json:"e"`
	// User is the GitHub user who signed in after approving, set at the
	// callback. Until then the approval does not skip the consent page.
	User int64 `json:"u,omitempty"`
}

// approvalKey names exactly what the consent page showed: the client, the
// redirect URI (for loopback, without the port, which changes on every
// run of a native app), the resource and the scope. An approval of one
// redirect URI says nothing about the client's other ones.
func (s *Server) approvalKey(req *authzRequest) string {
	return s.approvalKeyOf(req.client, req.redirectURI, req.resource, req.scope)
}

// approvalKeyOf includes when the client record was created: a client
// deleted by an operator and registered again (a public client gets the
// same ID for the same metadata) is another client, which no earlier
// approval covers.
func (s *Server) approvalKeyOf(c *store.Client, redirectURI, resource, scope string) string {
	return s.digest("approval", c.ID, clientEpoch(c), loopbackPortless(redirectURI), resource, scope)
}

// clientEpoch identifies one record of a client ID.
func clientEpoch(c *store.Client) string {
	return strconv.FormatInt(c.CreatedAt.UnixNano(), 10)
}

// consentRecordKey is the store key of a user's consent to an approval.
func (s *Server) consentRecordKey(userID int64, approvalKey string) []byte {
	return s.keys.mac("consent-record", strconv.FormatInt(userID, 10), approvalKey)
}

// approvalTarget names where an approval lets the browser be sent: enough
// to redirect an error there, not to skip consent.
func (s *Server) approvalTarget(req *authzRequest) string {
	return s.digest("approval-target", req.client.ID, clientEpoch(req.client), loopbackPortless(req.redirectURI))
}

func (s *Server) digest(purpose string, parts ...string) string {
	return base64.RawURLEncoding.EncodeToString(s.keys.mac(purpose, parts...)[:16])
}

// loopbackPortless drops the port of a loopback http URI, which changes on
// every run of a native app.
func loopbackPortless(redirect string) string {
	if u, err := url.Parse(redirect); err == nil && u.Scheme == "http" && isLoopbackHost(u.Hostname()) {
		u.Host = u.Hostname()
		return u.String()
	}
	return redirect
}

// approvals reads the signed approval cookie, dropping expired entries.
func (s *Server) approvals(r *http.Request) []approval {
	c, err := r.Cookie(cookieApproved)
	if err != nil || len(c.Value) > 4096 {
		return nil
	}
	payload, ok := s.keys.verify(cookieApproved, c.Value)
	if !ok {
		return nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return nil
	}
	var list []approval
	if json.Unmarshal(raw, &list) != nil {
		return nil
	}
	now := s.now().Unix()
	live := list[:0]
	for _, a := range list {
		if a.Expires > now {
			live = append(live, a)
		}
	}
	return live
}

// approved reports whether this browser approved exactly this request,
// the user it then signed in as still has the consent on record (it is
// withdrawn when the client revokes its grant or an operator cuts the
// user off), and it has not expired.
//
// It returns the user the approval belongs to: the sign-in must then be
// theirs (see serveCallback), since this browser may be shared.
func (s *Server) approved(r *http.Request, req *authzRequest) (int64, bool) {
	if unverifiable(req) {
		return 0, false
	}
	key := s.approvalKey(req)
	for _, a := range s.approvals(r) {
		if a.Key != key || a.User == 0 {
			continue
		}
		_, err := s.store.GetConsent(r.Context(), s.consentRecordKey(a.User, key), s.now())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			s.log.Error("looking up a consent", zapErr(err))
		}
		return a.User, err == nil
	}
	return 0, false
}

// unverifiable reports whether nobody can tell the client of req from an
// impostor: a public client (no secret to prove itself with) whose
// redirect goes to a program on this computer. Any local program can
// listen on a loopback port or claim a private-use scheme, and a public
// client's client_id is no secret (the same metadata registers to the
// same one), so a remembered approval would let any program that opens
// the browser get a code with no page shown. RFC 8252 section 8.6: such
// requests are processed as if nothing had been approved before.
func unverifiable(req *authzRequest) bool {
	return req.client.SecretHash == nil && toThisComputer(req.redirectURI)
}

// toThisComputer reports whether a redirect URI goes to a program on the
// user's own computer: http on a loopback host, or a private-use scheme.
func toThisComputer(redirectURI string) bool {
	u, err := url.Parse(redirectURI)
	if err != nil {
		return false
	}
	return u.Scheme == "http" && isLoopbackHost(u.Hostname()) || u.Scheme != "http" && u.Scheme != "https"
}

// forgetApproval drops this browser's approval of p's request, so that
// the next identical request shows the consent page.
func (s *Server) forgetApproval(w http.ResponseWriter, r *http.Request, p *store.Pending) {
	client, err := s.lookupClient(r, p.ClientID)
	if err != nil {
		return
	}
	key := s.approvalKeyOf(client, p.RedirectURI, p.Resource, p.Scope)
	list := s.approvals(r)
	kept := list[:0]
	for _, a := range list {
		if a.Key != key {
			kept = append(kept, a)
		}
	}
	s.writeApprovals(w, kept)
}

// approvedTarget reports whether this browser's user consented to be sent
// to this client's redirect URI, for any request.
func (s *Server) approvedTarget(r *http.Request, req *authzRequest) bool {
	if req == nil {
		return false
	}
	target := s.approvalTarget(req)
	for _, a := range s.approvals(r) {
		if a.Target == target {
			return true
		}
	}
	return false
}

// remember adds the request to the approval cookie, keeping the newest
// maxApprovals entries.
func (s *Server) remember(w http.ResponseWriter, r *http.Request, req *authzRequest) {
	key := s.approvalKey(req)
	list := []approval{{Key: key, Target: s.approvalTarget(req), Expires: s.now().Add(approvalTTL).Unix()}}
	for _, a := range s.approvals(r) {
		if a.Key != key && len(list) < maxApprovals {
			list = append(list, a)
		}
	}
	s.writeApprovals(w, list)
}

func (s *Server) writeApprovals(w http.ResponseWriter, list []approval) {
	raw, _ := json.Marshal(list)
	s.setCookie(w, cookieApproved, s.keys.sign(cookieApproved, base64.RawURLEncoding.EncodeToString(raw)), approvalTTL)
}

// recordConsent runs at the callback, once the user who approved p is
// known: it stores the consent for that user and binds the browser's
// approval to them, so that the next identical request skips the page
// only while the record stands. A failure only costs the user the page
// next time.
func (s *Server) recordConsent(w http.ResponseWriter, r *http.Request, p *store.Pending, userID int64) {
	client, err := s.lookupClient(r, p.ClientID)
	if err != nil {
		// Gone since the consent page (deleted, or its document broke):
		// there is nothing to remember, and the code it gets is useless.
		s.log.Info("not recording a consent: the client is unavailable", zap.String("client_id", p.ClientID), zapErr(err))
		return
	}
	key := s.approvalKeyOf(client, p.RedirectURI, p.Resource, p.Scope)
	now := s.now()
	err = s.store.PutConsent(r.Context(), &store.Consent{
		Key:       s.consentRecordKey(userID, key),
		UserID:    userID,
		ClientID:  p.ClientID,
		Resource:  p.Resource,
		Scope:     p.Scope,
		CreatedAt: now,
		ExpiresAt: now.Add(approvalTTL),
	})
	if err != nil {
		s.log.Error("recording a consent", zapErr(err))
		return
	}
	list := s.approvals(r)
	for i := range list {
		if list[i].Key == key {
			list[i].User = userID
			s.writeApprovals(w, list)
			return
		}
	}
}

// csrfToken binds the consent form to this browser and to the exact
// request shown, so neither can be swapped under the user's click.
func (s *Server) csrfToken(browser string, req *authzRequest) string {
	return base64.RawURLEncoding.EncodeToString(s.keys.mac("consent",
		browser, req.client.ID, req.redirectURI, req.state, req.challenge, req.resource, req.scope))
}

// redirectHost is what the consent page shows most prominently: where the
// browser goes afterwards, as scheme://host, or the whole URI for a
// private-use scheme.
func redirectHost(redirectURI string) string {
	if u, err := url.Parse(redirectURI); err == nil && u.Host != "" {
		return u.Scheme + "://" + u.Host
	}
	return redirectURI
}

// describeClient says how the client is known, and what the user should
// be wary of: a name nobody verified, a redirect to a program on their own
// computer (any program can listen on a loopback port or claim a scheme),
// or a redirect to another host than the one vouching for the client.
func (s *Server) describeClient(req *authzRequest) (identity string, warnings []string) {
	var docHost string
	switch s.clientKind(req.client) {
	case clientConfigured:
		identity = "This client was registered by the operator of this server."
	case clientDocument:
		u, _ := url.Parse(req.client.ID)
		docHost = u.Hostname()
		identity = "This client is described by a document published at " + req.client.ID +
			"; its name is what that site says, and this server does not vouch for the site."
	default:
		identity = "This client registered itself; its name is what it claims and nobody has verified it."
		warnings = append(warnings, "Unverified client: check that you started this sign-in yourself, just now.")
	}
	u, err := url.Parse(req.redirectURI)
	switch {
	case err != nil:
	case toThisComputer(req.redirectURI):
		warnings = append(warnings, "The sign-in goes back to a program on this computer ("+u.Scheme+"://"+u.Host+"). Any program on it could pose as this client: only approve if you just started the sign-in from an app you trust.")
	case docHost != "" && !sameSite(u.Hostname(), docHost):
		warnings = append(warnings, "The sign-in goes back to "+u.Hostname()+", not to "+docHost+", which published the client's document.")
	}
	return identity, warnings
}

// sameSite reports whether host is docHost or one of its subdomains, or
// the other way round (app.example.com publishing for example.com).
func sameSite(host, docHost string) bool {
	host, docHost = strings.ToLower(host), strings.ToLower(docHost)
	return host == docHost || strings.HasSuffix(host, "."+docHost) || strings.HasSuffix(docHost, "."+host)
}

// params re-encodes a validated request for the consent form. The scope
// is the granted one, so the POST asks for exactly what the page showed.
func (req *authzRequest) params() map[string]string {
	p := map[string]string{
		"client_id":             req.client.ID,
		"redirect_uri":          req.redirectURI,
		"response_type":         "code",
		"code_challenge":        req.challenge,
		"code_challenge_method": "S256",
		"scope":                 req.scope,
	}
	if req.state != "" {
		p["state"] = req.state
	}
	p["resource"] = req.resource
	return p
}

// serveConsent takes the user's answer on the consent page.
func (s *Server) serveConsent(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeErrorPage(w, http.StatusMethodNotAllowed, "Method not allowed", "The consent form is submitted with POST.")
		return
	}
	form, msg := parseForm(w, r)
	if msg != "" {
		writeErrorPage(w, http.StatusBadRequest, "This consent form cannot be used", capitalize(msg)+".")
		return
	}
	req, aerr := s.parseAuthzRequest(r, form)
	if aerr != nil {
		// We built this form from a valid request: if it no longer is
		// one, it was edited, and nothing it names is to be trusted.
		s.refuseAuthz(w, r, nil, aerr)
		return
	}
	browser, ok := browserCookie(r)
	if !ok || !constantTimeEqual(form.Get("csrf"), s.csrfToken(browser, req)) {
		writeErrorPage(w, http.StatusForbidden, "This consent form cannot be used",
			"It was not issued to this browser, or it has been changed. Start again from your MCP client (cookies must be enabled).")
		return
	}
	switch form.Get("action") {
	case "approve":
		s.remember(w, r, req)
		s.log.Debug("consent approved", clientFields(req.client)...)
		s.sendToGitHub(w, r, req, browser, 0)
	case "deny":
		s.log.Debug("consent denied", clientFields(req.client)...)
		s.emit(Event{Kind: EventAuthorizationDenied, Reason: ReasonConsentDenied, ClientID: req.client.ID, ClientName: req.client.Name, Resource: req.resource})
		s.redirectToClient(w, r, req.redirectURI, newError(ErrAccessDenied, "the user denied the request").query(), req.state)
	default:
		writeErrorPage(w, http.StatusBadRequest, "This consent form cannot be used", "It did not say whether to approve or deny.")
	}
}
