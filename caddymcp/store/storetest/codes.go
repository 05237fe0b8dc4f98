package storetest

import (
	"sync"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Pending sign-ins and authorization codes: single use, expiry,
// duplicates, and a replayed code revoking what it issued.

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
