package e2e

import (
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
	"testing"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
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

	server := startProcess(t, run(context.Background(), "run", "--config", example))
	logs := server.out
	defer server.interrupt(t, 15*time.Second)

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
		case <-server.done:
			t.Fatalf("caddy run exited: %v\n%s", server.err, logs.String())
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
	goBuild(t, "github.com/caddymcp/caddymcp/cmd/caddymcp-demo", bin)
	return bin
}

// TestDemoCommand runs the README's first command as a user would (`go run
// ./cmd/caddymcp-demo`, built): it prints its banner and nothing else, the
// banner last; it serves its metadata over TLS from Caddy's local CA, says
// loudly that its GitHub is a stand-in, completes a sign-in against that
// stand-in, and stops cleanly on Ctrl+C. Every command the banner advises
// is run against it, or, for those that would change this machine's trust
// store, what they ask of the demo is.
func TestDemoCommand(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if _, first, _ := strings.Cut(string(readme), "```sh\n"); !strings.HasPrefix(first, "go run ./cmd/caddymcp-demo\n```") {
		t.Errorf("the README's first command is not go run ./cmd/caddymcp-demo, which this test runs")
	}
	dir := t.TempDir()
	bin := demoBinary(t, dir)
	listen := fmt.Sprintf("localhost:%d", freePort(t))
	demoCmd := exec.Command(bin, "-listen", listen)
	demoCmd.Env = processEnv(dir)
	demo := startProcess(t, demoCmd)
	out := demo.out
	defer demo.kill()

	const last = "Press Ctrl+C to stop.\n"
	for deadline := time.Now().Add(60 * time.Second); !strings.Contains(out.String(), last); {
		select {
		case <-demo.done:
			t.Fatalf("the demo exited: %v\n%s", demo.err, out.String())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner after 60s:\n%s", out.String())
		}
	}
	// Anything logged late would land after the banner: give it a moment.
	time.Sleep(time.Second)
	screen := out.String()
	if !strings.HasPrefix(screen, "\ncaddymcp demo is running.\n") || !strings.HasSuffix(screen, last) {
		t.Errorf("the demo prints more than its banner, or the banner is not last:\n%s", screen)
	}
	site := "https://" + listen
	for _, want := range []string{site + "/mcp", "NOT GitHub", "npx @modelcontextprotocol/inspector",
		"Node.js 22.19 or newer", "Add Servers > Add manually, transport streamable-http"} {
		if !strings.Contains(screen, want) {
			t.Errorf("the demo's banner does not say %q:\n%s", want, screen)
		}
	}
	banner := func(re string) string {
		t.Helper()
		m := regexp.MustCompile(re).FindStringSubmatch(screen)
		if m == nil {
			t.Fatalf("the banner has no %s:\n%s", re, screen)
		}
		return m[1]
	}

	// NODE_EXTRA_CA_CERTS=<root>: the file is the local CA's root, and it
	// verifies the demo's certificate, for Go and for Node.js.
	root := banner(`NODE_EXTRA_CA_CERTS=(\S+) npx @modelcontextprotocol/inspector`)
	if want := filepath.Join(dir, "data", "caddy", "pki", "authorities", "local", "root.crt"); root != want {
		t.Errorf("the banner's root certificate is %s, want %s", root, want)
	}
	var meta struct {
		Issuer string `json:"issuer"`
	}
	if err := getJSONWithLocalCA(root, site+"/.well-known/oauth-authorization-server", &meta); err != nil || meta.Issuer != site {
		t.Fatalf("demo metadata with the banner's root: %v, issuer %q", err, meta.Issuer)
	}
	if node, err := exec.LookPath("node"); err != nil {
		t.Logf("no node: NODE_EXTRA_CA_CERTS checked with Go only")
	} else {
		fetch := exec.Command(node, "-e", `fetch(process.argv[1]).then(r => r.json()).then(m => console.log(m.issuer), e => { console.error(e.cause || e); process.exit(1) })`,
			site+"/.well-known/oauth-authorization-server")
		fetch.Env = append(os.Environ(), "NODE_EXTRA_CA_CERTS="+root)
		if got, err := fetch.CombinedOutput(); err != nil || strings.TrimSpace(string(got)) != site {
			t.Errorf("Node.js with NODE_EXTRA_CA_CERTS=%s: %v\n%s", root, err, got)
		}
	}

	// The banner's caddy commands, in order.
	var commands [][]string
	for _, m := range regexp.MustCompile(`go run \./cmd/caddy ([^\n]+)`).FindAllStringSubmatch(screen, -1) {
		commands = append(commands, strings.Fields(m[1]))
	}
	admin := banner(`trust --address (\S+)`)
	wantCommands := [][]string{
		{"trust", "--address", admin},
		{"untrust", "--cert", root},
		{"mcp-auth", "grants", "--address", admin},
		{"mcp-auth", "revoke", "--user", "octocat", "--address", admin},
	}
	if !slices.EqualFunc(commands, wantCommands, slices.Equal) {
		t.Fatalf("the banner's commands are %q, want %q (a new one needs a check here)", commands, wantCommands)
	}
	caddyBin := caddyBinary(t)
	runCaddy := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(caddyBin, args...)
		cmd.Env, cmd.Dir = demoCmd.Env, dir
		got, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("caddy %s: %v\n%s", strings.Join(args, " "), err, got)
		}
		return string(got)
	}

	// caddy trust --address <admin>: it would install into this machine's
	// trust store, so ask the demo what it asks (the local CA from the
	// admin API, as caddypki's rootCertFromAdmin does), and check that it
	// is the root that verified the site.
	resp, err := caddycmd.AdminAPIRequest(admin, http.MethodGet, "/pki/ca/local", make(http.Header), nil)
	if err != nil {
		t.Fatalf("caddy trust's request to the demo: %v", err)
	}
	var ca struct {
		RootCert string `json:"root_certificate"`
	}
	err = json.NewDecoder(resp.Body).Decode(&ca)
	resp.Body.Close()
	rootPEM, rerr := os.ReadFile(root)
	if err != nil || rerr != nil || strings.TrimSpace(ca.RootCert) != strings.TrimSpace(string(rootPEM)) {
		t.Errorf("the admin API's local CA (%v) is not the root file (%v):\n%s", err, rerr, ca.RootCert)
	}
	// caddy untrust --cert <root> removes from the trust store what trust
	// installed: it needs the file, which the demo leaves where it is.

	// Sign in as the demo's octocat through its stand-in, with the SDK.
	e := &env{t: t, site: site, ghURL: banner(`STAND-IN FOR GITHUB at (http://127\.0\.0\.1:\d+)`), roots: x509.NewCertPool()}
	e.roots.AppendCertsFromPEM(rootPEM)
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

	// The mcp-auth commands, run as printed.
	if got := runCaddy(commands[2]...); !strings.Contains(got, "octocat (583231)") {
		t.Errorf("caddy %s does not list octocat's grant:\n%s", strings.Join(commands[2], " "), got)
	}
	if got := runCaddy(commands[3]...); !strings.Contains(got, "revoked 1 grant(s)") {
		t.Errorf("caddy %s: %s", strings.Join(commands[3], " "), got)
	}
	if got := runCaddy(commands[2]...); strings.Contains(got, "octocat") {
		t.Errorf("octocat's grant is listed after the revocation:\n%s", got)
	}

	// A second demo on the same address is refused: Caddy's listeners
	// share ports (SO_REUSEPORT), and two demos would split the requests.
	second := exec.Command(bin, "-listen", listen)
	second.Env = demoCmd.Env
	if got, err := second.CombinedOutput(); err == nil || !strings.Contains(string(got), "is in use (is another demo running?)") {
		t.Errorf("a second demo on %s: %v\n%s", listen, err, got)
	}

	if err := demo.interrupt(t, 20*time.Second); err != nil {
		t.Errorf("the demo exited with %v after Ctrl+C\n%s", err, out.String())
	}
	if rest := strings.TrimPrefix(out.String(), screen); rest != "\nStopping the demo.\n" {
		t.Errorf("after Ctrl+C the demo printed %q, want only that it stops", rest)
	}
}
