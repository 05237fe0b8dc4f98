package fakegithub

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"html/template"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

const (
	// codeTTL is how long an authorization code stays valid, as on GitHub.
	codeTTL = 10 * time.Minute
	// nonceTTL is how long a chooser page's form stays valid.
	nonceTTL = 30 * time.Minute

	docsAuthorizeErrors = "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/"
	docsTokenErrors     = "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors/"
)

// authCode is an outstanding authorization code.
type authCode struct {
	clientID    string
	login       string
	redirectURI string // the redirect_uri given at authorize, "" if none
	scopes      []string
	challenge   string // PKCE S256 code_challenge, "" if none
	expires     time.Time
}

// tokenInfo is what an access token grants.
type tokenInfo struct {
	login    string
	clientID string
	scopes   []string
}

// handleAuthorize serves /login/oauth/authorize.
//
// Query parameters: client_id (required), redirect_uri, state, scope
// (space- or comma-separated), prompt=select_account (always show the
// chooser), and PKCE code_challenge with code_challenge_method=S256.
//
// Errors follow GitHub: an unknown client_id gets an HTML 404 page; a
// redirect_uri that does not match the app's callback URL redirects to the
// registered callback URL (never to the offered one) with
// error=redirect_uri_mismatch; a malformed PKCE challenge redirects with
// error=invalid_request; SetDeny(true) redirects with error=access_denied.
//
// The redirect_uri rule is GitHub's: same scheme, the host equal to the
// callback's host or a subdomain of it, the same port (except that for a
// loopback callback host any port is accepted), and a path equal to the
// callback's path or below it. Dot segments, user info and fragments are
// rejected.
//
// The signed-in user is the fakegithub_login cookie's user, else
// DefaultLogin. With one, the endpoint redirects straight away with code and
// state, as GitHub does for an app the user approved before. With none (or
// with prompt=select_account) it renders a chooser page whose buttons POST
// back here; the POST sets the cookie and redirects with the code.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost:
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		s.errorPage(w, http.StatusMethodNotAllowed, "Method not allowed.")
		return
	}
	q := r.URL.Query()
	s.mu.Lock()
	app, ok := s.apps[q.Get("client_id")]
	s.mu.Unlock()
	if !ok || q.Get("client_id") == "" {
		s.errorPage(w, http.StatusNotFound, "Not Found: no OAuth app is registered with this client_id.")
		return
	}
	callback, err := url.Parse(app.CallbackURL)
	if err != nil || !callback.IsAbs() || callback.Host == "" {
		s.errorPage(w, http.StatusInternalServerError, "The OAuth app's registered callback URL is not a valid absolute URL.")
		return
	}
	state := q.Get("state")
	redirect := callback
	explicitRedirect := q.Get("redirect_uri")
	if explicitRedirect != "" {
		u, err := url.Parse(explicitRedirect)
		if err != nil || !redirectAllowed(callback, u) {
			redirectWithError(w, callback, state, "redirect_uri_mismatch",
				"The redirect_uri MUST match the registered callback URL for this application.",
				docsAuthorizeErrors+"#redirect-uri-mismatch")
			return
		}
		redirect = u
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	if (challenge != "" || method != "") && (method != "S256" || !validChallenge(challenge)) {
		redirectWithError(w, redirect, state, "invalid_request",
			"code_challenge must be 43-128 characters and code_challenge_method must be S256.",
			docsAuthorizeErrors)
		return
	}
	s.mu.Lock()
	deny := s.deny
	s.mu.Unlock()
	if deny {
		redirectWithError(w, redirect, state, "access_denied",
			"The user has denied your application access.",
			docsAuthorizeErrors+"#access-denied")
		return
	}

	var login string
	if r.Method == http.MethodPost {
		if err := r.ParseForm(); err != nil {
			s.errorPage(w, formErrorStatus(err), "The form could not be read.")
			return
		}
		if !s.consumeNonce(r.PostForm.Get("authenticity_token")) {
			s.errorPage(w, http.StatusUnprocessableEntity, "This form has expired or was already used. Go back and reload the page.")
			return
		}
		s.mu.Lock()
		u := s.lookupUserLocked(r.PostForm.Get("login"))
		if u != nil {
			login = u.Login
		}
		s.mu.Unlock()
		if login == "" {
			s.errorPage(w, http.StatusUnprocessableEntity, "Unknown user.")
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name:     LoginCookie,
			Value:    login,
			Path:     "/",
			HttpOnly: true,
			SameSite: http.SameSiteLaxMode,
		})
	} else if q.Get("prompt") != "select_account" {
		login = s.signedIn(r)
	}
	if login == "" {
		s.renderChooser(w, app, redirect, q)
		return
	}

	code := randomHex(10)
	s.mu.Lock()
	now := s.now()
	pruneExpired(s.codes, now, func(c *authCode) time.Time { return c.expires })
	s.codes[code] = &authCode{
		clientID:    app.ClientID,
		login:       login,
		redirectURI: explicitRedirect,
		scopes:      parseScopes(q.Get("scope")),
		challenge:   challenge,
		expires:     now.Add(codeTTL),
	}
	s.mu.Unlock()

	v := url.Values{"code": {code}}
	if state != "" {
		v.Set("state", state)
	}
	redirectTo(w, redirect, v)
}

// signedIn returns the login of the user the browser is signed in as: the
// cookie's user if it exists, else the default login's user, else "".
func (s *Server) signedIn(r *http.Request) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, err := r.Cookie(LoginCookie); err == nil {
		if u := s.lookupUserLocked(c.Value); u != nil {
			return u.Login
		}
	}
	if u := s.lookupUserLocked(s.defaultLogin); u != nil {
		return u.Login
	}
	return ""
}

// handleAccessToken serves POST /login/oauth/access_token.
//
// Parameters (form body or query): client_id, client_secret, code,
// redirect_uri, code_verifier, grant_type (empty or authorization_code).
// The client credentials may instead come from HTTP Basic auth
// (form-urlencoded as RFC 6749 section 2.3.1 says, which x/oauth2 does).
//
// Like GitHub, the response is JSON when the Accept header asks for
// application/json and application/x-www-form-urlencoded otherwise, and
// errors are reported with HTTP 200 and an "error" field:
// incorrect_client_credentials, bad_verification_code (unknown, used,
// expired or other client's code, or a wrong PKCE code_verifier),
// redirect_uri_mismatch (a redirect_uri differing from the one given at
// authorize; omitting it is accepted) and unsupported_grant_type.
// Only a successful exchange uses up a code.
func (s *Server) handleAccessToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		writeJSON(w, http.StatusMethodNotAllowed, apiError{Message: "Method Not Allowed"})
		return
	}
	s.mu.Lock()
	s.exchanges++
	s.mu.Unlock()
	if fault := s.faultFor(OnTokenEndpoint, ""); fault != (Fault{}) {
		if !fault.wait(r) {
			return
		}
		if fault.Fail == PrimaryRateLimit {
			// Anonymous: the app is not a REST API caller of its own.
			s.takeRate(w, r, nil, fault)
			return
		}
		if s.writeFailure(w, fault) {
			return
		}
	}
	if err := r.ParseForm(); err != nil {
		writeJSON(w, formErrorStatus(err), apiError{Message: "Problems parsing request body"})
		return
	}
	asJSON := acceptsJSON(r.Header.Get("Accept"))
	fail := func(code, desc, anchor string) {
		writeTokenResponse(w, asJSON, map[string]string{
			"error":             code,
			"error_description": desc,
			"error_uri":         docsTokenErrors + anchor,
		})
	}

	clientID, secret := r.Form.Get("client_id"), r.Form.Get("client_secret")
	if user, pass, ok := r.BasicAuth(); ok {
		if clientID == "" {
			clientID = formUnescape(user)
		}
		if secret == "" {
			secret = formUnescape(pass)
		}
	}
	if gt := r.Form.Get("grant_type"); gt != "" && gt != "authorization_code" {
		fail("unsupported_grant_type", "The grant type is not supported by this stand-in.", "")
		return
	}
	s.mu.Lock()
	app, ok := s.apps[clientID]
	s.mu.Unlock()
	if !ok || clientID == "" || secret == "" ||
		subtle.ConstantTimeCompare([]byte(secret), []byte(app.ClientSecret)) != 1 {
		fail("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.", "#incorrect-client-credentials")
		return
	}

	code := r.Form.Get("code")
	s.mu.Lock()
	c, ok := s.codes[code]
	if !ok || code == "" || c.clientID != app.ClientID || !s.now().Before(c.expires) {
		s.mu.Unlock()
		fail("bad_verification_code", "The code passed is incorrect or expired.", "#bad-verification-code")
		return
	}
	if ru := r.Form.Get("redirect_uri"); c.redirectURI != "" && ru != "" && ru != c.redirectURI {
		s.mu.Unlock()
		fail("redirect_uri_mismatch", "The redirect_uri MUST match the registered callback URL for this application.", "#redirect-uri-mismatch")
		return
	}
	if c.challenge != "" && !verifierMatches(r.Form.Get("code_verifier"), c.challenge) {
		s.mu.Unlock()
		fail("bad_verification_code", "The code_verifier does not match the code_challenge.", "#bad-verification-code")
		return
	}
	delete(s.codes, code)
	tok := newAccessToken()
	s.tokens[tok] = &tokenInfo{login: c.login, clientID: c.clientID, scopes: c.scopes}
	scopes := strings.Join(c.scopes, ",")
	s.mu.Unlock()

	writeTokenResponse(w, asJSON, map[string]string{
		"access_token": tok,
		"token_type":   "bearer",
		"scope":        scopes,
	})
}

// writeTokenResponse writes fields as JSON or as a form-encoded body.
func writeTokenResponse(w http.ResponseWriter, asJSON bool, fields map[string]string) {
	w.Header().Set("Cache-Control", "no-store")
	if asJSON {
		writeJSON(w, http.StatusOK, fields)
		return
	}
	v := url.Values{}
	for k, f := range fields {
		v.Set(k, f)
	}
	w.Header().Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte(v.Encode()))
}

// acceptsJSON reports whether an Accept header lists application/json.
func acceptsJSON(accept string) bool {
	for part := range strings.SplitSeq(accept, ",") {
		mt, _, _ := strings.Cut(part, ";")
		if strings.EqualFold(strings.TrimSpace(mt), "application/json") {
			return true
		}
	}
	return false
}

// formUnescape undoes the form-urlencoding of Basic auth client credentials,
// returning s unchanged if it is not validly encoded.
func formUnescape(s string) string {
	if u, err := url.QueryUnescape(s); err == nil {
		return u
	}
	return s
}

// formErrorStatus maps a ParseForm error to an HTTP status.
func formErrorStatus(err error) int {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge
	}
	return http.StatusBadRequest
}

// parseScopes splits a space- or comma-separated scope list, dropping
// empties and duplicates.
func parseScopes(raw string) []string {
	var out []string
	for _, f := range strings.FieldsFunc(raw, func(r rune) bool { return r == ' ' || r == ',' }) {
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out
}

// validChallenge checks a PKCE code_challenge's length and alphabet
// (RFC 7636 section 4.2).
func validChallenge(c string) bool {
	if len(c) < 43 || len(c) > 128 {
		return false
	}
	for _, r := range c {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' ||
			r == '-' || r == '.' || r == '_' || r == '~') {
			return false
		}
	}
	return true
}

// verifierMatches reports whether BASE64URL(SHA256(verifier)) == challenge.
func verifierMatches(verifier, challenge string) bool {
	if verifier == "" {
		return false
	}
	sum := sha256.Sum256([]byte(verifier))
	got := base64.RawURLEncoding.EncodeToString(sum[:])
	return subtle.ConstantTimeCompare([]byte(got), []byte(challenge)) == 1
}

// redirectAllowed applies GitHub's redirect_uri rule against the registered
// callback URL.
func redirectAllowed(callback, u *url.URL) bool {
	if !u.IsAbs() || u.Opaque != "" || u.User != nil || u.Fragment != "" || u.Host == "" {
		return false
	}
	if !strings.EqualFold(u.Scheme, callback.Scheme) {
		return false
	}
	cbHost, uHost := strings.ToLower(callback.Hostname()), strings.ToLower(u.Hostname())
	isIP := net.ParseIP(cbHost) != nil
	if uHost != cbHost && (isIP || !strings.HasSuffix(uHost, "."+cbHost)) {
		return false
	}
	loopback := isLoopbackHost(cbHost) && uHost == cbHost
	if !loopback && effectivePort(u) != effectivePort(callback) {
		return false
	}
	cbPath, uPath := callback.Path, u.Path
	if cbPath == "" {
		cbPath = "/"
	}
	if uPath == "" {
		uPath = "/"
	}
	for seg := range strings.SplitSeq(uPath, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	if uPath == cbPath {
		return true
	}
	prefix := cbPath
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return strings.HasPrefix(uPath, prefix)
}

// effectivePort returns u's port, defaulting by scheme.
func effectivePort(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	switch strings.ToLower(u.Scheme) {
	case "https":
		return "443"
	case "http":
		return "80"
	}
	return ""
}

// redirectTo answers 302 to base with extra query parameters added.
func redirectTo(w http.ResponseWriter, base *url.URL, extra url.Values) {
	u := *base
	q := u.Query()
	for k, vs := range extra {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	w.Header().Set("Location", u.String())
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusFound)
}

// redirectWithError redirects to base with an OAuth error, as GitHub does.
func redirectWithError(w http.ResponseWriter, base *url.URL, state, code, desc, uri string) {
	v := url.Values{
		"error":             {code},
		"error_description": {desc},
		"error_uri":         {uri},
	}
	if state != "" {
		v.Set("state", state)
	}
	redirectTo(w, base, v)
}

// consumeNonce reports whether n is a live chooser-form nonce, using it up.
func (s *Server) consumeNonce(n string) bool {
	if n == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	exp, ok := s.nonces[n]
	delete(s.nonces, n)
	return ok && s.now().Before(exp)
}

// pruneExpired deletes expired entries from m and, if it is still at the
// maxPending cap, arbitrary further ones to make room.
func pruneExpired[V any](m map[string]V, now time.Time, expiry func(V) time.Time) {
	for k, v := range m {
		if !now.Before(expiry(v)) {
			delete(m, k)
		}
	}
	for k := range m {
		if len(m) < maxPending {
			break
		}
		delete(m, k)
	}
}

// pageHeaders sets the headers of every HTML page the server renders.
func pageHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "deny")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	h.Set("Referrer-Policy", "no-referrer")
}

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="robots" content="noindex">
<title>fakegithub: NOT GitHub</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 42em; margin: 2em auto; padding: 0 1em; }
.warn { background: #b00020; color: #fff; padding: 1em; font-size: 1.5em; font-weight: bold; text-align: center; border-radius: 6px; }
button { font-size: 1.1em; margin: .3em 0; padding: .4em 1em; cursor: pointer; }
code { background: #eee; padding: 0 .2em; }
</style>
</head>
<body>
<p class="warn">&#9888; This is a local stand-in for GitHub, NOT GitHub. &#9888;</p>
{{if .Error}}<h1>Error</h1>
<p>{{.Error}}</p>
{{else}}<h1>Sign in to continue</h1>
<p>The OAuth app <code>{{.ClientID}}</code> asks for access{{if .Scope}} with scopes <code>{{.Scope}}</code>{{end}}.
You will be sent back to <code>{{.RedirectHost}}</code>.</p>
{{range .Users}}<form method="post" action="{{$.Action}}">
<input type="hidden" name="authenticity_token" value="{{$.Nonce}}">
<input type="hidden" name="login" value="{{.Login}}">
<button type="submit">Continue as {{.Login}}{{if .Name}} ({{.Name}}){{end}}</button>
</form>
{{else}}<p>No users are configured on this stand-in.</p>
{{end}}{{end}}</body>
</html>
`))

// pageData feeds pageTemplate.
type pageData struct {
	Error        string
	ClientID     string
	Scope        string
	RedirectHost string
	Action       string
	Nonce        string
	Users        []pageUser
}

type pageUser struct{ Login, Name string }

// errorPage renders an HTML error page with the given status.
func (s *Server) errorPage(w http.ResponseWriter, status int, msg string) {
	pageHeaders(w)
	w.WriteHeader(status)
	pageTemplate.Execute(w, pageData{Error: msg})
}

// renderChooser renders the "choose a user" page for an authorize request.
func (s *Server) renderChooser(w http.ResponseWriter, app App, redirect *url.URL, q url.Values) {
	nonce := randomString(alnum, 32)
	d := pageData{
		ClientID:     app.ClientID,
		Scope:        strings.Join(parseScopes(q.Get("scope")), " "),
		RedirectHost: redirect.Host,
		Action:       "/login/oauth/authorize?" + q.Encode(),
		Nonce:        nonce,
	}
	s.mu.Lock()
	now := s.now()
	pruneExpired(s.nonces, now, func(t time.Time) time.Time { return t })
	s.nonces[nonce] = now.Add(nonceTTL)
	for _, k := range s.userOrder {
		if u := s.users[k]; u != nil {
			d.Users = append(d.Users, pageUser{Login: u.Login, Name: u.Name})
		}
	}
	s.mu.Unlock()
	pageHeaders(w)
	w.WriteHeader(http.StatusOK)
	pageTemplate.Execute(w, d)
}

// writeJSON writes v as a JSON response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
