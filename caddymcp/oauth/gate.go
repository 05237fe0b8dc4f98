package oauth

import (
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Refusal is the answer to a request for a protected resource that did not
// carry an acceptable access token: a 401 or 403 with an RFC 6750
// challenge that names the resource's RFC 9728 metadata document, so an
// MCP client can discover where to get one. Its Code is empty when the
// request carried no token at all (RFC 6750 section 3.1: no error then),
// or one of ErrInvalidRequest, ErrInvalidToken, ErrInsufficientScope and
// ErrTemporarilyUnavailable.
type Refusal struct {
	Error
	// Reason is the gate's decision, one of the Gate* constants.
	Reason string
}

// Write sends the refusal.
func (f *Refusal) Write(w http.ResponseWriter) {
	if f.Code == "" {
		h := w.Header()
		h.Set("WWW-Authenticate", f.Challenge)
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		w.WriteHeader(f.Status)
		_, _ = w.Write([]byte("an access token is required\n"))
		return
	}
	f.Error.Write(w)
}

// Authenticate checks the bearer token of a request to the protected
// resource res (nil: any resource of the site). On success it returns the token; otherwise the refusal to
// send. Tokens are accepted only in the Authorization header (RFC 6750
// section 2.1): one in the query string is refused, never used.
func (s *Server) Authenticate(r *http.Request, res *Resource) (*store.AccessToken, *Refusal) {
	at, f := s.authenticate(r, res)
	if f != nil {
		s.emit(Event{Kind: EventGate, Reason: f.Reason})
	} else {
		s.emit(Event{Kind: EventGate, Reason: GateAllowed, ClientID: at.ClientID, User: at.User, GrantID: at.GrantID, Resource: at.Resource})
	}
	return at, f
}

func (s *Server) authenticate(r *http.Request, res *Resource) (*store.AccessToken, *Refusal) {
	refuse := func(reason string, e *Error) *Refusal {
		return &Refusal{Error: s.challenged(r, res, e), Reason: reason}
	}
	if r.URL.RawQuery != "" && r.URL.Query().Has("access_token") {
		return nil, refuse(GateBadRequest, newError(ErrInvalidRequest, "send the access token in the Authorization header, not the URL"))
	}
	hdrs := r.Header.Values("Authorization")
	if len(hdrs) == 0 {
		return nil, refuse(GateMissing, noToken())
	}
	if len(hdrs) > 1 {
		return nil, refuse(GateBadRequest, newError(ErrInvalidRequest, "send one Authorization header"))
	}
	scheme, tok, ok := strings.Cut(hdrs[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, refuse(GateMissing, noToken())
	}
	tok = strings.TrimSpace(tok)
	if tok == "" || len(tok) > maxSecretLen {
		return nil, refuse(GateInvalid, newError(ErrInvalidToken, "the access token is malformed"))
	}
	at, err := s.store.GetAccessToken(r.Context(), store.SecretKey(prefixAccessToken, tok), s.now())
	if errors.Is(err, store.ErrExpired) {
		return nil, refuse(GateExpired, newError(ErrInvalidToken, "the access token has expired"))
	}
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(GateInvalid, newError(ErrInvalidToken, "the access token is invalid or revoked"))
	}
	if err != nil {
		s.log.Error("looking up an access token", zapErr(err))
		return nil, refuse(GateUnavailable, newError(ErrTemporarilyUnavailable, "the token could not be checked; try again"))
	}
	if !s.audienceOK(r, res, at.Resource) {
		return nil, refuse(GateWrongAudience, newError(ErrInvalidToken, "the access token was issued for another resource"))
	}
	if res != nil && len(res.Scopes) > 0 {
		have := strings.Fields(at.Scope)
		for _, need := range res.Scopes {
			if !slices.Contains(have, need) {
				return nil, refuse(GateInsufficientScope, newError(ErrInsufficientScope, "the access token lacks a scope this resource requires"))
			}
		}
	}
	return at, nil
}

// audienceOK reports whether aud, a token's audience, is the resource res
// or the whole site (the issuer). It is resourceURL and issuer compared
// without building them, because it runs on every gated request.
func (s *Server) audienceOK(r *http.Request, res *Resource, aud string) bool {
	var rest string
	var ok bool
	if s.cfg.Issuer != "" {
		rest, ok = strings.CutPrefix(aud, s.cfg.Issuer)
	} else {
		rest, ok = cutRequestIssuer(r, aud)
	}
	return ok && (rest == "" || (res != nil && rest == res.Path))
}

// cutRequestIssuer is strings.CutPrefix(aud, s.issuer(r)) for the default
// issuer, the scheme and lower-cased host of the request.
func cutRequestIssuer(r *http.Request, aud string) (string, bool) {
	scheme := "https://"
	if requestScheme(r) == "http" {
		scheme = "http://"
	}
	rest, ok := strings.CutPrefix(aud, scheme)
	if !ok {
		return "", false
	}
	host := r.Host
	for i := 0; i < len(host); i++ {
		if c := host[i]; c >= 'A' && c <= 'Z' || c >= 0x80 {
			host = strings.ToLower(host)
			break
		}
	}
	return strings.CutPrefix(rest, host)
}

// challenged is e with the RFC 6750 section 3 challenge. Descriptions are
// our own constant strings and scopes are checked scope tokens, so they
// need no escaping; the metadata URL holds the request's host (with the
// default issuer) and path, so it is written through writeURLParam.
func (s *Server) challenged(r *http.Request, res *Resource, e *Error) Error {
	var b strings.Builder
	b.WriteString(`Bearer resource_metadata="`)
	writeURLParam(&b, s.metadataURL(r, res))
	b.WriteByte('"')
	if res != nil && len(res.Scopes) > 0 {
		b.WriteString(`, scope="`)
		b.WriteString(strings.Join(res.Scopes, " "))
		b.WriteByte('"')
	}
	if e.Code != "" && e.Code != ErrTemporarilyUnavailable {
		b.WriteString(`, error="`)
		b.WriteString(string(e.Code))
		b.WriteString(`", error_description="`)
		b.WriteString(e.Description)
		b.WriteByte('"')
	}
	c := *e
	c.Challenge = b.String()
	return c
}

// writeURLParam writes a URL as the content of a quoted-string auth-param
// (RFC 9110 section 11.2), percent-encoding what would end the string or
// the header (a quote, a backslash, controls) and anything not ASCII, so
// the challenge stays one well-formed challenge whatever the request
// holds. Go's server refuses such hosts and metadataURL such paths; this
// does not rely on either.
func writeURLParam(b *strings.Builder, u string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(u); i++ {
		switch c := u[i]; {
		case c <= ' ' || c >= 0x7f || c == '"' || c == '\\':
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
}

// ResourceFor returns the protected resource a cleaned request path falls
// under by the longest matching prefix, or nil. Prefixes match as plain
// string prefixes, like Caddy's `path /mcp*`, so that the gate covers at
// least everything a `handle /mcp*` block routes.
func (s *Server) ResourceFor(path string) *Resource {
	var best *Resource
	for i := range s.cfg.Resources {
		res := &s.cfg.Resources[i]
		if strings.HasPrefix(path, res.Path) && (best == nil || len(res.Path) > len(best.Path)) {
			best = res
		}
	}
	return best
}

// CarriesAccessToken reports whether r carries, in any Authorization
// header, a bearer token in the form of this server's access tokens, so
// that the glue can keep it from any upstream, on gated paths or not.
func CarriesAccessToken(r *http.Request) bool {
	for _, h := range r.Header.Values("Authorization") {
		if scheme, tok, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "Bearer") &&
			strings.HasPrefix(strings.TrimSpace(tok), prefixAccessToken) {
			return true
		}
	}
	return false
}

// noToken is the refusal of a request without a bearer token: a challenge
// with no error code (RFC 6750 section 3.1). Built only when refusing, so
// an accepted request does not pay for it.
func noToken() *Error { return &Error{Status: http.StatusUnauthorized} }
