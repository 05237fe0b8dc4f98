package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"
)

// cli runs `caddy mcp-auth <args>` in this process, as the binary would,
// against the running server's admin endpoint.
func (e *env) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd, ok := caddycmd.Commands()["mcp-auth"]
	if !ok {
		t.Fatal("no mcp-auth command registered")
	}
	root := &cobra.Command{Use: "mcp-auth", SilenceErrors: true}
	cmd.CobraFunc(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(append(args, "--address", e.admin))
	err := root.Execute()
	return out.String(), err
}

func (e *env) mustCLI(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.cli(t, args...)
	if err != nil {
		t.Fatalf("caddy mcp-auth %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("$ caddy mcp-auth %s\n%s", strings.Join(args, " "), out)
	return out
}

// metrics scrapes the admin endpoint's /metrics and returns the samples
// of caddymcp's metrics, keyed as written: name{labels}.
func (e *env) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := http.Get("http://" + e.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %s", resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "caddymcp_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// wantMetric checks that a metric grew by want since before: the
// collectors are process-wide, so other tests in this process count too.
func wantMetric(t *testing.T, before, after map[string]float64, key string, want float64) {
	t.Helper()
	got, ok := after[key]
	if !ok {
		t.Errorf("metric %s missing", key)
	} else if got-before[key] != want {
		t.Errorf("metric %s grew by %v, want %v", key, got-before[key], want)
	}
}

// auditLines are the lines of Caddy's log from the audit loggers.
func (e *env) auditLines(t *testing.T) []map[string]any {
	t.Helper()
	f, err := os.Open(e.logs.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		if l, _ := line["logger"].(string); strings.HasSuffix(l, "mcp_auth.audit") {
			out = append(out, line)
		}
	}
	return out
}

// findAudit returns the first audit line with msg whose fields include
// all of want.
func findAudit(lines []map[string]any, msg string, want map[string]any) map[string]any {
	for _, l := range lines {
		if l["msg"] != msg {
			continue
		}
		match := true
		for k, v := range want {
			if fmt.Sprint(l[k]) != fmt.Sprint(v) {
				match = false
			}
		}
		if match {
			return l
		}
	}
	return nil
}

// TestOperatorCutsOffAUser is the operator's story: who is connected, with
// which client; cut one user off from the CLI; see it in the metrics and
// the audit log; the other user keeps working.
func TestOperatorCutsOffAUser(t *testing.T) {
	e := start(t, options{authExtra: "health_path /healthz"})
	m0 := e.metrics(t)
	// alice's client is confidential, so her approval is remembered
	// (a public loopback client is asked for every time).
	ca := e.register(t, true)
	cb := e.register(t, true)
	aliceBrowser := e.browser("alice")
	aliceTok := ca.login(t, aliceBrowser, e.site+"/mcp")
	bobTok := cb.login(t, e.browser("bob"), e.site+"/mcp")
	for _, tok := range []string{aliceTok.AccessToken, bobTok.AccessToken} {
		if resp := e.mcpPost(t, "/mcp", "Bearer "+tok); resp.StatusCode != http.StatusOK {
			t.Fatalf("before: %s", resp.Status)
		}
	}
	e.mcpPost(t, "/mcp", "")

	// Who is connected, with which client?
	table := e.mustCLI(t, "grants")
	for _, want := range []string{"alice (1001)", "bob (1002)", "raw test client (" + ca.id + ")", e.site + "/mcp"} {
		if !strings.Contains(table, want) {
			t.Errorf("grants table lacks %q", want)
		}
	}
	var listed struct {
		Grants []struct {
			ID       string `json:"id"`
			ClientID string `json:"client_id"`
			User     struct {
				Login string `json:"login"`
			} `json:"user"`
		} `json:"grants"`
	}
	if err := json.Unmarshal([]byte(e.mustCLI(t, "grants", "--user", "alice", "--json")), &listed); err != nil {
		t.Fatal(err)
	}
	if len(listed.Grants) != 1 || listed.Grants[0].User.Login != "alice" || listed.Grants[0].ClientID != ca.id {
		t.Fatalf("alice's grants: %+v", listed)
	}
	if clients := e.mustCLI(t, "clients"); !strings.Contains(clients, ca.id) || !strings.Contains(clients, cb.id) {
		t.Errorf("clients table lacks the clients")
	}

	// Her browser remembers her approval: no consent page.
	if status, _, _ := aliceBrowser.step(t, http.MethodGet, ca.authURL(e.site+"/mcp"), nil); status != http.StatusFound {
		t.Errorf("alice's approved client again: %d, want straight on to GitHub", status)
	}

	// Cut alice off.
	if out := e.mustCLI(t, "revoke", "--user", "alice"); !strings.Contains(out, "revoked 1 grant") {
		t.Errorf("revoke --user alice said %q", out)
	}
	// ...which withdraws her consent: signing in again asks again.
	if status, _, body := aliceBrowser.step(t, http.MethodGet, ca.authURL(e.site+"/mcp"), nil); status != http.StatusOK || !isConsentPage(body) {
		t.Errorf("alice after being cut off: %d, want the consent page", status)
	}
	if resp := e.mcpPost(t, "/mcp", "Bearer "+aliceTok.AccessToken); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("alice's token after revoke: %s, want 401", resp.Status)
	}
	if status, _ := ca.refresh(t, aliceTok.RefreshToken); status != http.StatusBadRequest {
		t.Errorf("alice's refresh after revoke: %d, want 400", status)
	}
	if resp := e.mcpPost(t, "/mcp", "Bearer "+bobTok.AccessToken); resp.StatusCode != http.StatusOK {
		t.Errorf("bob's token after alice was cut off: %s", resp.Status)
	}
	if table := e.mustCLI(t, "grants"); strings.Contains(table, "alice") || !strings.Contains(table, "bob") {
		t.Errorf("grants after revoke:\n%s", table)
	}

	// Bad input through the CLI is a clear error, not a crash.
	if out, err := e.cli(t, "revoke", "no-such-grant"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("revoking an unknown grant: %v %s", err, out)
	}
	if _, err := e.cli(t, "revoke"); err == nil {
		t.Error("revoke with neither a grant nor a user succeeded")
	}

	// Deleting bob's client cuts bob off too.
	if out := e.mustCLI(t, "delete-client", cb.id); !strings.Contains(out, "revoked 1 grant") {
		t.Errorf("delete-client said %q", out)
	}
	if resp := e.mcpPost(t, "/mcp", "Bearer "+bobTok.AccessToken); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("bob's token after deleting his client: %s, want 401", resp.Status)
	}

	m := e.metrics(t)
	wantMetric(t, m0, m, `caddymcp_registrations_total`, 2)
	wantMetric(t, m0, m, `caddymcp_authorizations_total{reason="",result="started"}`, 4) // two logins, alice's two checks
	wantMetric(t, m0, m, `caddymcp_authorizations_total{reason="",result="approved"}`, 2)
	wantMetric(t, m0, m, `caddymcp_tokens_total{event="issued"}`, 2)
	wantMetric(t, m0, m, `caddymcp_grants_revoked_total{reason="admin"}`, 2)
	wantMetric(t, m0, m, `caddymcp_gate_decisions_total{decision="allowed"}`, 3)
	wantMetric(t, m0, m, `caddymcp_gate_decisions_total{decision="missing"}`, 1)
	wantMetric(t, m0, m, `caddymcp_gate_decisions_total{decision="invalid"}`, 2)
	wantMetric(t, m0, m, `caddymcp_token_request_duration_seconds_count{code="200"}`, 2)
	wantMetric(t, m0, m, `caddymcp_token_request_duration_seconds_count{code="400"}`, 1)
	if k := `caddymcp_github_request_duration_seconds_count{api="oauth",code="200"}`; m[k]-m0[k] != 2 {
		t.Errorf("GitHub token exchanges timed: %v, want 2", m[k]-m0[k])
	}
	if k := `caddymcp_github_request_duration_seconds_count{api="rest",code="200"}`; m[k]-m0[k] < 2 {
		t.Errorf("GitHub calls not timed: %v", m)
	}

	audit := e.auditLines(t)
	if findAudit(audit, "user logged in", map[string]any{"login": "alice", "user_id": 1001, "client_id": ca.id, "resource": e.site + "/mcp"}) == nil {
		t.Errorf("no audit line for alice's login in %v", audit)
	}
	if findAudit(audit, "grant created", map[string]any{"login": "bob", "client_id": cb.id}) == nil {
		t.Errorf("no audit line for bob's grant")
	}
	if l := findAudit(audit, "grant revoked", map[string]any{"login": "alice", "reason": "admin"}); l == nil || l["logger"] != "admin.api.mcp_auth.audit" {
		t.Errorf("no admin audit line for revoking alice: %v", l)
	}
	if findAudit(audit, "client deleted", map[string]any{"client_id": cb.id, "grants_revoked": 1}) == nil {
		t.Errorf("no audit line for deleting bob's client")
	}
	if findAudit(audit, "client registered", map[string]any{"client_id": ca.id, "client_name": "raw test client"}) == nil {
		t.Errorf("no audit line for a registration")
	}

	// The health path answers without a token.
	resp, err := e.httpClient(nil).Get(e.site + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"status":"ok"`) {
		t.Errorf("health: %s %s", resp.Status, body)
	}
}
