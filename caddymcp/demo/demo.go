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
	"encoding/base64"
	"fmt"
	"io"
	"net"
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

const demoCaddyfile = `{
	admin off
	auto_https disable_redirects
	skip_install_trust
	default_bind {{host}}
}

https://{{listen}} {
	tls internal
	mcp_auth {
		github {
			client_id caddymcp-demo
			client_secret {{client_secret}}
			enterprise_url {{github}}
		}
		storage bbolt {{state}}
		secret_key {{key}}
	}
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
	// Out receives the banner.
	Out io.Writer
}

// Run runs the demo until ctx is done, then stops Caddy and the stand-in
// and removes the demo's state.
func Run(ctx context.Context, opt Options) error {
	listen := opt.Listen
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %v", listen, err)
	}
	if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
		return fmt.Errorf("--listen %q: the demo only listens on a loopback address", listen)
	}
	bind := host
	if host == "localhost" {
		bind = "127.0.0.1 [::1]"
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
		"{{host}}", bind, "{{listen}}", listen, "{{client_secret}}", secret, "{{github}}", ghURL,
		"{{state}}", filepath.Join(dir, "state.db"), "{{key}}", key,
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
	fmt.Fprintf(opt.Out, `
caddymcp demo is running.

  MCP server   %[1]s/mcp   (Streamable HTTP; legacy SSE at %[1]s/sse)
  Metadata     %[1]s/.well-known/oauth-authorization-server

  Sign-in goes to a LOCAL STAND-IN FOR GITHUB at %[2]s.
  It is NOT GitHub: it asks no password and only knows the demo users
  octocat and hubot. Nothing here talks to the real GitHub.

  The certificate comes from Caddy's local CA (%[3]s).
  Trust it with "caddy trust", or for Node.js tools set NODE_EXTRA_CA_CERTS.

Connect the MCP Inspector:

  NODE_EXTRA_CA_CERTS=%[3]s npx @modelcontextprotocol/inspector

  Transport "Streamable HTTP", URL %[1]s/mcp, then "Open Auth Settings" >
  "Quick OAuth Flow": approve the client, pick a demo user, list and call tools.

Press Ctrl+C to stop.
`, site, ghURL, root)

	<-ctx.Done()
	fmt.Fprintln(opt.Out, "\nStopping the demo.")
	return nil
}

func randomB64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
