// Package storetest is the contract test suite for store.Store backends.
//
// Every backend runs the same suite from its own tests:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := mybackend.Open(...)
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// The suite never sleeps: every method that depends on the clock takes a
// `now`, and the suite passes explicit times around a fixed base. All times
// are whole microseconds so that backends with microsecond timestamps
// (PostgreSQL) round-trip them exactly.
package storetest

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Run runs the contract suite against a backend. open is called once per
// subtest and must return a new, empty store; Run closes it when the subtest
// ends (so Close must tolerate being called again if open also registers a
// cleanup that closes it).
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(f *fixture)
	}{
		{"Client/PutGet", testClientPutGet},
		{"Client/PutDuplicate", testClientPutDuplicate},
		{"Client/DeleteUnknown", testClientDeleteUnknown},
		{"Client/DeleteCascades", testClientDeleteCascades},
		{"Client/UnusedCollected", testClientUnusedCollected},

		{"Consent/PutGetWithdraw", testConsentPutGetWithdraw},
		{"Consent/ExpiredAndSwept", testConsentExpiredAndSwept},

		{"Pending/TakeOnce", testPendingTakeOnce},
		{"Pending/Expired", testPendingExpired},
		{"Pending/Duplicate", testPendingDuplicate},
		{"Pending/TakeRace", testPendingTakeRace},

		{"Code/RedeemOnce", testCodeRedeemOnce},
		{"Code/ExpiredOrUnknown", testCodeExpiredOrUnknown},
		{"Code/Duplicate", testCodeDuplicate},
		{"Code/ReplayRevokesGrant", testCodeReplayRevokesGrant},
		{"Code/ReplayAtCreateGrantRevokes", testCodeReplayAtCreateGrantRevokes},
		{"Code/UsedUpRefusesGrant", testCodeUsedUpRefusesGrant},
		{"Code/Get", testCodeGet},
		{"Code/RedeemRace", testCodeRedeemRace},

		{"Grant/CreateAndGet", testGrantCreateAndGet},
		{"Grant/CreateAllOrNothing", testGrantCreateAllOrNothing},
		{"Grant/CreateUnknownClient", testGrantCreateUnknownClient},
		{"Grant/CreateUnknownCode", testGrantCreateUnknownCode},
		{"Grant/CreateFromCodeChecks", testGrantCreateFromCodeChecks},
		{"Grant/CreateRace", testGrantCreateRace},
		{"Grant/Get", testGrantGet},

		{"AccessToken/Expiry", testAccessTokenExpiry},
		{"RefreshToken/ExpiryAndUnknown", testRefreshTokenExpiry},

		{"Rotate/NewPairWorks", testRotateNewPairWorks},
		{"Rotate/UpdatesGrant", testRotateUpdatesGrant},
		{"Rotate/ReuseViaGetRevokes", testRotateReuseViaGet},
		{"Rotate/ReuseViaRotateRevokes", testRotateReuseViaRotate},
		{"Rotate/ExpiredOrUnknown", testRotateExpiredOrUnknown},
		{"Rotate/RevokedGrant", testRotateRevokedGrant},
		{"Rotate/Race", testRotateRace},

		{"Refresh/RetryWithinGrace", testRefreshRetryWithinGrace},
		{"Refresh/ReuseAfterSuccessorUsed", testRefreshReuseAfterSuccessorUsed},
		{"Refresh/ReuseAfterGrace", testRefreshReuseAfterGrace},
		{"Refresh/RetriesBounded", testRefreshRetriesBounded},
		{"Refresh/OtherClient", testRefreshOtherClient},
		{"Refresh/RaceWithGrace", testRefreshRaceWithGrace},
		{"Refresh/LegacyRotated", testRefreshLegacyRotated},
		{"Refresh/FollowsUser", testRefreshFollowsUser},

		{"Leftover/PerAddress", testLeftoverPerAddress},
		{"Leftover/ServerWide", testLeftoverServerWide},
		{"Leftover/GoesWithItsRecord", testLeftoverGoesWithItsRecord},
		{"Leftover/Swept", testLeftoverSwept},
		{"Leftover/Race", testLeftoverRace},

		{"Revoke/AccessToken", testRevokeAccessToken},
		{"Revoke/Grant", testRevokeGrant},

		{"Sweep", testSweep},

		{"Admin/ListClients", testListClients},
		{"Admin/ListGrants", testListGrants},
		{"Admin/ListGrantsPages", testListGrantsPages},
		{"Admin/RevokeGrants", testRevokeGrants},

		{"EmptyAndNil", testEmptyAndNil},
		{"ConcurrentIndependentFlows", testConcurrentFlows},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			if s == nil {
				t.Fatal("open returned a nil store")
			}
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tc.fn(&fixture{t: t, s: s, ctx: context.Background()})
		})
	}
}

// raceN is how many goroutines race for a single-use record.
const raceN = 16

// base is the fixed "now" of the suite.
var base = time.Date(2030, time.March, 4, 5, 6, 7, 123456000, time.UTC)

// Lifetimes used by the fixtures, all relative to base.
const (
	pendingTTL = 10 * time.Minute
	codeTTL    = 10 * time.Minute
	accessTTL  = time.Hour
	refreshTTL = 30 * 24 * time.Hour
)

type fixture struct {
	t   *testing.T
	s   store.Store
	ctx context.Context
}

// hash returns a distinct 32-byte digest per subtest and label, like the
// SHA-256 digests the server stores.
func (f *fixture) hash(label string) []byte {
	sum := sha256.Sum256([]byte(f.t.Name() + "\x00" + label))
	return sum[:]
}

// --- record builders -------------------------------------------------------

func newClient(id string) *store.Client {
	secret := sha256.Sum256([]byte("secret of " + id))
	return &store.Client{
		ID:                      id,
		SecretHash:              secret[:],
		Name:                    "Client " + id,
		RedirectURIs:            []string{"https://app.example/cb", "http://127.0.0.1/cb"},
		TokenEndpointAuthMethod: "client_secret_basic",
		GrantTypes:              []string{"authorization_code", "refresh_token"},
		ResponseTypes:           []string{"code"},
		ApplicationType:         "web",
		Scope:                   "read write",
		ClientURI:               "https://app.example/",
		LogoURI:                 "https://app.example/logo.png",
		SoftwareID:              "sw-" + id,
		SoftwareVersion:         "1.2.3",
		CreatedAt:               base.Add(-time.Hour),
	}
}

func newPending(hash []byte, clientID string, exp time.Time) *store.Pending {
	return &store.Pending{
		StateHash:     hash,
		ClientID:      clientID,
		RedirectURI:   "https://app.example/cb",
		ClientState:   "client-state-xyz",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		Resource:      "https://mcp.example/mcp",
		Scope:         "read",
		ExpiresAt:     exp,
	}
}

var testUser = store.Identity{
	ID:        4242,
	Login:     "octocat",
	Name:      "The Octocat",
	Email:     "octocat@example.com",
	AvatarURL: "https://avatars.example/u/4242",
}

func newCode(hash []byte, clientID string, exp time.Time) *store.Code {
	return &store.Code{
		Hash:          hash,
		ClientID:      clientID,
		RedirectURI:   "https://app.example/cb",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
		Resource:      "https://mcp.example/mcp",
		Scope:         "read",
		User:          testUser,
		GitHubToken:   []byte("sealed-github-token-" + clientID),
		ExpiresAt:     exp,
	}
}

func newGrant(id, clientID string, exp time.Time) *store.Grant {
	return &store.Grant{
		ID:          id,
		ClientID:    clientID,
		User:        testUser,
		Scope:       "read",
		Resource:    "https://mcp.example/mcp",
		GitHubToken: []byte("sealed-github-token-" + id),
		CreatedAt:   base,
		ExpiresAt:   exp,
	}
}

func newAccess(hash []byte, g *store.Grant, exp time.Time) *store.AccessToken {
	return &store.AccessToken{
		Hash:      hash,
		GrantID:   g.ID,
		ClientID:  g.ClientID,
		User:      g.User,
		Scope:     g.Scope,
		Resource:  g.Resource,
		ExpiresAt: exp,
	}
}

func newRefresh(hash []byte, g *store.Grant, exp time.Time) *store.RefreshToken {
	return &store.RefreshToken{
		Hash:      hash,
		GrantID:   g.ID,
		ClientID:  g.ClientID,
		ExpiresAt: exp,
	}
}

// --- flows -----------------------------------------------------------------

// issued is a grant with its current tokens, as the token endpoint creates it.
type issued struct {
	code []byte
	g    *store.Grant
	at   *store.AccessToken
	rt   *store.RefreshToken
}

func (f *fixture) putClient(id string) *store.Client {
	f.t.Helper()
	c := newClient(id)
	if err := f.s.PutClient(f.ctx, c); err != nil {
		f.t.Fatalf("PutClient(%q): %v", id, err)
	}
	return c
}

// issue runs the authorization-code flow for an existing client: store a
// code, and create the grant from it, which redeems it. Tokens expire at their
// default lifetimes from base.
func (f *fixture) issue(clientID, label string) issued {
	f.t.Helper()
	return f.issueExp(clientID, label, base.Add(accessTTL), base.Add(refreshTTL))
}

func (f *fixture) issueExp(clientID, label string, atExp, rtExp time.Time) issued {
	f.t.Helper()
	return f.issueFor(clientID, label, testUser, atExp, rtExp)
}

// issueFor is issueExp for user u.
func (f *fixture) issueFor(clientID, label string, u store.Identity, atExp, rtExp time.Time) issued {
	f.t.Helper()
	code := f.hash(label + "/code")
	c := newCode(code, clientID, base.Add(codeTTL))
	c.User = u
	if err := f.s.PutCode(f.ctx, c); err != nil {
		f.t.Fatalf("PutCode(%s): %v", label, err)
	}
	g := newGrant("grant-"+label, clientID, rtExp)
	g.User = u
	at := newAccess(f.hash(label+"/at"), g, atExp)
	rt := newRefresh(f.hash(label+"/rt"), g, rtExp)
	if err := f.s.CreateGrant(f.ctx, g, at, rt, code); err != nil {
		f.t.Fatalf("CreateGrant(%s): %v", label, err)
	}
	return issued{code: code, g: g, at: at, rt: rt}
}

// rotate rotates is.rt into a new pair labelled label and returns the new
// state of the grant.
func (f *fixture) rotate(is issued, label string) issued {
	f.t.Helper()
	g := *is.g
	g.ExpiresAt = base.Add(2 * refreshTTL)
	at := newAccess(f.hash(label+"/at"), &g, base.Add(accessTTL))
	rt := newRefresh(f.hash(label+"/rt"), &g, g.ExpiresAt)
	if err := f.rotateRefresh(is.rt.Hash, base, &g, at, rt); err != nil {
		f.t.Fatalf("RotateRefresh(%s): %v", label, err)
	}
	// What the store keeps of the grant: the next generation, begun now.
	g.RefreshGen, g.RotatedAt, g.Retries = is.g.RefreshGen+1, base, 0
	return issued{code: is.code, g: &g, at: at, rt: rt}
}

// strict is a presentation of a refresh token by clientID at now under
// the strict rule (no grace): every reuse revokes.
func strict(clientID string, now time.Time) store.RefreshUse {
	return store.RefreshUse{ClientID: clientID, Now: now}
}

// rotateRefresh rotates hash at now under the strict rule, presented by
// g's client (none if g is nil), and returns the error alone.
func (f *fixture) rotateRefresh(hash []byte, now time.Time, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken) error {
	use := store.RefreshUse{Now: now}
	if g != nil {
		use.ClientID = g.ClientID
	}
	_, err := f.s.RotateRefresh(f.ctx, hash, use, g, at, rt)
	return err
}

// --- assertions ------------------------------------------------------------

func (f *fixture) wantErr(what string, err, target error) {
	f.t.Helper()
	if !errors.Is(err, target) {
		f.t.Errorf("%s: got error %v, want %v", what, err, target)
	}
}

func (f *fixture) wantOK(what string, err error) {
	f.t.Helper()
	if err != nil {
		f.t.Errorf("%s: unexpected error %v", what, err)
	}
}

// accessLive asserts that the access token is served, equal to want.
func (f *fixture) accessLive(want *store.AccessToken, now time.Time) {
	f.t.Helper()
	got, err := f.s.GetAccessToken(f.ctx, want.Hash, now)
	if err != nil {
		f.t.Errorf("GetAccessToken(%s): %v, want the token", short(want.Hash), err)
		return
	}
	checkEqual(f.t, "access token", normAccess(got), normAccess(want))
}

// accessDead asserts that the access token is ErrNotFound.
func (f *fixture) accessDead(hash []byte, now time.Time) {
	f.t.Helper()
	at, err := f.s.GetAccessToken(f.ctx, hash, now)
	if !errors.Is(err, store.ErrNotFound) {
		f.t.Errorf("GetAccessToken(%s) = %+v, %v; want ErrNotFound", short(hash), at, err)
	}
}

// refreshLive asserts that the refresh token is served with its grant.
func (f *fixture) refreshLive(want *store.RefreshToken, wantGrant *store.Grant, now time.Time) {
	f.t.Helper()
	rt, g, _, err := f.s.GetRefreshToken(f.ctx, want.Hash, strict(want.ClientID, now))
	if err != nil {
		f.t.Errorf("GetRefreshToken(%s): %v, want the token", short(want.Hash), err)
		return
	}
	checkEqual(f.t, "refresh token", normRefresh(rt), normRefresh(want))
	if g == nil {
		f.t.Errorf("GetRefreshToken(%s) returned a nil grant", short(want.Hash))
		return
	}
	checkEqual(f.t, "grant", normGrant(g), normGrant(wantGrant))
}

// refreshErr asserts that GetRefreshToken fails with target when
// client-a, the suite's usual client, presents the token.
func (f *fixture) refreshErr(hash []byte, now time.Time, target error) {
	f.t.Helper()
	rt, g, _, err := f.s.GetRefreshToken(f.ctx, hash, strict("client-a", now))
	if !errors.Is(err, target) {
		f.t.Errorf("GetRefreshToken(%s) = %+v, %+v, %v; want %v", short(hash), rt, g, err, target)
	}
}

// issuedDead asserts that none of the tokens of is work any more.
func (f *fixture) issuedDead(is issued) {
	f.t.Helper()
	f.accessDead(is.at.Hash, base)
	f.refreshErr(is.rt.Hash, base, store.ErrNotFound)
}

// grantGone asserts that no grant with that ID is stored.
func (f *fixture) grantGone(id string) {
	f.t.Helper()
	g, err := f.s.GetGrant(f.ctx, id, base)
	if !errors.Is(err, store.ErrNotFound) {
		f.t.Errorf("GetGrant(%q) = %+v, %v; want ErrNotFound", id, g, err)
	}
}

// issuedLive asserts that the tokens of is work.
func (f *fixture) issuedLive(is issued) {
	f.t.Helper()
	f.accessLive(is.at, base)
	f.refreshLive(is.rt, is.g, base)
}

func short(b []byte) string {
	if len(b) > 4 {
		b = b[:4]
	}
	return fmt.Sprintf("%x…", b)
}

func checkEqual[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s differs:\n got %+v\nwant %+v", what, got, want)
	}
}

// Normalizers make stored-and-loaded values comparable with DeepEqual:
// times are compared as instants (like time.Time.Equal, but inside
// DeepEqual), and empty slices equal nil ones.

func normTime(t time.Time) time.Time { return t.Round(0).UTC() }

func normBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func normStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func normClient(c *store.Client) store.Client {
	if c == nil {
		return store.Client{}
	}
	n := *c
	n.SecretHash = normBytes(n.SecretHash)
	n.RedirectURIs = normStrings(n.RedirectURIs)
	n.GrantTypes = normStrings(n.GrantTypes)
	n.ResponseTypes = normStrings(n.ResponseTypes)
	n.CreatedAt = normTime(n.CreatedAt)
	return n
}

func normPending(p *store.Pending) store.Pending {
	if p == nil {
		return store.Pending{}
	}
	n := *p
	n.StateHash = normBytes(n.StateHash)
	n.ExpiresAt = normTime(n.ExpiresAt)
	return n
}

// normCode ignores Used and GrantID, which the store maintains.
func normCode(c *store.Code) store.Code {
	if c == nil {
		return store.Code{}
	}
	n := *c
	n.Hash = normBytes(n.Hash)
	n.GitHubToken = normBytes(n.GitHubToken)
	n.ExpiresAt = normTime(n.ExpiresAt)
	n.Used = false
	n.GrantID = ""
	return n
}

func normGrant(g *store.Grant) store.Grant {
	if g == nil {
		return store.Grant{}
	}
	n := *g
	n.GitHubToken = normBytes(n.GitHubToken)
	n.CreatedAt = normTime(n.CreatedAt)
	n.ExpiresAt = normTime(n.ExpiresAt)
	n.CheckedAt = normTime(n.CheckedAt)
	n.RotatedAt = normTime(n.RotatedAt)
	return n
}

func normAccess(a *store.AccessToken) store.AccessToken {
	if a == nil {
		return store.AccessToken{}
	}
	n := *a
	n.Hash = normBytes(n.Hash)
	n.ExpiresAt = normTime(n.ExpiresAt)
	return n
}

func normRefresh(r *store.RefreshToken) store.RefreshToken {
	if r == nil {
		return store.RefreshToken{}
	}
	n := *r
	n.Hash = normBytes(n.Hash)
	n.ExpiresAt = normTime(n.ExpiresAt)
	return n
}

// race runs fn from n goroutines released at the same moment and returns
// their errors.
func race(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

// tally counts nil errors and errors matching loser; anything else is
// reported as a failure.
func (f *fixture) tally(what string, errs []error, loser error) (wins, losses int) {
	f.t.Helper()
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, loser):
			losses++
		default:
			f.t.Errorf("%s: goroutine %d: unexpected error %v", what, i, err)
		}
	}
	return wins, losses
}
