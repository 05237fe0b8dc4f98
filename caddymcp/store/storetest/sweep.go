package storetest

import (
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Sweep: expired records go, live ones stay.

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
