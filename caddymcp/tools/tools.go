// Package tools provides the built-in MCP tools that the plugin's mcp_server
// handler serves behind the OAuth gate: get_user_info, calculate and
// get_github_repos.
//
// The package deliberately knows nothing about Caddy, HTTP or the OAuth
// server: the handler establishes who is calling (a [Caller]) and tells
// [Register] how to find it for each tool call, so the tools can be tested
// with in-memory transports and reused by any MCP transport.
//
// Every tool declares an explicit input schema (type object, required
// properties, additionalProperties false, enums and bounds) and an output
// schema. Results carry both structuredContent (the typed output, validated by
// the SDK against the output schema) and a short human-readable text, so that
// clients which only show content blocks still get a useful answer. Failures
// the user or model can act on (division by zero, an expired GitHub login, a
// rate limit) are tool errors (isError: true), never protocol errors.
package tools

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/google/go-github/v75/github"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Caller is the authenticated user a tool call is made for, as the gate
// established it.
type Caller struct {
	// User is the GitHub identity the grant was issued to.
	User store.Identity
	// ClientID is the OAuth client the access token was issued to.
	ClientID string
	// Scope is the scope of the access token.
	Scope string
	// GitHub returns a go-github client that acts as the user, with the
	// GitHub token stored (encrypted) at their login, against the configured
	// GitHub or GHES. It may be nil; get_github_repos then returns a tool
	// error saying GitHub access is unavailable. It is a function rather than
	// a client so that the token is only decrypted when a tool needs it.
	GitHub func(ctx context.Context) (*github.Client, error)
}

// CallerFunc finds the caller of a tool call. It returns an error, or a nil
// Caller, when the call carries no authenticated user; tools that need one
// then answer with the tool error "no authenticated user".
type CallerFunc func(ctx context.Context, req *mcp.CallToolRequest) (*Caller, error)

// ExtraKey is the key under which a *Caller is stored in auth.TokenInfo.Extra.
const ExtraKey = "caddymcp.caller"

// errNoCaller is the tool error for calls without an authenticated user. It
// never says why (missing token info, wrong type, ...): that is a server
// wiring problem the client cannot fix, and details could leak internals.
var errNoCaller = errors.New("no authenticated user")

// FromTokenInfo is a CallerFunc for transports that carry auth.TokenInfo with
// each request (Streamable HTTP): it returns req.Extra.TokenInfo.Extra[ExtraKey].
// It fails when any link of that chain is missing or the value is not a
// non-nil *Caller.
func FromTokenInfo(ctx context.Context, req *mcp.CallToolRequest) (*Caller, error) {
	if req == nil || req.Extra == nil || req.Extra.TokenInfo == nil {
		return nil, errNoCaller
	}
	c, ok := req.Extra.TokenInfo.Extra[ExtraKey].(*Caller)
	if !ok || c == nil {
		return nil, errNoCaller
	}
	return c, nil
}

// Fixed returns a CallerFunc that always returns c (for a session bound to
// one user). A nil c behaves like a call without an authenticated user.
func Fixed(c *Caller) CallerFunc {
	return func(context.Context, *mcp.CallToolRequest) (*Caller, error) {
		if c == nil {
			return nil, errNoCaller
		}
		return c, nil
	}
}

// Register adds get_user_info, calculate and get_github_repos to s. find
// identifies the caller of each call; a nil find means no call has an
// authenticated user. calculate does not consult find: it uses no identity,
// and the gate in front of the server already decides who may call tools.
func Register(s *mcp.Server, find CallerFunc) {
	if find == nil {
		find = Fixed(nil)
	}
	registerUserInfo(s, find)
	registerCalculate(s)
	registerRepos(s, find)
}

// callerOf runs find and turns every failure into errNoCaller, so that a
// misbehaving CallerFunc can neither crash a tool nor leak its error text.
func callerOf(ctx context.Context, find CallerFunc, req *mcp.CallToolRequest) (*Caller, error) {
	c, err := find(ctx, req)
	if err != nil || c == nil {
		return nil, errNoCaller
	}
	return c, nil
}

// textResult is a result whose only content block is text. The SDK keeps a
// non-nil Content as is and adds the typed output as structuredContent, so
// this is how a tool answers with a human-readable summary instead of the
// SDK's default JSON dump of the output.
func textResult(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}

// boolPtr returns a pointer to b, for the optional hints of ToolAnnotations.
func boolPtr(b bool) *bool { return &b }

// recovered wraps a typed handler so that a panic (in a tool, in go-github,
// or in a Caller.GitHub func supplied by the embedding server) becomes the
// tool error "internal error in <tool>". The SDK runs handlers without
// recovering, and a panic there would take the whole web server down. The
// panic value goes to the log, not to the client, since it may hold
// internals.
func recovered[In, Out any](name string, h mcp.ToolHandlerFor[In, Out]) mcp.ToolHandlerFor[In, Out] {
	return func(ctx context.Context, req *mcp.CallToolRequest, in In) (res *mcp.CallToolResult, out Out, err error) {
		defer func() {
			if p := recover(); p != nil {
				slog.Error("caddymcp/tools: panic in tool handler", "tool", name, "panic", p, "stack", string(debug.Stack()))
				var zero Out
				res, out, err = nil, zero, fmt.Errorf("internal error in %s", name)
			}
		}()
		return h(ctx, req, in)
	}
}
