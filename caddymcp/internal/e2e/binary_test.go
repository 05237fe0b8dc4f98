package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestBinaryWithExampleConfig builds cmd/caddy as the README says, and runs
// Caddyfile.example with it: the modules are registered, the example is a
// valid configuration, the server serves its metadata over TLS, and a
// second server pointed at the same state is refused with a clear message
// instead of hanging.
func TestBinaryWithExampleConfig(t *testing.T) {
	dir := t.TempDir()
	bin := caddyBinary(t)
	example, err := filepath.Abs("../../../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	env := append(os.Environ(),
		"HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"),
		"GITHUB_CLIENT_ID=example-id", "GITHUB_CLIENT_SECRET=example-secret",
		fmt.Sprintf("MCP_SITE=localhost:%d", port),
		fmt.Sprintf("CADDY_ADMIN=localhost:%d", freePort(t)),
	)
	run := func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		cmd.Dir = dir
		return cmd
	}

	out, err := run(t.Context(), "list-modules").CombinedOutput()
	if err != nil {
		t.Fatalf("list-modules: %v", err)
	}
	for _, mod := range []string{"http.handlers.mcp_auth", "mcp_auth.storage.bbolt"} {
		if !strings.Contains(string(out), mod+"\n") {
			t.Errorf("list-modules lacks %s", mod)
		}
	}
	if out, err := run(t.Context(), "validate", "--config", example).CombinedOutput(); err != nil || !strings.Contains(string(out), "Valid configuration") {
		t.Fatalf("validate Caddyfile.example: %v\n%s", err, out)
	}

	var logs lockedBuffer
	server := run(context.Background(), "run", "--config", example)
	server.Stdout, server.Stderr = &logs, &logs
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- server.Wait() }()
	defer func() {
		server.Process.Signal(syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			server.Process.Kill()
			t.Error("caddy did not stop on SIGINT")
		}
	}()

	site := fmt.Sprintf("https://localhost:%d", port)
	var meta struct {
		Issuer string `json:"issuer"`
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		err = getJSONWithLocalCA(filepath.Join(dir, "data", "caddy", "pki", "authorities", "local", "root.crt"),
			site+"/.well-known/oauth-authorization-server", &meta)
		if err == nil || time.Now().After(deadline) {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("caddy run exited: %v\n%s", err, logs.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatalf("the example server never served its metadata: %v\n%s", err, logs.String())
	}
	if meta.Issuer != site {
		t.Errorf("issuer %q, want %q", meta.Issuer, site)
	}
	if fi, err := os.Stat(filepath.Join(dir, "data", "caddy", "mcp_auth", "secret.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("generated key file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}

	// A second instance on the same data directory (another port, another
	// admin address) must fail fast and say why.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	second := run(ctx, "run", "--config", example)
	second.Env = append(slices.Clone(env), fmt.Sprintf("MCP_SITE=localhost:%d", freePort(t)), fmt.Sprintf("CADDY_ADMIN=localhost:%d", freePort(t)))
	out, err = second.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("a second instance on a locked state file: err %v (context %v)\n%s", err, ctx.Err(), out)
	}
	if !strings.Contains(string(out), "locked by another process") {
		t.Errorf("the second instance did not say the file is locked:\n%s", out)
	}
}

// lockedBuffer collects a process's output, which os/exec copies in from
// another goroutine while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func getJSONWithLocalCA(rootFile, url string, v any) error {
	pem, err := os.ReadFile(rootFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// demoBinary builds the README's first command, cmd/caddymcp-demo, into
// dir and returns its path.
func demoBinary(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "caddymcp-demo")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/caddymcp/caddymcp/cmd/caddymcp-demo").CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/caddymcp-demo: %v\n%s", err, out)
	}
	return bin
}

// TestDemoCommand runs the README's first command as a user would (`go run
// ./cmd/caddymcp-demo`, built): it serves its metadata over TLS from
// Caddy's local CA, says loudly that its GitHub is a stand-in, completes a
// sign-in against that stand-in, and stops cleanly on Ctrl+C.
func TestDemoCommand(t *testing.T) {
	dir := t.TempDir()
	bin := demoBinary(t, dir)
	listen := fmt.Sprintf("localhost:%d", freePort(t))
	demo := exec.Command(bin, "-listen", listen)
	demo.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+filepath.Join(dir, "data"), "XDG_CONFIG_HOME="+filepath.Join(dir, "config"))
	var out lockedBuffer
	demo.Stdout, demo.Stderr = &out, &out
	if err := demo.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- demo.Wait() }()
	defer demo.Process.Kill()

	site := "https://" + listen
	root := filepath.Join(dir, "data", "caddy", "pki", "authorities", "local", "root.crt")
	var meta struct {
		Issuer string `json:"issuer"`
	}
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if err = getJSONWithLocalCA(root, site+"/.well-known/oauth-authorization-server", &meta); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the demo exited: %v\n%s", err, out.String())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err != nil || meta.Issuer != site {
		t.Fatalf("demo metadata: %v, issuer %q\n%s", err, meta.Issuer, out.String())
	}
	for _, want := range []string{site + "/mcp", "NOT GitHub", "npx @modelcontextprotocol/inspector"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the demo's banner does not say %q:\n%s", want, out.String())
		}
	}

	// Sign in as the demo's octocat through its stand-in, with the SDK.
	standIn := regexp.MustCompile(`STAND-IN FOR GITHUB at (http://127\.0\.0\.1:\d+)`).FindStringSubmatch(out.String())
	if standIn == nil {
		t.Fatalf("the banner does not name the stand-in's address:\n%s", out.String())
	}
	pem, err := os.ReadFile(root)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, site: site, ghURL: standIn[1], roots: x509.NewCertPool()}
	e.roots.AppendCertsFromPEM(pem)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	session, err := e.connect(ctx, t, "/mcp", e.sdkHandler(t, e.browser("octocat")))
	if err != nil {
		t.Fatalf("signing in to the demo: %v", err)
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "get_user_info"})
	if err != nil || res.IsError || !strings.Contains(textOf(res), "octocat") {
		t.Errorf("get_user_info in the demo: %v %q", err, textOf(res))
	}
	session.Close()

	demo.Process.Signal(syscall.SIGINT)
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("the demo exited with %v after Ctrl+C\n%s", err, out.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the demo did not stop on Ctrl+C")
	}
}
