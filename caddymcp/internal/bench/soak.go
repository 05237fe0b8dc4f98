package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/caddymcp/caddymcp/caddymcp/internal/fakegithub"
	"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore"
)

// The soak phase runs minutes of mixed traffic at once against one Caddy:
// legitimate users signing in, refreshing (some retried, some racing),
// calling the built-in tools, holding SSE streams and disconnecting; a
// hosted application registering a client per user from one address; and
// abusive callers at other loopback addresses flooding registration and
// unfinished sign-ins. It counts every legitimate request's outcome (the
// target is no error at all), the floods' accepted and refused requests,
// samples Caddy's heap, goroutines, open files and state file, and checks
// that every grant issued is accounted for.

// The addresses the callers come from. Linux routes all of 127.0.0.0/8 to
// loopback, so a client may bind any of them; Caddy listens on 127.0.0.1.
var hostedAppIP = net.IPv4(127, 0, 0, 2) // one egress address, many clients

// floodAddrs are the addresses a flood may use: 127.0.<net3>.1-64. A flood
// sends from one until it is refused, then moves to the next, as an
// abuser holding many addresses does, so that both the bound per address
// and the server-wide one are reached.
func floodAddrs(net3 byte) []net.IP {
	var ips []net.IP
	for i := range 64 {
		ips = append(ips, net.IPv4(127, 0, net3, byte(1+i)))
	}
	return ips
}

// userIP is the address user i's machine calls from (16 of them).
func userIP(i int) net.IP { return net.IPv4(127, 0, 1, byte(1+i%16)) }

// soakSite is what the soak's Caddy serves besides the driver's usual
// routes: the built-in tools (mcp_server), protected.
const (
	soakProtect = "/tools/mcp"
	soakRoutes  = "\thandle /tools/mcp* {\n\t\tmcp_server\n\t}\n"
)

// The soak's pace. Legitimate traffic is a steady mix well below what the
// two shared CPUs serve; each flood sends plan.floodRate requests a
// second (floodWorkers at a time), whatever the answers.
const (
	signinEvery    = time.Second            // a user signs in through the whole flow
	hostedEvery    = 2 * time.Second        // the hosted app registers a client and signs its user in
	refreshWorkers = 3                      // each refreshes a grant ...
	refreshEvery   = 300 * time.Millisecond // ... this often
	retryShare     = 0.15                   // of refreshes, sent again after the answer was lost
	raceShare      = 0.15                   // of refreshes, sent twice at once
	toolWorkers    = 2                      // each opens an MCP session, calls tools, closes it
	toolCalls      = 4                      // per session
	toolPause      = 200 * time.Millisecond // between sessions
	revokeEvery    = 500 * time.Millisecond // a user disconnects, if enough are connected
	floodWorkers   = 4                      // per flood
)

// soakPlan is one soak's length and scale, from the run's config.
type soakPlan struct {
	duration   time.Duration
	streams    int           // SSE streams held at once (target)
	sample     time.Duration // Caddy is sampled this often
	warmup     time.Duration // samples before this are the warm-up
	poolTarget int           // grants kept live: above it, users disconnect
	floodRate  int           // requests a second of each flood
}

func newSoakPlan(d time.Duration, streams, floodRate int) soakPlan {
	p := soakPlan{duration: d, streams: streams, warmup: d / 4, floodRate: max(floodRate, 1)}
	p.sample = min(max(d/24, time.Second), 5*time.Second)
	p.poolTarget = min(max(int(d/(5*time.Second)), 1), 40)
	return p
}

// tally counts one kind of request: successes, failures, and the first
// few distinct failure messages.
type tally struct {
	name string
	ok   atomic.Int64
	errs atomic.Int64

	mu    sync.Mutex
	first []string
}

func (t *tally) succeed() { t.ok.Add(1) }

func (t *tally) fail(err error) {
	t.errs.Add(1)
	msg := err.Error()
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range t.first {
		if m == msg {
			return
		}
	}
	if len(t.first) < 3 {
		t.first = append(t.first, msg)
	}
}

// soakGrant is a legitimate grant the driver holds: its client (making
// requests from its user's address), its newest tokens, and a lock that
// refreshes and revocation take alone and tool calls and streams share,
// so that no request uses tokens another is replacing.
type soakGrant struct {
	mu    sync.RWMutex
	c     *oauthClient
	user  int
	t     tokens
	gone  bool   // revoked or lost; out of the pool
	after *tally // the next refresh's outcome belongs to this kind, if set
}

// grantPool is the live grants and the accounting of every grant issued.
type grantPool struct {
	mu                             sync.Mutex
	live                           []*soakGrant
	issued, revoked, lost, unknown int
}

func (p *grantPool) add(g *soakGrant) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.live = append(p.live, g)
	p.issued++
}

func (p *grantPool) size() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.live)
}

func (p *grantPool) pick() *soakGrant {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.live) == 0 {
		return nil
	}
	return p.live[rand.IntN(len(p.live))]
}

// drop takes g (locked by the caller) out of the pool, counting it in
// *n (one of p's counters).
func (p *grantPool) drop(g *soakGrant, n *int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	g.gone = true
	for i, h := range p.live {
		if h == g {
			p.live[i] = p.live[len(p.live)-1]
			p.live = p.live[:len(p.live)-1]
			break
		}
	}
	*n++
}

// exclusive picks a live grant and locks it for a refresh or revocation.
func (p *grantPool) exclusive() *soakGrant {
	for range 5 {
		g := p.pick()
		if g == nil {
			return nil
		}
		g.mu.Lock()
		if !g.gone {
			return g
		}
		g.mu.Unlock()
	}
	return nil
}

// shared picks a live grant and read-locks it for a tool session or the
// opening of a stream.
func (p *grantPool) shared() *soakGrant {
	for range 5 {
		g := p.pick()
		if g == nil {
			return nil
		}
		g.mu.RLock()
		if !g.gone {
			return g
		}
		g.mu.RUnlock()
	}
	return nil
}

// caddySample is one look at the Caddy child.
type caddySample struct {
	at         time.Duration // since the soak started
	heapInuse  float64       // bytes, after a collection
	goroutines float64
	fds        int
	stateSize  int64
	rss        int64
	streams    int64 // SSE streams the driver held then
	grants     int   // live grants the driver held then
}

// flood is one kind of abusive traffic and its outcome.
type flood struct {
	name     string
	accepted int // the status of success
	addrs    []net.IP
	cursor   atomic.Int64 // index into addrs of the address in use

	sent, ok, refused, other atomic.Int64
	setupFailed              atomic.Int64
	otherFirst               atomic.Value // string
	// firstRefused and lastAccepted are when (since the soak started)
	// the flood was first refused and last had something stored.
	firstRefused, lastAccepted atomic.Int64
	started                    time.Time

	mu          sync.Mutex
	retryAfters map[string]int        // of the refusals
	senders     map[int]floodSender   // per address index, once set up
	setups      map[int]chan struct{} // closed when an address is set up
	conns       map[int]*http.Client  // per address index
}

// next moves the flood on from address i (if no other worker did): it
// closes that address's idle connections, as an abuser done with an
// address drops them, so that the driver's connections do not pile up in
// Caddy's figures.
func (f *flood) next(i int) {
	if !f.cursor.CompareAndSwap(int64(i), int64(i+1)) {
		return
	}
	f.mu.Lock()
	h := f.conns[i%len(f.addrs)]
	f.mu.Unlock()
	if h != nil {
		h.CloseIdleConnections()
	}
}

// floodSender sends one request of a flood and returns the answer's
// status and Retry-After.
type floodSender func() (status int, retryAfter string, err error)

// floodSetup prepares an address's sender, which uses h.
type floodSetup func(ip net.IP, h *http.Client) (floodSender, error)

func (f *flood) count(status int, retryAfter string, err error) {
	f.sent.Add(1)
	switch {
	case err == nil && status == f.accepted:
		f.ok.Add(1)
		f.lastAccepted.Store(int64(time.Since(f.started)))
	case err == nil && status == http.StatusTooManyRequests:
		f.refused.Add(1)
		f.firstRefused.CompareAndSwap(0, int64(time.Since(f.started)))
		f.mu.Lock()
		f.retryAfters[retryAfter]++
		f.mu.Unlock()
	default:
		f.other.Add(1)
		if err == nil {
			err = fmt.Errorf("status %d", status)
		}
		f.otherFirst.CompareAndSwap(nil, err.Error())
	}
}

// soak is one soak run's state.
type soak struct {
	e    *env
	plan soakPlan
	end  time.Time
	pool grantPool

	users  []*http.Client // per user address
	hosted *http.Client   // the hosted app's

	signins, hostedRegs, hostedSignins tally
	refreshes, retries, races          tally
	toolSessions, toolCallsT           tally
	streamsOpened, streamsHeld         tally
	revocations, revokedGone           tally
	regFlood, pendFlood                flood
	held, maxHeld                      atomic.Int64 // SSE streams
	samples                            []caddySample
	sampleErrs                         tally
	started                            time.Time

	clientsMu sync.Mutex
	clients   []*http.Client // every client made, to close their connections at the end
}

// client is e.clientFrom, remembered to be closed at the end.
func (s *soak) client(conns int, from net.IP) *http.Client {
	h := s.e.clientFrom(conns, from)
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	s.clients = append(s.clients, h)
	return h
}

// soakFigures is what a soak found, for the report and its checks.
type soakFigures struct {
	kinds      []*tally
	legitErrs  int64
	store      bboltstore.Counts
	listed     int // grants the admin API listed at the end
	clients    int // clients it listed
	accounting error
}

// soakBench runs the soak against the Caddy of e and writes its report.
func (e *env) soakBench(plan soakPlan, w io.Writer) (soakFigures, error) {
	s := &soak{e: e, plan: plan}
	s.signins.name = "sign-ins (register, authorize, consent, GitHub, callback, token)"
	s.hostedRegs.name = "hosted-app registrations (confidential, all from one address)"
	s.hostedSignins.name = "  ... each followed by a sign-in"
	s.refreshes.name = "refreshes"
	s.retries.name = "refreshes retried, first answer lost (errors: retry, next one)"
	s.races.name = "refreshes raced, two at once (errors: either, next one)"
	s.toolSessions.name = "MCP sessions on mcp_server (Streamable HTTP, official SDK)"
	s.toolCallsT.name = "  tools/call in them (calculate; get_user_info names the user)"
	s.streamsOpened.name = "SSE streams opened, through the gate to the upstream"
	s.streamsHeld.name = "  ... held to their end, not cut"
	s.revocations.name = "revocations (RFC 7009, of the refresh token)"
	s.revokedGone.name = "  ... the grant gone after (refresh and access token refused)"
	s.sampleErrs.name = "samples"
	for i := range 16 {
		s.users = append(s.users, s.client(8, userIP(i)))
	}
	s.hosted = s.client(8, hostedAppIP)

	s.started = time.Now()
	s.end = s.started.Add(plan.duration)
	var wg sync.WaitGroup
	wg.Go(s.signinLoop)
	wg.Go(s.hostedLoop)
	for range refreshWorkers {
		wg.Go(s.refreshLoop)
	}
	for range toolWorkers {
		wg.Go(s.toolLoop)
	}
	wg.Go(func() { s.streamLoop(&wg) })
	wg.Go(s.revokeLoop)
	s.regFlood = flood{name: "registrations never granted", accepted: http.StatusCreated, addrs: floodAddrs(2)}
	s.pendFlood = flood{name: "unfinished sign-ins (consent approvals)", accepted: http.StatusFound, addrs: floodAddrs(3)}
	s.runFlood(&wg, &s.regFlood, s.registrationSender)
	s.runFlood(&wg, &s.pendFlood, s.pendingSender)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		s.sampleLoop()
	}()
	wg.Wait()
	<-sampled
	// One more look with the traffic over, the streams closed and the
	// driver's idle connections too: what is left is Caddy's own.
	for _, h := range s.clients {
		h.CloseIdleConnections()
	}
	time.Sleep(time.Second)
	s.takeSample()

	f := soakFigures{kinds: []*tally{&s.signins, &s.hostedRegs, &s.hostedSignins, &s.refreshes, &s.retries, &s.races,
		&s.toolSessions, &s.toolCallsT, &s.streamsOpened, &s.streamsHeld, &s.revocations, &s.revokedGone}}
	for _, k := range f.kinds {
		f.legitErrs += k.errs.Load()
	}
	var err error
	if f.listed, err = s.adminCount("grants"); err != nil {
		return f, err
	}
	if f.clients, err = s.adminCount("clients"); err != nil {
		return f, err
	}
	if err := e.stopCaddy(); err != nil {
		return f, err
	}
	st, err := bboltstore.Open(e.stateFile(), bboltstore.Options{})
	if err != nil {
		return f, err
	}
	f.store, err = st.Count(context.Background())
	st.Close()
	if err != nil {
		return f, err
	}
	f.accounting = grantAccounting(s.pool.issued, s.pool.revoked, s.pool.lost, s.pool.unknown, f.listed, f.store.Grants)
	s.report(w, f)
	return f, nil
}

// grantAccounting checks that the grants issued, less those revoked and
// those the server revoked on its own (lost), are the grants the store
// holds, both as the admin API lists them and as the file counts them.
// Grants whose fate is unknown (a request failed without an answer)
// widen the margin by as many.
func grantAccounting(issued, revoked, lost, unknown, listed, stored int) error {
	want := issued - revoked - lost
	if listed != stored {
		return fmt.Errorf("the admin API listed %d grants, the state file holds %d", listed, stored)
	}
	if listed < want-unknown || listed > want {
		return fmt.Errorf("%d issued - %d revoked - %d lost = %d live grants (%d of unknown fate), but the store holds %d",
			issued, revoked, lost, want, unknown, listed)
	}
	return nil
}

func (s *soak) running() bool { return time.Now().Before(s.end) }

// pause sleeps for d, or until the soak ends; it reports whether the soak
// is still running.
func (s *soak) pause(d time.Duration) bool {
	if left := time.Until(s.end); left < d {
		if left > 0 {
			time.Sleep(left)
		}
		return false
	}
	time.Sleep(d)
	return true
}

// every runs f every d until the soak ends.
func (s *soak) every(d time.Duration, f func()) {
	for s.running() {
		t0 := time.Now()
		f()
		if !s.pause(d - time.Since(t0)) {
			return
		}
	}
}

// signinLoop: users sign in through the whole flow, as MCP clients on
// their machines do: the client registers (public, so the server hands
// it the same client each time), the user's browser authorizes, consents,
// signs in with GitHub and comes back, and the client exchanges the code.
func (s *soak) signinLoop() {
	n := 0
	s.every(signinEvery, func() {
		user := n
		n++
		h := s.users[user%len(s.users)]
		c, _, err := s.e.registerVia(h, publicClientMetadata("mcp-auth-soak"))
		if err != nil {
			s.signins.fail(err)
			return
		}
		if err := s.signIn(c, user, &s.signins); err == nil {
			s.signins.succeed()
		}
	})
}

// signIn runs user's browser through an authorization of c and exchanges
// the code, adding the grant to the pool; failures count in k.
func (s *soak) signIn(c *oauthClient, user int, k *tally) error {
	code, err := c.browserVia(userLogin(user), s.users[user%len(s.users)]).code()
	if err != nil {
		k.fail(fmt.Errorf("authorize: %w", err))
		return err
	}
	t, err := c.exchange(code)
	if err != nil {
		k.fail(err)
		return err
	}
	s.pool.add(&soakGrant{c: c, user: user, t: t})
	return nil
}

// hostedLoop: a hosted application, all its requests from one address,
// registers a confidential client for each new user and signs the user
// in with it (the user's browser is at the user's address).
func (s *soak) hostedLoop() {
	n := 0
	s.every(hostedEvery, func() {
		n++
		c, _, err := s.e.registerVia(s.hosted, confidentialClientMetadata(fmt.Sprintf("hosted-app tenant %d", n)))
		if err != nil {
			s.hostedRegs.fail(err)
			return
		}
		s.hostedRegs.succeed()
		if err := s.signIn(c, 1000+n, &s.hostedSignins); err == nil {
			s.hostedSignins.succeed()
		}
	})
}

// refreshLoop refreshes grants: most once, some twice with the first
// answer lost (the client retries within a few seconds), some twice at the
// same moment (two parts of one client racing).
func (s *soak) refreshLoop() {
	s.every(refreshEvery, func() {
		g := s.pool.exclusive()
		if g == nil {
			return
		}
		defer g.mu.Unlock()
		switch r := rand.Float64(); {
		case r < retryShare:
			s.refreshRetried(g)
		case r < retryShare+raceShare:
			s.refreshRaced(g)
		default:
			// The refresh after a retry or a race is that one's
			// proof: if it fails, that one failed.
			k, after := &s.refreshes, g.after
			if after != nil {
				k, g.after = after, nil
			}
			t, err := g.c.refresh(g.t.Refresh)
			if err != nil {
				if after != nil {
					err = fmt.Errorf("the refresh after it: %w", err)
				}
				k.fail(err)
				s.lostIf(g, err)
				return
			}
			s.refreshes.succeed()
			g.t = t
		}
	})
}

// lostIf drops g from the pool if err says its grant is gone.
func (s *soak) lostIf(g *soakGrant, err error) {
	if invalidGrant(err) {
		s.pool.drop(g, &s.pool.lost)
	}
}

// probe finds out whether g's grant is alive by refreshing rt (driver
// bookkeeping, not counted as traffic): alive, g takes the new tokens;
// gone, g leaves the pool as lost; unknown, as unknown.
func (s *soak) probe(g *soakGrant, rt string) {
	t, err := g.c.refresh(rt)
	switch {
	case err == nil:
		g.t = t
	case invalidGrant(err):
		s.pool.drop(g, &s.pool.lost)
	default:
		s.pool.drop(g, &s.pool.unknown)
	}
}

// refreshRetried sends g's refresh token, loses the answer, and sends the
// same token again a moment later, as a client whose connection broke
// does.
func (s *soak) refreshRetried(g *soakGrant) {
	rt := g.t.Refresh
	first, err := g.c.refresh(rt)
	if err != nil {
		s.refreshes.fail(err)
		s.lostIf(g, err)
		return
	}
	time.Sleep(rand.N(2 * time.Second))
	t, err := g.c.refresh(rt)
	if err != nil {
		s.retries.fail(fmt.Errorf("retry: %w", err))
		s.probe(g, first.Refresh)
		return
	}
	s.retries.succeed()
	g.t = t
	g.after = &s.retries
}

// refreshRaced sends g's refresh token twice at the same moment. The
// client keeps the answer that arrived last, as two parts of one client
// writing the same slot do.
func (s *soak) refreshRaced(g *soakGrant) {
	rt := g.t.Refresh
	type answer struct {
		t   tokens
		err error
	}
	answers := make(chan answer, 2)
	var start sync.WaitGroup
	start.Add(1)
	for range 2 {
		go func() {
			start.Wait()
			t, err := g.c.refresh(rt)
			answers <- answer{t, err}
		}()
	}
	start.Done()
	var good []tokens
	var errs []error
	for range 2 {
		a := <-answers
		if a.err != nil {
			errs = append(errs, a.err)
		} else {
			good = append(good, a.t)
		}
	}
	switch {
	case len(errs) == 0:
		s.races.succeed()
		g.t = good[1]
		g.after = &s.races
	case len(good) == 0:
		s.races.fail(fmt.Errorf("both: %w", errs[0]))
		s.lostIf(g, errs[0])
	default:
		s.races.fail(fmt.Errorf("one of two: %w", errs[0]))
		s.probe(g, good[0].Refresh)
	}
}

// bearer adds an access token to every request.
type bearer struct {
	base  http.RoundTripper
	token string
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return b.base.RoundTrip(r)
}

// toolLoop opens MCP sessions on the built-in server with the official
// SDK client, calls tools in them and closes them.
func (s *soak) toolLoop() {
	s.every(toolPause, func() {
		g := s.pool.shared()
		if g == nil {
			return
		}
		defer g.mu.RUnlock()
		if err := s.toolSession(g); err != nil {
			s.toolSessions.fail(err)
			return
		}
		s.toolSessions.succeed()
	})
}

func (s *soak) toolSession(g *soakGrant) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h := *s.users[g.user%len(s.users)]
	h.Transport = bearer{base: h.Transport, token: g.t.Access}
	client := mcp.NewClient(&mcp.Implementation{Name: "mcp-auth-soak", Version: "1"}, nil)
	session, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: s.e.site + soakProtect, HTTPClient: &h, DisableStandaloneSSE: true}, nil)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer session.Close()
	for i := range toolCalls {
		var err error
		if i < toolCalls-1 {
			err = calculate(ctx, session)
		} else {
			// Last, who the server thinks the caller is: the user
			// who signed in, never another.
			err = whoAmI(ctx, session, userLogin(g.user))
		}
		if err != nil {
			s.toolCallsT.fail(fmt.Errorf("call %d: %w", i, err))
			return err
		}
		s.toolCallsT.succeed()
	}
	return session.Close()
}

// calculate calls the calculate tool and checks its answer.
func calculate(ctx context.Context, session *mcp.ClientSession) error {
	a, b := rand.IntN(1000), rand.IntN(1000)
	var out struct {
		Result float64 `json:"result"`
	}
	raw, err := callStructured(ctx, session, "calculate", map[string]any{"operation": "add", "a": a, "b": b}, &out)
	if err == nil && out.Result != float64(a+b) {
		err = fmt.Errorf("calculate %d+%d answered %s", a, b, raw)
	}
	return err
}

// whoAmI calls get_user_info and checks that it names login.
func whoAmI(ctx context.Context, session *mcp.ClientSession, login string) error {
	var out struct {
		Login string `json:"login"`
	}
	raw, err := callStructured(ctx, session, "get_user_info", map[string]any{}, &out)
	if err == nil && out.Login != login {
		err = fmt.Errorf("get_user_info for %s answered %s", login, raw)
	}
	return err
}

// callStructured calls a tool and decodes its structured result into out.
func callStructured(ctx context.Context, session *mcp.ClientSession, name string, args map[string]any, out any) ([]byte, error) {
	res, err := session.CallTool(ctx, &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		return nil, err
	}
	if res.IsError {
		return nil, fmt.Errorf("%s: tool error: %v", name, res.Content)
	}
	raw, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(raw, out); err != nil {
		return raw, fmt.Errorf("%s answered %s: %w", name, raw, err)
	}
	return raw, nil
}

// streamLoop keeps about plan.streams legacy SSE streams open through the
// gated reverse_proxy, each for a while, opening new ones as old ones
// close; every stream goroutine is added to wg.
func (s *soak) streamLoop(wg *sync.WaitGroup) {
	clients := make([]*http.Client, len(s.users))
	for i := range clients {
		clients[i] = s.client(s.plan.streams+8, userIP(i))
		clients[i].Timeout = 0 // streams stay open; each has its deadline
	}
	short, long := max(s.plan.duration/20, time.Second), max(s.plan.duration/4, 2*time.Second)
	for s.running() {
		if int(s.held.Load()) >= s.plan.streams {
			s.pause(50 * time.Millisecond)
			continue
		}
		g := s.pool.shared()
		if g == nil {
			s.pause(50 * time.Millisecond)
			continue
		}
		tok, user := g.t.Access, g.user
		life := short + rand.N(long-short)
		s.held.Add(1)
		opened := make(chan struct{})
		wg.Go(func() {
			defer s.held.Add(-1)
			s.holdStream(clients[user%len(clients)], tok, life, opened)
		})
		<-opened // the grant stays put while its stream opens
		g.mu.RUnlock()
		if n := s.held.Load(); n > s.maxHeld.Load() {
			s.maxHeld.Store(n)
		}
		s.pause(10 * time.Millisecond) // at most 100 new streams a second
	}
}

// holdStream opens one stream, closes opened once it is established (or
// failed), holds it for life (or until the soak ends) and closes it.
func (s *soak) holdStream(h *http.Client, token string, life time.Duration, opened chan struct{}) {
	defer func() {
		select {
		case <-opened:
		default:
			close(opened)
		}
	}()
	start := time.Now()
	deadline := start.Add(life)
	if deadline.After(s.end) {
		deadline = s.end
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.e.site+"/sse", nil)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := h.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			s.streamsOpened.fail(err)
		}
		return
	}
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(line, "event: endpoint") {
		if ctx.Err() == nil {
			s.streamsOpened.fail(fmt.Errorf("GET /sse: %s, first line %q: %v", resp.Status, line, err))
		}
		return
	}
	s.streamsOpened.succeed()
	close(opened)
	// Idle until the deadline: anything ending the stream sooner (the
	// upstream or Caddy closing it) is a failure.
	_, err = io.Copy(io.Discard, r)
	if ctx.Err() != nil {
		s.streamsHeld.succeed()
		return
	}
	s.streamsHeld.fail(fmt.Errorf("stream ended after %s of %s: %v", time.Since(start).Round(time.Millisecond), deadline.Sub(start).Round(time.Millisecond), err))
}

// revokeLoop: users disconnect (their client revokes its refresh token,
// RFC 7009) while more than plan.poolTarget are connected; then the
// grant must be gone: its refresh token refused, its access token too.
func (s *soak) revokeLoop() {
	s.every(revokeEvery, func() {
		if s.pool.size() <= s.plan.poolTarget {
			return
		}
		g := s.pool.exclusive()
		if g == nil {
			return
		}
		defer g.mu.Unlock()
		if err := g.c.revoke(g.t.Refresh); err != nil {
			s.revocations.fail(err)
			// Did it take? Find out, so the grant is accounted for.
			t, err := g.c.refresh(g.t.Refresh)
			switch {
			case err == nil:
				g.t = t
			case invalidGrant(err):
				s.pool.drop(g, &s.pool.revoked)
			default:
				s.pool.drop(g, &s.pool.unknown)
			}
			return
		}
		s.revocations.succeed()
		s.pool.drop(g, &s.pool.revoked)
		if _, err := g.c.refresh(g.t.Refresh); !invalidGrant(err) {
			s.revokedGone.fail(fmt.Errorf("refresh after revocation: %v", err))
			return
		}
		if status, err := s.gateStatus(s.users[g.user%len(s.users)], g.t.Access); err != nil || status != http.StatusUnauthorized {
			s.revokedGone.fail(fmt.Errorf("access token after revocation: %d %v", status, err))
			return
		}
		s.revokedGone.succeed()
	})
}

// gateStatus is the status a tools/call with token gets on the gated
// upstream route.
func (s *soak) gateStatus(h *http.Client, token string) (int, error) {
	req, _ := http.NewRequest(http.MethodPost, s.e.site+"/mcp", strings.NewReader(toolCall))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := h.Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// runFlood starts floodWorkers goroutines sending f's requests, together
// plan.floodRate a second, from f's address in use; the first refusal
// (429) from it moves the flood to the next address. setup prepares an
// address's sender.
func (s *soak) runFlood(wg *sync.WaitGroup, f *flood, setup floodSetup) {
	f.retryAfters, f.senders, f.setups, f.conns = map[string]int{}, map[int]floodSender{}, map[int]chan struct{}{}, map[int]*http.Client{}
	f.started = s.started
	tick := time.NewTicker(time.Second / time.Duration(s.plan.floodRate))
	var stopped sync.WaitGroup
	for range floodWorkers {
		stopped.Add(1)
		wg.Go(func() {
			defer stopped.Done()
			for s.running() {
				<-tick.C
				i := int(f.cursor.Load())
				send := f.sender(i, setup, s.client)
				if send == nil {
					f.next(i)
					continue
				}
				status, retryAfter, err := send()
				f.count(status, retryAfter, err)
				if err == nil && status == http.StatusTooManyRequests {
					f.next(i)
				}
			}
		})
	}
	wg.Go(func() {
		stopped.Wait()
		tick.Stop()
	})
}

// sender is the sender of address i (modulo the addresses), set up once;
// nil if setting it up failed.
func (f *flood) sender(i int, setup floodSetup, client func(int, net.IP) *http.Client) floodSender {
	i %= len(f.addrs)
	f.mu.Lock()
	if send, ok := f.senders[i]; ok {
		f.mu.Unlock()
		return send
	}
	ready, ok := f.setups[i]
	if ok {
		f.mu.Unlock()
		<-ready
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.senders[i]
	}
	ready = make(chan struct{})
	f.setups[i] = ready
	h := client(floodWorkers, f.addrs[i])
	f.conns[i] = h
	f.mu.Unlock()
	send, err := setup(f.addrs[i], h)
	if err != nil {
		f.setupFailed.Add(1)
	}
	f.mu.Lock()
	f.senders[i] = send
	f.mu.Unlock()
	close(ready)
	return send
}

// registrationSender registers, from ip, confidential clients that never
// sign anyone in.
func (s *soak) registrationSender(ip net.IP, h *http.Client) (floodSender, error) {
	n := 0
	var mu sync.Mutex
	return func() (int, string, error) {
		mu.Lock()
		n++
		name := fmt.Sprintf("flood %s %d", ip, n)
		mu.Unlock()
		body, _ := json.Marshal(confidentialClientMetadata(name))
		resp, err := h.Post(s.e.site+"/register", "application/json", bytes.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After"), nil
	}, nil
}

// pendingSender, from ip, registers one client and opens its consent page
// once; its sender posts the approval over and over: every post asks the
// server to keep a sign-in that never comes back from GitHub.
func (s *soak) pendingSender(ip net.IP, h *http.Client) (floodSender, error) {
	c, _, err := s.e.registerVia(h, publicClientMetadata("flood "+ip.String()))
	if err != nil {
		return nil, err
	}
	b := c.browserVia("flooder", h)
	resp, err := b.Client.Get(b.authorizeURL())
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	form, ok := fakegithub.ConsentForm(string(body))
	if !ok || resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("no consent page: %s", resp.Status)
	}
	form.Set("action", fakegithub.Approve)
	return func() (int, string, error) {
		resp, err := b.Client.PostForm(s.e.site+"/consent", form)
		if err != nil {
			return 0, "", err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		status := resp.StatusCode
		if loc := resp.Header.Get("Location"); status == http.StatusFound && !strings.HasPrefix(loc, s.e.ghURL) {
			status = -status // a redirect, but not to GitHub
		}
		return status, resp.Header.Get("Retry-After"), nil
	}, nil
}

// sampleLoop samples Caddy every plan.sample until the soak ends.
func (s *soak) sampleLoop() {
	s.takeSample()
	for s.pause(s.plan.sample) {
		s.takeSample()
	}
}

// takeSample collects Caddy's garbage and reads its heap in use and
// goroutines (from the admin API's /metrics), its open files (from
// /proc) and the state file's size.
func (s *soak) takeSample() {
	c := s.e.caddy
	sm := caddySample{at: time.Since(s.started), streams: s.held.Load(), grants: s.pool.size()}
	err := c.gc()
	if err == nil {
		var b []byte
		if b, err = c.adminGet("/metrics"); err == nil {
			m := promValues(b)
			var ok1, ok2 bool
			sm.heapInuse, ok1 = m["go_memstats_heap_inuse_bytes"]
			sm.goroutines, ok2 = m["go_goroutines"]
			if !ok1 || !ok2 {
				err = errors.New("/metrics lacks go_memstats_heap_inuse_bytes or go_goroutines")
			}
		}
	}
	if err == nil {
		var fds []os.DirEntry
		if fds, err = os.ReadDir(fmt.Sprintf("/proc/%d/fd", c.cmd.Process.Pid)); err == nil {
			sm.fds = len(fds)
		}
	}
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(s.e.stateFile()); err == nil {
			sm.stateSize = fi.Size()
		}
	}
	if err == nil {
		sm.rss, err = c.rss()
	}
	if err != nil {
		s.sampleErrs.fail(err)
		return
	}
	s.sampleErrs.succeed()
	s.samples = append(s.samples, sm)
}

// promValues reads the unlabelled samples of a Prometheus text exposition.
func promValues(b []byte) map[string]float64 {
	m := map[string]float64{}
	for line := range strings.SplitSeq(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			m[name] = v
		}
	}
	return m
}

// adminCount counts the records of an admin API collection (grants or
// clients), page by page.
func (s *soak) adminCount(collection string) (int, error) {
	n, after := 0, ""
	for range 100000 {
		path := "/mcp_auth/" + collection + "?limit=1000"
		if after != "" {
			path += "&after=" + url.QueryEscape(after)
		}
		b, err := s.e.caddy.adminGet(path)
		if err != nil {
			return 0, err
		}
		var page map[string]json.RawMessage
		if err := json.Unmarshal(b, &page); err != nil {
			return 0, fmt.Errorf("admin %s: %w", path, err)
		}
		var items []json.RawMessage
		if err := json.Unmarshal(page[collection], &items); err != nil {
			return 0, fmt.Errorf("admin %s: %w", path, err)
		}
		n += len(items)
		next := ""
		if raw, ok := page["next"]; ok {
			_ = json.Unmarshal(raw, &next)
		}
		if next == "" {
			return n, nil
		}
		after = next
	}
	return 0, errors.New("admin API: too many pages")
}

// report writes the soak's figures.
func (s *soak) report(w io.Writer, f soakFigures) {
	p := s.plan
	fmt.Fprintf(w, "soak: %s of mixed traffic at once against one Caddy (bbolt); users from 127.0.1.1-16, the hosted app from %s\n", p.duration, hostedAppIP)
	fmt.Fprintf(w, "  %-64s %8s %8s\n", "legitimate traffic", "ok", "errors")
	for _, k := range f.kinds {
		fmt.Fprintf(w, "  %-64s %8d %8d\n", k.name, k.ok.Load(), k.errs.Load())
		for _, m := range k.first {
			fmt.Fprintf(w, "      e.g. %s\n", m)
		}
	}
	fmt.Fprintf(w, "  SSE streams held at once: up to %d (target %d)\n", s.maxHeld.Load(), p.streams)
	verdict := "none"
	if f.legitErrs > 0 {
		verdict = "SOME"
	}
	fmt.Fprintf(w, "  legitimate errors: %d (target 0: %s)\n", f.legitErrs, verdict)
	for _, f := range []*flood{&s.regFlood, &s.pendFlood} {
		fmt.Fprintf(w, "  flood: %s, %d/s from up to %d addresses (%d used): %d sent, %d accepted (%d), %d refused (429), %d other",
			f.name, p.floodRate, len(f.addrs), min(int(f.cursor.Load())+1, len(f.addrs)), f.sent.Load(), f.ok.Load(), f.accepted,
			f.refused.Load(), f.other.Load())
		if m, ok := f.otherFirst.Load().(string); ok {
			fmt.Fprintf(w, " (first: %.120s)", m)
		}
		fmt.Fprintln(w)
		if f.refused.Load() > 0 {
			fmt.Fprintf(w, "    first refused at %s; last accepted at %s\n",
				time.Duration(f.firstRefused.Load()).Round(100*time.Millisecond), time.Duration(f.lastAccepted.Load()).Round(100*time.Millisecond))
		}
		if len(f.retryAfters) > 0 {
			fmt.Fprintf(w, "    refusals by Retry-After: %s\n", retryAfterSummary(f.retryAfters))
		}
		if n := f.setupFailed.Load(); n > 0 {
			fmt.Fprintf(w, "    (setting up an address failed %d times)\n", n)
		}
	}
	s.reportSamples(w)
	fmt.Fprintf(w, "  store at the end: %d clients (admin API lists %d), %d unfinished sign-ins, %d codes, %d grants, %d access and %d refresh tokens\n",
		f.store.Clients, f.clients, f.store.Pending, f.store.Codes, f.store.Grants, f.store.AccessTokens, f.store.RefreshTokens)
	pl := &s.pool
	live := pl.issued - pl.revoked - pl.lost
	fmt.Fprintf(w, "  grants: %d issued - %d revoked - %d lost = %d live (%d of unknown fate); the admin API lists %d, the file holds %d: ",
		pl.issued, pl.revoked, pl.lost, live, pl.unknown, f.listed, f.store.Grants)
	if f.accounting != nil {
		fmt.Fprintf(w, "MISMATCH: %v\n", f.accounting)
	} else {
		fmt.Fprintln(w, "every grant accounted for")
	}
}

// retryAfterSummary writes counts of Retry-After values compactly: the
// most frequent value alone, the others as a range.
func retryAfterSummary(counts map[string]int) string {
	top, rest, lo, hi := "", 0, -1, -1
	for k, n := range counts {
		if top == "" || n > counts[top] || n == counts[top] && k < top {
			top = k
		}
	}
	for k, n := range counts {
		if k == top {
			continue
		}
		rest += n
		v, err := strconv.Atoi(k)
		if err != nil {
			v = -1
		}
		if lo < 0 || v < lo {
			lo = v
		}
		hi = max(hi, v)
	}
	out := fmt.Sprintf("%ss x%d", top, counts[top])
	switch {
	case rest == 0:
	case lo == hi:
		out += fmt.Sprintf(", %ds x%d", lo, rest)
	default:
		out += fmt.Sprintf(", %ds to %ds x%d", lo, hi, rest)
	}
	return out
}

// reportSamples prints each sampled series compactly and compares the
// mean of its second half with its first sample after the warm-up.
func (s *soak) reportSamples(w io.Writer) {
	if n := s.sampleErrs.errs.Load(); n > 0 {
		fmt.Fprintf(w, "  %d samples failed, e.g. %v\n", n, s.sampleErrs.first)
	}
	if len(s.samples) < 3 {
		fmt.Fprintf(w, "  Caddy: only %d samples\n", len(s.samples))
		return
	}
	// The last sample was taken after the traffic stopped; it is shown
	// but not judged.
	during := s.samples[:len(s.samples)-1]
	// The warm-up lasts plan.warmup, or, if later, until a flood that
	// was refused had its last record stored: up to its bounds, a flood
	// is meant to grow the state.
	warmup, why := s.plan.warmup, ""
	for _, f := range []*flood{&s.regFlood, &s.pendFlood} {
		if last := time.Duration(f.lastAccepted.Load()); f.refused.Load() > 0 && last > warmup {
			warmup, why = last, " (the "+f.name+" flood's last record stored)"
		}
	}
	first := len(during) - 1
	for i, sm := range during {
		if sm.at >= warmup {
			first = i
			break
		}
	}
	fmt.Fprintf(w, "  Caddy sampled every %s (after a collection); warm-up %s%s; [x] = first sample after it; after | the traffic is over and the driver's connections closed:\n",
		s.plan.sample, warmup.Round(100*time.Millisecond), why)
	if len(during)-first < 4 {
		fmt.Fprintf(w, "    (only %d samples after the warm-up: too few to judge)\n", len(during)-first)
	}
	series := []struct {
		name string
		unit float64
		f    string
		v    func(caddySample) float64
	}{
		{"heap in use (MiB)", 1 << 20, "%.1f", func(c caddySample) float64 { return c.heapInuse }},
		{"RSS (MiB)", 1 << 20, "%.0f", func(c caddySample) float64 { return float64(c.rss) }},
		{"goroutines", 1, "%.0f", func(c caddySample) float64 { return c.goroutines }},
		{"open files", 1, "%.0f", func(c caddySample) float64 { return float64(c.fds) }},
		{"state file (KiB)", 1 << 10, "%.0f", func(c caddySample) float64 { return float64(c.stateSize) }},
		{"SSE streams held", 1, "%.0f", func(c caddySample) float64 { return float64(c.streams) }},
		{"live grants", 1, "%.0f", func(c caddySample) float64 { return float64(c.grants) }},
	}
	for _, se := range series {
		var b strings.Builder
		for i, sm := range s.samples {
			v := fmt.Sprintf(se.f, se.v(sm)/se.unit)
			switch {
			case i == first:
				v = "[" + v + "]"
			case i == len(s.samples)-1:
				v = "| " + v
			}
			b.WriteString(" " + v)
		}
		base := se.v(during[first])
		half := during[first+(len(during)-first)/2:]
		var sum float64
		for _, sm := range half {
			sum += se.v(sm)
		}
		mean := sum / float64(len(half))
		change := "n/a"
		if base != 0 {
			change = fmt.Sprintf("%+.1f%%", 100*(mean-base)/base)
		}
		fmt.Fprintf(w, "    %-18s second-half mean "+se.f+" vs "+se.f+" after warm-up (%s):%s\n",
			se.name, mean/se.unit, base/se.unit, change, b.String())
	}
}

// soakRun is the soak phase: its own Caddy, serving the built-in tools
// too, on its own state file.
func soakRun(c config, dir string, w io.Writer) (soakFigures, error) {
	e, err := newEnvWith(dir, filepath.Join(dir, "soak.db"), "", soakProtect, soakRoutes)
	if err != nil {
		return soakFigures{}, err
	}
	defer e.close()
	if err := e.startCaddy("caddy-soak"); err != nil {
		return soakFigures{}, err
	}
	fmt.Fprintf(w, "soak: caddy provisioned in %s; log in %s\n", ms(e.caddy.load), filepath.Join(dir, "caddy-soak.log"))
	return e.soakBench(newSoakPlan(c.soakDuration, c.soakStreams, c.soakFlood), w)
}
