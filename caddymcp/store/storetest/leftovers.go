package storetest

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// The ledger of leftovers (store/leftovers.go): per client address, the
// records an anonymous caller left that have not come to anything.

func leftover(kind, addr, key string, exp time.Time) *store.Leftover {
	return &store.Leftover{Kind: kind, Addr: addr, Key: key, ExpiresAt: exp}
}

// putLeftover records a leftover and returns the refusal, nil if admitted;
// any other error fails the test.
func (f *fixture) putLeftover(l *store.Leftover, limits store.LeftoverLimits, now time.Time) *store.LeftoverRefusal {
	f.t.Helper()
	err := f.s.PutLeftover(f.ctx, l, limits, now)
	var refusal *store.LeftoverRefusal
	if errors.As(err, &refusal) {
		return refusal
	}
	if err != nil {
		f.t.Fatalf("PutLeftover(%s): %v", l.Key, err)
	}
	return nil
}

// admitted puts n leftovers of kind for addr (keys label-0...) and fails
// unless all are admitted.
func (f *fixture) admitted(kind, addr, label string, n int, limits store.LeftoverLimits, exp, now time.Time) {
	f.t.Helper()
	for i := range n {
		if r := f.putLeftover(leftover(kind, addr, fmt.Sprintf("%s-%d", label, i), exp), limits, now); r != nil {
			f.t.Fatalf("%s %d from %s refused: retry at %v", label, i, addr, r.RetryAt)
		}
	}
}

// testLeftoverPerAddress: an address holding its bound is refused until
// its oldest leftover expires; another address, another kind and the same
// record again are not affected; expired leftovers do not count.
func testLeftoverPerAddress(f *fixture) {
	limits := store.LeftoverLimits{PerAddress: 3, Total: 1000}
	oldest := base.Add(time.Hour)
	f.putLeftover(leftover(store.LeftoverClient, "192.0.2.1", "c-0", oldest), limits, base)
	f.admitted(store.LeftoverClient, "192.0.2.1", "c-late", 2, limits, base.Add(2*time.Hour), base)
	r := f.putLeftover(leftover(store.LeftoverClient, "192.0.2.1", "one-too-many", base.Add(time.Hour)), limits, base)
	if r == nil || !r.RetryAt.Equal(oldest) {
		f.t.Fatalf("past the bound: %+v, want a refusal until the oldest leftover expires at %v", r, oldest)
	}
	if r := f.putLeftover(leftover(store.LeftoverClient, "192.0.2.1", "c-0", oldest), limits, base); r != nil {
		f.t.Errorf("the same record again was refused: %+v", r)
	}
	f.admitted(store.LeftoverClient, "192.0.2.2", "other-addr", 3, limits, base.Add(time.Hour), base)
	f.admitted(store.LeftoverSignIn, "192.0.2.1", "other-kind", 3, limits, base.Add(time.Hour), base)
	// Once the oldest expired, one more fits.
	f.admitted(store.LeftoverClient, "192.0.2.1", "after", 1, limits, base.Add(3*time.Hour), oldest)
}

// testLeftoverServerWide: past the server-wide bound, an address already
// holding LeftoverFloor is refused and a newcomer is admitted, up to
// twice the bound.
func testLeftoverServerWide(f *fixture) {
	limits := store.LeftoverLimits{PerAddress: 20, Total: 10}
	exp := base.Add(time.Hour)
	f.admitted(store.LeftoverClient, "198.51.100.1", "a", 10, limits, exp, base)
	if r := f.putLeftover(leftover(store.LeftoverClient, "198.51.100.1", "a-more", exp), limits, base); r == nil || !r.RetryAt.After(base) {
		f.t.Fatalf("an address holding many past the server-wide bound: %+v, want refused", r)
	}
	f.admitted(store.LeftoverClient, "198.51.100.2", "b", store.LeftoverFloor, limits, exp, base)
	if r := f.putLeftover(leftover(store.LeftoverClient, "198.51.100.2", "b-more", exp), limits, base); r == nil {
		f.t.Fatal("a newcomer past its floor was admitted")
	}
	f.admitted(store.LeftoverClient, "198.51.100.3", "c", store.LeftoverFloor, limits, exp, base) // total now 20
	if r := f.putLeftover(leftover(store.LeftoverClient, "198.51.100.4", "d", exp), limits, base); r == nil {
		f.t.Fatal("admitted past twice the server-wide bound")
	}
}

// testLeftoverGoesWithItsRecord: the client's first grant, the sign-in's
// callback and deleting the client each drop the record's leftover, and
// DropLeftover drops one whose record was never stored.
func testLeftoverGoesWithItsRecord(f *fixture) {
	limits := store.LeftoverLimits{PerAddress: 2, Total: 1000}
	exp := base.Add(time.Hour)
	full := func(what string) {
		f.t.Helper()
		if r := f.putLeftover(leftover(store.LeftoverClient, "203.0.113.9", "probe-"+what, exp), limits, base); r == nil {
			f.t.Fatalf("%s: the address was not full", what)
		}
	}
	freed := func(what string) {
		f.t.Helper()
		if r := f.putLeftover(leftover(store.LeftoverClient, "203.0.113.9", "after-"+what, exp), limits, base); r != nil {
			f.t.Fatalf("%s did not free its leftover", what)
		}
	}

	f.putClient("client-a")
	f.putClient("client-b")
	f.admitted(store.LeftoverClient, "203.0.113.9", "unused", 1, limits, exp, base)
	f.putLeftover(leftover(store.LeftoverClient, "203.0.113.9", "client-a", exp), limits, base)
	full("before the grant")
	f.issue("client-a", "g")
	freed("the first grant")

	full("before the deletion")
	f.putLeftover(leftover(store.LeftoverClient, "203.0.113.9", "client-b", exp), limits, base) // refused: still full
	f.wantOK("DropLeftover", f.s.DropLeftover(f.ctx, store.LeftoverClient, "after-the first grant"))
	f.putLeftover(leftover(store.LeftoverClient, "203.0.113.9", "client-b", exp), limits, base)
	f.wantOK("DeleteClient", f.s.DeleteClient(f.ctx, "client-b"))
	freed("deleting the client")

	p := newPending(f.hash("state"), "client-a", exp)
	f.wantOK("PutPending", f.s.PutPending(f.ctx, p))
	signIn := leftover(store.LeftoverSignIn, "203.0.113.9", store.SignInKey(p.StateHash), exp)
	if r := f.putLeftover(signIn, store.LeftoverLimits{PerAddress: 1, Total: 1000}, base); r != nil {
		f.t.Fatal("the sign-in's leftover was refused")
	}
	if r := f.putLeftover(leftover(store.LeftoverSignIn, "203.0.113.9", "another", exp), store.LeftoverLimits{PerAddress: 1, Total: 1000}, base); r == nil {
		f.t.Fatal("a second sign-in past a bound of one was admitted")
	}
	if _, err := f.s.TakePending(f.ctx, p.StateHash, base); err != nil {
		f.t.Fatal(err)
	}
	if r := f.putLeftover(leftover(store.LeftoverSignIn, "203.0.113.9", "another", exp), store.LeftoverLimits{PerAddress: 1, Total: 1000}, base); r != nil {
		f.t.Fatal("the callback did not free the sign-in's leftover")
	}
	f.wantOK("DropLeftover(unknown)", f.s.DropLeftover(f.ctx, store.LeftoverClient, "never-recorded"))
}

// testLeftoverSwept: Sweep removes expired leftovers.
func testLeftoverSwept(f *fixture) {
	limits := store.LeftoverLimits{PerAddress: 10, Total: 1000}
	f.admitted(store.LeftoverClient, "203.0.113.5", "old", 4, limits, base.Add(time.Minute), base)
	n, err := f.s.Sweep(f.ctx, base.Add(time.Hour))
	f.wantOK("Sweep", err)
	if n < 4 {
		f.t.Errorf("Sweep removed %d records, want at least the 4 expired leftovers", n)
	}
	if n, err := f.s.Sweep(f.ctx, base.Add(time.Hour)); err != nil || n != 0 {
		f.t.Errorf("a second Sweep removed %d, %v", n, err)
	}
}

// testLeftoverRace: many requests from one address at once admit exactly
// the bound.
func testLeftoverRace(f *fixture) {
	limits := store.LeftoverLimits{PerAddress: 5, Total: 1000}
	errs := race(raceN, func(i int) error {
		return f.s.PutLeftover(f.ctx, leftover(store.LeftoverClient, "192.0.2.77", fmt.Sprintf("race-%d", i), base.Add(time.Hour)), limits, base)
	})
	ok := 0
	for i, err := range errs {
		var refusal *store.LeftoverRefusal
		switch {
		case err == nil:
			ok++
		case !errors.As(err, &refusal):
			f.t.Errorf("racer %d: %v", i, err)
		}
	}
	if ok != limits.PerAddress {
		f.t.Errorf("%d of %d racers admitted, want exactly %d", ok, raceN, limits.PerAddress)
	}
}
