// Package demo runs caddymcp on this machine with no GitHub OAuth app:
// Caddy in this process, with mcp_auth and the built-in MCP tools on a
// loopback https site (Caddy's local CA), and a local stand-in for GitHub
// on a loopback port, which is NOT GitHub. It is what cmd/caddymcp-demo
// runs. It is no part of the plugin: neither the plugin package nor
// cmd/caddy imports it, so no production build links the stand-in
// (TestImportGraphHasNoStandIn in the plugin package checks that).
//
// It lives here, inside the caddymcp directory, rather than in
// cmd/caddymcp-demo because the stand-in is caddymcp/internal/fakegithub,
// which Go lets only packages under caddymcp/ import.
package demo

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard" // the Caddyfile adapter, tls internal, handle

	_ "github.com/caddymcp/caddymcp/caddymcp" // mcp_auth, mcp_server
	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
)

// demoUsers are the accounts of the demo's GitHub stand-in.
func demoUsers() []fakegithub.User {
	octocat := fakegithub.User{ID: 583231, Login: "octocat", Name: "The Octocat", Email: "octocat@example.com",
		AvatarURL: "https://avatars.githubusercontent.com/u/583231", Orgs: []string{"demo-org"}}
	now := time.Now().UTC().Truncate(time.Second)
	for i, name := range []string{"hello-world", "spoon-knife", "linguist", "octocat.github.io", "git-consortium",
		"boysenberry-repo-1", "test-repo1", "mcp-notes", "caddy-config", "dotfiles", "advent-of-code", "blog"} {
		octocat.Repos = append(octocat.Repos, fakegithub.Repo{
			ID: int64(1000 + i), Name: name, FullName: "octocat/" + name,
			Description: "Demo repository " + name, HTMLURL: "https://github.com/octocat/" + name,
			Language: []string{"Go", "Ruby", "TypeScript", "Python"}[i%4], Stars: 100 - 7*i,
			UpdatedAt: now.Add(-time.Duration(i) * 36 * time.Hour), CreatedAt: now.AddDate(-3, 0, 0), PushedAt: now.Add(-time.Duration(i) * 36 * time.Hour),
		})
	}
	hubot := fakegithub.User{ID: 480938, Login: "hubot", Name: "Hubot", Email: "hubot@example.com",
		AvatarURL: "https://avatars.githubusercontent.com/u/480938"}
	return []fakegithub.User{octocat, hubot}
}

// demoCaddyfile is the demo's configuration. The admin endpoint listens on
// a loopback port so that "caddy trust --address" can fetch the local CA's
// root, and the mcp-auth commands can list and revoke grants; the config
// is not persisted, since it holds the demo's secrets.
const demoCaddyfile = `{
	admin {{admin}}
	persist_config off
	auto_https disable_redirects
	skip_install_trust
	default_bind {{host}}
	log {
		output stderr
		format {{log_format}}
		level {{log_level}}
	}
}

https://{{listen}} {
	tls internal
	mcp_auth {
		github {
			client_id caddymcp-demo
			client_secret {{client_secret}}
			enterprise_url {{github}}
		}
		allow_users octocat hubot
		storage bbolt {{state}}
		secret_key {{key}}
	}
	# The Inspector 2.x calls from its backend, with no Origin. These let a
	# page served where the Inspector serves its own (older Inspectors'
	# direct connection) call the server from the browser.
	handle /mcp* {
		mcp_server {
			allowed_origins http://localhost:6274 http://127.0.0.1:6274
		}
	}
	handle /sse* {
		mcp_server {
			allowed_origins http://localhost:6274 http://127.0.0.1:6274
		}
	}
}
`

// Options are what the demo command takes.
type Options struct {
	// Listen is the loopback host:port of the demo site.
	Listen string
	// Admin is the loopback host:port of Caddy's admin endpoint; empty
	// picks a free port.
	Admin string
	// Verbose logs at INFO, as JSON; otherwise only warnings and errors
	// are logged, so that the banner is what a newcomer sees.
	Verbose bool
	// Out receives the banner.
	Out io.Writer
}

// Run runs the demo until ctx is done, then stops Caddy and the stand-in
// and removes the demo's state. It prints the banner once the site answers
// over TLS with a certificate from the local CA.
func Run(ctx context.Context, opt Options) error {
	listen := opt.Listen
	host, err := loopback("-listen", listen)
	if err != nil {
		return err
	}
	bind := host
	if host == "localhost" {
		bind = "127.0.0.1 [::1]"
	}
	if err := portFree(listen); err != nil {
		return err
	}
	admin := opt.Admin
	if admin == "" {
		if admin, err = freeLoopbackAddr(); err != nil {
			return err
		}
	} else if _, err := loopback("-admin", admin); err != nil {
		return err
	}
	logFormat, logLevel := "console", "WARN"
	if opt.Verbose {
		logFormat, logLevel = "json", "INFO"
	}

	dir, err := os.MkdirTemp("", "caddymcp-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	secret, key := randomB64(24), randomB64(32)
	gh := fakegithub.New(fakegithub.Options{
		Apps:  []fakegithub.App{{ClientID: "caddymcp-demo", ClientSecret: secret, CallbackURL: "https://" + listen + "/callback"}},
		Users: demoUsers(),
	})
	ghURL, err := gh.Start("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer gh.Close()

	cfg := strings.NewReplacer(
		"{{admin}}", admin, "{{host}}", bind, "{{listen}}", listen, "{{client_secret}}", secret, "{{github}}", ghURL,
		"{{state}}", filepath.Join(dir, "state.db"), "{{key}}", key, "{{log_format}}", logFormat, "{{log_level}}", logLevel,
	).Replace(demoCaddyfile)
	json, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		return fmt.Errorf("adapting the demo config: %v", err)
	}
	if err := caddy.Load(json, true); err != nil {
		return fmt.Errorf("starting the demo: %v", err)
	}
	defer caddy.Stop()

	site := "https://" + listen
	root := filepath.Join(caddy.AppDataDir(), "pki", "authorities", "local", "root.crt")
	if err := waitForSite(ctx, site, root); err != nil {
		return fmt.Errorf("the demo site %s does not answer: %v", site, err)
	}
	fmt.Fprintf(opt.Out, banner, site, ghURL, root, admin)

	<-ctx.Done()
	fmt.Fprintln(opt.Out, "\nStopping the demo.")
	return nil
}

// banner is what the demo prints once it serves: %[1]s the site, %[2]s the
// stand-in, %[3]s the local CA's root certificate, %[4]s the admin
// endpoint. TestDemoCommand runs the commands it gives.
const banner = `
caddymcp demo is running.

  MCP server   %[1]s/mcp   (Streamable HTTP; legacy SSE at %[1]s/sse)
  Metadata     %[1]s/.well-known/oauth-authorization-server
  Admin API    %[4]s (loopback)

  Sign-in goes to a LOCAL STAND-IN FOR GITHUB at %[2]s.
  It is NOT GitHub: it asks no password and only knows the demo users
  octocat and hubot. Nothing here talks to the real GitHub.

Trust the certificate. It comes from Caddy's local CA, whose root is

  %[3]s

  Browsers: from the repository, in another terminal (asks for sudo; on
  Linux, Chromium and Firefox also need certutil, from libnss3-tools):

    go run ./cmd/caddy trust --address %[4]s

  Undo it later with: go run ./cmd/caddy untrust --cert %[3]s
  Node.js tools need no installation: NODE_EXTRA_CA_CERTS (below).

Connect the MCP Inspector (Node.js 22.19 or newer):

  NODE_EXTRA_CA_CERTS=%[3]s npx @modelcontextprotocol/inspector

  On its page: Add Servers > Add manually, transport streamable-http,
  URL %[1]s/mcp, then turn on the server card's switch.
  Approve the client on the consent page, pick octocat or hubot, and the
  tools are listed.

See who is connected, and revoke them:

  go run ./cmd/caddy mcp-auth grants --address %[4]s
  go run ./cmd/caddy mcp-auth revoke --user octocat --address %[4]s

Press Ctrl+C to stop.
`

// loopback checks that addr is a host:port on a loopback address and
// returns its host.
func loopback(flag, addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%s %q: %v", flag, addr, err)
	}
	if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
		return "", fmt.Errorf("%s %q: the demo only listens on a loopback address", flag, addr)
	}
	return host, nil
}

// portFree fails if something listens on addr already. Caddy binds its
// listeners with SO_REUSEPORT, so without this a second demo would share
// the port with the first, and each request would reach either one at
// random: a sign-in started at one fails at the other.
func portFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s is in use (is another demo running?): %v", addr, err)
	}
	return l.Close()
}

// freeLoopbackAddr returns a 127.0.0.1 port that is free now, for Caddy's
// admin endpoint, which takes an address and says nothing of the port it
// bound.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitForSite waits until the site serves its metadata with a certificate
// that the local CA's root verifies: then the root file exists, the
// certificate is issued (and logged about), and the banner is true.
func waitForSite(ctx context.Context, site, rootFile string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		err := getWithRoot(ctx, site+"/.well-known/oauth-authorization-server", rootFile)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func getWithRoot(ctx context.Context, url, rootFile string) error {
	pem, err := os.ReadFile(rootFile)
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return fmt.Errorf("no certificate in %s", rootFile)
	}
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	defer client.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", resp.Status)
	}
	return nil
}

func randomB64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
