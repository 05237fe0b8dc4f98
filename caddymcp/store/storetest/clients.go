package storetest

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Clients: registration, lookup, and deletion, which takes the client's
// grants and tokens with it; unused clients are collected.

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
