package caddymcp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

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

func cmdDemo(fl caddycmd.Flags) (int, error) {
	listen := fl.String("listen")
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--listen %q: %v", listen, err)
	}
	if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("--listen %q: the demo only listens on a loopback address", listen)
	}
	bind := host
	if host == "localhost" {
		bind = "127.0.0.1 [::1]"
	}

	dir, err := os.MkdirTemp("", "caddymcp-demo-")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	defer os.RemoveAll(dir)

	secret, key := randomB64(24), randomB64(32)
	gh := fakegithub.New(fakegithub.Options{
		Apps:  []fakegithub.App{{ClientID: "caddymcp-demo", ClientSecret: secret, CallbackURL: "https://" + listen + "/callback"}},
		Users: demoUsers(),
	})
	ghURL, err := gh.Start("127.0.0.1:0")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	defer gh.Close()

	cfg := strings.NewReplacer(
		"{{host}}", bind, "{{listen}}", listen, "{{client_secret}}", secret, "{{github}}", ghURL,
		"{{state}}", filepath.Join(dir, "state.db"), "{{key}}", key,
	).Replace(demoCaddyfile)
	json, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(cfg), nil)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("adapting the demo config: %v", err)
	}
	if err := caddy.Load(json, true); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("starting the demo: %v", err)
	}
	defer caddy.Stop()

	site := "https://" + listen
	root := filepath.Join(caddy.AppDataDir(), "pki", "authorities", "local", "root.crt")
	fmt.Printf(`
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

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	fmt.Println("\nStopping the demo.")
	return caddy.ExitCodeSuccess, nil
}

func randomB64(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
