package oauth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// tokenResponse is the RFC 6749 section 5.1 response.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	// Scope is always sent, even empty: RFC 6749 section 5.1 asks for it
	// whenever it differs from the request, and the scopes this server
	// drops (those it does not offer) make it differ often. Clients such
	// as mcp-remote repeat their requested scopes at refresh unless told.
	Scope string `json:"scope"`
}

// tokenParams are the parameters the token and revocation endpoints read;
// each may appear at most once (RFC 6749 section 3.2).
var tokenParams = []string{"grant_type", "code", "redirect_uri", "code_verifier", "refresh_token", "scope", "resource",
	"client_id", "client_secret", "token", "token_type_hint"}

// readTokenRequest parses and authenticates a request to the token or
// revocation endpoint.
func (s *Server) readTokenRequest(w http.ResponseWriter, r *http.Request) (url.Values, *store.Client, *Error) {
	form, msg := parseForm(w, r)
	if msg != "" {
		return nil, nil, newError(ErrInvalidRequest, msg)
	}
	for _, name := range tokenParams {
		if _, dup := single(form, name); dup {
			return nil, nil, newError(ErrInvalidRequest, "the parameter "+name+" was sent more than once")
		}
	}
	client, terr := s.authenticateClient(r, form)
	return form, client, terr
}

// authenticateClient identifies the client by HTTP Basic credentials, by
// client_id and client_secret in the body, or, for a public client, by
// client_id alone (RFC 6749 section 2.3, RFC 7591 "none").
func (s *Server) authenticateClient(r *http.Request, form url.Values) (*store.Client, *Error) {
	id, secret := form.Get("client_id"), form.Get("client_secret")
	basicID, basicSecret, basic := r.BasicAuth()
	// A client that tried HTTP Basic is answered with a Basic challenge.
	invalidClient := func(description string) *Error {
		e := newError(ErrInvalidClient, description)
		if basic {
			e.Challenge = basicChallenge
		}
		return e
	}
	if basic {
		// RFC 6749 section 2.3.1: both are form-encoded before Basic.
		var err1, err2 error
		basicID, err1 = url.QueryUnescape(basicID)
		basicSecret, err2 = url.QueryUnescape(basicSecret)
		if err1 != nil || err2 != nil {
			return nil, invalidClient("the Basic credentials are malformed")
		}
		if secret != "" {
			return nil, newError(ErrInvalidRequest, "use one client authentication method, not Basic and client_secret together")
		}
		if id != "" && id != basicID {
			return nil, newError(ErrInvalidRequest, "client_id differs from the Basic credentials")
		}
		id, secret = basicID, basicSecret
	}
	if id == "" {
		return nil, invalidClient("the client did not identify itself")
	}
	refuse := invalidClient("client authentication failed")
	if len(id) > maxParamLen || len(secret) > maxSecretLen {
		return nil, refuse
	}
	client, err := s.lookupClient(r, id)
	if msg, _, transient, ok := clientRefusal(err); ok {
		if transient {
			// The client may be fine; its document could not be
			// fetched just now (and no copy of it is cached).
			return nil, newError(ErrTemporarilyUnavailable, msg)
		}
		refuse.Description = msg
		return nil, refuse
	}
	if err != nil {
		s.log.Error("looking up a client", zapErr(err))
		return nil, errUnavailable
	}
	if client.SecretHash == nil {
		if secret != "" {
			refuse.Description = "this client is public and has no secret"
			return nil, refuse
		}
		return client, nil
	}
	if secret == "" || !constantTimeEqual(string(hashSecret(secret)), string(client.SecretHash)) {
		return nil, refuse
	}
	return client, nil
}

func (s *Server) serveToken(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	form, client, terr := s.readTokenRequest(w, r)
	if terr != nil {
		terr.Write(w)
		return
	}
	var resp *tokenResponse
	switch gt := form.Get("grant_type"); gt {
	case grantAuthorizationCode:
		resp, terr = s.exchangeCode(r, form, client)
	case grantRefreshToken:
		resp, terr = s.refresh(r, form, client)
	case "":
		terr = newError(ErrInvalidRequest, "grant_type is required")
	default:
		terr = newError(ErrUnsupportedGrantType, "grant type "+quote(gt)+" is not supported")
	}
	if terr != nil {
		terr.Write(w)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// exchangeCode is the authorization_code grant with PKCE. The request is
// checked against the code as read, and the code is redeemed in the
// transaction that stores the grant: one write per exchange.
func (s *Server) exchangeCode(r *http.Request, form url.Values, client *store.Client) (*tokenResponse, *Error) {
	code, verifier := form.Get("code"), form.Get("code_verifier")
	if code == "" {
		return nil, newError(ErrInvalidRequest, "code is required")
	}
	if verifier == "" {
		return nil, newError(ErrInvalidRequest, "code_verifier is required (PKCE)")
	}
	if len(code) > maxSecretLen {
		return nil, newError(ErrInvalidGrant, "the authorization code is invalid")
	}
	ctx, codeHash := r.Context(), store.SecretKey(prefixCode, code)
	c, err := s.store.GetCode(ctx, codeHash, s.now())
	if errors.Is(err, store.ErrCodeReplayed) {
		// Redeeming it again is what revokes the tokens it produced. A
		// used code cannot be redeemed; were a store to say otherwise,
		// it is still the replay.
		if _, err = s.store.RedeemCode(ctx, codeHash, s.now()); err == nil {
			err = store.ErrCodeReplayed
		}
	}
	if err != nil {
		return nil, s.codeRefused(err, client)
	}
	resource, scope, terr := s.checkCode(r, form, c, client)
	if terr != nil {
		// A code presented with the wrong verifier, client or redirect
		// must not stay usable: use it up.
		if _, err := s.store.RedeemCode(ctx, codeHash, s.now()); err != nil && !errors.Is(err, store.ErrNotFound) {
			s.codeRefused(err, client) // logs and reports a replay that raced this
		}
		return nil, terr
	}
	now := s.now()
	g := &store.Grant{
		ID:          store.NewID(),
		ClientID:    client.ID,
		User:        c.User,
		Scope:       c.Scope,
		Resource:    c.Resource,
		GitHubToken: c.GitHubToken,
		CreatedAt:   now,
		ExpiresAt:   now.Add(s.cfg.RefreshTokenTTL),
		// GitHub confirmed the user at the callback, within the code's
		// ten minutes.
		CheckedAt: now,
	}
	if kind := s.clientKind(client); kind != clientRegistered {
		// Pre-registered clients and those with a metadata document
		// live outside the store; grants hang off a stored client, so
		// that deleting a client takes its grants with it. The stand-in
		// is marked as one and holds no secret: it is never a client by
		// itself (see lookupClient).
		anchor := *client
		anchor.SecretHash = nil
		anchor.Origin = string(kind)
		anchor.CreatedAt = now.UTC().Truncate(time.Second)
		if err := s.store.PutClient(ctx, &anchor); err != nil && !errors.Is(err, store.ErrExists) {
			s.log.Error("storing a client", zapErr(err))
			return nil, errUnavailable
		}
	}
	access, at := s.newAccessToken(g, resource, scope, now)
	refresh, rt := s.newRefreshToken(g)
	if err := s.store.CreateGrant(ctx, g, at, rt, codeHash); err != nil {
		// Another exchange of this code raced this one, it expired
		// meanwhile, or its client was deleted: the code is no good.
		return nil, s.codeRefused(err, client)
	}
	s.log.Debug("tokens issued", zap.String("grant", g.ID), zap.String("client_id", client.ID),
		zap.Int64("user_id", g.User.ID), zap.String("resource", resource), zap.String("scope", scope))
	s.emit(Event{Kind: EventTokenIssued, ClientID: client.ID, ClientName: client.Name, User: g.User, GrantID: g.ID, Resource: resource, Scope: scope})
	if !slices.Contains(client.GrantTypes, grantRefreshToken) {
		refresh = "" // stored, but this client said it will not refresh
	}
	return s.tokenResponse(access, refresh, at), nil
}

// checkCode checks a token request against the code it presents, and
// returns the resource and scope the tokens are for.
func (s *Server) checkCode(r *http.Request, form url.Values, c *store.Code, client *store.Client) (resource, scope string, terr *Error) {
	if c.ClientID != client.ID {
		return "", "", newError(ErrInvalidGrant, "the authorization code was issued to another client")
	}
	if ru := form.Get("redirect_uri"); ru != "" && ru != c.RedirectURI {
		return "", "", newError(ErrInvalidGrant, "redirect_uri differs from the authorization request")
	}
	verifier := form.Get("code_verifier")
	if !validVerifier(verifier) {
		return "", "", newError(ErrInvalidGrant, "code_verifier must be 43 to 128 unreserved characters")
	}
	sum := sha256.Sum256([]byte(verifier))
	if !constantTimeEqual(base64.RawURLEncoding.EncodeToString(sum[:]), c.CodeChallenge) {
		return "", "", newError(ErrInvalidGrant, "code_verifier does not match the code_challenge")
	}
	if resource, terr = s.narrowResource(r, form, c.Resource); terr != nil {
		return "", "", terr
	}
	if scope, terr = s.narrowScope(form, c.Scope); terr != nil {
		return "", "", terr
	}
	return resource, scope, nil
}

// codeRefused is the answer to a code the store refused. A replay has
// revoked the grant the code produced, if any.
func (s *Server) codeRefused(err error, client *store.Client) *Error {
	switch {
	case errors.Is(err, store.ErrCodeReplayed):
		s.log.Warn("authorization code replayed; the grant issued from it is revoked", zap.String("client_id", client.ID))
		s.emit(Event{Kind: EventGrantRevoked, Reason: ReasonCodeReplayed, ClientID: client.ID, ClientName: client.Name})
		return newError(ErrInvalidGrant, "the authorization code was already used; tokens issued from it are revoked")
	case errors.Is(err, store.ErrNotFound):
		return newError(ErrInvalidGrant, "the authorization code is invalid or expired")
	}
	s.log.Error("redeeming an authorization code", zapErr(err))
	return errUnavailable
}

// refresh is the refresh_token grant: rotate the refresh token, issue a
// new access token, after re-checking that the user is still admitted.
func (s *Server) refresh(r *http.Request, form url.Values, client *store.Client) (*tokenResponse, *Error) {
	if !slices.Contains(client.GrantTypes, grantRefreshToken) {
		return nil, newError(ErrUnauthorizedClient, "the client did not register the refresh_token grant type")
	}
	old := form.Get("refresh_token")
	if old == "" {
		return nil, newError(ErrInvalidRequest, "refresh_token is required")
	}
	if len(old) > maxSecretLen {
		return nil, newError(ErrInvalidGrant, "the refresh token is invalid")
	}
	oldHash := store.SecretKey(prefixRefreshToken, old)
	now := s.now()
	use := s.refreshUse(client, now)
	_, g, _, err := s.store.GetRefreshToken(r.Context(), oldHash, use)
	switch {
	case errors.Is(err, store.ErrRefreshReused):
		s.log.Warn("rotated refresh token reused; grant revoked", zap.String("client_id", client.ID))
		s.emit(Event{Kind: EventGrantRevoked, Reason: ReasonRefreshReused, ClientID: client.ID, ClientName: client.Name})
		return nil, newError(ErrInvalidGrant, "the refresh token was already used; the grant is revoked")
	case errors.Is(err, store.ErrNotFound):
		// Also a token issued to another client: it is not this
		// client's to use, and presenting it changes nothing.
		return nil, newError(ErrInvalidGrant, "the refresh token is invalid, expired or revoked")
	case err != nil:
		s.log.Error("looking up a refresh token", zapErr(err))
		return nil, errUnavailable
	}
	resource, terr := s.narrowResource(r, form, g.Resource)
	if terr != nil {
		return nil, terr
	}
	// The re-check may take scopes away from the grant (the user left
	// the team a scope is restricted to) before the request narrows it.
	if terr := s.recheck(r, g); terr != nil {
		return nil, terr
	}
	scope, terr := s.narrowScope(form, g.Scope)
	if terr != nil {
		return nil, terr
	}
	g.ExpiresAt = now.Add(s.cfg.RefreshTokenTTL)
	access, at := s.newAccessToken(g, resource, scope, now)
	refresh, newRT := s.newRefreshToken(g)
	// Judged at the time of the write: the re-check with GitHub may have
	// taken seconds, which must not stretch the grace.
	use.Now = s.now()
	verdict, err := s.store.RotateRefresh(r.Context(), oldHash, use, g, at, newRT)
	switch {
	case errors.Is(err, store.ErrRefreshReused):
		s.log.Warn("refresh token reused while it was being refreshed; grant revoked", zap.String("grant", g.ID), zap.String("client_id", client.ID))
		s.emit(Event{Kind: EventGrantRevoked, Reason: ReasonRefreshReused, ClientID: client.ID, ClientName: client.Name, User: g.User, GrantID: g.ID})
		return nil, newError(ErrInvalidGrant, "the refresh token was already used; the grant is revoked")
	case errors.Is(err, store.ErrNotFound):
		return nil, newError(ErrInvalidGrant, "the refresh token is invalid, expired or revoked")
	case err != nil:
		s.log.Error("rotating a refresh token", zapErr(err))
		return nil, errUnavailable
	}
	reason := ""
	if verdict == store.RefreshRetry {
		// The client lost the answer to an earlier refresh of this
		// token, or two of its processes refreshed it at once.
		reason = ReasonRefreshRetried
	}
	s.log.Debug("tokens refreshed", zap.String("grant", g.ID), zap.String("client_id", client.ID),
		zap.Int64("user_id", g.User.ID), zap.String("resource", resource), zap.String("scope", scope), zap.String("reason", reason))
	s.emit(Event{Kind: EventTokenRefreshed, Reason: reason, ClientID: client.ID, ClientName: client.Name, User: g.User, GrantID: g.ID, Resource: resource, Scope: scope})
	return s.tokenResponse(access, refresh, at), nil
}

// refreshUse is a presentation of a refresh token by client under the
// configured grace for retries.
func (s *Server) refreshUse(client *store.Client, now time.Time) store.RefreshUse {
	return store.RefreshUse{ClientID: client.ID, Now: now, Grace: s.cfg.RefreshReuseGrace, MaxRetries: s.cfg.RefreshReuseRetries}
}

// recheckTimeout bounds the re-check of a user with GitHub at refresh.
const recheckTimeout = 10 * time.Second

// recheck asks GitHub, with the token stored at login, whether the grant's
// user is still admitted, and revokes the grant when not.
func (s *Server) recheck(r *http.Request, g *store.Grant) *Error {
	ghTok, err := s.GitHubToken(g.GitHubToken, g.User.ID)
	if err != nil {
		// The key changed or the record is damaged: the only way forward
		// is a new login.
		s.log.Warn("GitHub token of a grant cannot be opened; revoking", zap.String("grant", g.ID), zapErr(err))
		s.revokeGrant(r, g, ReasonUnusable)
		return newError(ErrInvalidGrant, "the grant can no longer be refreshed; sign in again")
	}
	// Sealed anew under the current key at every refresh, so that a key
	// being rotated out stops being needed once clients have refreshed.
	g.GitHubToken = s.sealGitHubToken(ghTok, g.User.ID)
	// One deadline for every GitHub call of the re-check, so a slow
	// GitHub cannot hold a refresh open for long.
	ctx, cancel := context.WithTimeout(r.Context(), recheckTimeout)
	defer cancel()
	current, withheld, err := s.idp.Recheck(ctx, ghTok, g.User)
	if err == nil {
		g.CheckedAt = s.now()
		if current != g.User { // Recheck refused another user ID
			// The grant follows the numeric ID; the tokens issued from
			// now on, the placeholders and the admin API carry GitHub's
			// current login, name and email.
			s.log.Debug("user's profile changed on GitHub", zap.String("grant", g.ID), zap.Int64("user_id", g.User.ID))
			g.User = current
		}
		if narrowed := withoutScopes(g.Scope, withheld); narrowed != g.Scope {
			s.log.Debug("scopes withdrawn from a grant", zap.String("grant", g.ID), zap.Int64("user_id", g.User.ID),
				zap.String("scope", narrowed), zap.Strings("withheld", withheld))
			g.Scope = narrowed
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUpstreamUnavailable):
		// GitHub is down, slow or rate limiting us: that says nothing
		// about the user. A user GitHub confirmed recently is served
		// from that check (the grant keeps its scopes, and CheckedAt
		// stays, so the window does not slide); otherwise the client is
		// told to come back, and its refresh token still works then.
		if !g.CheckedAt.IsZero() && s.now().Sub(g.CheckedAt) <= s.cfg.GitHubOutageGrace {
			s.log.Warn("GitHub unavailable; refresh served from the last check of the user", zap.String("grant", g.ID),
				zap.Time("checked_at", g.CheckedAt), zapErr(err))
			return nil
		}
		s.log.Warn("GitHub unavailable; refresh deferred", zap.String("grant", g.ID), zapErr(err))
		terr := newError(ErrTemporarilyUnavailable, "GitHub cannot be reached to confirm the user right now; try again")
		if d, ok := UpstreamRetryAfter(err); ok {
			terr.RetryAfter = d
		}
		return terr
	case errors.Is(err, ErrNotAllowed):
		s.log.Debug("user no longer allowed; grant revoked", zap.String("grant", g.ID), zap.Int64("user_id", g.User.ID), zap.String("login", g.User.Login))
		s.revokeGrant(r, g, ReasonNotAllowed)
		return newError(ErrInvalidGrant, "the user is no longer allowed to use this server")
	default:
		s.log.Warn("re-checking the user with GitHub failed", zap.String("grant", g.ID), zapErr(err))
		if errors.Is(err, ErrUpstreamRevoked) {
			s.revokeGrant(r, g, ReasonUpstreamRevoked)
			return newError(ErrInvalidGrant, "GitHub no longer accepts this login; sign in again")
		}
		return errUnavailable
	}
}

// revokeGrant revokes g, then reports it to the observer (and so the
// audit log): a revocation the store could not make is logged as a
// failure, never reported as made.
func (s *Server) revokeGrant(r *http.Request, g *store.Grant, reason string) {
	if err := s.store.RevokeGrant(r.Context(), g.ID); err != nil {
		s.log.Error("revoking a grant", zap.String("grant", g.ID), zap.String("reason", reason), zapErr(err))
		return
	}
	s.emit(Event{Kind: EventGrantRevoked, Reason: reason, ClientID: g.ClientID, User: g.User, GrantID: g.ID})
}

// narrowResource checks that a grant's audience is this site's and
// applies a token request's `resource` parameter: it must name the
// grant's resource, or, for a grant covering the whole site, may narrow
// the token to one protected resource (RFC 8707 section 2.2).
func (s *Server) narrowResource(r *http.Request, form url.Values, granted string) (string, *Error) {
	if !s.ownAudience(r, granted) {
		return "", newError(ErrInvalidGrant, "the grant was issued for another site")
	}
	raw, present := form.Get("resource"), form.Has("resource")
	if !present {
		return granted, nil
	}
	res, ok := s.resourceByURL(r, raw)
	if !ok {
		return "", newError(ErrInvalidTarget, "this server protects no resource "+quote(raw))
	}
	switch want := s.resourceURL(r, res); {
	case want == granted:
		return granted, nil
	case granted == s.issuer(r):
		return want, nil
	}
	return "", newError(ErrInvalidTarget, "the grant is for another resource")
}

func (s *Server) newAccessToken(g *store.Grant, resource, scope string, now time.Time) (string, *store.AccessToken) {
	tok := store.NewSecret(prefixAccessToken)
	return tok, &store.AccessToken{
		Hash:      store.SecretKey(prefixAccessToken, tok),
		GrantID:   g.ID,
		ClientID:  g.ClientID,
		User:      g.User,
		Scope:     scope,
		Resource:  resource,
		ExpiresAt: now.Add(s.cfg.AccessTokenTTL),
	}
}

func (s *Server) newRefreshToken(g *store.Grant) (string, *store.RefreshToken) {
	tok := store.NewSecret(prefixRefreshToken)
	return tok, &store.RefreshToken{
		Hash:      store.SecretKey(prefixRefreshToken, tok),
		GrantID:   g.ID,
		ClientID:  g.ClientID,
		ExpiresAt: g.ExpiresAt,
	}
}

func (s *Server) tokenResponse(access, refresh string, at *store.AccessToken) *tokenResponse {
	return &tokenResponse{
		AccessToken:  access,
		TokenType:    "Bearer",
		ExpiresIn:    int64(s.cfg.AccessTokenTTL / time.Second),
		RefreshToken: refresh,
		Scope:        at.Scope,
	}
}

// narrowScope applies a token request's `scope` parameter: the access
// token may carry fewer scopes than were granted (RFC 6749 section 6),
// never more. The grant keeps them all. Requested scopes this server does
// not offer are dropped, exactly as the authorization request dropped
// them: a client that asked for `openid email profile` and was granted
// none of it repeats that request at every refresh, and refusing it then
// would end a grant that was working. An offered scope that was never
// granted is refused.
func (s *Server) narrowScope(form url.Values, granted string) (string, *Error) {
	req := form.Get("scope")
	if len(req) > maxScopeLen {
		return "", newError(ErrInvalidScope, "the scope parameter is too long")
	}
	have := strings.Fields(granted)
	var narrowed []string
	for _, sc := range strings.Fields(req) {
		if !slices.Contains(s.scopes, sc) {
			continue
		}
		if !slices.Contains(have, sc) {
			return "", newError(ErrInvalidScope, "scope "+quote(sc)+" was not granted")
		}
		narrowed = append(narrowed, sc)
	}
	if len(narrowed) == 0 {
		return granted, nil
	}
	return normalizeScope(strings.Join(narrowed, " ")), nil
}

// withoutScopes removes the scopes in drop from the space-separated list.
func withoutScopes(scope string, drop []string) string {
	if len(drop) == 0 {
		return scope
	}
	kept := slices.DeleteFunc(strings.Fields(scope), func(sc string) bool { return slices.Contains(drop, sc) })
	return strings.Join(kept, " ")
}

func normalizeScope(s string) string {
	f := strings.Fields(s)
	slices.Sort(f)
	return strings.Join(slices.Compact(f), " ")
}
