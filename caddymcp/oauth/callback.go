package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// serveCallback is where GitHub sends the browser back. It consumes our
// state, logs the user in with GitHub, checks the allow-lists, and sends
// the browser to the client with an authorization code.
func (s *Server) serveCallback(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		writeErrorPage(w, http.StatusMethodNotAllowed, "Method not allowed", "GitHub returns here with GET.")
		return
	}
	q := r.URL.Query()
	state := q.Get("state")
	if state == "" || len(state) > maxSecretLen {
		writeErrorPage(w, http.StatusBadRequest, "Sign-in failed", "GitHub returned without a valid state. Start again from your MCP client.")
		return
	}
	p, err := s.store.TakePending(r.Context(), store.SecretKey("", state), s.now())
	if errors.Is(err, store.ErrNotFound) {
		writeErrorPage(w, http.StatusBadRequest, "Sign-in failed", "This sign-in has expired or was already completed. Start again from your MCP client.")
		return
	}
	if err != nil {
		s.log.Error("taking a pending authorization", zapErr(err))
		writeErrorPage(w, http.StatusServiceUnavailable, "Sign-in failed", "The server could not complete the sign-in. Try again.")
		return
	}
	// The state was consumed above whatever happens next, so a second
	// attempt with it fails even if this one is refused.
	browser, ok := browserCookie(r)
	if !ok || !constantTimeEqual(string(hashSecret(browser)), string(p.BrowserHash)) {
		s.log.Warn("callback from a browser that did not start the sign-in", zap.String("client_id", p.ClientID))
		writeErrorPage(w, http.StatusForbidden, "Sign-in failed", "This sign-in was started in another browser. Start again from your MCP client in this browser.")
		return
	}
	fail := func(code ErrorCode, description string) {
		s.redirectToClient(w, r, p.RedirectURI, newError(code, description).query(), p.ClientState)
	}
	if e := q.Get("error"); e != "" {
		// GitHub's access_denied is the user pressing Cancel.
		s.log.Debug("GitHub login not completed", zap.String("client_id", p.ClientID), zap.String("github_error", cleanText(e, 64)))
		s.emit(Event{Kind: EventAuthorizationDenied, Reason: ReasonLoginCancelled, ClientID: p.ClientID, Resource: p.Resource})
		fail(ErrAccessDenied, "the GitHub login was not completed")
		return
	}
	code := q.Get("code")
	if code == "" || len(code) > maxSecretLen {
		fail(ErrAccessDenied, "GitHub returned no code")
		return
	}
	// One deadline for all this callback asks GitHub, so a slow GitHub
	// gets the browser a page rather than a tab that spins.
	ctx, cancel := context.WithTimeout(r.Context(), callbackTimeout)
	defer cancel()
	verifier, err := s.keys.Open(p.GitHubVerifier, []byte("github-pkce"))
	if err != nil {
		// Sealed under a key no longer configured, or damaged: this
		// sign-in cannot be finished, the next one can.
		s.log.Warn("the PKCE verifier of a sign-in cannot be opened", zap.String("client_id", p.ClientID), zapErr(err))
		fail(ErrAccessDenied, "the sign-in could not be completed; start again")
		return
	}
	ghTok, err := s.idp.Exchange(ctx, code, s.issuer(r)+pathCallback, string(verifier))
	if errors.Is(err, ErrUpstreamUnavailable) {
		s.githubDown(w, p, "GitHub could not exchange the code", err)
		return
	}
	if err != nil {
		s.log.Warn("GitHub code exchange failed", zap.String("client_id", p.ClientID), zapErr(err))
		s.emit(Event{Kind: EventAuthorizationDenied, Reason: ReasonGitHubError, ClientID: p.ClientID, Resource: p.Resource})
		fail(ErrAccessDenied, "GitHub did not complete the login")
		return
	}
	who, withheld, err := s.idp.Admit(ctx, ghTok)
	if errors.Is(err, ErrUpstreamUnavailable) {
		s.githubDown(w, p, "GitHub could not say who signed in", err)
		return
	}
	if err != nil {
		if errors.Is(err, ErrNotAllowed) {
			s.log.Debug("user not allowed", zap.String("client_id", p.ClientID), zap.Int64("user_id", who.ID), zap.String("login", who.Login))
			s.emit(Event{Kind: EventAuthorizationDenied, Reason: ReasonNotAllowed, ClientID: p.ClientID, User: who, Resource: p.Resource})
			// The login goes to the audit log only: the client, which
			// may be anyone's, learns that someone was refused, not who.
			fail(ErrAccessDenied, "this GitHub account is not allowed to use this server")
			return
		}
		// Outages went to githubDown above: what is left is a refusal
		// (a token GitHub no longer accepts, a 403 that is no rate
		// limit, a user without an ID), which trying again will not mend.
		s.log.Warn("GitHub user lookup failed", zap.String("client_id", p.ClientID), zapErr(err))
		s.emit(Event{Kind: EventAuthorizationDenied, Reason: ReasonGitHubError, ClientID: p.ClientID, Resource: p.Resource})
		fail(ErrAccessDenied, "GitHub refused to say who signed in")
		return
	}
	if p.ApprovedBy != 0 && p.ApprovedBy != who.ID {
		// The consent page was skipped on the strength of another
		// GitHub user's approval in this (shared) browser. Consent is
		// this user's to give: ask them next time.
		s.log.Debug("sign-in by another user than the one who approved; consent needed", zap.String("client_id", p.ClientID),
			zap.Int64("user_id", who.ID), zap.Int64("approved_by", p.ApprovedBy))
		s.forgetApproval(w, r, p)
		s.emit(Event{Kind: EventAuthorizationDenied, Reason: ReasonOtherUser, ClientID: p.ClientID, User: who, Resource: p.Resource})
		fail(ErrAccessDenied, "another GitHub user approved this client in this browser; start again to approve it yourself")
		return
	}
	// Scopes the operator restricted to others are left out, not
	// refused: the client gets what this user may have, and a resource
	// that needs more answers 403 insufficient_scope.
	scope := withoutScopes(p.Scope, withheld)
	sealed := s.sealGitHubToken(ghTok, who.ID)
	authCode := store.NewSecret(prefixCode)
	err = s.store.PutCode(r.Context(), &store.Code{
		Hash:          store.SecretKey(prefixCode, authCode),
		ClientID:      p.ClientID,
		RedirectURI:   p.RedirectURI,
		CodeChallenge: p.CodeChallenge,
		Resource:      p.Resource,
		Scope:         scope,
		User:          who,
		GitHubToken:   sealed,
		ExpiresAt:     s.now().Add(codeTTL),
	})
	if err != nil {
		s.log.Error("storing an authorization code", zapErr(err))
		fail(ErrTemporarilyUnavailable, "the login could not be recorded; try again")
		return
	}
	s.recordConsent(w, r, p, who.ID)
	s.log.Debug("user authorized client",
		zap.String("client_id", p.ClientID), zap.Int64("user_id", who.ID), zap.String("login", who.Login),
		zap.String("resource", p.Resource), zap.String("scope", scope), zap.Strings("withheld", withheld))
	s.emit(Event{Kind: EventAuthorizationApproved, ClientID: p.ClientID, User: who, Resource: p.Resource, Scope: scope})
	s.redirectToClient(w, r, p.RedirectURI, url.Values{"code": {authCode}}, p.ClientState)
}

// callbackTimeout bounds the code exchange and the reading of the user
// together. The identity provider bounds each; this bounds the sum.
const callbackTimeout = 15 * time.Second

// githubDown answers a sign-in that GitHub failed (too slow, unreachable,
// 5xx, rate limited) with a page in the browser, not an error sent to the
// client. The client's flow is left open on purpose: most clients end
// their sign-in at the first error their redirect URI receives, even
// temporarily_unavailable, and the person who can try again is the one
// looking at this browser now. So the page says what happened and offers
// the same sign-in again: a link to the client's own authorization
// request, rebuilt from the pending one, which /authorize validates like
// any other. The client still waits with its PKCE verifier and state, so a
// retry that works completes its flow as if nothing had happened; a user
// who gives up starts again from the client, as after closing the tab.
//
// The page is 503 with Retry-After when GitHub said when to come back (a
// rate limit), 502 otherwise. The link holds only what the client sent in
// this browser's address bar to begin with; our state, GitHub's code and
// GitHub's token are not on the page.
func (s *Server) githubDown(w http.ResponseWriter, p *store.Pending, doing string, err error) {
	s.log.Warn(doing, zap.String("client_id", p.ClientID), zapErr(err))
	s.emit(Event{Kind: EventAuthorizationDenied, Reason: ReasonGitHubError, ClientID: p.ClientID, Resource: p.Resource})
	status := http.StatusBadGateway
	if d, ok := UpstreamRetryAfter(err); ok {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", retryAfterValue(d))
	}
	setPageHeaders(w)
	w.WriteHeader(status)
	_ = githubDownPage.Execute(w, pathAuthorize+"?"+retryQuery(p).Encode())
}

// retryQuery is the authorization request that started p, as the client
// sent it (an absent resource is the issuer, which means the same).
func retryQuery(p *store.Pending) url.Values {
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {p.ClientID},
		"redirect_uri":          {p.RedirectURI},
		"code_challenge":        {p.CodeChallenge},
		"code_challenge_method": {"S256"},
		"resource":              {p.Resource},
	}
	if p.ClientState != "" {
		q.Set("state", p.ClientState)
	}
	if p.Scope != "" {
		q.Set("scope", p.Scope)
	}
	return q
}

// githubTokenAD binds a sealed GitHub token to the user it belongs to, so
// a ciphertext copied onto another user's record does not open.
func githubTokenAD(userID int64) []byte {
	return []byte("github-token:" + strconv.FormatInt(userID, 10))
}

// sealedToken is what a sealed GitHub token holds.
type sealedToken struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Expiry       int64  `json:"expiry,omitempty"`
}

func (s *Server) sealGitHubToken(tok *oauth2.Token, userID int64) []byte {
	// Marshalling strings and a number cannot fail.
	plain, _ := json.Marshal(sealedToken{tok.AccessToken, tok.TokenType, tok.RefreshToken, unixOrZero(tok)})
	return s.keys.Seal(plain, githubTokenAD(userID))
}

// GitHubToken opens the GitHub token sealed on a grant or code.
func (s *Server) GitHubToken(sealed []byte, userID int64) (*oauth2.Token, error) {
	plain, err := s.keys.Open(sealed, githubTokenAD(userID))
	if err != nil {
		return nil, err
	}
	var t sealedToken
	if err := json.Unmarshal(plain, &t); err != nil {
		return nil, errUnseal
	}
	tok := &oauth2.Token{AccessToken: t.AccessToken, TokenType: t.TokenType, RefreshToken: t.RefreshToken}
	if t.Expiry != 0 {
		tok.Expiry = timeFromUnix(t.Expiry)
	}
	return tok, nil
}

// UpstreamToken returns the GitHub token stored at the login behind a
// grant, for a handler that calls GitHub as the user. The grant must be
// live and belong to userID.
func (s *Server) UpstreamToken(ctx context.Context, grantID string, userID int64) (*oauth2.Token, error) {
	g, err := s.store.GetGrant(ctx, grantID, s.now())
	if err != nil {
		return nil, err
	}
	if g.User.ID != userID {
		return nil, store.ErrNotFound
	}
	return s.GitHubToken(g.GitHubToken, userID)
}
