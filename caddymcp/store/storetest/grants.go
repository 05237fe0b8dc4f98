package storetest

import (
	"fmt"
	"strings"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Grants: created with their first tokens from a code, all or nothing,
// read back and revoked.

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
