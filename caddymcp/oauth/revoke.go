package oauth

import (
	"errors"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// serveRevoke is RFC 7009 revocation. Revoking a refresh token revokes its
// whole grant (section 2.1 invites this), so every access token issued
// from it stops working at once; revoking an access token revokes that
// token. Unknown tokens, and tokens of other clients, get the same empty
// 200 as success, so the endpoint says nothing about tokens it was not
// given the right to revoke.
func (s *Server) serveRevoke(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	form, client, terr := s.readTokenRequest(w, r)
	if terr != nil {
		terr.Write(w)
		return
	}
	tok := form.Get("token")
	if tok == "" {
		newError(ErrInvalidRequest, "token is required").Write(w)
		return
	}
	if len(tok) <= maxSecretLen {
		if err := s.revoke(r, client, tok); err != nil {
			s.log.Error("revoking a token", zapErr(err))
			errUnavailable.Write(w)
			return
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// revoke finds the token by its prefix rather than token_type_hint, which
// RFC 7009 makes advisory.
func (s *Server) revoke(r *http.Request, client *store.Client, tok string) error {
	ctx := r.Context()
	switch {
	case strings.HasPrefix(tok, prefixAccessToken):
		h := store.SecretKey(prefixAccessToken, tok)
		at, err := s.store.GetAccessToken(ctx, h, s.now())
		if errors.Is(err, store.ErrNotFound) || (err == nil && at.ClientID != client.ID) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.store.RevokeAccessToken(ctx, h); err != nil {
			return err
		}
		s.log.Debug("access token revoked", zap.String("grant", at.GrantID), zap.String("client_id", client.ID))
		s.emit(Event{Kind: EventTokenRevoked, Reason: ReasonClientRequest, ClientID: client.ID, ClientName: client.Name, User: at.User, GrantID: at.GrantID})
		return nil
	case strings.HasPrefix(tok, prefixRefreshToken):
		h := store.SecretKey(prefixRefreshToken, tok)
		// Another client's token is ErrNotFound: it changes nothing (RFC
		// 7009 section 2.1). A rotated one of this client's, past the
		// grace, has revoked its grant already.
		rt, g, _, err := s.store.GetRefreshToken(ctx, h, s.refreshUse(client, s.now()))
		if errors.Is(err, store.ErrRefreshReused) {
			// Revoked by the store: report it, as the token endpoint does.
			s.emit(Event{Kind: EventGrantRevoked, Reason: ReasonRefreshReused, ClientID: client.ID, ClientName: client.Name})
			return nil
		}
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		// A client revokes its refresh token when the user disconnects
		// it: that withdraws the user's consent too, so connecting again
		// asks again.
		rv := Revoker{Store: s.store, Observer: s.cfg.Observer, Reason: ReasonClientRequest}
		if err := rv.revokeGrant(ctx, g, Event{ClientID: client.ID, ClientName: client.Name, User: g.User, GrantID: rt.GrantID}); err != nil {
			return err
		}
		s.log.Debug("grant revoked", zap.String("grant", rt.GrantID), zap.String("client_id", client.ID))
		return nil
	}
	return nil
}
