package storetest

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Access and refresh tokens: expiry, strict rotation and its reuse
// detection (the grace rules are in refresh.go), and revoking one access
// token.

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
