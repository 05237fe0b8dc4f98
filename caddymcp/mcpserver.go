package caddymcp

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/tools"
)

func init() {
	caddy.RegisterModule(MCPServer{})
}

// MCPServer serves the built-in MCP tools (get_user_info, calculate,
// get_github_repos) with the official MCP Go SDK, over Streamable HTTP and
// the legacy HTTP+SSE transport, to users the mcp_auth gate in front of it
// has authenticated. Without that gate it refuses every request: it never
// runs as an anonymous server.
//
// Every revision the SDK speaks is served, all of them by the SDK's
// stateless handler: up to 2025-11-25 with sessions (a session ID bound to
// its user, which every instance checks), 2026-07-28 without (it has
// none). Both transports are served on the same path. A GET without an
// Mcp-Session-Id header opens a legacy SSE stream, whose endpoint event
// points back at the same path with ?sessionid=, so its messages stay on
// the same protected resource; everything else is Streamable HTTP.
//
// It declares the tools capability and nothing else, and answers prompts,
// resources, completion and logging requests "method not found", at every
// revision (see toolServerCapabilities).
//
// A session belongs to the user who opened it: another user presenting its
// session ID is refused (403 for Streamable HTTP, 404 for SSE, where each
// user's sessions live apart).
//
// Streamable HTTP holds nothing in the process, so any instance behind a
// load balancer serves any request of a session (see mcpsessions.go). A
// legacy SSE stream lives in the process that opened it; a message for it
// reaching another instance is answered 421 at once (see mcpsse.go). The
// streams are shared by every mcp_server of the process with the same
// max_request_body, so that they survive `caddy reload` (the old config's
// server keeps serving them).
//
// A request's Origin is judged against the issuer of the mcp_auth gate in
// front, not against the scheme and Host it arrived with (see issuer.go).
type MCPServer struct {
	// AllowedOrigins lists the origins (scheme://host[:port]) of browser
	// clients allowed to call, besides the site's own, such as
	// http://localhost:6274 for the MCP Inspector in direct mode. A
	// request with any other Origin header is refused with 403, as the
	// MCP transport specification requires. Default: none.
	AllowedOrigins []string `json:"allowed_origins,omitempty"`

	// MaxRequestBody bounds the body of a request in bytes; larger ones
	// are refused with 413. Default: 1 MiB.
	MaxRequestBody int64 `json:"max_request_body,omitempty"`

	// SessionIdleTimeout is accepted for configurations written for
	// earlier releases and has no effect: Streamable HTTP sessions hold
	// nothing on the server, so that every instance serves them, and
	// there is nothing to close (see mcpsessions.go).
	SessionIdleTimeout caddy.Duration `json:"session_idle_timeout,omitempty"`

	*transports
	poolKey string
	logger  *zap.Logger
}

// transports are the SDK handlers of an MCPServer and the legacy SSE
// streams open at this process. They are shared through sessionPool by
// every MCPServer with the same settings, old config and new, so that the
// streams survive a config reload: a message finds its stream where the
// old config left it.
type transports struct {
	streamable http.Handler // every revision, statelessly (mcpsessions.go)
	sse        *sseStreams
}

// Destruct lets the streams go with the last config using them; each ends
// with its client's GET.
func (*transports) Destruct() error { return nil }

// sessionPool holds the transports of this process by their settings.
var sessionPool = caddy.NewUsagePool()

// Defaults.
const defaultMaxRequestBody = 1 << 20

// CaddyModule returns the Caddy module information.
func (MCPServer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_server",
		New: func() caddy.Module { return new(MCPServer) },
	}
}

// Provision builds the MCP server and its transports.
func (s *MCPServer) Provision(ctx caddy.Context) error {
	s.logger = ctx.Logger()
	if s.MaxRequestBody <= 0 {
		s.MaxRequestBody = defaultMaxRequestBody
	}
	if s.SessionIdleTimeout > 0 {
		s.logger.Warn("session_idle_timeout has no effect: Streamable HTTP sessions hold nothing on the server, so that every instance serves them; remove it",
			zap.Duration("session_idle_timeout", time.Duration(s.SessionIdleTimeout)))
	}
	for i, o := range s.AllowedOrigins {
		s.AllowedOrigins[i] = strings.TrimRight(strings.ToLower(o), "/")
	}

	s.poolKey = fmt.Sprintf("max_request_body=%d", s.MaxRequestBody)
	val, _, err := sessionPool.LoadOrNew(s.poolKey, func() (caddy.Destructor, error) { return s.newTransports(), nil })
	if err != nil {
		return err
	}
	s.transports = val.(*transports)
	return nil
}

// Cleanup releases this config's use of the shared transports.
func (s *MCPServer) Cleanup() error {
	if s.transports == nil {
		return nil
	}
	_, err := sessionPool.Delete(s.poolKey)
	return err
}

// newTransports builds the SDK handlers for s's settings.
func (s *MCPServer) newTransports() *transports {
	// One server for every request: each carries its caller in the SDK's
	// TokenInfo.
	shared := newToolServer(tools.FromTokenInfo)
	getServer := func(*http.Request) *mcp.Server { return shared }
	withTokenInfo := auth.RequireBearerToken(tokenInfoFromGate, nil)
	// The SDK's DNS-rebinding guard refuses loopback connections with
	// another Host, which is every site behind a local proxy. Nothing here
	// answers without a token, and Origin is checked in ServeHTTP.
	//
	// Stateless at every revision, so that any instance serves any
	// request (mcpsessions.go); the SDK speaks 2026-07-28 over HTTP only
	// this way anyway.
	return &transports{
		streamable: withTokenInfo(withoutInternalAuthorization(mcp.NewStreamableHTTPHandler(getServer, &mcp.StreamableHTTPOptions{
			Stateless:                  true,
			MaxRequestBodyBytes:        s.MaxRequestBody,
			DisableLocalhostProtection: true,
		}))),
		sse: &sseStreams{maxBody: s.MaxRequestBody, tag: instanceTag},
	}
}

// newToolServer is an MCP server with the built-in tools, reporting this
// build's name and version.
func newToolServer(find tools.CallerFunc) *mcp.Server {
	srv := mcp.NewServer(&mcp.Implementation{Name: "caddymcp", Title: "caddymcp built-in tools", Version: version()}, &mcp.ServerOptions{
		Instructions: "Tools for the GitHub user who signed in: their profile, their repositories, and a calculator.",
		Capabilities: toolServerCapabilities,
	})
	srv.AddReceivingMiddleware(onlyDeclared(toolServerCapabilities))
	tools.Register(srv, find)
	return srv
}

// toolServerCapabilities is what the built-in server serves, and so all it
// declares, at every revision (the initialize result up to 2025-11-25, the
// server/discover result from 2026-07-28): tools, whose list is fixed once
// registered, so without listChanged.
//
// Left to itself the SDK (v1.8.0) declares logging and tools with
// listChanged, yet answers prompts/list, resources/list and
// resources/templates/list with empty lists whatever it declared, and
// logging/setLevel although nothing here ever logs to the client: a server
// that answers a family it did not declare breaks the capability contract
// (the conformance suite's server-stateless scenario fails on prompts).
// Declaring empty prompts and resources instead would make clients list
// and show sections that can never hold anything, and promise log messages
// that never come; declaring only tools and refusing the rest says what
// the server is. The SDK has no option to stop answering a family, so a
// receiving middleware (onlyDeclared) does.
var toolServerCapabilities = &mcp.ServerCapabilities{Tools: &mcp.ToolCapabilities{}}

// onlyDeclared answers "method not found" to the requests of every method
// family (prompts/*, resources/*, completion/*, logging/*, tools/*) that
// caps does not declare, as for a method that does not exist, whatever the
// SDK would have answered. Requests outside those families (initialize,
// server/discover, ping, subscriptions/listen, notifications) go through.
// Deriving the refusal from the declaration keeps the two in step: a
// family added to the server is served once it is declared.
func onlyDeclared(caps *mcp.ServerCapabilities) mcp.Middleware {
	declared := map[string]bool{
		"tools":      caps.Tools != nil,
		"prompts":    caps.Prompts != nil,
		"resources":  caps.Resources != nil,
		"completion": caps.Completions != nil,
		"logging":    caps.Logging != nil,
	}
	return func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			family, _, _ := strings.Cut(method, "/")
			if ok, known := declared[family]; known && !ok {
				// The SDK answers any -32601 as `method not found:
				// "<method>"`, exactly as for a method that does not
				// exist, and from 2026-07-28 with HTTP 404 (SEP-2575).
				return nil, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound, Message: "method not found"}
			}
			return next(ctx, method, req)
		}
	}
}

// version is this module's version as built, "(devel)" from a checkout.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	const path = "github.com/caddymcp/caddymcp"
	if info.Main.Path == path {
		return info.Main.Version
	}
	for _, d := range info.Deps {
		if d.Path == path {
			if d.Replace != nil && d.Replace.Version == "" {
				return "(devel)"
			}
			return d.Version
		}
	}
	return "(devel)"
}

// internalAuthorization stands in for the client's token, which the gate
// removed, so that the SDK's bearer middleware runs and attaches TokenInfo
// (the only way to bind its sessions to users). It carries nothing.
const internalAuthorization = "Bearer caddymcp-gate-verified"

// tokenInfoFromGate turns the gate's verdict into the SDK's TokenInfo.
func tokenInfoFromGate(ctx context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
	a := authenticatedFrom(r.Context())
	if a == nil {
		return nil, auth.ErrInvalidToken
	}
	return &auth.TokenInfo{
		UserID:     a.userKey(),
		Scopes:     strings.Fields(a.token.Scope),
		Expiration: a.token.ExpiresAt,
		Extra:      map[string]any{tools.ExtraKey: a.caller()},
	}, nil
}

// withoutInternalAuthorization removes the stand-in header again before
// the SDK hands request headers to tools.
func withoutInternalAuthorization(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del("Authorization")
		next.ServeHTTP(w, r)
	})
}

// caller is the authenticated user as the tools see them.
func (a *authenticated) caller() *tools.Caller {
	return &tools.Caller{User: a.token.User, ClientID: a.token.ClientID, Scope: a.token.Scope, GitHub: a.gitHub}
}

// ServeHTTP serves the MCP transports to authenticated users.
func (s *MCPServer) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	origin := r.Header.Get("Origin")
	if origin != "" && !s.originAllowed(siteOrigin(r), origin) {
		s.logger.Debug("refused a foreign origin", zap.String("origin", origin))
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return nil
	}
	if origin != "" {
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Add("Vary", "Origin")
		h.Set("Access-Control-Expose-Headers", "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate")
		if r.Method == http.MethodOptions {
			h.Set("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
			h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Last-Event-ID")
			h.Set("Access-Control-Max-Age", "86400")
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
	}
	a := authenticatedFrom(r.Context())
	if a == nil {
		// Misconfiguration, not the client's fault: say so loudly.
		return caddyhttp.Error(http.StatusInternalServerError,
			errors.New("mcp_server needs an mcp_auth gate in front of it: add this path to mcp_auth's protect list"))
	}
	if isLegacySSE(r) {
		s.sse.serve(a, w, r)
		return nil
	}
	if r.Header.Get("MCP-Protocol-Version") < sessionlessRevision && !s.sessionFor(w, r, a.userKey()) {
		return nil
	}
	r.Header.Set("Authorization", internalAuthorization)
	s.streamable.ServeHTTP(w, r)
	return nil
}

// sessionlessRevision is the first MCP revision without sessions
// (SEP-2567); its clients send it in MCP-Protocol-Version on every request,
// including server/discover. Revisions are dates, so they compare as
// strings.
const sessionlessRevision = "2026-07-28"

// isLegacySSE reports whether r belongs to the 2024-11-05 HTTP+SSE
// transport: opening its stream (a GET without a Streamable HTTP session)
// or posting to a stream's endpoint (?sessionid=).
func isLegacySSE(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet:
		return r.Header.Get("Mcp-Session-Id") == ""
	case http.MethodPost:
		return r.URL.Query().Has("sessionid")
	}
	return false
}

// originAllowed reports whether a browser at origin may call: the site
// itself (site, the origin of the gate's issuer: see siteOrigin), or a
// configured origin.
func (s *MCPServer) originAllowed(site, origin string) bool {
	origin = strings.TrimRight(strings.ToLower(origin), "/")
	if site != "" && origin == site {
		return true
	}
	return slices.Contains(s.AllowedOrigins, origin) || slices.Contains(s.AllowedOrigins, "*")
}

// Interface guards
var (
	_ caddy.Provisioner           = (*MCPServer)(nil)
	_ caddy.CleanerUpper          = (*MCPServer)(nil)
	_ caddyhttp.MiddlewareHandler = (*MCPServer)(nil)
)
