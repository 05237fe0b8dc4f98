package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore"
)

// reload posts a new Caddyfile to the admin API, as `caddy reload` does.
func (e *env) reload(t *testing.T, o options) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+e.admin+"/load", strings.NewReader(e.render(o)))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("reload: %s %s", resp.Status, b)
	}
}

// TestStateSurvivesReloadAndRestart: grants live in the bbolt file, which
// stays open across a config reload (one handle, shared through a usage
// pool) and persists across a restart; while Caddy holds it, another
// process cannot open it and is told why.
func TestStateSurvivesReloadAndRestart(t *testing.T) {
	e := start(t, options{})
	c := e.register(t, false)
	tok := c.login(t, e.browser("alice"), e.site+"/mcp")

	e.reload(t, options{authExtra: "access_token_ttl 2h"})
	if resp := e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken); resp.StatusCode != http.StatusOK {
		t.Fatalf("token after reload: %s", resp.Status)
	}
	status, out := c.refresh(t, tok.RefreshToken)
	if status != http.StatusOK {
		t.Fatalf("refresh after reload: %d %v", status, out)
	}
	if out["expires_in"] != float64(7200) {
		t.Errorf("expires_in after reload = %v, want the reloaded 7200", out["expires_in"])
	}
	access, refresh := out["access_token"].(string), out["refresh_token"].(string)
	e.logs.addSecret(access)
	e.logs.addSecret(refresh)

	_, err := bboltstore.Open(e.statePath(), bboltstore.Options{LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, bboltstore.ErrLocked) || !strings.Contains(err.Error(), "locked by another process") {
		t.Errorf("opening the state file while Caddy runs: %v, want a clear lock error", err)
	}

	// Restart: this process's Caddy stops and another process serves the
	// same config and state file. (Restarting in-process trips a data
	// race inside Caddy's TLS app, whose certificate cache outlives a
	// stop; a new process is the restart operators do anyway.)
	if err := caddy.Stop(); err != nil {
		t.Fatal(err)
	}
	stop := e.runBinary(t, e.render(options{}))
	defer stop()
	e.waitReady()
	if resp := e.mcpPost(t, "/mcp", "Bearer "+access); resp.StatusCode != http.StatusOK {
		t.Errorf("token after restart: %s", resp.Status)
	}
	if status, out := c.refresh(t, refresh); status != http.StatusOK {
		t.Errorf("refresh after restart: %d %v", status, out)
	}
}

// runBinary serves caddyfile with the built binary, in this env's
// directories, and returns a function that stops it with SIGINT.
func (e *env) runBinary(t *testing.T, caddyfile string) (stop func()) {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "Caddyfile")
	if err := os.WriteFile(cfg, []byte(caddyfile), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(caddyBinary(t), "run", "--config", cfg, "--adapter", "caddyfile")
	cmd.Env = processEnv(e.dir)
	p := startProcess(t, cmd)
	return func() { p.interrupt(t, 15*time.Second) }
}

// accessLogFilter is the README's recommended access log configuration:
// Caddy logs request URIs and response headers, and the GitHub callback's
// URI carries GitHub's code and our state, while the redirect back to the
// client carries our authorization code.
const accessLogFilter = `log {
		output file %s
		format filter {
			request>uri query {
				delete code
				delete state
			}
			resp_headers>Location delete
			wrap json
		}
	}`

// TestAccessLogFilterKeepsSecretsOut runs a full flow with Caddy's access
// log on, filtered as the README says, and scans it for secrets.
func TestAccessLogFilterKeepsSecretsOut(t *testing.T) {
	dir := t.TempDir()
	accessLog := dir + "/access.log"
	e := start(t, options{siteExtra: fmt.Sprintf(accessLogFilter, accessLog)})
	c := e.register(t, true)
	tok := c.login(t, e.browser("alice"), e.site+"/mcp")
	if status, out := c.refresh(t, tok.RefreshToken); status != http.StatusOK {
		t.Fatalf("refresh: %d %v", status, out)
	}
	e.mcpPost(t, "/mcp", "Bearer "+tok.AccessToken)
	t.Cleanup(func() {
		// After Caddy stopped and flushed: the callback must be in the
		// log (or the check proves nothing), without its secrets.
		b, err := os.ReadFile(accessLog)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), `/callback`) {
			t.Fatal("the access log has no callback request")
		}
		e.logs.assertNoSecretsIn(t, accessLog, "the access log")
	})
}
