package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
	"github.com/caddymcp/caddymcp/caddymcp/internal/ports"
)

// The GitHub OAuth app the stand-in knows.
const (
	ghClientID     = "Iv1.bench-client"
	ghClientSecret = "bench-github-app-secret-value"
)

// benchUsers is how many GitHub users the stand-in knows. Logins and
// refreshes are spread over them, because GitHub (and its stand-in)
// limits each user to 5,000 API calls an hour and every login and refresh
// asks GitHub who the user is.
const benchUsers = 64

func userLogin(i int) string { return fmt.Sprintf("bench%02d", i%benchUsers) }

// env is one benchmark environment: the GitHub stand-in and the upstream
// MCP server in this process, Caddy in a child process.
type env struct {
	dir      string
	state    string // the bbolt file
	dsn      string // the PostgreSQL database instead, if set
	site     string // https://localhost:port
	sitePort string
	admin    string // 127.0.0.1:port
	gh       *fakegithub.Server
	ghURL    string
	upstream *http.Server
	upAddr   string
	roots    *x509.CertPool
	caddy    *child
	// caddyfile is the configuration the child runs.
	caddyfile []byte
	// profile, if set, starts a CPU profile of Caddy for a phase and
	// returns a function that waits for it.
	profile func(name string, d time.Duration) func()
	// dialPort, if set, is the loopback port this env's clients connect
	// to whatever port the site's URL names: a second instance of the
	// site, as a load balancer would pick it (see revocation.go).
	dialPort string
}

// freePort returns a loopback port that was free a moment ago, outside
// the range other processes' servers are given (see package ports).
func freePort() (string, error) {
	p, err := ports.Free()
	if err != nil {
		return "", err
	}
	return strconv.Itoa(p), nil
}

// newEnv starts the stand-in and the upstream and writes the Caddyfile for
// a state file at statePath (or, with a PostgreSQL connection string in
// postgresDSN, for that database); startCaddy then runs it.
func newEnv(dir, statePath, postgresDSN string) (*env, error) {
	return newEnvWith(dir, statePath, postgresDSN, "", "")
}

// newEnvWith is newEnv for a site that protects the paths in extraProtect
// (space-separated) besides /mcp and /sse, and has extraRoutes (Caddyfile
// handle blocks) before the plain routes. Empty, it is newEnv's site.
func newEnvWith(dir, statePath, postgresDSN, extraProtect, extraRoutes string) (*env, error) {
	e := &env{dir: dir, state: statePath, dsn: postgresDSN}
	if extraProtect != "" {
		extraProtect = " " + extraProtect
	}
	var err error
	if e.sitePort, err = freePort(); err != nil {
		return nil, err
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, err
	}
	httpPort, err := freePort()
	if err != nil {
		return nil, err
	}
	e.admin = "127.0.0.1:" + adminPort
	e.site = "https://localhost:" + e.sitePort

	var users []fakegithub.User
	for i := range benchUsers {
		users = append(users, fakegithub.User{ID: int64(7000 + i), Login: userLogin(i), Name: "Bench User", Email: userLogin(i) + "@example.com"})
	}
	e.gh = fakegithub.New(fakegithub.Options{
		Apps:  []fakegithub.App{{ClientID: ghClientID, ClientSecret: ghClientSecret, CallbackURL: e.site + "/callback"}},
		Users: users,
	})
	if e.ghURL, err = e.gh.Start("127.0.0.1:0"); err != nil {
		return nil, err
	}
	if err := e.startUpstream(); err != nil {
		e.close()
		return nil, err
	}
	storage := "bbolt " + statePath
	if postgresDSN != "" {
		storage = "postgres " + postgresDSN
	}
	e.caddyfile = []byte(fmt.Sprintf(caddyfileTemplate, e.admin, httpPort, e.sitePort, filepath.Join(dir, "caddy"),
		e.sitePort, ghClientID, ghClientSecret, e.ghURL, storage, extraProtect, e.upAddr, e.upAddr, extraRoutes, e.upAddr, e.upAddr))
	return e, nil
}

// caddyfileTemplate has the gated routes (/mcp and /sse behind mcp_auth)
// and the plain ones (/plain/mcp, /plain/sse) to the same upstream in the
// same site of the same Caddy, so the two are measured under equal
// conditions. Logs go to stderr, which the driver keeps in a file.
const caddyfileTemplate = `{
	admin %s
	http_port %s
	https_port %s
	default_bind 127.0.0.1
	storage file_system %s
	skip_install_trust
}

localhost:%s {
	tls internal
	mcp_auth {
		github {
			client_id %s
			client_secret %s
			enterprise_url %s
		}
		storage %s
		secret_key {env.MCP_AUTH_BENCH_KEY}
		protect /mcp /sse%s
	}
	handle /mcp* {
		reverse_proxy %s {
			header_up X-Forwarded-User {http.auth.user.login}
		}
	}
	handle /sse* {
		reverse_proxy %s
	}
%s	handle /plain/mcp* {
		reverse_proxy %s
	}
	handle /plain/sse* {
		reverse_proxy %s
	}
}
`

// startUpstream serves an MCP server built with the official SDK: the
// Streamable HTTP transport (stateless, JSON responses) for /mcp paths and
// the legacy HTTP+SSE transport for /sse paths.
func (e *env) startUpstream() error {
	server := mcp.NewServer(&mcp.Implementation{Name: "bench-upstream", Version: "1"}, nil)
	type addIn struct {
		A float64 `json:"a"`
		B float64 `json:"b"`
	}
	type addOut struct {
		Sum float64 `json:"sum"`
	}
	mcp.AddTool(server, &mcp.Tool{Name: "add", Description: "adds two numbers"},
		func(_ context.Context, _ *mcp.CallToolRequest, in addIn) (*mcp.CallToolResult, addOut, error) {
			return nil, addOut{Sum: in.A + in.B}, nil
		})
	get := func(*http.Request) *mcp.Server { return server }
	streamable := mcp.NewStreamableHTTPHandler(get, &mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	sse := mcp.NewSSEHandler(get, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	e.upAddr = l.Addr().String()
	e.upstream = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.Contains(r.URL.Path, "/sse") {
				sse.ServeHTTP(w, r)
				return
			}
			streamable.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = e.upstream.Serve(l) }()
	return nil
}

// startCaddy runs the Caddyfile in a child process and waits until the
// site answers over TLS verified against Caddy's local CA.
func (e *env) startCaddy(logName string) error {
	path := filepath.Join(e.dir, logName+".Caddyfile")
	if err := os.WriteFile(path, e.caddyfile, 0o600); err != nil {
		return err
	}
	key := make([]byte, 32)
	for i := range key {
		key[i] = byte(i*13 + 1)
	}
	c, err := startChild(path, filepath.Join(e.dir, logName+".log"), e.admin,
		[]string{"MCP_AUTH_BENCH_KEY=" + base64.StdEncoding.EncodeToString(key)})
	if err != nil {
		return err
	}
	e.caddy = c
	root := filepath.Join(e.dir, "caddy", "pki", "authorities", "local", "root.crt")
	var lastErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		pem, err := os.ReadFile(root)
		if err != nil {
			lastErr = err
			continue
		}
		e.roots = x509.NewCertPool()
		if !e.roots.AppendCertsFromPEM(pem) {
			return errors.New("Caddy's local CA root is not PEM")
		}
		resp, err := e.client(1).Get(e.site + "/.well-known/oauth-authorization-server")
		if err != nil {
			lastErr = err
			continue
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		lastErr = fmt.Errorf("metadata: %s", resp.Status)
	}
	return fmt.Errorf("caddy did not become ready: %v", lastErr)
}

func (e *env) stateFile() string { return e.state }

// stopCaddy stops the child.
func (e *env) stopCaddy() error {
	if e.caddy == nil {
		return nil
	}
	err := e.caddy.stop()
	e.caddy = nil
	return err
}

func (e *env) close() {
	_ = e.stopCaddy()
	if e.upstream != nil {
		_ = e.upstream.Close()
	}
	_ = e.gh.Close()
}

// client is an HTTP/1.1 client of the site that keeps up to conns
// connections alive, trusts only Caddy's local CA, and does not follow
// redirects.
func (e *env) client(conns int) *http.Client {
	return e.clientFrom(conns, nil)
}

// clientFrom is client with connections from the loopback address from
// (nil: the system's choice), as a caller at that address would make them.
func (e *env) clientFrom(conns int, from net.IP) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if from != nil {
		d.LocalAddr = &net.TCPAddr{IP: from}
	}
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			// localhost may resolve to ::1 first; Caddy listens on
			// 127.0.0.1 only.
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				if host, port, err := net.SplitHostPort(addr); err == nil && host == "localhost" {
					if e.dialPort != "" {
						port = e.dialPort
					}
					addr = net.JoinHostPort("127.0.0.1", port)
				}
				return d.DialContext(ctx, network, addr)
			},
			TLSClientConfig:     &tls.Config{RootCAs: e.roots, ServerName: "localhost"},
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     time.Minute,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
