package storetest

import (
	"errors"
	"fmt"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Empty and nil arguments, and many independent flows at once.

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
