package e2e

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
	"github.com/caddymcp/caddymcp/caddymcp/internal/pgtest"
)

// Several instances behind one load balancer, on one PostgreSQL database.
// Caddy is a process singleton, so each instance is a process of the real
// binary (go build ./cmd/caddy). The load balancer is in the clients: every
// request goes to the public https://localhost:PUB, and the client's dialer
// sends the connection to the instance the test chooses, so each step of a
// flow lands where the test says. The instances share Caddy's storage
// directory (its local CA and certificate, as a cluster would) and nothing
// else but the database: no secret_key is configured, so they also share
// the key generated into the database. Secrets reach the Caddyfile only
// through placeholders: Caddy's debug log prints the adapted config.

// cluster is the shared part: the database, the GitHub stand-in, the
// public address and Caddy's shared storage.
type cluster struct {
	t      *testing.T
	bin    string
	pg     *pgtest.Server
	dsn    string
	pub    int
	site   string
	ghURL  string
	shared string
	roots  *x509.CertPool
	// secrets collects every secret the test saw, checked against each
	// instance's log at the end.
	secrets *logBuffer
}

// instance is one Caddy process.
type instance struct {
	c      *cluster
	name   string
	port   int
	dir    string
	config string
	proc   *process      // nil when not running
	out    *lockedBuffer // the last run's stdout and stderr, before the log is set up
	// ready, when set, says whether the process serves; by default, its
	// metadata through the public address, verified against the shared
	// local CA.
	ready func() error
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	c := &cluster{t: t, bin: caddyBinary(t), pg: pgtest.Start(t), shared: t.TempDir(), pub: freePort(t)}
	c.dsn = pgtest.NewSchema(t, c.pg.DSN())
	c.site = fmt.Sprintf("https://localhost:%d", c.pub)
	c.secrets = &logBuffer{secrets: []string{ghClientSecret, c.pg.Password()}}
	gh := fakegithub.New(fakegithub.Options{
		Apps:  []fakegithub.App{{ClientID: ghClientID, ClientSecret: ghClientSecret, CallbackURL: c.site + "/callback"}},
		Users: []fakegithub.User{alice, bob},
	})
	var err error
	if c.ghURL, err = gh.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gh.Close() })
	return c
}

// newInstance writes an instance's Caddyfile and starts it.
func (c *cluster) newInstance(name string) *instance {
	c.t.Helper()
	in := c.configure(name, "")
	in.start()
	c.t.Cleanup(in.stop)
	return in
}

// configure writes an instance's Caddyfile, with extra in its mcp_auth
// block.
func (c *cluster) configure(name, extra string) *instance {
	c.t.Helper()
	in := &instance{c: c, name: name, port: freePort(c.t), dir: c.t.TempDir()}
	in.config = filepath.Join(in.dir, "Caddyfile")
	caddyfile := globalOptions(freePort(c.t), freePort(c.t), in.port, c.shared, in.logPath()) + fmt.Sprintf(`
localhost:%d {
	tls internal
	mcp_auth {
		issuer %s
		github {
			client_id %s
			client_secret {env.GITHUB_CLIENT_SECRET}
			enterprise_url %s
		}
		storage postgres {env.MCP_AUTH_DATABASE_URL}
		%s
	}
	handle /mcp* {
		mcp_server
	}
}
`, in.port, c.site, ghClientID, c.ghURL, extra)
	if err := os.WriteFile(in.config, []byte(caddyfile), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return in
}

func (in *instance) logPath() string { return filepath.Join(in.dir, "caddy.log") }

// command prepares `caddy run` for this instance.
func (in *instance) command(ctx context.Context) *exec.Cmd {
	cmd := exec.CommandContext(ctx, in.c.bin, "run", "--config", in.config, "--adapter", "caddyfile")
	cmd.Dir = in.dir
	cmd.Env = processEnv(in.dir, "MCP_AUTH_DATABASE_URL="+in.c.dsn, "GITHUB_CLIENT_SECRET="+ghClientSecret)
	return cmd
}

// start runs the process and waits until it serves its metadata.
func (in *instance) start() {
	t := in.c.t
	t.Helper()
	in.proc = startProcess(t, in.command(context.Background()))
	in.out = in.proc.out

	deadline := time.Now().Add(60 * time.Second)
	root := filepath.Join(in.c.shared, "pki", "authorities", "local", "root.crt")
	for {
		var err error
		if in.ready != nil {
			if in.ready() == nil {
				return
			}
		} else if in.c.roots == nil {
			if pem, rerr := os.ReadFile(root); rerr == nil {
				pool := x509.NewCertPool()
				if pool.AppendCertsFromPEM(pem) {
					in.c.roots = pool
				}
			}
		}
		if in.ready == nil && in.c.roots != nil {
			var meta struct {
				Issuer string `json:"issuer"`
			}
			if in.env().getJSONQuiet(in.c.site+"/.well-known/oauth-authorization-server", &meta) == nil {
				if meta.Issuer != in.c.site {
					t.Fatalf("instance %s: issuer %q, want %q", in.name, meta.Issuer, in.c.site)
				}
				return
			}
		}
		select {
		case <-in.proc.done:
			err = in.proc.err
			t.Fatalf("instance %s exited at start: %v\n%s", in.name, err, in.out.String())
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("instance %s did not become ready\n%s", in.name, in.out.String())
		}
	}
}

// kill ends the process at once, as a crash would.
func (in *instance) kill() {
	if in.proc == nil {
		return
	}
	in.proc.kill()
	in.proc = nil
}

// stop ends the process and checks its log for secrets.
func (in *instance) stop() {
	in.kill()
	in.c.secrets.assertNoSecretsIn(in.c.t, in.logPath(), "instance "+in.name+"'s log")
	for _, s := range in.c.secrets.secrets {
		if strings.Contains(in.out.String(), s) {
			in.c.t.Errorf("instance %s: a secret (%.8s…) appears in its output", in.name, s)
		}
	}
}

// env is a view of the cluster whose requests all go to this instance.
func (in *instance) env() *env {
	return in.c.envVia(func() int { return in.port })
}

// envVia is a view of the cluster whose requests go to the instance whose
// port route returns at connection time.
func (c *cluster) envVia(route func() int) *env {
	public := fmt.Sprintf("localhost:%d", c.pub)
	var d net.Dialer
	return &env{t: c.t, site: c.site, ghURL: c.ghURL, roots: c.roots, logs: c.secrets,
		dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if addr == public {
				addr = fmt.Sprintf("127.0.0.1:%d", route())
			}
			return d.DialContext(ctx, network, addr)
		}}
}

// getJSONQuiet is getJSON for polling: an error instead of a failure.
func (e *env) getJSONQuiet(url string, v any) error {
	c := e.httpClient(nil)
	c.Timeout = 3 * time.Second
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("%s", resp.Status)
	}
	return jsonDecode(resp, v)
}

// --- flow steps ------------------------------------------------------------

// at returns client c as seen through another instance's env.
func (c *oauthClient) at(e *env) *oauthClient {
	d := *c
	d.e, d.http = e, e.httpClient(nil)
	return &d
}

// callUserInfo calls get_user_info through e with tok and returns its text.
func callUserInfo(t *testing.T, e *env, tok *oauth2.Token) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.site + "/mcp", HTTPClient: e.tokenClient(tok)}, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer session.Close()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "get_user_info"})
	if err != nil || res.IsError {
		t.Fatalf("get_user_info: %v %s", err, textOf(res))
	}
	return textOf(res)
}

// route is the load balancer's choice of instance, switchable mid-flow.
type route struct{ port atomic.Int64 }

func (r *route) to(in *instance) { r.port.Store(int64(in.port)) }
func (r *route) get() int        { return int(r.port.Load()) }
