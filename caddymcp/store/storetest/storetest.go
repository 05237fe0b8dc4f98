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
	"strings"
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

// testGrantGet: a grant reads back whole while live; lapsed, revoked,
// rotated-then-revoked and unknown grants are ErrNotFound.
func testGrantGet(f *fixture) {
	is := f.issue(f.putClient("client-get").ID, "get")
	got, err := f.s.GetGrant(f.ctx, is.g.ID, base)
	f.wantOK("GetGrant", err)
	if got != nil {
		checkEqual(f.t, "grant", normGrant(got), normGrant(is.g))
	}
	_, err = f.s.GetGrant(f.ctx, is.g.ID, is.g.ExpiresAt)
	f.wantErr("GetGrant at its expiry", err, store.ErrNotFound)

	rotated := f.rotate(is, "get-rotated")
	got, err = f.s.GetGrant(f.ctx, is.g.ID, base)
	f.wantOK("GetGrant after rotation", err)
	if got != nil && !got.ExpiresAt.Equal(rotated.g.ExpiresAt) {
		f.t.Errorf("GetGrant after rotation: expiry %v, want the rotated %v", got.ExpiresAt, rotated.g.ExpiresAt)
	}
	f.wantOK("RevokeGrant", f.s.RevokeGrant(f.ctx, is.g.ID))
	_, err = f.s.GetGrant(f.ctx, is.g.ID, base)
	f.wantErr("GetGrant after revocation", err, store.ErrNotFound)
	for _, id := range []string{"", "no-such-grant", strings.Repeat("g", 5000)} {
		_, err = f.s.GetGrant(f.ctx, id, base)
		f.wantErr("GetGrant("+short([]byte(id))+")", err, store.ErrNotFound)
	}
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

// --- clients ---------------------------------------------------------------

func testClientPutGet(f *fixture) {
	want := f.putClient("client-a")
	got, err := f.s.GetClient(f.ctx, "client-a")
	if err != nil {
		f.t.Fatalf("GetClient: %v", err)
	}
	checkEqual(f.t, "client", normClient(got), normClient(want))
	// What a caller does with a client it got is no change to the store,
	// whether the store read it (first) or kept it in memory (after).
	for i := range 3 {
		got.RedirectURIs[0] = "https://evil.example/cb"
		got.SecretHash[0] ^= 0xff
		got.Name = "changed"
		if got, err = f.s.GetClient(f.ctx, "client-a"); err != nil {
			f.t.Fatalf("GetClient(again): %v", err)
		}
		checkEqual(f.t, fmt.Sprintf("client read again (%d)", i), normClient(got), normClient(want))
	}

	// A public client has no secret and few optional fields.
	pub := &store.Client{
		ID:                      "client-public",
		RedirectURIs:            []string{"http://127.0.0.1:33418/callback"},
		TokenEndpointAuthMethod: "none",
		CreatedAt:               base,
	}
	f.wantOK("PutClient(public)", f.s.PutClient(f.ctx, pub))
	got, err = f.s.GetClient(f.ctx, "client-public")
	if err != nil {
		f.t.Fatalf("GetClient(public): %v", err)
	}
	checkEqual(f.t, "public client", normClient(got), normClient(pub))
	if len(got.SecretHash) != 0 {
		f.t.Errorf("public client got a secret hash %x", got.SecretHash)
	}

	_, err = f.s.GetClient(f.ctx, "client-unknown")
	f.wantErr("GetClient(unknown)", err, store.ErrNotFound)
}

func testClientPutDuplicate(f *fixture) {
	want := f.putClient("client-a")
	dup := newClient("client-a")
	dup.Name = "Impostor"
	dup.RedirectURIs = []string{"https://evil.example/cb"}
	f.wantErr("PutClient(duplicate)", f.s.PutClient(f.ctx, dup), store.ErrExists)

	got, err := f.s.GetClient(f.ctx, "client-a")
	if err != nil {
		f.t.Fatalf("GetClient: %v", err)
	}
	checkEqual(f.t, "client after duplicate put", normClient(got), normClient(want))
}

func testClientDeleteUnknown(f *fixture) {
	f.wantErr("DeleteClient(unknown)", f.s.DeleteClient(f.ctx, "client-unknown"), store.ErrNotFound)

	f.putClient("client-a")
	f.wantOK("DeleteClient", f.s.DeleteClient(f.ctx, "client-a"))
	f.wantErr("DeleteClient(again)", f.s.DeleteClient(f.ctx, "client-a"), store.ErrNotFound)
	_, err := f.s.GetClient(f.ctx, "client-a")
	f.wantErr("GetClient(deleted)", err, store.ErrNotFound)
}

func testClientDeleteCascades(f *fixture) {
	f.putClient("client-a")
	f.putClient("client-b")
	a1 := f.issue("client-a", "a1")
	a2 := f.issue("client-a", "a2")
	a2r := f.rotate(a2, "a2r") // so that the client also has a rotated token
	b1 := f.issue("client-b", "b1")
	// Read first: a backend that keeps tokens it read in memory must
	// forget them when they are revoked (here and in the tests below).
	f.accessLive(a1.at, base)
	f.accessLive(a2r.at, base)
	if _, err := f.s.GetClient(f.ctx, "client-a"); err != nil {
		f.t.Fatalf("GetClient: %v", err)
	}

	f.wantOK("DeleteClient", f.s.DeleteClient(f.ctx, "client-a"))
	_, err := f.s.GetClient(f.ctx, "client-a")
	f.wantErr("GetClient(deleted)", err, store.ErrNotFound)

	f.issuedDead(a1)
	f.accessDead(a2.at.Hash, base)
	f.issuedDead(a2r)
	f.wantErr("RotateRefresh(deleted client's token)",
		f.rotateRefresh(a1.rt.Hash, base, a1.g,
			newAccess(f.hash("x/at"), a1.g, base.Add(accessTTL)),
			newRefresh(f.hash("x/rt"), a1.g, base.Add(refreshTTL))),
		store.ErrNotFound)

	// Another client's grants are untouched.
	f.issuedLive(b1)

	// Registering the same client ID again must not resurrect its grants:
	// they were deleted, not hidden behind the missing client.
	f.putClient("client-a")
	f.issuedDead(a1)
	f.issuedDead(a2r)
}

// --- pending ---------------------------------------------------------------

func testPendingTakeOnce(f *fixture) {
	want := newPending(f.hash("state"), "client-a", base.Add(pendingTTL))
	f.wantOK("PutPending", f.s.PutPending(f.ctx, want))

	got, err := f.s.TakePending(f.ctx, want.StateHash, base)
	if err != nil {
		f.t.Fatalf("TakePending: %v", err)
	}
	checkEqual(f.t, "pending", normPending(got), normPending(want))

	_, err = f.s.TakePending(f.ctx, want.StateHash, base)
	f.wantErr("TakePending(second)", err, store.ErrNotFound)

	_, err = f.s.TakePending(f.ctx, f.hash("unknown"), base)
	f.wantErr("TakePending(unknown)", err, store.ErrNotFound)
}

func testPendingExpired(f *fixture) {
	exp := base.Add(pendingTTL)
	p := newPending(f.hash("state"), "client-a", exp)
	f.wantOK("PutPending", f.s.PutPending(f.ctx, p))
	_, err := f.s.TakePending(f.ctx, p.StateHash, exp)
	f.wantErr("TakePending(at expiry)", err, store.ErrNotFound)
	_, err = f.s.TakePending(f.ctx, p.StateHash, exp.Add(time.Hour))
	f.wantErr("TakePending(after expiry)", err, store.ErrNotFound)

	// One that is still live a second before expiry.
	q := newPending(f.hash("state2"), "client-a", exp)
	f.wantOK("PutPending", f.s.PutPending(f.ctx, q))
	got, err := f.s.TakePending(f.ctx, q.StateHash, exp.Add(-time.Second))
	if err != nil {
		f.t.Fatalf("TakePending(before expiry): %v", err)
	}
	checkEqual(f.t, "pending", normPending(got), normPending(q))
}

func testPendingDuplicate(f *fixture) {
	want := newPending(f.hash("state"), "client-a", base.Add(pendingTTL))
	f.wantOK("PutPending", f.s.PutPending(f.ctx, want))
	dup := newPending(f.hash("state"), "client-evil", base.Add(pendingTTL))
	dup.RedirectURI = "https://evil.example/cb"
	f.wantErr("PutPending(duplicate)", f.s.PutPending(f.ctx, dup), store.ErrExists)

	got, err := f.s.TakePending(f.ctx, want.StateHash, base)
	if err != nil {
		f.t.Fatalf("TakePending: %v", err)
	}
	checkEqual(f.t, "pending after duplicate put", normPending(got), normPending(want))
}

func testPendingTakeRace(f *fixture) {
	p := newPending(f.hash("state"), "client-a", base.Add(pendingTTL))
	f.wantOK("PutPending", f.s.PutPending(f.ctx, p))
	var mu sync.Mutex
	var got *store.Pending
	errs := race(raceN, func(int) error {
		q, err := f.s.TakePending(f.ctx, p.StateHash, base)
		if err == nil {
			mu.Lock()
			got = q
			mu.Unlock()
		}
		return err
	})
	wins, losses := f.tally("TakePending race", errs, store.ErrNotFound)
	if wins != 1 || losses != raceN-1 {
		f.t.Fatalf("TakePending race: %d won, %d lost; want exactly 1 winner", wins, losses)
	}
	checkEqual(f.t, "pending won", normPending(got), normPending(p))
}

// --- codes -----------------------------------------------------------------

func testCodeRedeemOnce(f *fixture) {
	want := newCode(f.hash("code"), "client-a", base.Add(codeTTL))
	f.wantOK("PutCode", f.s.PutCode(f.ctx, want))

	got, err := f.s.RedeemCode(f.ctx, want.Hash, base)
	if err != nil {
		f.t.Fatalf("RedeemCode: %v", err)
	}
	checkEqual(f.t, "redeemed code", normCode(got), normCode(want))

	_, err = f.s.RedeemCode(f.ctx, want.Hash, base)
	f.wantErr("RedeemCode(second)", err, store.ErrCodeReplayed)
	_, err = f.s.RedeemCode(f.ctx, want.Hash, base.Add(time.Second))
	f.wantErr("RedeemCode(third)", err, store.ErrCodeReplayed)
}

func testCodeExpiredOrUnknown(f *fixture) {
	exp := base.Add(codeTTL)
	c := newCode(f.hash("code"), "client-a", exp)
	f.wantOK("PutCode", f.s.PutCode(f.ctx, c))
	_, err := f.s.RedeemCode(f.ctx, c.Hash, exp)
	f.wantErr("RedeemCode(at expiry)", err, store.ErrNotFound)
	_, err = f.s.RedeemCode(f.ctx, c.Hash, exp.Add(time.Minute))
	f.wantErr("RedeemCode(after expiry)", err, store.ErrNotFound)

	_, err = f.s.RedeemCode(f.ctx, f.hash("unknown"), base)
	f.wantErr("RedeemCode(unknown)", err, store.ErrNotFound)

	// Live one second before expiry.
	d := newCode(f.hash("code2"), "client-a", exp)
	f.wantOK("PutCode", f.s.PutCode(f.ctx, d))
	got, err := f.s.RedeemCode(f.ctx, d.Hash, exp.Add(-time.Second))
	if err != nil {
		f.t.Fatalf("RedeemCode(before expiry): %v", err)
	}
	checkEqual(f.t, "redeemed code", normCode(got), normCode(d))
}

func testCodeDuplicate(f *fixture) {
	c := newCode(f.hash("code"), "client-a", base.Add(codeTTL))
	f.wantOK("PutCode", f.s.PutCode(f.ctx, c))
	if _, err := f.s.RedeemCode(f.ctx, c.Hash, base); err != nil {
		f.t.Fatalf("RedeemCode: %v", err)
	}
	// Overwriting a used code must not reset its single-use state.
	f.wantErr("PutCode(duplicate)", f.s.PutCode(f.ctx, newCode(c.Hash, "client-a", base.Add(codeTTL))), store.ErrExists)
	_, err := f.s.RedeemCode(f.ctx, c.Hash, base)
	f.wantErr("RedeemCode(after duplicate put)", err, store.ErrCodeReplayed)
}

func testCodeReplayRevokesGrant(f *fixture) {
	f.putClient("client-a")
	victim := f.issue("client-a", "victim")
	other := f.issue("client-a", "other")
	f.issuedLive(victim)

	_, err := f.s.RedeemCode(f.ctx, victim.code, base)
	f.wantErr("RedeemCode(replay)", err, store.ErrCodeReplayed)

	f.issuedDead(victim)
	f.wantErr("RotateRefresh(revoked by replay)",
		f.rotateRefresh(victim.rt.Hash, base, victim.g,
			newAccess(f.hash("x/at"), victim.g, base.Add(accessTTL)),
			newRefresh(f.hash("x/rt"), victim.g, base.Add(refreshTTL))),
		store.ErrNotFound)
	f.issuedLive(other)

	// Still detected as a replay afterwards.
	_, err = f.s.RedeemCode(f.ctx, victim.code, base)
	f.wantErr("RedeemCode(replay again)", err, store.ErrCodeReplayed)
	f.issuedLive(other)
}

// testCodeReplayAtCreateGrantRevokes: an exchange that read the code
// before the first one stored its grant finds the code used at
// CreateGrant. That is a replay like any other: the first grant is
// revoked, tokens already read (and kept in memory by a backend that
// caches them) included, no second grant is kept, and the code stays a
// replay.
func testCodeReplayAtCreateGrantRevokes(f *fixture) {
	f.putClient("client-a")
	first := f.issue("client-a", "first")
	other := f.issue("client-a", "other")
	f.issuedLive(first)

	g := newGrant("grant-second", "client-a", base.Add(refreshTTL))
	at := newAccess(f.hash("second/at"), g, base.Add(accessTTL))
	rt := newRefresh(f.hash("second/rt"), g, base.Add(refreshTTL))
	f.wantErr("CreateGrant(code used by another grant)", f.s.CreateGrant(f.ctx, g, at, rt, first.code), store.ErrCodeReplayed)
	f.issuedDead(first)
	f.grantGone(first.g.ID)
	f.accessDead(at.Hash, base)
	f.refreshErr(rt.Hash, base, store.ErrNotFound)
	f.grantGone(g.ID)
	_, err := f.s.GetCode(f.ctx, first.code, base)
	f.wantErr("GetCode(after the replay)", err, store.ErrCodeReplayed)
	f.issuedLive(other)
}

// testCodeUsedUpRefusesGrant covers a code used up by an exchange that
// failed its checks (RedeemCode) before another exchange of it got to
// CreateGrant: there is no grant to revoke, and none may be created from
// it (RFC 6749 section 4.1.2: a code used twice must not yield tokens).
func testCodeUsedUpRefusesGrant(f *fixture) {
	f.putClient("client-a")
	code := f.hash("code")
	f.wantOK("PutCode", f.s.PutCode(f.ctx, newCode(code, "client-a", base.Add(codeTTL))))
	if _, err := f.s.GetCode(f.ctx, code, base); err != nil {
		f.t.Fatalf("GetCode: %v", err)
	}
	if _, err := f.s.RedeemCode(f.ctx, code, base); err != nil {
		f.t.Fatalf("RedeemCode: %v", err)
	}
	g := newGrant("grant-late", "client-a", base.Add(refreshTTL))
	at := newAccess(f.hash("at"), g, base.Add(accessTTL))
	rt := newRefresh(f.hash("rt"), g, base.Add(refreshTTL))
	f.wantErr("CreateGrant(used code)", f.s.CreateGrant(f.ctx, g, at, rt, code), store.ErrCodeReplayed)
	f.accessDead(at.Hash, base)
	f.refreshErr(rt.Hash, base, store.ErrNotFound)
	f.grantGone(g.ID)
}

// testCodeGet: GetCode reads a live code without using it up; it tells a
// used code apart, and reading one writes nothing (the grant it produced
// stays live until the replay is acted on).
func testCodeGet(f *fixture) {
	f.putClient("client-a")
	exp := base.Add(codeTTL)
	want := newCode(f.hash("code"), "client-a", exp)
	f.wantOK("PutCode", f.s.PutCode(f.ctx, want))
	for range 2 {
		got, err := f.s.GetCode(f.ctx, want.Hash, base)
		if err != nil {
			f.t.Fatalf("GetCode: %v", err)
		}
		checkEqual(f.t, "code read", normCode(got), normCode(want))
	}
	_, err := f.s.GetCode(f.ctx, want.Hash, exp)
	f.wantErr("GetCode(at expiry)", err, store.ErrNotFound)
	_, err = f.s.GetCode(f.ctx, f.hash("unknown"), base)
	f.wantErr("GetCode(unknown)", err, store.ErrNotFound)
	_, err = f.s.GetCode(f.ctx, nil, base)
	f.wantErr("GetCode(nil)", err, store.ErrNotFound)

	// Still unused: a grant can be issued from it.
	g := newGrant("grant-g", "client-a", base.Add(refreshTTL))
	is := issued{code: want.Hash, g: g, at: newAccess(f.hash("g/at"), g, base.Add(accessTTL)),
		rt: newRefresh(f.hash("g/rt"), g, base.Add(refreshTTL))}
	f.wantOK("CreateGrant(from the code read)", f.s.CreateGrant(f.ctx, is.g, is.at, is.rt, is.code))
	_, err = f.s.GetCode(f.ctx, is.code, base)
	f.wantErr("GetCode(used)", err, store.ErrCodeReplayed)
	_, err = f.s.GetCode(f.ctx, is.code, exp.Add(time.Hour))
	f.wantErr("GetCode(used, after expiry)", err, store.ErrCodeReplayed)
	f.issuedLive(is)
}

// testGrantCreateFromCodeChecks: the code a grant is issued from must be
// the client's and unexpired when the grant is created; a refusal keeps
// nothing and leaves the code as it was.
func testGrantCreateFromCodeChecks(f *fixture) {
	f.putClient("client-a")
	f.putClient("client-b")
	exp := base.Add(codeTTL)
	code := f.hash("code")
	f.wantOK("PutCode", f.s.PutCode(f.ctx, newCode(code, "client-a", exp)))

	other := newGrant("grant-b", "client-b", base.Add(refreshTTL))
	at := newAccess(f.hash("b/at"), other, base.Add(accessTTL))
	rt := newRefresh(f.hash("b/rt"), other, base.Add(refreshTTL))
	if err := f.s.CreateGrant(f.ctx, other, at, rt, code); err == nil {
		f.t.Fatal("CreateGrant for another client's code succeeded")
	}
	f.accessDead(at.Hash, base)
	f.grantGone(other.ID)

	late := newGrant("grant-late", "client-a", base.Add(refreshTTL))
	late.CreatedAt = exp
	at = newAccess(f.hash("late/at"), late, base.Add(accessTTL))
	rt = newRefresh(f.hash("late/rt"), late, base.Add(refreshTTL))
	f.wantErr("CreateGrant(code expired at CreatedAt)", f.s.CreateGrant(f.ctx, late, at, rt, code), store.ErrNotFound)
	f.accessDead(at.Hash, base)
	f.grantGone(late.ID)

	// Neither refusal used the code up.
	if _, err := f.s.GetCode(f.ctx, code, base); err != nil {
		f.t.Fatalf("GetCode after refusals: %v", err)
	}
	g := newGrant("grant-a", "client-a", base.Add(refreshTTL))
	at = newAccess(f.hash("a/at"), g, base.Add(accessTTL))
	rt = newRefresh(f.hash("a/rt"), g, base.Add(refreshTTL))
	f.wantOK("CreateGrant", f.s.CreateGrant(f.ctx, g, at, rt, code))
	f.issuedLive(issued{code: code, g: g, at: at, rt: rt})
}

// testGrantCreateRace: exchanges of one code that race each get to
// CreateGrant; one wins, every other is a replay, and the replays revoke
// the winner's grant, so that no tokens from a doubly used code survive.
func testGrantCreateRace(f *fixture) {
	f.putClient("client-a")
	code := f.hash("code")
	f.wantOK("PutCode", f.s.PutCode(f.ctx, newCode(code, "client-a", base.Add(codeTTL))))
	flows := make([]issued, raceN)
	errs := race(raceN, func(i int) error {
		label := fmt.Sprintf("racer%d", i)
		g := newGrant("grant-"+label, "client-a", base.Add(refreshTTL))
		at := newAccess(f.hash(label+"/at"), g, base.Add(accessTTL))
		rt := newRefresh(f.hash(label+"/rt"), g, base.Add(refreshTTL))
		flows[i] = issued{code: code, g: g, at: at, rt: rt}
		return f.s.CreateGrant(f.ctx, g, at, rt, code)
	})
	wins, losses := f.tally("CreateGrant race", errs, store.ErrCodeReplayed)
	if wins != 1 || losses != raceN-1 {
		f.t.Fatalf("CreateGrant race: %d won, %d replayed; want exactly 1 winner", wins, losses)
	}
	for _, fl := range flows {
		f.issuedDead(fl)
	}
}

func testCodeRedeemRace(f *fixture) {
	c := newCode(f.hash("code"), "client-a", base.Add(codeTTL))
	f.wantOK("PutCode", f.s.PutCode(f.ctx, c))
	var mu sync.Mutex
	var got *store.Code
	errs := race(raceN, func(int) error {
		r, err := f.s.RedeemCode(f.ctx, c.Hash, base)
		if err == nil {
			mu.Lock()
			got = r
			mu.Unlock()
		}
		return err
	})
	wins, losses := f.tally("RedeemCode race", errs, store.ErrCodeReplayed)
	if wins != 1 || losses != raceN-1 {
		f.t.Fatalf("RedeemCode race: %d won, %d replayed; want exactly 1 winner", wins, losses)
	}
	checkEqual(f.t, "code won", normCode(got), normCode(c))
}

// --- grants and tokens -----------------------------------------------------

func testGrantCreateAndGet(f *fixture) {
	f.putClient("client-a")
	is := f.issue("client-a", "g")
	f.accessLive(is.at, base)
	f.refreshLive(is.rt, is.g, base)

	// Several grants side by side stay apart.
	is2 := f.issue("client-a", "g2")
	f.issuedLive(is)
	f.issuedLive(is2)

	// A grant without a code (codeHash nil) is allowed too.
	g := newGrant("grant-nocode", "client-a", base.Add(refreshTTL))
	at := newAccess(f.hash("nocode/at"), g, base.Add(accessTTL))
	rt := newRefresh(f.hash("nocode/rt"), g, base.Add(refreshTTL))
	f.wantOK("CreateGrant(no code)", f.s.CreateGrant(f.ctx, g, at, rt, nil))
	f.issuedLive(issued{g: g, at: at, rt: rt})
}

func testGrantCreateAllOrNothing(f *fixture) {
	f.putClient("client-a")
	first := f.issue("client-a", "first")

	// Same grant ID again: refused, and nothing of the second call stays.
	code := f.hash("code2")
	f.wantOK("PutCode", f.s.PutCode(f.ctx, newCode(code, "client-a", base.Add(codeTTL))))
	g := newGrant(first.g.ID, "client-a", base.Add(refreshTTL))
	g.Scope = "other"
	at := newAccess(f.hash("dup/at"), g, base.Add(accessTTL))
	rt := newRefresh(f.hash("dup/rt"), g, base.Add(refreshTTL))
	f.wantErr("CreateGrant(duplicate grant ID)", f.s.CreateGrant(f.ctx, g, at, rt, code), store.ErrExists)
	f.accessDead(at.Hash, base)
	f.refreshErr(rt.Hash, base, store.ErrNotFound)
	f.issuedLive(first)
	// The code was neither used up nor bound to the existing grant:
	// using it up now must not revoke the first grant.
	if _, err := f.s.RedeemCode(f.ctx, code, base); err != nil {
		f.t.Fatalf("RedeemCode after the refused CreateGrant: %v", err)
	}
	_, err := f.s.RedeemCode(f.ctx, code, base)
	f.wantErr("RedeemCode(replay)", err, store.ErrCodeReplayed)
	f.issuedLive(first)

	// Duplicate access token digest: refused, the new grant does not exist.
	g3 := newGrant("grant-3", "client-a", base.Add(refreshTTL))
	at3 := newAccess(first.at.Hash, g3, base.Add(accessTTL))
	rt3 := newRefresh(f.hash("g3/rt"), g3, base.Add(refreshTTL))
	f.wantErr("CreateGrant(duplicate access hash)", f.s.CreateGrant(f.ctx, g3, at3, rt3, nil), store.ErrExists)
	f.refreshErr(rt3.Hash, base, store.ErrNotFound)
	f.issuedLive(first)

	// Duplicate refresh token digest: same.
	g4 := newGrant("grant-4", "client-a", base.Add(refreshTTL))
	at4 := newAccess(f.hash("g4/at"), g4, base.Add(accessTTL))
	rt4 := newRefresh(first.rt.Hash, g4, base.Add(refreshTTL))
	f.wantErr("CreateGrant(duplicate refresh hash)", f.s.CreateGrant(f.ctx, g4, at4, rt4, nil), store.ErrExists)
	f.accessDead(at4.Hash, base)
	f.issuedLive(first)
}

func testGrantCreateUnknownClient(f *fixture) {
	// A grant needs its client, so that DeleteClient can never race with a
	// grant being created for it.
	g := newGrant("grant-orphan", "client-missing", base.Add(refreshTTL))
	at := newAccess(f.hash("at"), g, base.Add(accessTTL))
	rt := newRefresh(f.hash("rt"), g, base.Add(refreshTTL))
	f.wantErr("CreateGrant(unknown client)", f.s.CreateGrant(f.ctx, g, at, rt, nil), store.ErrNotFound)
	f.accessDead(at.Hash, base)
	f.refreshErr(rt.Hash, base, store.ErrNotFound)
}

func testGrantCreateUnknownCode(f *fixture) {
	f.putClient("client-a")
	g := newGrant("grant-x", "client-a", base.Add(refreshTTL))
	at := newAccess(f.hash("at"), g, base.Add(accessTTL))
	rt := newRefresh(f.hash("rt"), g, base.Add(refreshTTL))
	f.wantErr("CreateGrant(unknown code)", f.s.CreateGrant(f.ctx, g, at, rt, f.hash("nocode")), store.ErrNotFound)
	f.accessDead(at.Hash, base)
	f.refreshErr(rt.Hash, base, store.ErrNotFound)
}

func testAccessTokenExpiry(f *fixture) {
	f.putClient("client-a")
	atExp := base.Add(accessTTL)
	is := f.issueExp("client-a", "g", atExp, base.Add(refreshTTL))
	f.accessLive(is.at, atExp.Add(-time.Second))
	f.accessDead(is.at.Hash, atExp)
	f.accessDead(is.at.Hash, atExp.Add(time.Hour))
	f.accessDead(f.hash("unknown"), base)
	// Expired is told apart from unknown (for the gate's metrics).
	if _, err := f.s.GetAccessToken(f.ctx, is.at.Hash, atExp); !errors.Is(err, store.ErrExpired) {
		f.t.Errorf("GetAccessToken(expired) = %v, want ErrExpired", err)
	}
	if _, err := f.s.GetAccessToken(f.ctx, f.hash("unknown"), base); errors.Is(err, store.ErrExpired) {
		f.t.Errorf("GetAccessToken(unknown) = ErrExpired, want plain ErrNotFound")
	}
	// An expired access token does not affect the refresh token.
	f.refreshLive(is.rt, is.g, atExp.Add(time.Hour))
}

func testRefreshTokenExpiry(f *fixture) {
	f.putClient("client-a")
	rtExp := base.Add(refreshTTL)
	is := f.issueExp("client-a", "g", base.Add(accessTTL), rtExp)
	f.refreshLive(is.rt, is.g, rtExp.Add(-time.Second))
	f.refreshErr(is.rt.Hash, rtExp, store.ErrNotFound)
	f.refreshErr(is.rt.Hash, rtExp.Add(time.Hour), store.ErrNotFound)
	f.refreshErr(f.hash("unknown"), base, store.ErrNotFound)
	// Asking about an expired one is not reuse: the grant stays.
	f.issuedLive(is)
}

// --- rotation --------------------------------------------------------------

func testRotateNewPairWorks(f *fixture) {
	f.putClient("client-a")
	old := f.issue("client-a", "g")
	cur := f.rotate(old, "r1")
	f.accessLive(cur.at, base)
	f.refreshLive(cur.rt, cur.g, base)

	// And it rotates again.
	next := f.rotate(cur, "r2")
	f.issuedLive(next)
}

func testRotateUpdatesGrant(f *fixture) {
	f.putClient("client-a")
	old := f.issue("client-a", "g")
	g := *old.g
	g.Scope = "read write"
	g.ExpiresAt = base.Add(90 * 24 * time.Hour)
	g.GitHubToken = []byte("resealed github token")
	at := newAccess(f.hash("new/at"), &g, base.Add(accessTTL))
	rt := newRefresh(f.hash("new/rt"), &g, g.ExpiresAt)
	f.wantOK("RotateRefresh", f.rotateRefresh(old.rt.Hash, base, &g, at, rt))

	want := *old.g
	want.Scope = g.Scope
	want.ExpiresAt = g.ExpiresAt
	want.GitHubToken = g.GitHubToken
	want.RefreshGen, want.RotatedAt = 1, base
	f.refreshLive(rt, &want, base)
	f.accessLive(at, base)

	// Without a GitHub token in g, the grant keeps the one it has.
	g2 := want
	g2.GitHubToken = nil
	at2 := newAccess(f.hash("new2/at"), &g2, base.Add(accessTTL))
	rt2 := newRefresh(f.hash("new2/rt"), &g2, g2.ExpiresAt)
	f.wantOK("RotateRefresh", f.rotateRefresh(rt.Hash, base, &g2, at2, rt2))
	want.RefreshGen = 2
	f.refreshLive(rt2, &want, base)
}

func testRotateReuseViaGet(f *fixture) {
	f.putClient("client-a")
	old := f.issue("client-a", "g")
	other := f.issue("client-a", "other")
	cur := f.rotate(old, "r1")
	f.accessLive(cur.at, base)

	f.refreshErr(old.rt.Hash, base, store.ErrRefreshReused)
	f.issuedDead(cur)
	f.accessDead(old.at.Hash, base)
	// With its grant gone, the token is simply unknown.
	f.refreshErr(old.rt.Hash, base, store.ErrNotFound)
	f.issuedLive(other)
}

func testRotateReuseViaRotate(f *fixture) {
	f.putClient("client-a")
	old := f.issue("client-a", "g")
	other := f.issue("client-a", "other")
	cur := f.rotate(old, "r1")

	g := *old.g
	at := newAccess(f.hash("thief/at"), &g, base.Add(accessTTL))
	rt := newRefresh(f.hash("thief/rt"), &g, base.Add(refreshTTL))
	f.accessLive(cur.at, base)
	f.wantErr("RotateRefresh(rotated token)", f.rotateRefresh(old.rt.Hash, base, &g, at, rt), store.ErrRefreshReused)

	f.issuedDead(cur)
	f.accessDead(at.Hash, base)
	f.refreshErr(rt.Hash, base, store.ErrNotFound)
	f.issuedLive(other)
}

func testRotateExpiredOrUnknown(f *fixture) {
	f.putClient("client-a")
	rtExp := base.Add(refreshTTL)
	is := f.issueExp("client-a", "g", base.Add(accessTTL), rtExp)
	g := *is.g
	at := newAccess(f.hash("new/at"), &g, rtExp.Add(accessTTL))
	rt := newRefresh(f.hash("new/rt"), &g, rtExp.Add(refreshTTL))

	f.wantErr("RotateRefresh(expired)", f.rotateRefresh(is.rt.Hash, rtExp, &g, at, rt), store.ErrNotFound)
	f.wantErr("RotateRefresh(unknown)", f.rotateRefresh(f.hash("unknown"), base, &g, at, rt), store.ErrNotFound)
	// Neither stored the new pair, nor harmed the grant.
	f.accessDead(at.Hash, base)
	f.refreshErr(rt.Hash, base, store.ErrNotFound)
	f.issuedLive(is)
}

func testRotateRevokedGrant(f *fixture) {
	f.putClient("client-a")
	is := f.issue("client-a", "g")
	f.wantOK("RevokeGrant", f.s.RevokeGrant(f.ctx, is.g.ID))
	g := *is.g
	at := newAccess(f.hash("new/at"), &g, base.Add(accessTTL))
	rt := newRefresh(f.hash("new/rt"), &g, base.Add(refreshTTL))
	f.wantErr("RotateRefresh(revoked grant)", f.rotateRefresh(is.rt.Hash, base, &g, at, rt), store.ErrNotFound)
	f.accessDead(at.Hash, base)
	f.refreshErr(rt.Hash, base, store.ErrNotFound)
}

func testRotateRace(f *fixture) {
	f.putClient("client-a")
	old := f.issue("client-a", "g")
	other := f.issue("client-a", "other")

	g := *old.g
	ats := make([]*store.AccessToken, raceN)
	rts := make([]*store.RefreshToken, raceN)
	for i := range raceN {
		ats[i] = newAccess(f.hash(fmt.Sprintf("race%d/at", i)), &g, base.Add(accessTTL))
		rts[i] = newRefresh(f.hash(fmt.Sprintf("race%d/rt", i)), &g, base.Add(refreshTTL))
	}
	errs := race(raceN, func(i int) error {
		gi := g // each caller builds its own grant value
		return f.rotateRefresh(old.rt.Hash, base, &gi, ats[i], rts[i])
	})
	// One rotates; the first loser after it finds the token reused and
	// revokes the grant; later ones find it gone.
	wins, reused, gone := 0, 0, 0
	for i, err := range errs {
		switch {
		case err == nil:
			wins++
		case errors.Is(err, store.ErrRefreshReused):
			reused++
		case errors.Is(err, store.ErrNotFound):
			gone++
		default:
			f.t.Errorf("RotateRefresh race: goroutine %d: unexpected error %v", i, err)
		}
	}
	if wins != 1 || reused < 1 || wins+reused+gone != raceN {
		f.t.Fatalf("RotateRefresh race: %d won, %d reused, %d gone; want exactly 1 winner and a reuse", wins, reused, gone)
	}
	// The losers' reuse revoked the grant, so even the winner's pair is dead:
	// two parties holding the same refresh token is what theft looks like.
	for i := range raceN {
		f.accessDead(ats[i].Hash, base)
		f.refreshErr(rts[i].Hash, base, store.ErrNotFound)
	}
	f.accessDead(old.at.Hash, base)
	f.issuedLive(other)
}

// --- revocation ------------------------------------------------------------

func testRevokeAccessToken(f *fixture) {
	f.putClient("client-a")
	first := f.issue("client-a", "g")
	cur := f.rotate(first, "r1") // the grant now has two access tokens
	other := f.issue("client-a", "other")
	f.accessLive(cur.at, base)

	f.wantOK("RevokeAccessToken", f.s.RevokeAccessToken(f.ctx, cur.at.Hash))
	f.accessDead(cur.at.Hash, base)
	f.accessLive(first.at, base)
	f.refreshLive(cur.rt, cur.g, base)
	f.issuedLive(other)

	f.wantOK("RevokeAccessToken(again)", f.s.RevokeAccessToken(f.ctx, cur.at.Hash))
	f.wantOK("RevokeAccessToken(unknown)", f.s.RevokeAccessToken(f.ctx, f.hash("unknown")))
	f.accessLive(first.at, base)
}

func testRevokeGrant(f *fixture) {
	f.putClient("client-a")
	first := f.issue("client-a", "g")
	cur := f.rotate(first, "r1")
	other := f.issue("client-a", "other")
	f.accessLive(first.at, base)
	f.accessLive(cur.at, base)

	f.wantOK("RevokeGrant", f.s.RevokeGrant(f.ctx, cur.g.ID))
	f.accessDead(first.at.Hash, base)
	f.issuedDead(cur)
	f.issuedLive(other)

	f.wantOK("RevokeGrant(again)", f.s.RevokeGrant(f.ctx, cur.g.ID))
	f.wantOK("RevokeGrant(unknown)", f.s.RevokeGrant(f.ctx, "grant-unknown"))
	f.issuedLive(other)
}

// --- sweep -----------------------------------------------------------------

// testSweep stores records that are expired at sweep time T = base+1h and
// records that are still live at T, sweeps at T, and then looks them up at
// base, when all of them would be live if they were still stored. That
// tells removal apart from the lookups' own expiry checks.
func testSweep(f *fixture) {
	f.putClient("client-a")
	T := base.Add(time.Hour)
	soon := base.Add(30 * time.Minute) // expired at T
	later := base.Add(3 * time.Hour)   // live at T

	pendGone := newPending(f.hash("pend-gone"), "client-a", soon)
	pendKept := newPending(f.hash("pend-kept"), "client-a", later)
	codeGone := newCode(f.hash("code-gone"), "client-a", soon)
	codeKept := newCode(f.hash("code-kept"), "client-a", later)
	for _, p := range []*store.Pending{pendGone, pendKept} {
		f.wantOK("PutPending", f.s.PutPending(f.ctx, p))
	}
	for _, c := range []*store.Code{codeGone, codeKept} {
		f.wantOK("PutCode", f.s.PutCode(f.ctx, c))
	}
	grantGone := f.issueExp("client-a", "grant-gone", soon, soon)           // the whole grant lapses
	atGone := f.issueExp("client-a", "at-gone", soon, later)                // only its access token expires
	kept := f.issueExp("client-a", "kept", later, later)                    // all live
	rotated := f.issueExp("client-a", "rotated", base.Add(accessTTL), soon) // its old refresh expires
	g := *rotated.g
	g.ExpiresAt = later
	rotAT := newAccess(f.hash("rotated2/at"), &g, later)
	rotRT := newRefresh(f.hash("rotated2/rt"), &g, later)
	f.wantOK("RotateRefresh", f.rotateRefresh(rotated.rt.Hash, base, &g, rotAT, rotRT))
	g.RefreshGen, g.RotatedAt = 1, base
	rotatedNew := issued{g: &g, at: rotAT, rt: rotRT}
	// A grant that lapses while its tokens would still be live: removing
	// the grant takes its tokens down.
	lapsedG := newGrant("grant-lapsed", "client-a", soon)
	lapsed := issued{
		g:  lapsedG,
		at: newAccess(f.hash("lapsed/at"), lapsedG, later),
		rt: newRefresh(f.hash("lapsed/rt"), lapsedG, later),
	}
	f.wantOK("CreateGrant(lapsed)", f.s.CreateGrant(f.ctx, lapsed.g, lapsed.at, lapsed.rt, nil))

	// Nothing has expired at base.
	n, err := f.s.Sweep(f.ctx, base)
	f.wantOK("Sweep(base)", err)
	if n != 0 {
		f.t.Errorf("Sweep(base) removed %d records, want 0: nothing has expired yet", n)
	}
	f.accessLive(lapsed.at, base) // read, so a token cache holds it

	n, err = f.s.Sweep(f.ctx, T)
	f.wantOK("Sweep(T)", err)
	if n <= 0 {
		f.t.Errorf("Sweep(T) removed %d records, want a positive count", n)
	}
	n, err = f.s.Sweep(f.ctx, T)
	f.wantOK("Sweep(T) again", err)
	if n != 0 {
		f.t.Errorf("second Sweep(T) removed %d records, want 0", n)
	}

	// Removed: these would all be live at base if they were still stored.
	_, err = f.s.TakePending(f.ctx, pendGone.StateHash, base)
	f.wantErr("TakePending(swept)", err, store.ErrNotFound)
	_, err = f.s.RedeemCode(f.ctx, codeGone.Hash, base)
	f.wantErr("RedeemCode(swept)", err, store.ErrNotFound)
	f.issuedDead(grantGone)
	f.issuedDead(lapsed)
	f.accessDead(atGone.at.Hash, base)
	// A swept rotated token is simply unknown: not reuse, the grant stays.
	f.refreshErr(rotated.rt.Hash, base, store.ErrNotFound)

	// Kept: still work.
	got, err := f.s.TakePending(f.ctx, pendKept.StateHash, base)
	if f.wantOK("TakePending(kept)", err); err == nil {
		checkEqual(f.t, "kept pending", normPending(got), normPending(pendKept))
	}
	gotCode, err := f.s.RedeemCode(f.ctx, codeKept.Hash, base)
	if f.wantOK("RedeemCode(kept)", err); err == nil {
		checkEqual(f.t, "kept code", normCode(gotCode), normCode(codeKept))
	}
	f.refreshLive(atGone.rt, atGone.g, base)
	f.issuedLive(kept)
	f.issuedLive(rotatedNew)
}

// testClientUnusedCollected: a client without a grant is swept
// UnusedClientTTL after it registered; one with a grant is kept while the
// grant lives and for IdleClientTTL after it ends, and refreshing the
// grant keeps it longer still.
func testClientUnusedCollected(f *fixture) {
	unused := f.putClient("client-unused") // registered at base-1h
	f.putClient("client-used")
	f.putClient("client-refreshed")
	used := f.issue("client-used", "used") // grant lapses at base+refreshTTL
	refreshed := f.issue("client-refreshed", "refreshed")
	f.rotate(refreshed, "refreshed2") // grant now lapses at base+2*refreshTTL

	sweep := func(at time.Time) {
		f.t.Helper()
		_, err := f.s.Sweep(f.ctx, at)
		f.wantOK("Sweep", err)
	}
	exists := func(id string) bool {
		f.t.Helper()
		_, err := f.s.GetClient(f.ctx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			f.t.Fatalf("GetClient(%s): %v", id, err)
		}
		return err == nil
	}

	sweep(unused.CreatedAt.Add(store.UnusedClientTTL - time.Minute))
	if !exists("client-unused") {
		f.t.Errorf("an unused client was swept before UnusedClientTTL")
	}
	sweep(unused.CreatedAt.Add(store.UnusedClientTTL + time.Minute))
	if exists("client-unused") {
		f.t.Errorf("an unused client survived UnusedClientTTL")
	}
	if !exists("client-used") || !exists("client-refreshed") {
		f.t.Fatalf("a client with a live grant was swept")
	}

	// The grant lapses; the client stays for IdleClientTTL (less the
	// day a store may lag by) after that.
	lapse := used.g.ExpiresAt
	sweep(lapse.Add(time.Hour))
	f.issuedDead(used)
	if !exists("client-used") {
		f.t.Errorf("a client was swept as soon as its grant lapsed")
	}
	sweep(lapse.Add(store.IdleClientTTL - 25*time.Hour))
	if !exists("client-used") {
		f.t.Errorf("a client was swept within IdleClientTTL of its last grant")
	}
	if !exists("client-refreshed") {
		f.t.Errorf("a client whose grant was refreshed was swept")
	}
	sweep(lapse.Add(store.IdleClientTTL + time.Hour))
	if exists("client-used") {
		f.t.Errorf("a client survived IdleClientTTL after its last grant")
	}
	if !exists("client-refreshed") {
		f.t.Errorf("a client whose grant was refreshed was swept with the others")
	}
}

// --- consents --------------------------------------------------------------

func newConsent(key []byte, userID int64, clientID string, exp time.Time) *store.Consent {
	return &store.Consent{Key: key, UserID: userID, ClientID: clientID, Resource: "https://mcp.example/mcp",
		Scope: "read", CreatedAt: base, ExpiresAt: exp}
}

func (f *fixture) consentLive(c *store.Consent, now time.Time) {
	f.t.Helper()
	got, err := f.s.GetConsent(f.ctx, c.Key, now)
	if f.wantOK("GetConsent", err); err == nil {
		checkEqual(f.t, "consent", normConsent(got), normConsent(c))
	}
}

func (f *fixture) consentDead(key []byte, now time.Time) {
	f.t.Helper()
	_, err := f.s.GetConsent(f.ctx, key, now)
	f.wantErr("GetConsent", err, store.ErrNotFound)
}

func normConsent(c *store.Consent) store.Consent {
	n := *c
	n.Key = normBytes(c.Key)
	n.CreatedAt, n.ExpiresAt = normTime(c.CreatedAt), normTime(c.ExpiresAt)
	return n
}

// testConsentPutGetWithdraw: consents read back whole; withdrawing one
// client's removes exactly those of that user and client; withdrawing all
// of a user's leaves other users'; a replaced consent moves to its new
// user.
func testConsentPutGetWithdraw(f *fixture) {
	exp := base.Add(30 * 24 * time.Hour)
	a1 := newConsent(f.hash("a1"), 1, "client-a", exp)
	a2 := newConsent(f.hash("a2"), 1, "client-a", exp)
	b1 := newConsent(f.hash("b1"), 1, "client-b", exp)
	other := newConsent(f.hash("o"), 2, "client-a", exp)
	moved := newConsent(f.hash("m"), 1, "client-b", exp)
	for _, c := range []*store.Consent{a1, a2, b1, other, moved} {
		f.wantOK("PutConsent", f.s.PutConsent(f.ctx, c))
	}
	// Replace "moved" with a record for user 3: withdrawing user 1's
	// consents must no longer touch it.
	moved = newConsent(moved.Key, 3, "client-b", exp)
	f.wantOK("PutConsent(replace)", f.s.PutConsent(f.ctx, moved))
	for _, c := range []*store.Consent{a1, a2, b1, other, moved} {
		f.consentLive(c, base)
	}
	f.consentDead(f.hash("unknown"), base)
	f.consentDead(nil, base)

	n, err := f.s.WithdrawConsents(f.ctx, 1, "client-a")
	f.wantOK("WithdrawConsents(1, client-a)", err)
	if n != 2 {
		f.t.Errorf("WithdrawConsents(1, client-a) = %d, want 2", n)
	}
	f.consentDead(a1.Key, base)
	f.consentDead(a2.Key, base)
	f.consentLive(b1, base)
	f.consentLive(other, base)

	n, err = f.s.WithdrawConsents(f.ctx, 1, "")
	f.wantOK("WithdrawConsents(1, all)", err)
	if n != 1 {
		f.t.Errorf("WithdrawConsents(1, all) = %d, want 1", n)
	}
	f.consentDead(b1.Key, base)
	f.consentLive(other, base)
	f.consentLive(moved, base)

	n, err = f.s.WithdrawConsents(f.ctx, 99, "")
	f.wantOK("WithdrawConsents(unknown user)", err)
	if n != 0 {
		f.t.Errorf("WithdrawConsents(unknown user) = %d, want 0", n)
	}
}

// testConsentExpiredAndSwept: an expired consent is not returned, Sweep
// removes it, and withdrawing afterwards counts only the live one.
func testConsentExpiredAndSwept(f *fixture) {
	soon := newConsent(f.hash("soon"), 1, "client-a", base.Add(time.Hour))
	later := newConsent(f.hash("later"), 1, "client-a", base.Add(3*time.Hour))
	f.wantOK("PutConsent", f.s.PutConsent(f.ctx, soon))
	f.wantOK("PutConsent", f.s.PutConsent(f.ctx, later))
	f.consentDead(soon.Key, base.Add(time.Hour))
	_, err := f.s.Sweep(f.ctx, base.Add(2*time.Hour))
	f.wantOK("Sweep", err)
	f.consentDead(soon.Key, base) // gone, not merely expired
	f.consentLive(later, base)
	n, err := f.s.WithdrawConsents(f.ctx, 1, "client-a")
	f.wantOK("WithdrawConsents", err)
	if n != 1 {
		f.t.Errorf("WithdrawConsents after Sweep = %d, want 1 (only the live one)", n)
	}
}

// --- robustness ------------------------------------------------------------

func testEmptyAndNil(f *fixture) {
	f.putClient("client-a")
	ok := f.issue("client-a", "g")

	_, err := f.s.GetClient(f.ctx, "")
	f.wantErr("GetClient(\"\")", err, store.ErrNotFound)
	f.wantErr("DeleteClient(\"\")", f.s.DeleteClient(f.ctx, ""), store.ErrNotFound)
	_, err = f.s.TakePending(f.ctx, nil, base)
	f.wantErr("TakePending(nil)", err, store.ErrNotFound)
	_, err = f.s.RedeemCode(f.ctx, nil, base)
	f.wantErr("RedeemCode(nil)", err, store.ErrNotFound)
	_, err = f.s.RedeemCode(f.ctx, []byte{}, base)
	f.wantErr("RedeemCode(empty)", err, store.ErrNotFound)
	f.accessDead(nil, base)
	f.accessDead([]byte{}, base)
	f.refreshErr(nil, base, store.ErrNotFound)
	f.refreshErr([]byte{}, base, store.ErrNotFound)
	g := *ok.g
	f.wantErr("RotateRefresh(nil)", f.rotateRefresh(nil, base, &g,
		newAccess(f.hash("n/at"), &g, base.Add(accessTTL)),
		newRefresh(f.hash("n/rt"), &g, base.Add(refreshTTL))), store.ErrNotFound)
	f.wantOK("RevokeAccessToken(nil)", f.s.RevokeAccessToken(f.ctx, nil))
	f.wantOK("RevokeGrant(\"\")", f.s.RevokeGrant(f.ctx, ""))

	// Records without a key, or no record at all, are refused.
	if err := f.s.PutClient(f.ctx, nil); err == nil {
		f.t.Error("PutClient(nil) succeeded")
	}
	if err := f.s.PutClient(f.ctx, &store.Client{}); err == nil {
		f.t.Error("PutClient(no ID) succeeded")
	}
	if err := f.s.PutPending(f.ctx, nil); err == nil {
		f.t.Error("PutPending(nil) succeeded")
	}
	if err := f.s.PutPending(f.ctx, newPending(nil, "client-a", base.Add(pendingTTL))); err == nil {
		f.t.Error("PutPending(no hash) succeeded")
	}
	if err := f.s.PutCode(f.ctx, nil); err == nil {
		f.t.Error("PutCode(nil) succeeded")
	}
	if err := f.s.PutCode(f.ctx, newCode(nil, "client-a", base.Add(codeTTL))); err == nil {
		f.t.Error("PutCode(no hash) succeeded")
	}
	g2 := newGrant("grant-2", "client-a", base.Add(refreshTTL))
	at2 := newAccess(f.hash("2/at"), g2, base.Add(accessTTL))
	rt2 := newRefresh(f.hash("2/rt"), g2, base.Add(refreshTTL))
	if err := f.s.CreateGrant(f.ctx, nil, at2, rt2, nil); err == nil {
		f.t.Error("CreateGrant(nil grant) succeeded")
	}
	if err := f.s.CreateGrant(f.ctx, g2, nil, rt2, nil); err == nil {
		f.t.Error("CreateGrant(nil access token) succeeded")
	}
	if err := f.s.CreateGrant(f.ctx, g2, at2, nil, nil); err == nil {
		f.t.Error("CreateGrant(nil refresh token) succeeded")
	}
	noHash := newAccess(nil, g2, base.Add(accessTTL))
	if err := f.s.CreateGrant(f.ctx, g2, noHash, rt2, nil); err == nil {
		f.t.Error("CreateGrant(access token without hash) succeeded")
	}
	if err := f.rotateRefresh(ok.rt.Hash, base, nil, nil, nil); err == nil {
		f.t.Error("RotateRefresh(nil records) succeeded")
	}
	// None of that disturbed the live grant.
	f.issuedLive(ok)
}

// testConcurrentFlows runs independent flows at once, with some calls that
// fail (duplicate client registrations) mixed in, so that a backend that
// groups concurrent writes into one transaction shows whether it keeps each
// caller's outcome apart.
func testConcurrentFlows(f *fixture) {
	f.putClient("client-a")
	const n = 24
	flows := make([]issued, n)
	errs := race(n, func(i int) error {
		if i%3 == 0 {
			// Expected to fail with ErrExists; checked below.
			if err := f.s.PutClient(f.ctx, newClient("client-a")); !errors.Is(err, store.ErrExists) {
				return fmt.Errorf("duplicate PutClient: got %v, want ErrExists", err)
			}
		}
		label := fmt.Sprintf("flow%d", i)
		code := f.hash(label + "/code")
		if err := f.s.PutCode(f.ctx, newCode(code, "client-a", base.Add(codeTTL))); err != nil {
			return fmt.Errorf("PutCode: %w", err)
		}
		if _, err := f.s.GetCode(f.ctx, code, base); err != nil {
			return fmt.Errorf("GetCode: %w", err)
		}
		g := newGrant("grant-"+label, "client-a", base.Add(refreshTTL))
		at := newAccess(f.hash(label+"/at"), g, base.Add(accessTTL))
		rt := newRefresh(f.hash(label+"/rt"), g, base.Add(refreshTTL))
		if err := f.s.CreateGrant(f.ctx, g, at, rt, code); err != nil {
			return fmt.Errorf("CreateGrant: %w", err)
		}
		if _, err := f.s.GetAccessToken(f.ctx, at.Hash, base); err != nil {
			return fmt.Errorf("GetAccessToken: %w", err)
		}
		flows[i] = issued{code: code, g: g, at: at, rt: rt}
		return nil
	})
	for i, err := range errs {
		if err != nil {
			f.t.Errorf("flow %d: %v", i, err)
		}
	}
	if f.t.Failed() {
		return
	}
	for _, is := range flows {
		f.issuedLive(is)
	}
}
