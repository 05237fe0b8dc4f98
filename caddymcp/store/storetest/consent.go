package storetest

import (
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Consents: a user's remembered approval of a client, withdrawn and swept.

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
