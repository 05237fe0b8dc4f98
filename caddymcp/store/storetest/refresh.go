package storetest

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// The refresh rules with a grace period for retries (store/refresh.go):
// a client whose answer was lost, or two of its processes refreshing at
// once, must not be taken for a thief; a thief presenting a token after
// its successor was used, or long after, still is.

const (
	grace      = 30 * time.Second
	maxRetries = 3
)

// graceUse is a presentation of a refresh token by clientID at now with
// the suite's grace period.
func graceUse(clientID string, now time.Time) store.RefreshUse {
	return store.RefreshUse{ClientID: clientID, Now: now, Grace: grace, MaxRetries: maxRetries}
}

// refreshWith presents is's refresh token by use and, unless the store
// refuses it, answers it with a new pair labelled label. It returns the
// verdict the store acted on, the new state and the error.
func (f *fixture) refreshWith(is issued, use store.RefreshUse, label string) (store.RefreshVerdict, issued, error) {
	f.t.Helper()
	g := *is.g
	g.ExpiresAt = use.Now.Add(refreshTTL)
	at := newAccess(f.hash(label+"/at"), &g, use.Now.Add(accessTTL))
	rt := newRefresh(f.hash(label+"/rt"), &g, g.ExpiresAt)
	v, err := f.s.RotateRefresh(f.ctx, is.rt.Hash, use, &g, at, rt)
	return v, issued{code: is.code, g: &g, at: at, rt: rt}, err
}

// verdict asserts what GetRefreshToken says of hash presented by use.
func (f *fixture) verdict(what string, hash []byte, use store.RefreshUse, want store.RefreshVerdict) {
	f.t.Helper()
	_, _, v, err := f.s.GetRefreshToken(f.ctx, hash, use)
	if err != nil || v != want {
		f.t.Errorf("%s: GetRefreshToken = verdict %d, %v; want verdict %d", what, v, err, want)
	}
}

// refreshOK refreshes and fails the test unless the store answered with
// verdict want.
func (f *fixture) refreshOK(what string, is issued, use store.RefreshUse, label string, want store.RefreshVerdict) issued {
	f.t.Helper()
	v, next, err := f.refreshWith(is, use, label)
	if err != nil || v != want {
		f.t.Fatalf("%s: RotateRefresh = verdict %d, %v; want verdict %d", what, v, err, want)
	}
	return next
}

// testRefreshRetryWithinGrace: a rotated token presented again within
// the grace, its successor unused, gets a new token beside the
// successor, and either then works.
func testRefreshRetryWithinGrace(f *fixture) {
	f.putClient("client-a")
	other := f.issue("client-a", "other")
	a := f.issue("client-a", "a")
	b := f.refreshOK("first refresh", a, graceUse("client-a", base), "b", store.RefreshLive)
	later := base.Add(grace - time.Second)
	f.verdict("the rotated token, within the grace", a.rt.Hash, graceUse("client-a", later), store.RefreshRetry)
	c := f.refreshOK("retry", a, graceUse("client-a", later), "c", store.RefreshRetry)
	if b.rt.Gen != c.rt.Gen {
		f.t.Errorf("the retry's token is of generation %d, the successor's %d: want one generation", c.rt.Gen, b.rt.Gen)
	}
	// Both answers' tokens are live, and so are all access tokens.
	f.verdict("the successor", b.rt.Hash, graceUse("client-a", later), store.RefreshLive)
	f.verdict("the retry's token", c.rt.Hash, graceUse("client-a", later), store.RefreshLive)
	for _, at := range []*store.AccessToken{a.at, b.at, c.at} {
		f.accessLive(at, later)
	}
	// Using the retry's token rotates the generation; the successor is
	// now the rotated one, within the grace of that rotation.
	d := f.refreshOK("refresh of the retry's token", c, graceUse("client-a", later), "d", store.RefreshLive)
	f.verdict("the successor after its sibling was used", b.rt.Hash, graceUse("client-a", later), store.RefreshRetry)
	f.refreshOK("refresh of the new token", d, graceUse("client-a", later), "e", store.RefreshLive)
	f.issuedLive(other)
}

// testRefreshReuseAfterSuccessorUsed: once a token of the next
// generation was used, presenting the old one again is reuse.
func testRefreshReuseAfterSuccessorUsed(f *fixture) {
	f.putClient("client-a")
	other := f.issue("client-a", "other")
	a := f.issue("client-a", "a")
	b := f.refreshOK("first refresh", a, graceUse("client-a", base), "b", store.RefreshLive)
	c := f.refreshOK("refresh of the successor", b, graceUse("client-a", base), "c", store.RefreshLive)
	_, _, err := f.refreshWith(a, graceUse("client-a", base.Add(time.Second)), "thief")
	f.wantErr("RotateRefresh(token whose successor was used)", err, store.ErrRefreshReused)
	f.issuedDead(c)
	f.accessDead(b.at.Hash, base)
	f.accessDead(f.hash("thief/at"), base)
	f.grantGone(a.g.ID)
	f.issuedLive(other)

	// The same through GetRefreshToken.
	x := f.issue("client-a", "x")
	y := f.refreshOK("first refresh", x, graceUse("client-a", base), "y", store.RefreshLive)
	f.refreshOK("refresh of the successor", y, graceUse("client-a", base), "z", store.RefreshLive)
	_, _, _, err = f.s.GetRefreshToken(f.ctx, x.rt.Hash, graceUse("client-a", base))
	f.wantErr("GetRefreshToken(token whose successor was used)", err, store.ErrRefreshReused)
	f.grantGone(x.g.ID)
}

// testRefreshReuseAfterGrace: past the grace, presenting a rotated token
// is reuse, and with no grace at all it always is.
func testRefreshReuseAfterGrace(f *fixture) {
	f.putClient("client-a")
	a := f.issue("client-a", "a")
	b := f.refreshOK("first refresh", a, graceUse("client-a", base), "b", store.RefreshLive)
	_, _, err := f.refreshWith(a, graceUse("client-a", base.Add(grace+time.Second)), "late")
	f.wantErr("RotateRefresh(after the grace)", err, store.ErrRefreshReused)
	f.issuedDead(b)

	// No grace, though retries are allowed and no time has passed.
	noGrace := store.RefreshUse{ClientID: "client-a", Now: base, MaxRetries: maxRetries}
	x := f.issue("client-a", "x")
	y := f.refreshOK("first refresh", x, noGrace, "y", store.RefreshLive)
	_, _, err = f.refreshWith(x, noGrace, "strict")
	f.wantErr("RotateRefresh(no grace)", err, store.ErrRefreshReused)
	f.issuedDead(y)
}

// testRefreshRetriesBounded: one generation serves at most MaxRetries
// retries; the next presentation is reuse.
func testRefreshRetriesBounded(f *fixture) {
	f.putClient("client-a")
	a := f.issue("client-a", "a")
	b := f.refreshOK("first refresh", a, graceUse("client-a", base), "b", store.RefreshLive)
	var retries []issued
	for i := range maxRetries {
		retries = append(retries, f.refreshOK(fmt.Sprintf("retry %d", i), a, graceUse("client-a", base), fmt.Sprintf("r%d", i), store.RefreshRetry))
	}
	_, _, err := f.refreshWith(a, graceUse("client-a", base), "one-too-many")
	f.wantErr("RotateRefresh(a retry too many)", err, store.ErrRefreshReused)
	f.issuedDead(b)
	for _, r := range retries {
		f.issuedDead(r)
	}
}

// testRefreshOtherClient: a token presented by a client it was not
// issued to is unknown to that client, and changes nothing, however
// rotated it is (RFC 7009 section 2.1): it must not revoke its owner's
// grant.
func testRefreshOtherClient(f *fixture) {
	f.putClient("client-a")
	f.putClient("client-b")
	a := f.issue("client-a", "a")
	b := f.refreshOK("first refresh", a, graceUse("client-a", base), "b", store.RefreshLive)
	c := f.refreshOK("refresh of the successor", b, graceUse("client-a", base), "c", store.RefreshLive)
	for _, tok := range []issued{a, b, c} {
		_, _, _, err := f.s.GetRefreshToken(f.ctx, tok.rt.Hash, strict("client-b", base))
		f.wantErr("GetRefreshToken(by another client)", err, store.ErrNotFound)
		_, _, err = f.refreshWith(tok, strict("client-b", base), "b-"+short(tok.rt.Hash))
		f.wantErr("RotateRefresh(by another client)", err, store.ErrNotFound)
	}
	// The owner's grant is whole.
	f.verdict("the owner's live token", c.rt.Hash, graceUse("client-a", base), store.RefreshLive)
	f.accessLive(c.at, base)
}

// testRefreshRaceWithGrace: concurrent refreshes of one token, as two
// processes sharing a token store make them, all succeed up to the
// retry bound, and every token they got works; the rest are reuse (or
// find the grant that reuse revoked already gone).
func testRefreshRaceWithGrace(f *fixture) {
	f.putClient("client-a")
	for _, n := range []int{2, maxRetries + 1} {
		is := f.issue("client-a", fmt.Sprintf("two-%d", n))
		results := make([]issued, n)
		verdicts := make([]store.RefreshVerdict, n)
		errs := race(n, func(i int) error {
			var err error
			verdicts[i], results[i], err = f.refreshWith(is, graceUse("client-a", base), fmt.Sprintf("race%d-%d", n, i))
			return err
		})
		live, retry := 0, 0
		for i, err := range errs {
			if err != nil {
				f.t.Errorf("race of %d: refresh %d failed: %v", n, i, err)
				continue
			}
			switch verdicts[i] {
			case store.RefreshLive:
				live++
			case store.RefreshRetry:
				retry++
			}
			f.accessLive(results[i].at, base)
		}
		if live != 1 || retry != n-1 {
			f.t.Errorf("race of %d: %d rotations and %d retries, want 1 and %d", n, live, retry, n-1)
		}
		for i := range n {
			f.verdict("a racer's token", results[i].rt.Hash, graceUse("client-a", base), store.RefreshLive)
		}
	}

	// Past the bound, the extra racers are reuse, and the grant goes.
	is := f.issue("client-a", "many")
	errs := race(raceN, func(i int) error {
		_, _, err := f.refreshWith(is, graceUse("client-a", base), fmt.Sprintf("many%d", i))
		return err
	})
	ok, refused := 0, 0
	for i, err := range errs {
		switch {
		case err == nil:
			ok++
		case errors.Is(err, store.ErrRefreshReused), errors.Is(err, store.ErrNotFound):
			refused++
		default:
			f.t.Errorf("race of %d: refresh %d: unexpected error %v", raceN, i, err)
		}
	}
	if ok > maxRetries+1 || refused == 0 {
		f.t.Errorf("race of %d: %d succeeded and %d were refused; want at most %d successes", raceN, ok, refused, maxRetries+1)
	}
	f.grantGone(is.g.ID)
}

// testRefreshLegacyRotated: a token marked rotated by an earlier release
// (which kept no generations) is always reuse, even within the grace.
func testRefreshLegacyRotated(f *fixture) {
	f.putClient("client-a")
	g := newGrant("grant-legacy", "client-a", base.Add(refreshTTL))
	at := newAccess(f.hash("legacy/at"), g, base.Add(accessTTL))
	rt := newRefresh(f.hash("legacy/rt"), g, base.Add(refreshTTL))
	rt.Rotated = true
	f.wantOK("CreateGrant", f.s.CreateGrant(f.ctx, g, at, rt, nil))
	_, _, _, err := f.s.GetRefreshToken(f.ctx, rt.Hash, graceUse("client-a", base))
	f.wantErr("GetRefreshToken(legacy rotated)", err, store.ErrRefreshReused)
	f.grantGone(g.ID)
}

// testRefreshFollowsUser: a refresh records the user's current login,
// name and email (the grant follows the numeric ID), so listing by login
// finds the grant under the new login and not the old; a profile of
// another user ID is never copied in.
func testRefreshFollowsUser(f *fixture) {
	f.putClient("client-a")
	a := f.issue("client-a", "a")
	g := *a.g
	g.User.Login, g.User.Name, g.User.Email = "renamed", "Renamed Cat", "renamed@example.com"
	g.CheckedAt = base
	at := newAccess(f.hash("b/at"), &g, base.Add(accessTTL))
	rt := newRefresh(f.hash("b/rt"), &g, base.Add(refreshTTL))
	if _, err := f.s.RotateRefresh(f.ctx, a.rt.Hash, graceUse("client-a", base), &g, at, rt); err != nil {
		f.t.Fatal(err)
	}
	got, err := f.s.GetGrant(f.ctx, a.g.ID, base)
	if err != nil {
		f.t.Fatal(err)
	}
	if got.User.Login != "renamed" || got.User.Name != "Renamed Cat" || got.User.ID != testUser.ID || !got.CheckedAt.Equal(base) {
		f.t.Errorf("grant after the refresh: %+v", got.User)
	}
	for login, want := range map[string]int{"renamed": 1, "RENAMED": 1, testUser.Login: 0} {
		list, err := f.s.ListGrants(f.ctx, store.GrantFilter{UserLogin: login}, base)
		if err != nil || len(list) != want {
			f.t.Errorf("ListGrants(login %q) = %d grants, %v; want %d", login, len(list), err, want)
		}
	}
	n, err := f.s.RevokeGrants(f.ctx, store.GrantFilter{UserLogin: "renamed"})
	if err != nil || n != 1 {
		f.t.Errorf("RevokeGrants(new login) = %d, %v; want 1", n, err)
	}

	// Another user's profile is not taken.
	x := f.issue("client-a", "x")
	h := *x.g
	h.User = store.Identity{ID: testUser.ID + 1, Login: "intruder"}
	at = newAccess(f.hash("y/at"), &h, base.Add(accessTTL))
	rt = newRefresh(f.hash("y/rt"), &h, base.Add(refreshTTL))
	if _, err := f.s.RotateRefresh(f.ctx, x.rt.Hash, graceUse("client-a", base), &h, at, rt); err != nil {
		f.t.Fatal(err)
	}
	if got, err := f.s.GetGrant(f.ctx, x.g.ID, base); err != nil || got.User != testUser {
		f.t.Errorf("grant after a refresh naming another user ID: %+v, %v", got, err)
	}
}
