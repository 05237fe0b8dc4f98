package e2e

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// whoAmI calls get_user_info on a session and returns the login.
func whoAmI(ctx context.Context, t *testing.T, s *mcp.ClientSession) string {
	t.Helper()
	res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "get_user_info"})
	if err != nil {
		t.Fatalf("get_user_info: %v", err)
	}
	if res.IsError {
		t.Fatalf("get_user_info: %s", textOf(res))
	}
	var user struct {
		Login string `json:"login"`
	}
	structured(t, res, &user)
	return user.Login
}

// TestSessionsSurviveReload: `caddy reload` with a changed config while a
// Streamable HTTP session and a legacy SSE stream are open. Both sessions
// keep working (the new config's mcp_server finds them), grants and tokens
// keep working, and the metrics keep counting.
func TestSessionsSurviveReload(t *testing.T) {
	e := start(t, options{builtin: true})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	streamable, err := e.connect(ctx, t, "/mcp", e.sdkHandler(t, e.browser("alice")))
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer streamable.Close()
	c := e.register(t, false)
	tok := c.login(t, e.browser("bob"), e.site+"/sse")
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-sse", Version: "1"}, nil)
	sse, err := client.Connect(ctx, &mcp.SSEClientTransport{Endpoint: e.site + "/sse", HTTPClient: e.tokenClient(tok)}, nil)
	if err != nil {
		t.Fatalf("SSE connect: %v", err)
	}
	defer sse.Close()
	if whoAmI(ctx, t, streamable) != "alice" || whoAmI(ctx, t, sse) != "bob" {
		t.Fatal("sessions before reload act for the wrong users")
	}
	before := e.metrics(t)

	e.reload(t, options{builtin: true, authExtra: "access_token_ttl 2h\n\t\thealth_path /healthz"})

	if got := whoAmI(ctx, t, streamable); got != "alice" {
		t.Errorf("Streamable HTTP session after reload acts for %q", got)
	}
	if got := whoAmI(ctx, t, sse); got != "bob" {
		t.Errorf("SSE session after reload acts for %q", got)
	}
	if status, out := c.refresh(t, tok.RefreshToken); status != http.StatusOK || out["expires_in"] != float64(7200) {
		t.Errorf("refresh after reload: %d %v", status, out)
	}
	after := e.metrics(t)
	if k := `caddymcp_gate_decisions_total{decision="allowed"}`; after[k] <= before[k] {
		t.Errorf("gate decisions did not keep counting across the reload: %v then %v", before[k], after[k])
	}
	wantMetric(t, before, after, `caddymcp_tokens_total{event="refreshed"}`, 1)
	resp, err := e.httpClient(nil).Get(e.site + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("health path added by the reload: %s", resp.Status)
	}
}

// TestValidateWhileRunning: `caddy validate` of the running server's
// config is answered (valid) without touching the state file the server
// holds.
func TestValidateWhileRunning(t *testing.T) {
	e := start(t, options{})
	dir := t.TempDir()
	bin := caddyBinary(t)
	cfgFile := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgFile, []byte(e.render(options{})), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "validate", "--config", cfgFile, "--adapter", "caddyfile")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Valid configuration") {
		t.Fatalf("caddy validate of the running config: %v\n%s", err, out)
	}
	// The server still has it, and works.
	c := e.register(t, false)
	tok := c.login(t, e.browser("alice"), e.site+"/mcp")
	if resp := e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusOK {
		t.Errorf("after validate: %s", resp.Status)
	}
}
