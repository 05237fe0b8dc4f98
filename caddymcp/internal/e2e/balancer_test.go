package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The README's sketch of several instances, run as it is written: a Caddy
// load balancer terminating TLS (tls internal) at the public address and
// passing plain HTTP to two instances with lb_policy round_robin and
// flush_interval -1, every process the built binary, the instances on one
// PostgreSQL database. Each instance names itself in an X-Served-By
// response header, so the test sees where the balancer sent each request.

// newPlainInstance starts an instance as the README configures one behind
// the balancer: a plain-HTTP catch-all site with the public issuer.
func (c *cluster) newPlainInstance(name string) *instance {
	c.t.Helper()
	in := &instance{c: c, name: name, port: freePort(c.t), dir: c.t.TempDir()}
	in.config = filepath.Join(in.dir, "Caddyfile")
	caddyfile := globalOptions(freePort(c.t), in.port, freePort(c.t), filepath.Join(in.dir, "storage"), in.logPath()) + fmt.Sprintf(`
http://:%d {
	header X-Served-By %s
	mcp_auth {
		issuer %s
		github {
			client_id %s
			client_secret {env.GITHUB_CLIENT_SECRET}
			enterprise_url %s
		}
		storage postgres {env.MCP_AUTH_DATABASE_URL}
		health_path /healthz
	}
	handle /mcp* {
		mcp_server
	}
}
`, in.port, name, c.site, ghClientID, c.ghURL)
	if err := os.WriteFile(in.config, []byte(caddyfile), 0o600); err != nil {
		c.t.Fatal(err)
	}
	in.ready = func() error {
		resp, err := (&http.Client{Timeout: 3 * time.Second}).Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", in.port))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s", resp.Status)
		}
		return nil
	}
	in.start()
	c.t.Cleanup(in.stop)
	return in
}

// newBalancer starts the load balancer at the public address, in front of
// the instances. It keeps its certificate and local CA in the cluster's
// shared storage, where the test's clients find the root.
func (c *cluster) newBalancer(instances ...*instance) *instance {
	c.t.Helper()
	lb := &instance{c: c, name: "balancer", port: c.pub, dir: c.t.TempDir()}
	lb.config = filepath.Join(lb.dir, "Caddyfile")
	var upstreams []string
	for _, in := range instances {
		upstreams = append(upstreams, fmt.Sprintf("127.0.0.1:%d", in.port))
	}
	// At debug level, reverse_proxy logs every response's headers, so the
	// balancer's log would hold the Location of each redirect back to a
	// client, authorization code included (single use and bound to the
	// client's PKCE verifier, but a secret all the same): a balancer runs
	// at info, where its log is checked for secrets like every other.
	global := strings.Replace(globalOptions(freePort(c.t), freePort(c.t), c.pub, c.shared, lb.logPath()), "level DEBUG", "level INFO", 1)
	caddyfile := global + fmt.Sprintf(`
localhost:%d {
	tls internal
	reverse_proxy %s {
		lb_policy round_robin
		health_uri /healthz
		flush_interval -1
	}
}
`, c.pub, strings.Join(upstreams, " "))
	if err := os.WriteFile(lb.config, []byte(caddyfile), 0o600); err != nil {
		c.t.Fatal(err)
	}
	lb.start()
	c.t.Cleanup(lb.stop)
	return lb
}

// servedBy records, for each request a client sends in a Streamable HTTP
// session, which instance answered it.
type servedBy struct {
	base http.RoundTripper
	mu   sync.Mutex
	log  map[string][]string // session ID: X-Served-By of each answer
}

func (s *servedBy) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := s.base.RoundTrip(req)
	if err == nil {
		if id := req.Header.Get("Mcp-Session-Id"); id != "" {
			s.mu.Lock()
			if s.log == nil {
				s.log = map[string][]string{}
			}
			s.log[id] = append(s.log[id], req.Method+" "+resp.Header.Get("X-Served-By"))
			s.mu.Unlock()
		}
	}
	return resp, err
}

func (s *servedBy) instances(id string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, e := range s.log[id] {
		_, in, _ := strings.Cut(e, " ")
		if !slices.Contains(out, in) {
			out = append(out, in)
		}
	}
	slices.Sort(out)
	return out
}

// TestBalancerTwoInstances runs the README's balancer sketch: browsers'
// public Origin accepted (and foreign ones refused) although the
// instances see plain HTTP; a Streamable HTTP session opened at one
// instance used at the other, with the official Go SDK client, as
// round_robin alternates; and a legacy SSE message reaching the instance
// that does not hold its stream answered at once with a clear error.
func TestBalancerTwoInstances(t *testing.T) {
	c := newCluster(t)
	a := c.newPlainInstance("A")
	b := c.newPlainInstance("B")
	c.newBalancer(a, b)
	e := c.envVia(func() int { return c.pub })

	// Signing in through round_robin: every OAuth step lands on the
	// instance after the previous one's.
	cl := e.register(t, false)
	alice := cl.login(t, e.browser("alice"), c.site+"/mcp")
	bob := cl.login(t, e.browser("bob"), c.site+"/mcp")
	for _, tok := range []string{alice.AccessToken, alice.RefreshToken, bob.AccessToken, bob.RefreshToken} {
		c.secrets.addSecret(tok)
	}

	t.Run("origin", func(t *testing.T) {
		// Each check twice: round_robin puts one on each instance.
		check := func(what string, want int, req func() *http.Request) {
			t.Helper()
			var at []string
			for range 2 {
				r := req()
				resp, err := e.httpClient(nil).Do(r)
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				at = append(at, resp.Header.Get("X-Served-By"))
				origin := r.Header.Get("Origin")
				if resp.StatusCode != want {
					t.Errorf("%s at instance %s: %s, want %d", what, resp.Header.Get("X-Served-By"), resp.Status, want)
				} else if want != http.StatusForbidden && resp.Header.Get("Access-Control-Allow-Origin") != origin {
					t.Errorf("%s at instance %s: Access-Control-Allow-Origin %q, want %q", what, resp.Header.Get("X-Served-By"), resp.Header.Get("Access-Control-Allow-Origin"), origin)
				}
			}
			if slices.Sort(at); !slices.Equal(at, []string{"A", "B"}) {
				t.Errorf("%s: answered by %v, want one request at each instance", what, at)
			}
		}
		initialize := func(origin string) func() *http.Request {
			return func() *http.Request {
				r, _ := http.NewRequest(http.MethodPost, c.site+"/mcp", strings.NewReader(rawInitialize))
				r.Header.Set("Content-Type", "application/json")
				r.Header.Set("Accept", mcpAccept)
				r.Header.Set("Authorization", "Bearer "+alice.AccessToken)
				r.Header.Set("Origin", origin)
				return r
			}
		}
		preflight := func(origin string) func() *http.Request {
			return func() *http.Request {
				r, _ := http.NewRequest(http.MethodOptions, c.site+"/mcp", nil)
				r.Header.Set("Origin", origin)
				r.Header.Set("Access-Control-Request-Method", "POST")
				r.Header.Set("Access-Control-Request-Headers", "authorization, content-type, mcp-protocol-version")
				return r
			}
		}
		check("preflight from the public origin "+c.site, http.StatusNoContent, preflight(c.site))
		check("initialize from the public origin "+c.site, http.StatusOK, initialize(c.site))
		check("preflight from a foreign origin", http.StatusForbidden, preflight("https://evil.example"))
		check("initialize from a foreign origin", http.StatusForbidden, initialize("https://evil.example"))
		// What the instances see (plain HTTP, Host localhost:PUB) is not
		// the site's origin: the issuer is.
		plain := strings.Replace(c.site, "https://", "http://", 1)
		check("initialize from "+plain, http.StatusForbidden, initialize(plain))

		// DNS rebinding, straight at an instance: a page at evil.example
		// resolving to it sends its own origin and Host.
		for _, in := range []*instance{a, b} {
			r, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/mcp", in.port), strings.NewReader(rawInitialize))
			r.Host = "evil.example"
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Accept", mcpAccept)
			r.Header.Set("Authorization", "Bearer "+alice.AccessToken)
			r.Header.Set("Origin", "http://evil.example")
			resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("instance %s, Host and Origin evil.example: %s, want 403", in.name, resp.Status)
			}
		}
	})

	t.Run("streamable session across instances", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		httpc := e.tokenClient(alice)
		rec := &servedBy{base: httpc.Transport}
		httpc.Transport = rec
		client := mcp.NewClient(&mcp.Implementation{Name: "e2e-balanced", Version: "1"}, nil)
		session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: c.site + "/mcp", HTTPClient: httpc},
			&mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
		if err != nil {
			t.Fatalf("connect through the balancer: %v", err)
		}
		defer session.Close()
		id := session.ID()
		if id == "" {
			t.Fatal("no session was created")
		}
		if list, err := session.ListTools(ctx, nil); err != nil || len(list.Tools) != 3 {
			t.Fatalf("tools/list: %v %v", err, list)
		}
		for i := range 3 {
			res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "get_user_info"})
			if err != nil || res.IsError || !strings.Contains(textOf(res), "@alice") {
				t.Fatalf("get_user_info #%d: %v %s", i, err, textOf(res))
			}
			res, err = session.CallTool(ctx, &mcp.CallToolParams{Name: "calculate", Arguments: map[string]any{"operation": "multiply", "a": i, "b": 7}})
			if err != nil || res.IsError || !strings.HasSuffix(textOf(res), fmt.Sprintf(" = %d", 7*i)) {
				t.Fatalf("calculate #%d: %v %q", i, err, textOf(res))
			}
		}
		if got := rec.instances(id); !slices.Equal(got, []string{"A", "B"}) {
			t.Errorf("the session's requests were answered by %v, want both instances", got)
		}
		t.Logf("the session's requests and who answered: %v", rec.log[id])

		// The session is still alice's, at either instance.
		var at []string
		for range 2 {
			resp := e.postJSON(t, "/mcp", `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, "Accept", mcpAccept,
				"Mcp-Session-Id", id, "MCP-Protocol-Version", session.InitializeResult().ProtocolVersion,
				"Authorization", "Bearer "+bob.AccessToken)
			at = append(at, resp.Header.Get("X-Served-By"))
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("bob in alice's session at instance %s: %s, want 403", resp.Header.Get("X-Served-By"), resp.Status)
			}
		}
		if slices.Sort(at); !slices.Equal(at, []string{"A", "B"}) {
			t.Errorf("bob's attempts were answered by %v, want one at each instance", at)
		}
	})

	t.Run("legacy SSE message at the other instance", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
		defer cancel()
		stream := e.httpClient(nil)
		stream.Timeout = 0 // the stream stays open; ctx bounds the test
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.site+"/mcp", nil)
		req.Header.Set("Accept", "text/event-stream")
		req.Header.Set("Authorization", "Bearer "+alice.AccessToken)
		resp, err := stream.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		holder := resp.Header.Get("X-Served-By")
		endpoint := ""
		for sc := bufio.NewScanner(resp.Body); sc.Scan(); {
			if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				endpoint = data
				break
			}
		}
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(endpoint, "/mcp?sessionid=") {
			t.Fatalf("SSE stream at %s: %s, endpoint %q", holder, resp.Status, endpoint)
		}

		// Two messages: round_robin sends one to each instance.
		type answer struct {
			status int
			at     string
			body   string
		}
		var answers []answer
		for i := range 2 {
			ping := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"ping"}`, 10+i)
			r := e.send(newPost(c.site+endpoint, "application/json", ping, "Authorization", "Bearer "+alice.AccessToken).WithContext(ctx))
			if r.err != nil {
				t.Fatalf("message %d: %v", i, r.err)
			}
			answers = append(answers, answer{r.status, r.resp.Header.Get("X-Served-By"), r.body})
		}
		var accepted, misdirected int
		for _, got := range answers {
			switch got.at {
			case holder:
				accepted++
				if got.status != http.StatusAccepted {
					t.Errorf("the message at the stream's instance %s: %d %s, want 202", got.at, got.status, got.body)
				}
			default:
				misdirected++
				var rpc struct {
					JSONRPC string          `json:"jsonrpc"`
					ID      json.RawMessage `json:"id"`
					Error   struct {
						Code    int    `json:"code"`
						Message string `json:"message"`
					} `json:"error"`
				}
				if got.status != http.StatusMisdirectedRequest || json.Unmarshal([]byte(got.body), &rpc) != nil || rpc.JSONRPC != "2.0" ||
					len(rpc.ID) == 0 || string(rpc.ID) == "null" || !strings.Contains(rpc.Error.Message, "held by another instance") ||
					!strings.Contains(rpc.Error.Message, "sticky sessions") {
					t.Errorf("the message at instance %s, not the stream's (%s): %d %s, want 421 with a JSON-RPC error saying the stream lives on another instance",
						got.at, holder, got.status, got.body)
				} else {
					t.Logf("at the other instance: %d %s", got.status, got.body)
				}
			}
		}
		if accepted != 1 || misdirected != 1 {
			t.Errorf("messages answered by %+v, stream at %s: want one at each instance", answers, holder)
		}
	})
}
