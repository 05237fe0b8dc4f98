package bboltstore

import "github.com/caddymcp/caddymcp/caddymcp/store"

// encodeGrant is the stored value of a grant.
func encodeGrant(g *store.Grant) ([]byte, error) { return encode(unixNano(g.ExpiresAt), g) }

// encodeAccess is the stored value of an access token.
func encodeAccess(at *store.AccessToken) ([]byte, error) { return encode(unixNano(at.ExpiresAt), at) }

// encodeRefresh is the stored value of a refresh token.
func encodeRefresh(rt *store.RefreshToken) ([]byte, error) { return encode(unixNano(rt.ExpiresAt), rt) }
