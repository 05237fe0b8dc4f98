package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// mcpRemoteDir holds package.json and package-lock.json pinning
// mcp-remote; `npm ci` there (as .ci/run does) installs it.
const mcpRemoteDir = "testdata/mcp-remote"

// TestMcpRemote runs mcp-remote, the stdio bridge Claude Desktop and other
// desktop clients use for remote MCP servers, against a real Caddy: sign
// in through its browser flow, call a tool, let the access token expire,
// and call again. The second call must work through a silent refresh,
// without a second sign-in.
//
// It guards against a regression users saw as being logged out every
// access-token lifetime: with no scopes_supported in either metadata
// document mcp-remote asks for "openid email profile", which the server
// drops; with no scope in the token response it repeats those scopes on
// refresh, and a server answering invalid_scope ends its session, so
// mcp-remote opens the browser again.
func TestMcpRemote(t *testing.T) {
	proxyJS, err := filepath.Abs(filepath.Join(mcpRemoteDir, "node_modules", "mcp-remote", "dist", "proxy.js"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(proxyJS); err != nil {
		t.Fatalf("mcp-remote is not installed (%v): run `npm ci` in caddymcp/internal/e2e/%s (.ci/run does)", err, mcpRemoteDir)
	}
	// An install left from before the pin moved would test another
	// version than the one the lock file names.
	var pinned struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	var installed struct {
		Version string `json:"version"`
	}
	readJSONFileInto(t, filepath.Join(mcpRemoteDir, "package.json"), &pinned)
	readJSONFileInto(t, filepath.Join(mcpRemoteDir, "node_modules", "mcp-remote", "package.json"), &installed)
	if want := pinned.Dependencies["mcp-remote"]; want == "" || installed.Version != want {
		t.Fatalf("mcp-remote %q is installed, the lock pins %q: run `npm ci` in caddymcp/internal/e2e/%s", installed.Version, want, mcpRemoteDir)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("this test runs mcp-remote, which needs Node.js 20.18.1 or later on PATH: %v", err)
	}
	// mcp-remote's undici needs Node 20.18.1; on an older Node it fails in
	// ways that would read as a server bug.
	out, err := exec.Command(node, "-p", "process.versions.node").Output()
	if err != nil {
		t.Fatalf("node -p process.versions.node: %v", err)
	}
	if v := strings.TrimSpace(string(out)); !nodeAtLeast(v, 20, 18, 1) {
		t.Fatalf("Node.js %s is too old for mcp-remote %s (its undici needs 20.18.1 or later)", v, installed.Version)
	}

	// A bound on the whole run, mcp-remote included (it is killed at
	// the deadline); a passing run takes seconds beyond the TTL.
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Any TTL under a minute makes mcp-remote refresh before every
	// request (it renews tokens within 60s of their expiry), which is
	// what a real 1h token meets at minute 59. 10s leaves the sign-in and
	// the first call time to finish on the token the code exchange
	// issued, so that on a broken server the failure shows at the
	// refresh after expiry, the step this test is about.
	e := start(t, options{builtin: true, authExtra: "access_token_ttl 10s"})

	home := t.TempDir()
	configDir := filepath.Join(home, "mcp-auth")
	opened := fakeBrowser(ctx, t, home)
	callbackPort := freePort(t)

	var stderr lockedBuffer
	cmd := exec.CommandContext(ctx, node, proxyJS, e.site+"/mcp", strconv.Itoa(callbackPort), "--debug")
	cmd.Dir = home
	// A clean environment: nothing from the developer's desktop (DISPLAY,
	// proxies, a real ~/.mcp-auth) reaches mcp-remote, and it trusts
	// Caddy's local CA the way the README tells users of the demo to.
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"MCP_REMOTE_CONFIG_DIR=" + configDir,
		"NODE_EXTRA_CA_CERTS=" + filepath.Join(e.dir, "caddy", "pki", "authorities", "local", "root.crt"),
		"BROWSER=" + opened.script,
	}
	cmd.Stderr = &stderr
	// CommandContext kills the child if the test runs out of time; WaitDelay
	// bounds the wait for its output pipes after that.
	cmd.WaitDelay = 5 * time.Second
	defer func() {
		if t.Failed() {
			// With --debug it says which scope it sent and what /token answered.
			t.Logf("the end of mcp-remote's stderr:\n%s", lastLines(stderr.String(), 150))
		}
	}()

	// mcp-remote signs in before it answers on stdio, so the user's part
	// runs alongside Connect: take the URL it opened, walk it as alice
	// (consent, the GitHub stand-in) and load the redirect, which is
	// mcp-remote's own callback server.
	signedIn := make(chan error, 1)
	go func() {
		select {
		case u := <-opened.urls:
			signedIn <- e.completeBrowserSignIn(ctx, u)
		case <-ctx.Done():
			signedIn <- ctx.Err()
		}
	}()

	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-over-mcp-remote", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.CommandTransport{Command: cmd, TerminateDuration: 5 * time.Second}, nil)
	if err != nil {
		t.Fatalf("connecting to mcp-remote over stdio: %v", err)
	}
	// Closing the session closes mcp-remote's stdin, on which it exits;
	// past TerminateDuration it is sent SIGTERM, then killed.
	defer session.Close()
	if err := <-signedIn; err != nil {
		t.Fatalf("signing in through mcp-remote's browser flow: %v", err)
	}

	tools, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list through mcp-remote: %v", err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	if !slices.Contains(names, "calculate") {
		t.Fatalf("tools through mcp-remote: %v, want calculate among them", names)
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "calculate", Arguments: map[string]any{"operation": "add", "a": 2, "b": 3}})
	if err != nil || res.IsError || textOf(res) != "2 + 3 = 5" {
		t.Fatalf("calculate through mcp-remote: %v %s", err, resultText(res))
	}

	clientID := readMcpRemoteFile[struct {
		ClientID string `json:"client_id"`
	}](t, configDir, "client_info.json").ClientID
	if clientID == "" {
		t.Fatal("mcp-remote stored no client_id")
	}
	// What mcp-remote holds now: the code exchange's tokens, or those of
	// a refresh it already made (it renews any token within a minute of
	// expiry, so with this TTL before every request).
	beforeExpiry := readMcpRemoteFile[mcpRemoteTokens](t, configDir, "tokens.json")
	if beforeExpiry.AccessToken == "" || beforeExpiry.RefreshToken == "" {
		t.Fatalf("mcp-remote stored no access or no refresh token after signing in: %s", beforeExpiry.redacted())
	}
	e.logs.addSecret(beforeExpiry.AccessToken)
	e.logs.addSecret(beforeExpiry.RefreshToken)

	// Wait, by asking the server, until that access token is refused:
	// from here on only a refresh can make a call work.
	e.waitTokenRefused(ctx, t, beforeExpiry.AccessToken)
	refreshedBefore := countAudit(e.auditLines(t), "grant refreshed", clientID)

	// The second call runs in the background so that a browser opening
	// for a second sign-in (which would wait for a user who never comes)
	// fails the test at once rather than at the timeout.
	type callResult struct {
		res *mcp.CallToolResult
		err error
	}
	second := make(chan callResult, 1)
	// Close waits for calls in flight, so a call left waiting on a sign-in
	// is cancelled first (this defer runs before session.Close's).
	callCtx, cancelCall := context.WithCancel(ctx)
	defer cancelCall()
	go func() {
		res, err := session.CallTool(callCtx, &mcp.CallToolParams{Name: "get_user_info"})
		second <- callResult{res, err}
	}()
	select {
	case u := <-opened.urls:
		t.Fatalf("after the access token expired, mcp-remote opened the browser for a second sign-in instead of refreshing silently (%.60s…)", u)
	case r := <-second:
		if r.err != nil || r.res.IsError {
			t.Fatalf("get_user_info through mcp-remote after the access token expired: %v %s", r.err, resultText(r.res))
		}
		var user struct {
			Login string `json:"login"`
		}
		structured(t, r.res, &user)
		if user.Login != "alice" {
			t.Errorf("get_user_info after the refresh: login %q, want alice", user.Login)
		}
	case <-ctx.Done():
		t.Fatal("timed out waiting for the call after the access token expired")
	}

	// The server saw mcp-remote's refresh_token grant after the expiry,
	// and only one sign-in ever happened.
	lines := e.auditLines(t)
	refreshedAfter := countAudit(lines, "grant refreshed", clientID)
	t.Logf("mcp-remote's client %s: %d refreshes before the expiry, %d after the second call", clientID, refreshedBefore, refreshedAfter)
	if refreshedAfter <= refreshedBefore {
		t.Errorf("no refresh_token grant from mcp-remote's client after the access token expired (%d refreshes before, %d after)", refreshedBefore, refreshedAfter)
	}
	if n := countAudit(lines, "grant created", clientID); n != 1 {
		t.Errorf("%d grants created for mcp-remote's client, want 1 (one sign-in)", n)
	}
	select {
	case u := <-opened.urls:
		t.Errorf("mcp-remote opened the browser a second time (%.60s…)", u)
	default:
	}

	// Every token response mcp-remote stored carried `scope`; without it
	// mcp-remote repeats the scopes it asked for on refresh.
	final := readMcpRemoteFile[mcpRemoteTokens](t, configDir, "tokens.json")
	e.logs.addSecret(final.AccessToken)
	e.logs.addSecret(final.RefreshToken)
	if final.AccessToken == beforeExpiry.AccessToken {
		t.Error("mcp-remote still holds the access token from before the expiry")
	}
	for _, stored := range []struct {
		when string
		tok  mcpRemoteTokens
	}{{"before the expiry", beforeExpiry}, {"after the refresh", final}} {
		t.Logf("mcp-remote's tokens %s: %s", stored.when, stored.tok.redacted())
		if stored.tok.Scope == nil {
			t.Errorf("the token response mcp-remote stored %s had no scope: %s", stored.when, stored.tok.redacted())
		}
	}
}

// mcpRemoteTokens is the part of mcp-remote's tokens.json this test reads:
// the token response as received, plus what mcp-remote adds.
type mcpRemoteTokens struct {
	AccessToken    string  `json:"access_token"`
	RefreshToken   string  `json:"refresh_token"`
	Scope          *string `json:"scope"`
	ExpiresIn      float64 `json:"expires_in"`
	RequestedScope string  `json:"requested_scope"`
}

// redacted is the record without its tokens, for failure messages (the
// test's own output is not checked for secrets, but need not hold them).
func (m mcpRemoteTokens) redacted() string {
	scope := "<none>"
	if m.Scope != nil {
		scope = strconv.Quote(*m.Scope)
	}
	return fmt.Sprintf("{access_token:%t refresh_token:%t scope:%s expires_in:%v requested_scope:%q}",
		m.AccessToken != "", m.RefreshToken != "", scope, m.ExpiresIn, m.RequestedScope)
}

// readMcpRemoteFile decodes one of mcp-remote's stored files. It keeps
// them under <config dir>/mcp-remote-v1/<hash of the server URL>_<name>;
// with one server there is one of each.
func readMcpRemoteFile[T any](t *testing.T, configDir, name string) T {
	t.Helper()
	var v T
	matches, _ := filepath.Glob(filepath.Join(configDir, "*", "*_"+name))
	if len(matches) != 1 {
		t.Fatalf("mcp-remote's %s: %d files in %s, want 1", name, len(matches), configDir)
	}
	readJSONFileInto(t, matches[0], &v)
	return v
}

func readJSONFileInto(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// nodeAtLeast reports whether version v ("20.20.2") is at least
// major.minor.patch.
func nodeAtLeast(v string, major, minor, patch int) bool {
	var got [3]int
	for i, part := range strings.SplitN(v, ".", 3) {
		n, err := strconv.Atoi(part)
		if err != nil {
			return false
		}
		got[i] = n
	}
	return slices.Compare(got[:], []int{major, minor, patch}) >= 0
}

// resultText is a tool result's text, for failure messages.
func resultText(res *mcp.CallToolResult) string {
	if res == nil {
		return "(no result)"
	}
	return fmt.Sprintf("isError=%v %q", res.IsError, textOf(res))
}

// countAudit counts the audit lines with msg for a client.
func countAudit(lines []map[string]any, msg, clientID string) int {
	n := 0
	for _, l := range lines {
		if l["msg"] == msg && l["client_id"] == clientID {
			n++
		}
	}
	return n
}

// waitTokenRefused polls the gate with an access token until it is
// refused (401). The request is an MCP ping outside any session: a
// token still valid gets past the gate to an MCP error, never a 401.
func (e *env) waitTokenRefused(ctx context.Context, t *testing.T, token string) {
	t.Helper()
	for {
		resp := e.postJSON(t, "/mcp", `{"jsonrpc":"2.0","id":1,"method":"ping"}`, "Accept", mcpAccept, "Authorization", "Bearer "+token)
		if resp.StatusCode == http.StatusUnauthorized {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the access token was still accepted (%s) when the test timed out", resp.Status)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// completeBrowserSignIn is the user finishing a sign-in mcp-remote
// started: alice's browser walks the authorization URL through consent and
// the GitHub stand-in, then loads the redirect, mcp-remote's loopback
// callback, which answers once it has exchanged the code.
func (e *env) completeBrowserSignIn(ctx context.Context, authURL string) error {
	final, err := e.browser("alice").Authorize(ctx, authURL)
	if err != nil {
		return err
	}
	if q := final.Query(); q.Get("code") == "" {
		return fmt.Errorf("the authorization ended without a code: %s: %s", q.Get("error"), q.Get("error_description"))
	}
	if final.Scheme != "http" || (final.Hostname() != "localhost" && final.Hostname() != "127.0.0.1") {
		return fmt.Errorf("the authorization redirected to %s://%s, not mcp-remote's loopback callback", final.Scheme, final.Host)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, final.String(), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("loading mcp-remote's callback: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("mcp-remote's callback: %s", resp.Status)
	}
	return nil
}

// browserOpens is a fake browser for a child process: a script to name in
// BROWSER, and the URLs it was asked to open, in order.
type browserOpens struct {
	script string
	urls   <-chan string
}

// fakeBrowser writes, in dir, a script that records each URL it is given
// and exits 0, as a browser that opened a tab would, and watches its
// record. mcp-remote opens URLs with the `open` package, whose bundled
// xdg-open, with no desktop session, runs $BROWSER; the script exiting 0
// is what keeps mcp-remote from trying its other openers (the system's
// xdg-open, gio, x-www-browser).
func fakeBrowser(ctx context.Context, t *testing.T, dir string) browserOpens {
	t.Helper()
	record := filepath.Join(dir, "opened-urls")
	script := filepath.Join(dir, "fake-browser")
	body := "#!/bin/sh\n# Records the URL a real browser would open, for the test to walk.\nprintf '%s\\n' \"$1\" >> " + shSingleQuote(record) + "\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	urls := make(chan string, 10)
	go func() {
		seen := 0
		for {
			b, _ := os.ReadFile(record)
			// Only whole lines: the script may be mid-write.
			lines := strings.Split(string(b), "\n")
			for ; seen < len(lines)-1; seen++ {
				select {
				case urls <- lines[seen]:
				case <-ctx.Done():
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return browserOpens{script: script, urls: urls}
}

func shSingleQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
