// Package fakegithub is a local, in-process stand-in for GitHub used by
// tests. It speaks enough of GitHub's web OAuth flow and REST API, in both the
// github.com shape (API at the root: /user, /user/repos, ...) and the GitHub
// Enterprise Server shape (API under /api/v3/), that golang.org/x/oauth2 and
// github.com/google/go-github work against it unmodified.
//
// The server never talks to the network beyond its own listener: Start only
// binds loopback addresses, and tests may also mount a Server with
// httptest.NewServer because it implements http.Handler.
//
// Web OAuth endpoints (always at the root, like github.com and GHES):
//
//	GET  /login/oauth/authorize     sign-in (cookie, DefaultLogin or a chooser page)
//	POST /login/oauth/authorize     chooser page submission
//	POST /login/oauth/access_token  code exchange
//
// REST API endpoints (served both at the root and under /api/v3):
//
//	GET /user
//	GET /user/orgs
//	GET /user/teams
//	GET /user/repos
//	GET /users/{login}
//	GET /users/{login}/orgs
//
// Tests can make it fail as GitHub does (SetFault: slow answers, 5xx,
// primary and secondary rate limits, 429) and take it off the network
// (Pause, then Resume on the same address: connection refused meanwhile).
//
// Deliberate simplifications: scopes are recorded and reported but never
// enforced, tokens never expire, organisation and team membership are taken
// literally from the fixtures (a team does not imply an organisation), and
// every organisation membership is treated as public.
//
// The package never logs tokens, codes or client secrets.
package fakegithub

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// maxBodyBytes bounds every request body the server reads.
	maxBodyBytes = 64 << 10
	// maxPending bounds the number of outstanding authorization codes and
	// chooser-form nonces kept in memory.
	maxPending = 10000
	// apiPrefix is the GitHub Enterprise Server REST API prefix.
	apiPrefix = "/api/v3"
	// LoginCookie is the name of the cookie that selects the signed-in user
	// on the authorize endpoint. Its value is a user's login.
	LoginCookie = "fakegithub_login"
)

// defaultTime is used for timestamps a fixture leaves unset, so that responses
// are deterministic.
var defaultTime = time.Date(2020, time.January, 1, 0, 0, 0, 0, time.UTC)

// Team identifies a team membership: the team with slug Slug in the
// organisation Org.
type Team struct {
	Org  string
	Slug string
}

// Repo is a repository that a user can access, as reported by
// GET /user/repos. Unset fields get defaults: Name and FullName are derived
// from each other (FullName defaults to "<login>/<Name>"), ID is assigned,
// HTMLURL is derived from the request's host, DefaultBranch is "main", and
// zero timestamps fall back to each other and then to a fixed date.
//
// The owner of a repository is the part of FullName before the slash. It is
// the user's own repository when that is the user's login, an organisation
// member's repository when it is one of the user's Orgs, and a
// collaborator's repository otherwise.
type Repo struct {
	ID            int64
	Name          string
	FullName      string
	Description   string
	HTMLURL       string
	Language      string
	DefaultBranch string
	Private       bool
	Fork          bool
	Archived      bool
	Stars         int
	CreatedAt     time.Time
	UpdatedAt     time.Time
	PushedAt      time.Time
}

// User is a GitHub account known to the server. Login is required and is
// matched case-insensitively, like on GitHub. A zero ID is replaced by an
// assigned one; an empty AvatarURL gets a GitHub-style default.
type User struct {
	ID        int64
	Login     string
	Name      string
	Email     string
	AvatarURL string
	Orgs      []string
	Teams     []Team
	Repos     []Repo
}

// App is a registered OAuth app.
type App struct {
	ClientID     string
	ClientSecret string
	// CallbackURL is the app's registered authorization callback URL. A
	// redirect_uri given at authorize must match it by GitHub's rules (see
	// the authorize handler).
	CallbackURL string
}

// Options configures a Server.
type Options struct {
	// Apps are the registered OAuth apps.
	Apps []App
	// Users are the accounts that exist.
	Users []User
	// DefaultLogin is the user considered signed in when the browser
	// presents no fakegithub_login cookie. Empty means nobody is signed in
	// and the authorize endpoint shows a chooser page.
	DefaultLogin string
	// Now returns the current time; it defaults to time.Now. It drives
	// authorization-code expiry and rate-limit windows.
	Now func() time.Time
}

// Server is the fake GitHub. It implements http.Handler; all methods are safe
// for concurrent use.
type Server struct {
	now func() time.Time

	mu           sync.Mutex
	apps         map[string]App
	users        map[string]*User // keyed by lower-case login
	userOrder    []string         // lower-case logins in insertion order
	defaultLogin string
	codes        map[string]*authCode
	tokens       map[string]*tokenInfo
	nonces       map[string]time.Time
	calls        map[string]int
	exchanges    int
	deny         bool
	fault        Fault
	rates        map[string]*rateWindow
	nextUserID   int64
	nextRepoID   int64

	srvMu   sync.Mutex
	httpSrv *http.Server
	addr    string // where Start listened, for Resume
}

// New returns a Server configured by opts. Fixtures are copied; later changes
// to opts have no effect.
func New(opts Options) *Server {
	s := &Server{
		now:          opts.Now,
		apps:         make(map[string]App, len(opts.Apps)),
		users:        make(map[string]*User, len(opts.Users)),
		defaultLogin: opts.DefaultLogin,
		codes:        make(map[string]*authCode),
		tokens:       make(map[string]*tokenInfo),
		nonces:       make(map[string]time.Time),
		calls:        make(map[string]int),
		rates:        make(map[string]*rateWindow),
		nextUserID:   1000,
		nextRepoID:   100000,
	}
	if s.now == nil {
		s.now = time.Now
	}
	for _, a := range opts.Apps {
		s.apps[a.ClientID] = a
	}
	// Reserve explicit IDs first so that assigned IDs never collide.
	for _, u := range opts.Users {
		s.nextUserID = max(s.nextUserID, u.ID)
		for _, r := range u.Repos {
			s.nextRepoID = max(s.nextRepoID, r.ID)
		}
	}
	for _, u := range opts.Users {
		s.addUserLocked(u)
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	}
	w.Header().Set("X-GitHub-Request-Id", newRequestID())
	switch r.URL.Path {
	case "/login/oauth/authorize":
		s.handleAuthorize(w, r)
	case "/login/oauth/access_token":
		s.handleAccessToken(w, r)
	default:
		s.serveAPI(w, r)
	}
}

// Start listens on addr, which must be a loopback address ("127.0.0.1:0"
// when empty; "localhost" is accepted), and serves plain HTTP in the
// background. It returns the base URL, e.g. "http://127.0.0.1:41234", which is
// both the web host and, with or without "/api/v3", the API host.
func (s *Server) Start(addr string) (baseURL string, err error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("fakegithub: bad listen address %q: %w", addr, err)
	}
	if !isLoopbackHost(host) {
		return "", fmt.Errorf("fakegithub: refusing to listen on non-loopback address %q", addr)
	}
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.httpSrv != nil {
		return "", errors.New("fakegithub: server already started")
	}
	return s.listenLocked(net.JoinHostPort(host, port))
}

// listenLocked listens on addr, checked to be loopback, and serves in the
// background. s.srvMu must be held.
func (s *Server) listenLocked(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("fakegithub: listen: %w", err)
	}
	if ta, ok := ln.Addr().(*net.TCPAddr); !ok || !ta.IP.IsLoopback() {
		ln.Close()
		return "", fmt.Errorf("fakegithub: %q resolved to non-loopback address %v", addr, ln.Addr())
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    maxBodyBytes,
	}
	s.httpSrv = srv
	s.addr = ln.Addr().String()
	go srv.Serve(ln) //nolint:errcheck // returns ErrServerClosed on Close
	return "http://" + s.addr, nil
}

// Close stops a server started with Start, closing its listener and open
// connections. It is a no-op if the server is not running; afterwards Start
// may be called again.
func (s *Server) Close() error {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.httpSrv == nil {
		return nil
	}
	err := s.httpSrv.Close()
	s.httpSrv = nil
	return err
}

// Pause takes a server started with Start off the network, as if GitHub
// were down: its listener and open connections are closed, so connecting
// to its address is refused, until Resume. Requests being served when it
// is called are cut off. Pausing a paused server does nothing.
func (s *Server) Pause() error { return s.Close() }

// Resume listens again, after Pause, on the address Start listened on, so
// the base URL Start returned works again. Resuming a running server does
// nothing.
func (s *Server) Resume() error {
	s.srvMu.Lock()
	defer s.srvMu.Unlock()
	if s.httpSrv != nil {
		return nil
	}
	if s.addr == "" {
		return errors.New("fakegithub: Resume before Start")
	}
	_, err := s.listenLocked(s.addr)
	return err
}

// isLoopbackHost reports whether host is "localhost" or a loopback IP
// literal. It never resolves names.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// --- test controls -------------------------------------------------------

// AddUser adds u, replacing any user with the same login (existing tokens of
// that login keep working and now see the new data).
func (s *Server) AddUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.addUserLocked(u)
}

// SetDefaultLogin changes Options.DefaultLogin; empty means nobody is signed
// in unless a cookie says so.
func (s *Server) SetDefaultLogin(login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.defaultLogin = login
}

// RenameUser changes a user's login, as GitHub lets users do: the ID
// stays, and the user's tokens keep working under the new login. Unknown
// logins are ignored.
func (s *Server) RenameUser(login, newLogin string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[strings.ToLower(login)]
	if u == nil || newLogin == "" {
		return
	}
	delete(s.users, strings.ToLower(login))
	u.Login = newLogin
	s.users[strings.ToLower(newLogin)] = u
	for _, t := range s.tokens {
		if strings.EqualFold(t.login, login) {
			t.login = newLogin
		}
	}
}

// SetUserOrgs replaces the organisations of the user login. Unknown logins
// are ignored.
func (s *Server) SetUserOrgs(login string, orgs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[strings.ToLower(login)]; u != nil {
		u.Orgs = slices.Clone(orgs)
	}
}

// SetUserTeams replaces the team memberships of the user login. Unknown
// logins are ignored.
func (s *Server) SetUserTeams(login string, teams []Team) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if u := s.users[strings.ToLower(login)]; u != nil {
		u.Teams = slices.Clone(teams)
	}
}

// RevokeToken invalidates an access token; the API then answers 401 Bad
// credentials for it.
func (s *Server) RevokeToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.tokens, token)
}

// RevokeUserTokens invalidates every access token issued to login.
func (s *Server) RevokeUserTokens(login string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, t := range s.tokens {
		if strings.EqualFold(t.login, login) {
			delete(s.tokens, k)
		}
	}
}

// SetRateLimited makes every API request (after authentication) fail the way
// GitHub's primary rate limit does: HTTP 403, X-RateLimit-Remaining: 0 and an
// "API rate limit exceeded for ..." message. It is SetFault with a
// PrimaryRateLimit on the API, and SetRateLimited(false) is SetFault(Fault{}):
// either clears any other fault. Note that go-github remembers a
// rate-limit error until the X-RateLimit-Reset time (the end of the current
// hour-long window) and refuses further requests locally, so use a fresh
// go-github client after switching this off.
func (s *Server) SetRateLimited(limited bool) {
	f := Fault{}
	if limited {
		f = Fault{On: OnAPI, Fail: PrimaryRateLimit}
	}
	s.SetFault(f)
}

// SetDeny makes the authorize endpoint behave as if the user pressed
// "Cancel": once client_id and redirect_uri are validated it redirects with
// error=access_denied, error_description, error_uri and state.
func (s *Server) SetDeny(deny bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deny = deny
}

// Calls reports how many API requests hit path, whichever shape (root or
// /api/v3) they used and whatever their outcome. path is normalised the same
// way, so "/user/orgs" and "/api/v3/user/orgs" are the same.
func (s *Server) Calls(path string) int {
	p, _ := splitAPIPath(path)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[p]
}

// TokenExchanges reports how many requests reached the token endpoint
// (POST /login/oauth/access_token), successful or not. Note that
// golang.org/x/oauth2 with AuthStyleAutoDetect retries a failed exchange once
// with the other client-authentication style, so a failure it sees may count
// twice.
func (s *Server) TokenExchanges() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exchanges
}

// IssueToken mints an access token for login with the given scopes without
// going through the OAuth flow, bound to no app. It fails if login is
// unknown.
func (s *Server) IssueToken(login string, scopes ...string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[strings.ToLower(login)]
	if u == nil {
		return "", fmt.Errorf("fakegithub: unknown user %q", login)
	}
	tok := newAccessToken()
	s.tokens[tok] = &tokenInfo{login: u.Login, scopes: slices.Clone(scopes)}
	return tok, nil
}

// addUserLocked normalises a copy of u and stores it. s.mu must be held.
func (s *Server) addUserLocked(u User) {
	if u.Login == "" {
		return
	}
	c := u
	c.Orgs = slices.Clone(u.Orgs)
	c.Teams = slices.Clone(u.Teams)
	c.Repos = slices.Clone(u.Repos)
	key := strings.ToLower(c.Login)
	if old := s.users[key]; old != nil && c.ID == 0 {
		c.ID = old.ID
	}
	if c.ID == 0 {
		s.nextUserID++
		c.ID = s.nextUserID
	}
	if c.AvatarURL == "" {
		c.AvatarURL = avatarURL(c.ID)
	}
	for i := range c.Repos {
		r := &c.Repos[i]
		if r.ID == 0 {
			s.nextRepoID++
			r.ID = s.nextRepoID
		}
		switch {
		case r.FullName == "" && r.Name == "":
			r.Name = "repo-" + strconv.FormatInt(r.ID, 10)
			r.FullName = c.Login + "/" + r.Name
		case r.FullName == "":
			r.FullName = c.Login + "/" + r.Name
		case r.Name == "":
			if _, name, ok := strings.Cut(r.FullName, "/"); ok {
				r.Name = name
			} else {
				r.Name = r.FullName
				r.FullName = c.Login + "/" + r.Name
			}
		}
		if !strings.Contains(r.FullName, "/") {
			r.FullName = c.Login + "/" + r.FullName
		}
		if r.DefaultBranch == "" {
			r.DefaultBranch = "main"
		}
		if r.CreatedAt.IsZero() {
			r.CreatedAt = r.UpdatedAt
		}
		if r.CreatedAt.IsZero() {
			r.CreatedAt = defaultTime
		}
		if r.UpdatedAt.IsZero() {
			r.UpdatedAt = r.CreatedAt
		}
		if r.PushedAt.IsZero() {
			r.PushedAt = r.UpdatedAt
		}
	}
	if _, exists := s.users[key]; !exists {
		s.userOrder = append(s.userOrder, key)
	}
	s.users[key] = &c
}

// lookupUserLocked returns the user with login (case-insensitive) or nil.
func (s *Server) lookupUserLocked(login string) *User {
	if login == "" {
		return nil
	}
	return s.users[strings.ToLower(login)]
}

// --- small helpers -------------------------------------------------------

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// randomString returns n characters drawn uniformly from alphabet using
// crypto/rand.
func randomString(alphabet string, n int) string {
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	limit := 256 - 256%len(alphabet)
	for len(out) < n {
		rand.Read(buf)
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, alphabet[int(b)%len(alphabet)])
			}
		}
	}
	return string(out)
}

// randomHex returns 2*n hexadecimal characters.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// newAccessToken returns a token shaped like a GitHub OAuth app user token:
// "gho_" followed by 36 alphanumeric characters.
func newAccessToken() string { return "gho_" + randomString(alnum, 36) }

// newRequestID returns a value shaped like GitHub's X-GitHub-Request-Id.
func newRequestID() string {
	h := strings.ToUpper(randomHex(14))
	return h[0:4] + ":" + h[4:8] + ":" + h[8:14] + ":" + h[14:20] + ":" + h[20:28]
}

// stableID derives a positive, deterministic ID from a name, used for
// organisations and teams that fixtures only name.
func stableID(kind, name string) int64 {
	h := fnv.New32a()
	h.Write([]byte(kind + ":" + strings.ToLower(name)))
	return int64(h.Sum32()&0x3fffffff) + 1
}

// nodeID returns a legacy-format GraphQL node ID like GitHub's, e.g.
// "MDQ6VXNlcjE=" (base64 of "04:User1") for User 1.
func nodeID(typ string, id int64) string {
	raw := "0" + strconv.Itoa(len(typ)) + ":" + typ + strconv.FormatInt(id, 10)
	return base64.StdEncoding.EncodeToString([]byte(raw))
}
