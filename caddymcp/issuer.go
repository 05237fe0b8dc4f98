package caddymcp

import (
	"context"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// The site's own origin, for handlers that judge a request's Origin header
// (mcp_server's guard against DNS rebinding and its CORS answers), is the
// origin of the issuer the mcp_auth gate serves the request under: the
// configured issuer, or by default the one the oauth package derives from
// the request (https, except for plain HTTP to a loopback host). It is
// never simply the scheme and Host the request arrived with: behind a load
// balancer that terminates TLS, an instance sees plain HTTP while browsers
// are at https://<public host>; and with an issuer configured, a request
// whose Host names another site (a DNS-rebinding page at evil.example
// sending Origin: http://evil.example to a catch-all site) is not the
// site's own.

// siteGateVar names the request variable through which the gate hands
// itself to the handlers behind it on requests it passes on without a
// verdict: CORS preflights, which carry no token, yet whose answer depends
// on the site's origin. Only this package sets it.
const siteGateVar = "mcp_auth.site_gate"

// setSiteGate tells the handlers behind the gate which gate serves the
// site of a request that has no verdict (see siteGateVar).
func setSiteGate(ctx context.Context, m *MCPAuth) {
	caddyhttp.SetVar(ctx, siteGateVar, m)
}

// siteGateFrom returns the gate that serves r's site: the one whose
// verdict r carries, or the one that passed on a preflight; nil if no
// gate is in front.
func siteGateFrom(r *http.Request) *MCPAuth {
	if a := authenticatedFrom(r.Context()); a != nil {
		return a.gate
	}
	m, _ := caddyhttp.GetVar(r.Context(), siteGateVar).(*MCPAuth)
	return m
}

// siteOrigin is the origin (scheme://host[:port], lower case) of the site
// r is served under, as the gate in front of it sees the site.
//
// With a verdict, it is the origin of the access token's audience: the
// gate accepted the token only because the audience is its issuer or a
// resource under it, so this is exactly the issuer the gate used,
// configured or derived. Without one (a preflight), it is the gate's
// configured issuer, or the default issuer for r; without a gate, the
// default issuer for r.
func siteOrigin(r *http.Request) string {
	if a := authenticatedFrom(r.Context()); a != nil && a.token != nil {
		if o, ok := originOf(a.token.Resource); ok {
			return o
		}
	}
	if m := siteGateFrom(r); m != nil {
		return m.siteOrigin(r)
	}
	return oauth.DefaultIssuer(r)
}

// siteOrigin is the origin of m's issuer for r, the one its metadata
// advertises.
func (m *MCPAuth) siteOrigin(r *http.Request) string { return m.server.Issuer(r) }

// originOf returns the scheme://host part of an absolute URL such as a
// token's audience (https://mcp.example.com/mcp), without allocating.
func originOf(u string) (string, bool) {
	i := strings.Index(u, "://")
	if i <= 0 {
		return "", false
	}
	end := strings.IndexAny(u[i+3:], "/?#")
	if end < 0 {
		end = len(u)
	} else {
		end += i + 3
	}
	if end == i+3 {
		return "", false
	}
	return u[:end], true
}
