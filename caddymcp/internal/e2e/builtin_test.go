package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"
)

// structured decodes a tool result's structured content into v.
func structured(t *testing.T, res *mcp.CallToolResult, v any) {
	t.Helper()
	raw, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(raw, v); err != nil {
		t.Fatalf("structured content %s: %v", raw, err)
	}
}

func textOf(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// exerciseTools lists and calls every built-in tool as alice, with good
// and bad arguments.
func exerciseTools(ctx context.Context, t *testing.T, session *mcp.ClientSession) {
	t.Helper()
	init := session.InitializeResult()
	if init == nil || init.ServerInfo.Name != "caddymcp" || init.ServerInfo.Version == "" {
		t.Errorf("server info %+v, want caddymcp with a version", init)
	}
	list, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
		if tool.InputSchema == nil || tool.OutputSchema == nil {
			t.Errorf("%s lacks an input or output schema", tool.Name)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"calculate", "get_github_repos", "get_user_info"}) {
		t.Fatalf("tools %v", names)
	}

	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "get_user_info"})
	if err != nil || res.IsError {
		t.Fatalf("get_user_info: %v %s", err, textOf(res))
	}
	var user struct {
		ID    int64  `json:"id"`
		Login string `json:"login"`
		Email string `json:"email"`
	}
	structured(t, res, &user)
	if user.ID != alice.ID || user.Login != "alice" || user.Email != alice.Email {
		t.Errorf("get_user_info = %+v, want alice", user)
	}

	res, err = session.CallTool(ctx, &mcp.CallToolParams{Name: "calculate", Arguments: map[string]any{"operation": "power", "a": 7, "b": 8}})
	if err != nil || res.IsError {
		t.Fatalf("calculate: %v %s", err, textOf(res))
	}
	var calc struct {
		Result float64 `json:"result"`
	}
	structured(t, res, &calc)
	if calc.Result != 5764801 {
		t.Errorf("7^8 = %v", calc.Result)
	}
	res, err = session.CallTool(ctx, &mcp.CallToolParams{Name: "calculate", Arguments: map[string]any{"operation": "divide", "a": 1, "b": 0}})
	if err != nil {
		t.Fatalf("division by zero must be a tool error, not a protocol error: %v", err)
	}
	if !res.IsError || !strings.Contains(strings.ToLower(textOf(res)), "zero") {
		t.Errorf("1/0: isError %v, text %q", res.IsError, textOf(res))
	}
	if res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "calculate", Arguments: map[string]any{"operation": "sqrt", "a": 1, "b": 0}}); err == nil && !res.IsError {
		t.Error("an unknown operation was accepted")
	}

	res, err = session.CallTool(ctx, &mcp.CallToolParams{Name: "get_github_repos", Arguments: map[string]any{"limit": 5}})
	if err != nil || res.IsError {
		t.Fatalf("get_github_repos: %v %s", err, textOf(res))
	}
	var repos struct {
		Repos []struct {
			FullName string `json:"full_name"`
		} `json:"repos"`
		Count int `json:"count"`
	}
	structured(t, res, &repos)
	if repos.Count != 5 || len(repos.Repos) != 5 || repos.Repos[0].FullName != "alice/repo-00" || repos.Repos[4].FullName != "alice/repo-04" {
		t.Errorf("get_github_repos limit 5 = %+v, want alice's five most recently updated", repos)
	}
}

func TestBuiltinToolsStreamableHTTP(t *testing.T) {
	e := start(t, options{builtin: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	session, err := e.connect(ctx, t, "/mcp", e.sdkHandler(t, e.browser("alice")))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer session.Close()
	exerciseTools(ctx, t, session)
}

// tokenClient is an HTTP client that sends a fixed bearer token.
func (e *env) tokenClient(tok *oauth2.Token) *http.Client {
	base := e.httpClient(nil)
	base.CheckRedirect = nil
	base.Transport = &oauth2.Transport{Source: oauth2.StaticTokenSource(tok), Base: base.Transport}
	return base
}

func TestBuiltinToolsLegacySSE(t *testing.T) {
	e := start(t, options{builtin: true})
	c := e.register(t, false)
	tok := c.login(t, e.browser("alice"), e.site+"/sse")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-sse", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.SSEClientTransport{Endpoint: e.site + "/sse", HTTPClient: e.tokenClient(tok)}, nil)
	if err != nil {
		t.Fatalf("SSE connect: %v", err)
	}
	defer session.Close()
	exerciseTools(ctx, t, session)
}

// TestSessionsBelongToTheirUser: bob's valid token does not open alice's
// session, on either transport.
func TestSessionsBelongToTheirUser(t *testing.T) {
	e := start(t, options{builtin: true})
	c := e.register(t, false)
	aliceTok := c.login(t, e.browser("alice"), e.site+"/mcp")
	bobTok := c.login(t, e.browser("bob"), e.site+"/mcp")

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Sessions exist up to 2025-11-25 (2026-07-28 has none).
	client := mcp.NewClient(&mcp.Implementation{Name: "alice", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.site + "/mcp", HTTPClient: e.tokenClient(aliceTok)},
		&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatal(err)
	}
	if session.ID() == "" {
		t.Fatal("no session was created")
	}
	defer session.Close()

	post := func(tok, sessionID string) int {
		return e.postJSON(t, "/mcp", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, "Accept", mcpAccept,
			"Mcp-Session-Id", sessionID, "MCP-Protocol-Version", session.InitializeResult().ProtocolVersion,
			"Authorization", "Bearer "+tok).StatusCode
	}
	if status := post(aliceTok.AccessToken, session.ID()); status != http.StatusOK {
		t.Fatalf("alice in her own session: %d", status)
	}
	if status := post(bobTok.AccessToken, session.ID()); status != http.StatusForbidden {
		t.Errorf("bob in alice's Streamable HTTP session: %d, want 403", status)
	}

	// Legacy SSE: alice opens a stream and learns her message endpoint.
	sseTok := c.login(t, e.browser("alice"), e.site+"/sse")
	bobSSE := c.login(t, e.browser("bob"), e.site+"/sse")
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, e.site+"/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+sseTok.AccessToken)
	resp, err := e.httpClient(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	endpoint := ""
	for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			endpoint = data
			break
		}
	}
	if !strings.Contains(endpoint, "/sse?sessionid=") {
		t.Fatalf("SSE endpoint event %q does not point back at /sse", endpoint)
	}
	ssePost := func(tok string) int {
		return e.postJSON(t, endpoint, `{"jsonrpc":"2.0","id":1,"method":"ping"}`, "Authorization", "Bearer "+tok).StatusCode
	}
	if status := ssePost(bobSSE.AccessToken); status != http.StatusNotFound {
		t.Errorf("bob posting to alice's SSE session: %d, want 404", status)
	}
	if status := ssePost(sseTok.AccessToken); status != http.StatusAccepted {
		t.Errorf("alice posting to her SSE session: %d, want 202", status)
	}
}

func TestBuiltinOriginAndGateRequirements(t *testing.T) {
	e := start(t, options{builtin: true, siteExtra: `handle /ungated* {
		mcp_server
	}`})
	c := e.register(t, false)
	tok := c.login(t, e.browser("alice"), e.site+"/mcp")
	initialize := func(path, origin string) *http.Response {
		return e.postJSON(t, path, rawInitialize, "Accept", mcpAccept, "Authorization", "Bearer "+tok.AccessToken, "Origin", origin)
	}
	if resp := initialize("/mcp", "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("foreign Origin: %s, want 403", resp.Status)
	}
	if resp := initialize("/mcp", e.site); resp.StatusCode != http.StatusOK {
		t.Errorf("the site's own Origin: %s", resp.Status)
	}
	if resp := initialize("/mcp", ""); resp.StatusCode != http.StatusOK {
		t.Errorf("no Origin (a non-browser client): %s", resp.Status)
	}
	// Without a gate in front, mcp_server serves nobody.
	if resp := initialize("/ungated", ""); resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("mcp_server without mcp_auth: %s, want 500 (misconfiguration)", resp.Status)
	}
}

func TestBuiltinAllowedOrigins(t *testing.T) {
	e := start(t, options{siteExtra: `handle /inspector* {
		mcp_server {
			allowed_origins http://localhost:6274
		}
	}`, authExtra: "protect /mcp /sse /inspector"})
	c := e.register(t, false)
	tok := c.login(t, e.browser("alice"), e.site+"/inspector")
	preflight, _ := http.NewRequest(http.MethodOptions, e.site+"/inspector", nil)
	preflight.Header.Set("Origin", "http://localhost:6274")
	preflight.Header.Set("Access-Control-Request-Method", "POST")
	preflight.Header.Set("Access-Control-Request-Headers", "authorization, content-type, mcp-protocol-version")
	resp, err := e.httpClient(nil).Do(preflight)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:6274" ||
		!strings.Contains(resp.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Errorf("preflight from the Inspector: %s %v", resp.Status, resp.Header)
	}
	resp = e.postJSON(t, "/inspector", rawInitialize, "Accept", mcpAccept, "Origin", "http://localhost:6274", "Authorization", "Bearer "+tok.AccessToken)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Access-Control-Allow-Origin") != "http://localhost:6274" ||
		!strings.Contains(resp.Header.Get("Access-Control-Expose-Headers"), "Mcp-Session-Id") {
		t.Errorf("initialize from the Inspector: %s %v", resp.Status, resp.Header)
	}
	preflight.Header.Set("Origin", "https://evil.example")
	if resp, err := e.httpClient(nil).Do(preflight); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("preflight from a foreign origin: %v %v, want 403", err, resp.Status)
	}
}

// TestEveryProtocolRevision connects the SDK client at every revision it
// speaks (up to 2025-11-25 by the initialize handshake, from 2026-07-28 by
// server/discover) and calls a tool through the gate at each.
func TestEveryProtocolRevision(t *testing.T) {
	e := start(t, options{builtin: true})
	c := e.register(t, false)
	tok := c.login(t, e.browser("alice"), e.site+"/mcp")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, v := range []string{"2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25", "2026-07-28"} {
		client := mcp.NewClient(&mcp.Implementation{Name: "e2e-" + v, Version: "1"}, nil)
		session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.site + "/mcp", HTTPClient: e.tokenClient(tok)},
			&mcp.ClientSessionOptions{ProtocolVersion: v})
		if err != nil {
			t.Errorf("connect at %s: %v", v, err)
			continue
		}
		if got := session.InitializeResult().ProtocolVersion; got != v {
			t.Errorf("asked for %s, negotiated %s", v, got)
		}
		res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "calculate", Arguments: map[string]any{"operation": "add", "a": 2, "b": 3}})
		if err != nil || res.IsError || textOf(res) != "2 + 3 = 5" {
			t.Errorf("calculate at %s: %v %q", v, err, textOf(res))
		}
		session.Close()
	}
}

func TestBuiltinBodyLimit(t *testing.T) {
	e := start(t, options{builtin: true})
	c := e.register(t, false)
	tok := c.login(t, e.browser("alice"), e.site+"/mcp")
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"calculate","arguments":{"pad":"` + strings.Repeat("x", 2<<20) + `"}}}`
	for _, version := range []string{"2025-11-25", "2026-07-28"} {
		resp := e.postJSON(t, "/mcp", big, "Accept", mcpAccept, "MCP-Protocol-Version", version, "Authorization", "Bearer "+tok.AccessToken)
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("a 2 MiB body at %s: %s, want 413", version, resp.Status)
		}
	}
}
