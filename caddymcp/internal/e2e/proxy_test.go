package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"golang.org/x/oauth2"
)

// These tests put existing MCP servers, built with the official Go SDK,
// behind Caddy's own reverse_proxy and the mcp_auth gate:
//
//	/github/mcp  a stateful Streamable HTTP server with an event store
//	/notes       a legacy HTTP+SSE server mounted with handle_path (the
//	             upstream sees paths without /notes)
//	/legacy      a legacy HTTP+SSE server that serves /legacy/sse itself
//	/mcp         the harness's own Streamable HTTP upstream

// proxyEnv is a running site with the three upstreams above.
type proxyEnv struct {
	*env
	stream *streamUpstream
	notes  *sseUpstream
	legacy *sseUpstream
}

const proxyProtocol = "2025-11-25" // the newest revision with sessions

// startProxy brings up the upstreams and a site that fronts them. With a
// forwardGitHub header name, /github/mcp is protected with
// forward_github_token <forwardGitHub>.
func startProxy(t *testing.T, forwardGitHub string) *proxyEnv {
	t.Helper()
	p := &proxyEnv{
		stream: startStreamUpstream(t),
		notes:  startSSEUpstream(t, "notes", "/sse"),
		legacy: startSSEUpstream(t, "legacy", "/legacy/sse"),
	}
	authExtra := "protect /mcp /sse /messages /github/mcp /notes /legacy"
	if forwardGitHub != "" {
		authExtra = `protect /mcp /sse /messages /notes /legacy
		protect /github/mcp {
			forward_github_token ` + forwardGitHub + `
		}`
	}
	siteExtra := fmt.Sprintf(`handle /github/mcp* {
		reverse_proxy %s {
			header_up X-Forwarded-User {http.auth.user.login}
			header_up X-Forwarded-User-Id {http.auth.user.id}
			header_up X-MCP-Client {mcp_auth.client_id}
		}
	}
	handle_path /notes/* {
		reverse_proxy %s {
			header_up X-Forwarded-User {http.auth.user.login}
		}
	}
	handle /legacy* {
		reverse_proxy %s {
			header_up X-Forwarded-User {http.auth.user.login}
		}
	}`, p.stream.addr, p.notes.addr, p.legacy.addr)
	p.env = start(t, options{authExtra: authExtra, siteExtra: siteExtra})
	return p
}

// proxyRequest sends a request through the gate with a bearer token and
// extra headers; the caller closes the body.
func (e *env) proxyRequest(ctx context.Context, t *testing.T, method, path, token string, body string, header http.Header) *http.Response {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.site+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.httpClient(nil).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	return resp
}

// openSessionStream opens a session's standalone GET stream by hand.
func (e *env) openSessionStream(ctx context.Context, t *testing.T, path, token, sessionID, lastEventID string) *http.Response {
	t.Helper()
	h := http.Header{}
	h.Set("Accept", "text/event-stream")
	h.Set("Mcp-Session-Id", sessionID)
	h.Set("MCP-Protocol-Version", proxyProtocol)
	if lastEventID != "" {
		h.Set("Last-Event-ID", lastEventID)
	}
	resp := e.proxyRequest(ctx, t, http.MethodGet, path, token, "", h)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		t.Fatalf("GET stream (Last-Event-ID %q): %s %q: %s", lastEventID, resp.Status, resp.Header.Get("Content-Type"), b)
	}
	return resp
}

// tokenSession is an SDK client session to path with a fixed token,
// without the SDK's own standalone stream, at the proxy protocol, with
// logging notifications turned on.
func (p *proxyEnv) tokenSession(ctx context.Context, t *testing.T, path string, tok *oauth2.Token) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-raw", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:             p.site + path,
		HTTPClient:           p.tokenClient(tok),
		DisableStandaloneSSE: true,
		MaxRetries:           -1,
	}, &mcp.ClientSessionOptions{ProtocolVersion: proxyProtocol})
	if err != nil {
		t.Fatalf("connecting to %s: %v", path, err)
	}
	if session.ID() == "" {
		t.Fatal("the upstream did not create a session")
	}
	if err := session.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "debug"}); err != nil {
		t.Fatalf("logging/setLevel: %v", err)
	}
	return session
}

func callNotify(ctx context.Context, t *testing.T, session *mcp.ClientSession, args notifyArgs) notifyResult {
	t.Helper()
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "notify", Arguments: args})
	if err != nil {
		t.Fatalf("notify %q: %v", args.Message, err)
	}
	if res.IsError {
		t.Fatalf("notify %q: tool error %s", args.Message, textOf(res))
	}
	var out notifyResult
	structured(t, res, &out)
	return out
}

// notificationMessage returns the message of a logging notification in a
// JSON-RPC message, or "".
func notificationMessage(t *testing.T, data string) string {
	t.Helper()
	var msg struct {
		Method string `json:"method"`
		Params struct {
			Data any `json:"data"`
		} `json:"params"`
	}
	if err := json.Unmarshal([]byte(data), &msg); err != nil {
		t.Fatalf("event data is not JSON-RPC: %q: %v", data, err)
	}
	if msg.Method != "notifications/message" {
		return ""
	}
	s, _ := msg.Params.Data.(string)
	return s
}

// TestProxyStreamableHTTPFullFlow: the SDK client does the whole OAuth
// flow against a proxied stateful Streamable HTTP server and uses it:
// tools listed and called, server-initiated notifications streamed back
// on the POST's response and on the standalone GET stream, identity
// headers in and the client's token never, every MCP header intact, and
// the session's DELETE delivered.
func TestProxyStreamableHTTPFullFlow(t *testing.T) {
	p := startProxy(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*proxyWait)
	defer cancel()

	notes := make(chan string, 16)
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-proxy", Version: "1"}, &mcp.ClientOptions{
		LoggingMessageHandler: func(_ context.Context, req *mcp.LoggingMessageRequest) {
			m, _ := req.Params.Data.(string)
			// Recorded before the acknowledgement, which lets the
			// tool's answer (and this test) go on.
			select {
			case notes <- m:
			default:
			}
			p.stream.ack(m)
		},
	})
	b := p.browser("alice")
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:     p.site + "/github/mcp",
		HTTPClient:   p.httpClient(nil),
		OAuthHandler: p.sdkHandler(t, b),
	}, &mcp.ClientSessionOptions{ProtocolVersion: proxyProtocol})
	if err != nil {
		t.Fatalf("connecting through the gate and the proxy: %v", err)
	}
	closed := false
	defer func() {
		if !closed {
			session.Close()
		}
	}()
	if b.ConsentPages() != 1 {
		t.Errorf("consent pages shown: %d, want 1", b.ConsentPages())
	}
	init := session.InitializeResult()
	if init.ServerInfo.Name != "stateful-upstream" || init.ProtocolVersion != proxyProtocol {
		t.Fatalf("initialize: server %q at %s, want stateful-upstream at %s", init.ServerInfo.Name, init.ProtocolVersion, proxyProtocol)
	}
	sessionID := session.ID()
	if sessionID == "" {
		t.Fatal("no Mcp-Session-Id came back through the proxy")
	}

	list, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range list.Tools {
		names = append(names, tool.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"notify", "whoami"}) {
		t.Fatalf("tools through the proxy: %v, want [notify whoami]", names)
	}

	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil || res.IsError {
		t.Fatalf("whoami: %v %v", err, res)
	}
	var who whoamiResult
	structured(t, res, &who)
	if who.User != "alice" || who.UserID != "1001" || !strings.HasPrefix(who.Client, "mcp_client_") {
		t.Errorf("the upstream saw user %q id %q client %q, want alice 1001 and a registered client", who.User, who.UserID, who.Client)
	}
	if who.Authorization != "" {
		t.Error("the client's Authorization header reached the upstream")
	}

	if err := session.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "debug"}); err != nil {
		t.Fatalf("logging/setLevel: %v", err)
	}
	// On the POST's own SSE response: the tool answers only once the
	// client has seen the notification, so a proxy that buffered the
	// response until it ended would fail this call.
	if out := callNotify(ctx, t, session, notifyArgs{Message: "on the POST stream", Await: true}); !out.Acknowledged {
		t.Error("the notification on the POST stream was not acknowledged")
	}
	// On the standalone GET stream, which stays open: the notification
	// can only arrive if the proxy streams it.
	if out := callNotify(ctx, t, session, notifyArgs{Message: "on the GET stream", Standalone: true, Await: true}); !out.Acknowledged {
		t.Error("the notification on the GET stream was not acknowledged")
	}
	for _, want := range []string{"on the POST stream", "on the GET stream"} {
		select {
		case got := <-notes:
			if got != want {
				t.Errorf("notification %q, want %q", got, want)
			}
		default:
			t.Errorf("the client's handler never saw %q", want)
		}
	}
	get := p.stream.waitFor(t, "the standalone GET stream", func(r *seenRequest) bool { return r.Method == http.MethodGet })
	if !strings.Contains(get.Header.Get("Accept"), "text/event-stream") {
		t.Errorf("the GET stream's Accept arrived as %q", get.Header.Get("Accept"))
	}

	closed = true
	if err := session.Close(); err != nil {
		t.Errorf("closing the session: %v", err)
	}
	// Close waits for the DELETE's answer, so the upstream has it by now.
	var deletes int
	for _, r := range p.stream.all() {
		if r.Method == http.MethodDelete {
			deletes++
			if r.Header.Get("Mcp-Session-Id") != sessionID {
				t.Errorf("DELETE arrived with Mcp-Session-Id %q, want %q", r.Header.Get("Mcp-Session-Id"), sessionID)
			}
		}
	}
	if deletes != 1 {
		t.Errorf("the upstream received %d DELETE requests, want 1 at session close", deletes)
	}

	seen := p.stream.all()
	if len(seen) < 6 {
		t.Fatalf("the upstream saw only %d requests", len(seen))
	}
	methods := map[string]int{}
	for i, r := range seen {
		methods[r.Method]++
		if v := r.Header.Values("Authorization"); len(v) != 0 {
			t.Errorf("upstream request %d (%s) carried an Authorization header", i, r.Method)
		}
		if r.Header.Get("X-Forwarded-User") != "alice" {
			t.Errorf("upstream request %d (%s) had X-Forwarded-User %q", i, r.Method, r.Header.Get("X-Forwarded-User"))
		}
		if r.Path != "/github/mcp" {
			t.Errorf("upstream request %d (%s) for path %q, want /github/mcp", i, r.Method, r.Path)
		}
		if i == 0 {
			if r.Method != http.MethodPost || r.Header.Get("Mcp-Session-Id") != "" {
				t.Errorf("the first upstream request, initialize, was %s with session %q", r.Method, r.Header.Get("Mcp-Session-Id"))
			}
			continue
		}
		if got := r.Header.Get("Mcp-Session-Id"); got != sessionID {
			t.Errorf("upstream request %d (%s) had Mcp-Session-Id %q, want %q", i, r.Method, got, sessionID)
		}
		if got := r.Header.Get("MCP-Protocol-Version"); got != proxyProtocol {
			t.Errorf("upstream request %d (%s) had MCP-Protocol-Version %q, want %s", i, r.Method, got, proxyProtocol)
		}
	}
	if methods[http.MethodGet] == 0 || methods[http.MethodPost] < 5 {
		t.Errorf("upstream requests by method: %v", methods)
	}
}

// heldStream is alice's session with the upstream behind /github/mcp and
// its standalone GET stream, opened by hand through the proxy.
type heldStream struct {
	session *mcp.ClientSession
	tok     *oauth2.Token
	events  <-chan sseEvent
	get     *seenRequest // the GET as the upstream saw it
	close   func()       // disconnects the stream
}

// holdStream signs alice in, starts a session and holds its stream open
// until the upstream has seen the GET. The session ends with the test.
func (p *proxyEnv) holdStream(ctx context.Context, t *testing.T) *heldStream {
	t.Helper()
	c := p.register(t, false)
	tok := c.login(t, p.browser("alice"), p.site+"/github/mcp")
	session := p.tokenSession(ctx, t, "/github/mcp", tok)
	t.Cleanup(func() { session.Close() })
	streamCtx, closeStream := context.WithCancel(ctx)
	resp := p.openSessionStream(streamCtx, t, "/github/mcp", tok.AccessToken, session.ID(), "")
	h := &heldStream{session: session, tok: tok, events: readEvents(resp.Body)}
	h.close = func() {
		closeStream()
		resp.Body.Close()
	}
	t.Cleanup(h.close)
	h.get = p.stream.waitFor(t, "the GET stream", func(r *seenRequest) bool { return r.Method == http.MethodGet })
	return h
}

// TestProxyLastEventIDResumption: the standalone stream, opened by hand
// through the proxy, delivers an event with its id; after a disconnect, a
// GET with Last-Event-ID gets exactly the events missed meanwhile (the
// SDK's event store replays everything after the given index of that
// stream), and then keeps streaming live ones.
func TestProxyLastEventIDResumption(t *testing.T) {
	p := startProxy(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 3*proxyWait)
	defer cancel()
	h := p.holdStream(ctx, t)
	session, tok, events, first := h.session, h.tok, h.events, h.get

	callNotify(ctx, t, session, notifyArgs{Message: "one", Standalone: true})
	ev := nextMessage(t, events, "the first notification")
	if got := notificationMessage(t, ev.data); got != "one" {
		t.Fatalf("first event carries %q (%s), want notification one", got, ev.data)
	}
	if ev.id == "" {
		t.Fatal("the event has no id: resumption is impossible")
	}
	lastID := ev.id

	// Disconnect, and wait until the upstream has let go of the stream
	// (a second GET for a stream still held is refused with 409).
	h.close()
	select {
	case <-first.ended:
	case <-time.After(proxyWait):
		t.Fatal("the upstream's GET never ended after the client disconnected")
	}

	callNotify(ctx, t, session, notifyArgs{Message: "two", Standalone: true})
	callNotify(ctx, t, session, notifyArgs{Message: "three", Standalone: true})

	resp := p.openSessionStream(ctx, t, "/github/mcp", tok.AccessToken, session.ID(), lastID)
	defer resp.Body.Close()
	events = readEvents(resp.Body)
	var ids []string
	for _, want := range []string{"two", "three"} {
		ev := nextMessage(t, events, "replayed notification "+want)
		if got := notificationMessage(t, ev.data); got != want {
			t.Fatalf("replayed event carries %q, want %q (events after %s, in order, without the one already seen)", got, want, lastID)
		}
		if ev.id == "" || ev.id == lastID || slices.Contains(ids, ev.id) {
			t.Errorf("replayed event id %q (last seen %q, earlier %v)", ev.id, lastID, ids)
		}
		ids = append(ids, ev.id)
	}
	resumed := p.stream.waitFor(t, "the resuming GET", func(r *seenRequest) bool {
		return r.Method == http.MethodGet && r.Header.Get("Last-Event-ID") != ""
	})
	if got := resumed.Header.Get("Last-Event-ID"); got != lastID {
		t.Errorf("the upstream received Last-Event-ID %q, want %q", got, lastID)
	}
	// The resumed stream is live again.
	callNotify(ctx, t, session, notifyArgs{Message: "four", Standalone: true})
	ev = nextMessage(t, events, "a live notification after the replay")
	if got := notificationMessage(t, ev.data); got != "four" {
		t.Errorf("live event after the replay carries %q, want four", got)
	}
}

// TestProxyClientDisconnect: a long-lived stream stays open at the
// upstream while the client holds it, and closing it on the client side
// cancels the upstream's request, with the session left alive.
func TestProxyClientDisconnect(t *testing.T) {
	p := startProxy(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*proxyWait)
	defer cancel()
	h := p.holdStream(ctx, t)
	session, events, get := h.session, h.events, h.get
	// One event through, so the stream is certainly established end to end.
	callNotify(ctx, t, session, notifyArgs{Message: "hello", Standalone: true})
	if got := notificationMessage(t, nextMessage(t, events, "the notification").data); got != "hello" {
		t.Fatalf("notification %q, want hello", got)
	}
	select {
	case <-get.ended:
		t.Fatal("the upstream's GET ended while the client still held the stream")
	default:
	}

	h.close()
	select {
	case <-get.ended:
	case <-time.After(proxyWait):
		t.Fatal("closing the stream on the client never ended the upstream's request")
	}
	if !get.cancelled {
		t.Fatal("the upstream's GET ended without its context being cancelled")
	}
	for _, r := range p.stream.all() {
		if r.Method == http.MethodDelete {
			t.Fatal("the session was deleted: the cancellation is not the disconnect's")
		}
	}
	// The session itself lives on.
	if _, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"}); err != nil {
		t.Errorf("the session after the stream's disconnect: %v", err)
	}
}

// TestProxyAudiences: each proxied server is its own protected resource;
// a token for one is refused at the others, with a challenge naming the
// resource asked for, and the refused requests never reach an upstream.
func TestProxyAudiences(t *testing.T) {
	p := startProxy(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*proxyWait)
	defer cancel()
	c := p.register(t, false)
	b := p.browser("alice")
	toks := map[string]string{}
	for _, r := range []string{"/mcp", "/github/mcp", "/notes", "/legacy"} {
		toks[r] = c.login(t, b, p.site+r).AccessToken
	}
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	// try sends the request a client of resource would send there.
	try := func(resource, token string) *http.Response {
		h := http.Header{}
		switch resource {
		case "/notes":
			h.Set("Accept", "text/event-stream")
			return p.proxyRequest(ctx, t, http.MethodGet, "/notes/sse", token, "", h)
		case "/legacy":
			h.Set("Accept", "text/event-stream")
			return p.proxyRequest(ctx, t, http.MethodGet, "/legacy/sse", token, "", h)
		}
		h.Set("Content-Type", "application/json")
		h.Set("Accept", "application/json, text/event-stream")
		return p.proxyRequest(ctx, t, http.MethodPost, resource, token, initialize, h)
	}
	upstreams := map[string]*recorder{"/github/mcp": p.stream.recorder, "/notes": p.notes.recorder, "/legacy": p.legacy.recorder}
	for _, at := range []string{"/mcp", "/github/mcp", "/notes", "/legacy"} {
		for _, from := range []string{"/mcp", "/github/mcp", "/notes", "/legacy"} {
			if at == from {
				continue
			}
			t.Run("token for "+from+" at "+at, func(t *testing.T) {
				before := -1
				if u := upstreams[at]; u != nil {
					before = u.count()
				}
				resp := try(at, toks[from])
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("status %s, want 401", resp.Status)
				}
				// The challenge names the document for the exact URL the
				// client used, and that document names that URL.
				endpoint := map[string]string{"/notes": "/notes/sse", "/legacy": "/legacy/sse"}[at]
				if endpoint == "" {
					endpoint = at
				}
				chal := resp.Header.Get("WWW-Authenticate")
				doc := p.site + "/.well-known/oauth-protected-resource" + endpoint
				if want := `Bearer resource_metadata="` + doc + `"`; !strings.HasPrefix(chal, want) || !strings.Contains(chal, `error="invalid_token"`) {
					t.Errorf("challenge %q, want %s… with error=\"invalid_token\"", chal, want)
				}
				var prm struct {
					Resource string `json:"resource"`
				}
				if status := p.getJSON(t, doc, &prm); status != http.StatusOK || prm.Resource != p.site+endpoint {
					t.Errorf("document %s: status %d, resource %q, want %s", doc, status, prm.Resource, p.site+endpoint)
				}
				if u := upstreams[at]; u != nil && u.count() != before {
					t.Errorf("the refused request reached the upstream")
				}
			})
		}
	}
	// And each token is good where it belongs.
	for _, at := range []string{"/mcp", "/github/mcp", "/notes", "/legacy"} {
		resp := try(at, toks[at])
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("the token for %s at %s: %s, want 200", at, at, resp.Status)
		}
	}
	// Each has its own RFC 9728 document.
	for _, r := range []string{"/github/mcp", "/notes", "/legacy"} {
		var prm struct {
			Resource string `json:"resource"`
		}
		resp, err := p.httpClient(nil).Get(p.site + "/.well-known/oauth-protected-resource" + r)
		if err != nil {
			t.Fatal(err)
		}
		if err := jsonDecode(resp, &prm); err != nil || resp.StatusCode != http.StatusOK || prm.Resource != p.site+r {
			t.Errorf("PRM of %s: %s %v resource %q", r, resp.Status, err, prm.Resource)
		}
	}
}

var sessionEndpoint = regexp.MustCompile(`^/sse\?sessionid=[A-Za-z0-9]+$`)

// endpointOf returns the data of the first event the upstream wrote on an
// SSE GET: its endpoint event, as the upstream sent it.
func endpointOf(t *testing.T, r *seenRequest) string {
	t.Helper()
	var got []byte
	for deadline := time.Now().Add(proxyWait); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if got = r.firstBytes(); strings.Contains(string(got), "\n\n") {
			break
		}
	}
	ev, ok := <-readEvents(strings.NewReader(string(got)))
	if !ok || ev.name != "endpoint" {
		t.Fatalf("the upstream's first event was not an endpoint event: %q", got)
	}
	return ev.data
}

// TestProxySSEUnderHandlePath: a legacy SSE server mounted with
// handle_path announces its message endpoint relative to the path it saw
// (/sse); through the gate the client must get an endpoint under /notes,
// reach the right server with it, and need the same token audience there.
func TestProxySSEUnderHandlePath(t *testing.T) {
	p := startProxy(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*proxyWait)
	defer cancel()
	c := p.register(t, false)
	b := p.browser("alice")
	tok := c.login(t, b, p.site+"/notes")
	mcpTok := c.login(t, b, p.site+"/mcp")

	// By hand: the first event and what the upstream actually said.
	streamCtx, closeStream := context.WithCancel(ctx)
	defer closeStream()
	resp := p.proxyRequest(streamCtx, t, http.MethodGet, "/notes/sse", tok.AccessToken, "", http.Header{"Accept": {"text/event-stream"}})
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		t.Fatalf("GET /notes/sse: %s %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	ev := nextEvent(t, readEvents(resp.Body), "the endpoint event")
	get := p.notes.waitFor(t, "the SSE GET", func(r *seenRequest) bool { return r.Method == http.MethodGet })
	if get.Path != "/sse" {
		t.Fatalf("handle_path passed %q to the upstream, want /sse", get.Path)
	}
	upstreamEndpoint := endpointOf(t, get)
	if !sessionEndpoint.MatchString(upstreamEndpoint) {
		t.Fatalf("the upstream announced %q; the test's premise is an endpoint relative to the stripped path", upstreamEndpoint)
	}
	if ev.name != "endpoint" {
		t.Fatalf("the first event is %q, want endpoint", ev.name)
	}
	if !strings.HasPrefix(ev.data, "/notes/") {
		t.Fatalf("the endpoint event reached the client as %q (the upstream sent %q): it must lie under /notes/", ev.data, upstreamEndpoint)
	}
	if ev.data != "/notes"+upstreamEndpoint {
		t.Errorf("the endpoint event reached the client as %q, want %q", ev.data, "/notes"+upstreamEndpoint)
	}

	// The rewritten endpoint reaches this upstream's session, under the
	// same audience as the stream.
	ping := `{"jsonrpc":"2.0","id":1,"method":"ping"}`
	jsonHeader := http.Header{"Content-Type": {"application/json"}}
	r := p.proxyRequest(ctx, t, http.MethodPost, ev.data, mcpTok.AccessToken, ping, jsonHeader)
	r.Body.Close()
	if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), "/.well-known/oauth-protected-resource/notes") {
		t.Errorf("posting to the message endpoint with a /mcp token: %s %q, want 401 for /notes", r.Status, r.Header.Get("WWW-Authenticate"))
	}
	r = p.proxyRequest(ctx, t, http.MethodPost, ev.data, tok.AccessToken, ping, jsonHeader)
	r.Body.Close()
	if r.StatusCode != http.StatusAccepted {
		t.Errorf("posting to the message endpoint: %s, want 202", r.Status)
	}
	post := p.notes.waitFor(t, "the POST to the message endpoint", func(r *seenRequest) bool { return r.Method == http.MethodPost })
	if "/sse?"+post.Query != upstreamEndpoint || post.Path != "/sse" {
		t.Errorf("the POST reached the upstream as %s?%s, want %s", post.Path, post.Query, upstreamEndpoint)
	}
	closeStream()

	// The SDK end to end: its SSE transport has no OAuth of its own, so
	// its OAuth handler answers the 401 of the stream's URL (discovery,
	// registration, consent, GitHub, PKCE, token), and the SSE client
	// then runs with the token it got.
	h := p.sdkHandler(t, p.browser("alice"))
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.site+"/notes/sse", nil)
	req.Header.Set("Accept", "text/event-stream")
	unauth, err := p.httpClient(nil).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if unauth.StatusCode != http.StatusUnauthorized {
		unauth.Body.Close()
		t.Fatalf("GET /notes/sse without a token: %s, want 401", unauth.Status)
	}
	if err := h.Authorize(ctx, req, unauth); err != nil {
		t.Fatalf("the SDK's OAuth flow for /notes/sse: %v", err)
	}
	ts, err := h.TokenSource(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sdkTok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	p.logs.addSecret(sdkTok.AccessToken)
	p.logs.addSecret(sdkTok.RefreshToken)
	if resp := p.mcpPost(t, "/mcp", "Bearer "+sdkTok.AccessToken); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the SDK's token for /notes/sse at /mcp: %s, want 401", resp.Status)
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-sse", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.SSEClientTransport{Endpoint: p.site + "/notes/sse", HTTPClient: p.tokenClient(sdkTok)}, nil)
	if err != nil {
		t.Fatalf("SSE connect to /notes/sse: %v", err)
	}
	defer session.Close()
	if name := session.InitializeResult().ServerInfo.Name; name != "notes" {
		t.Errorf("initialized with %q, want the notes server", name)
	}
	exerciseSSEWhoami(ctx, t, session, "notes")
	for i, r := range p.notes.all() {
		if len(r.Header.Values("Authorization")) != 0 {
			t.Errorf("notes upstream request %d (%s) carried an Authorization header", i, r.Method)
		}
		if r.Header.Get("X-Forwarded-User") != "alice" {
			t.Errorf("notes upstream request %d (%s) had X-Forwarded-User %q", i, r.Method, r.Header.Get("X-Forwarded-User"))
		}
	}
}

// exerciseSSEWhoami lists the tools of an SSE session and calls whoami.
func exerciseSSEWhoami(ctx context.Context, t *testing.T, session *mcp.ClientSession, name string) {
	t.Helper()
	list, err := session.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	if len(list.Tools) != 1 || list.Tools[0].Name != "whoami" {
		t.Fatalf("tools %v, want only whoami", list.Tools)
	}
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil || res.IsError {
		t.Fatalf("whoami: %v %v", err, res)
	}
	if got := textOf(res); got != "server "+name {
		t.Errorf("whoami answered %q, want %q", got, "server "+name)
	}
}

// TestProxySSEWithoutStripping: an SSE server that serves its own prefix
// announces an endpoint that is already right; it reaches the client
// unchanged and works.
func TestProxySSEWithoutStripping(t *testing.T) {
	p := startProxy(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*proxyWait)
	defer cancel()
	c := p.register(t, false)
	tok := c.login(t, p.browser("alice"), p.site+"/legacy")

	streamCtx, closeStream := context.WithCancel(ctx)
	defer closeStream()
	resp := p.proxyRequest(streamCtx, t, http.MethodGet, "/legacy/sse", tok.AccessToken, "", http.Header{"Accept": {"text/event-stream"}})
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /legacy/sse: %s", resp.Status)
	}
	ev := nextEvent(t, readEvents(resp.Body), "the endpoint event")
	get := p.legacy.waitFor(t, "the SSE GET", func(r *seenRequest) bool { return r.Method == http.MethodGet })
	upstreamEndpoint := endpointOf(t, get)
	if !strings.HasPrefix(upstreamEndpoint, "/legacy/sse?sessionid=") {
		t.Fatalf("the upstream announced %q", upstreamEndpoint)
	}
	if ev.name != "endpoint" || ev.data != upstreamEndpoint {
		t.Errorf("the endpoint event reached the client as %q %q, want it unchanged: %q", ev.name, ev.data, upstreamEndpoint)
	}
	closeStream()

	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-sse", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.SSEClientTransport{Endpoint: p.site + "/legacy/sse", HTTPClient: p.tokenClient(tok)}, nil)
	if err != nil {
		t.Fatalf("SSE connect to /legacy/sse: %v", err)
	}
	defer session.Close()
	exerciseSSEWhoami(ctx, t, session, "legacy")
	posts := 0
	for i, r := range p.legacy.all() {
		if len(r.Header.Values("Authorization")) != 0 {
			t.Errorf("legacy upstream request %d (%s) carried an Authorization header", i, r.Method)
		}
		if r.Method == http.MethodPost {
			posts++
			if r.Path != "/legacy/sse" {
				t.Errorf("a POST reached the legacy upstream at %q", r.Path)
			}
		}
	}
	if posts < 3 {
		t.Errorf("the legacy upstream received %d POSTs, want initialize, initialized, list and call", posts)
	}
}

// TestProxyForwardGitHubToken: with forward_github_token, the upstream of
// that resource gets the user's own GitHub token in the chosen header,
// never a value the client sent; other resources never get it. In a
// header of the operator's choice (X-GitHub-Token) and in Authorization
// (as Bearer), which takes the place of the client's own token.
func TestProxyForwardGitHubToken(t *testing.T) {
	for _, header := range []string{"Authorization"} {
		t.Run(header, func(t *testing.T) { testForwardGitHubToken(t, header) })
	}
}

func testForwardGitHubToken(t *testing.T, header string) {
	p := startProxy(t, header)
	ctx, cancel := context.WithTimeout(context.Background(), 2*proxyWait)
	defer cancel()
	c := p.register(t, false)
	tok := c.login(t, p.browser("alice"), p.site+"/github/mcp")
	prefix := ""
	if header == "Authorization" {
		prefix = "Bearer "
	}

	// forwarded returns the GitHub token the upstream received on every
	// request from the from'th on, all of which must carry the same one.
	secrets := map[string]bool{}
	forwarded := func(from int) string {
		t.Helper()
		var token string
		for i, r := range p.stream.all()[from:] {
			v := r.Header.Values(header)
			if len(v) != 1 || !strings.HasPrefix(v[0], prefix+"gho_") {
				// Never print the values: one may be a real token.
				t.Fatalf("upstream request %d (%s) had %d %s values (the first %sshaped like %sgho_…)", from+i, r.Method, len(v), header,
					map[bool]string{true: "", false: "not "}[len(v) > 0 && strings.HasPrefix(v[0], prefix+"gho_")], prefix)
			}
			gh := strings.TrimPrefix(v[0], prefix)
			if !secrets[gh] {
				secrets[gh] = true
				p.logs.addSecret(gh)
			}
			if token != "" && gh != token {
				t.Errorf("upstream request %d carried another GitHub token than the earlier ones", from+i)
			}
			token = gh
			if header != "Authorization" && len(r.Header.Values("Authorization")) != 0 {
				t.Errorf("upstream request %d (%s) carried an Authorization header", from+i, r.Method)
			}
		}
		if token == "" {
			t.Fatal("the upstream received no request")
		}
		return token
	}
	ghUser := func(token string) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.ghURL+"/api/v3/user", nil)
		req.Header.Set("Authorization", "token "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var u struct {
			Login string `json:"login"`
		}
		if err := jsonDecode(resp, &u); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("the forwarded token at the GitHub stand-in's /user: %s %v", resp.Status, err)
		}
		return u.Login
	}
	initialize := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`
	jsonHeaders := func() http.Header {
		return http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}}
	}

	// An SDK session: every request of it carries alice's GitHub token.
	session := p.tokenSession(ctx, t, "/github/mcp", tok)
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: "whoami"})
	if err != nil || res.IsError {
		t.Fatalf("whoami: %v %v", err, res)
	}
	session.Close()
	aliceGH := forwarded(0)
	if aliceGH == tok.AccessToken {
		t.Fatal("the client's own access token was forwarded")
	}
	if login := ghUser(aliceGH); login != "alice" {
		t.Errorf("the forwarded token belongs to %q, want alice", login)
	}

	// A value the client sends in that header is replaced, never passed
	// on, however many times it is given. (For Authorization, the
	// client's value is its bearer token, replaced above.)
	if header != "Authorization" {
		n := p.stream.count()
		h := jsonHeaders()
		h.Add(header, "forged-by-the-client")
		h.Add(header, "forged-again")
		resp := p.proxyRequest(ctx, t, http.MethodPost, "/github/mcp", tok.AccessToken, initialize, h)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("initialize with a client-sent %s: %s", header, resp.Status)
		}
		if got := forwarded(n); got != aliceGH {
			t.Errorf("with a client-sent %s, the upstream got another value than alice's GitHub token", header)
		}
	}

	// Each user's own token.
	bobTok := c.login(t, p.browser("bob"), p.site+"/github/mcp")
	n := p.stream.count()
	resp := p.proxyRequest(ctx, t, http.MethodPost, "/github/mcp", bobTok.AccessToken, initialize, jsonHeaders())
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bob's initialize: %s", resp.Status)
	}
	bobGH := forwarded(n)
	if bobGH == aliceGH || ghUser(bobGH) != "bob" {
		t.Error("bob's request did not carry bob's own GitHub token")
	}

	// Resources without the option never get it: the harness's /mcp
	// upstream and an SSE upstream.
	mcpTok := c.login(t, p.browser("alice"), p.site+"/mcp")
	if resp := p.mcpPost(t, "/mcp", "Bearer "+mcpTok.AccessToken); resp.StatusCode != http.StatusOK {
		t.Fatalf("/mcp: %s", resp.Status)
	}
	got := 0
	for done := false; !done; {
		select {
		case hdr := <-p.upstream.seen:
			got++
			if len(hdr.Values(header)) != 0 {
				t.Errorf("the /mcp upstream, without forward_github_token, received %s", header)
			}
		default:
			done = true
		}
	}
	if got == 0 {
		t.Error("the /mcp upstream saw no request")
	}
	legacyTok := c.login(t, p.browser("alice"), p.site+"/legacy")
	legacy, err := mcp.NewClient(&mcp.Implementation{Name: "e2e-sse", Version: "1"}, nil).Connect(ctx,
		&mcp.SSEClientTransport{Endpoint: p.site + "/legacy/sse", HTTPClient: p.tokenClient(legacyTok)}, nil)
	if err != nil {
		t.Fatalf("SSE connect to /legacy/sse: %v", err)
	}
	exerciseSSEWhoami(ctx, t, legacy, "legacy")
	legacy.Close()
	for i, r := range p.legacy.all() {
		if len(r.Header.Values(header)) != 0 {
			t.Errorf("legacy upstream request %d (%s), without forward_github_token, received %s", i, r.Method, header)
		}
	}
}
