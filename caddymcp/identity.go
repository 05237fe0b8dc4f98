package caddymcp

import (
	"context"
	"fmt"
	"strconv"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/google/go-github/v75/github"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// authenticated is what the gate established about a request, handed to
// handlers behind it (mcp_server) in a request variable. Handlers in other
// plugins use the placeholders instead.
type authenticated struct {
	token *store.AccessToken
	gate  *MCPAuth
}

// authenticatedVar names the request variable (Caddy's vars) that holds
// the gate's verdict. A variable is set in place, where a context value
// would copy the request on every gated request. Only this package makes
// an *authenticated, so whatever a config or a client puts under this
// name is never taken for one.
const authenticatedVar = "mcp_auth.authenticated"

// setAuthenticated hands the gate's verdict to the handlers behind it.
func setAuthenticated(ctx context.Context, a *authenticated) {
	caddyhttp.SetVar(ctx, authenticatedVar, a)
}

// authenticatedFrom returns the gate's verdict on the request, or nil if
// no mcp_auth gate accepted it.
func authenticatedFrom(ctx context.Context) *authenticated {
	a, _ := caddyhttp.GetVar(ctx, authenticatedVar).(*authenticated)
	return a
}

// gitHub returns a go-github client acting as the user, with the GitHub
// token stored at the login behind this request's grant.
func (a *authenticated) gitHub(ctx context.Context) (*github.Client, error) {
	tok, err := a.gate.server.UpstreamToken(ctx, a.token.GrantID, a.token.User.ID)
	if err != nil {
		return nil, fmt.Errorf("the GitHub login behind this session is no longer available: %w", err)
	}
	return a.gate.idp.API(ctx, tok), nil
}

// userKey names the user across everything a process serves: their GitHub
// ID within their GitHub. Sites of one Caddy may sign users in with
// different GitHubs (github.com and an Enterprise Server), whose numeric
// IDs overlap, and mcp_server's sessions are shared by every site with the
// same settings.
func (a *authenticated) userKey() string {
	return a.gate.idp.Host() + "#" + strconv.FormatInt(a.token.User.ID, 10)
}
