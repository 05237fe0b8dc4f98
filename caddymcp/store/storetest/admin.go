package storetest

import (
	"fmt"
	"slices"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// The operator's listings and bulk revocation (the admin API's backing).

var otherUser = store.Identity{ID: 777, Login: "Hubot", Name: "Hubot"}

// issueAs is issue for another user than testUser, whose grant lapses at
// rtExp.
func (f *fixture) issueAs(clientID, label string, u store.Identity, rtExp time.Time) issued {
	f.t.Helper()
	return f.issueFor(clientID, label, u, base.Add(accessTTL), rtExp)
}

func grantIDs(gs []*store.Grant) []string {
	var ids []string
	for _, g := range gs {
		ids = append(ids, g.ID)
	}
	return ids
}

func (f *fixture) listGrants(filter store.GrantFilter, now time.Time) []string {
	f.t.Helper()
	gs, err := f.s.ListGrants(f.ctx, filter, now)
	if err != nil {
		f.t.Fatalf("ListGrants(%+v): %v", filter, err)
	}
	return grantIDs(gs)
}

// testListClients: clients come back whole, in ID order, paged by the
// last ID, with the limit clamped.
func testListClients(f *fixture) {
	got, err := f.s.ListClients(f.ctx, "", 0)
	f.wantOK("ListClients(empty store)", err)
	if len(got) != 0 {
		f.t.Errorf("ListClients on an empty store: %d clients", len(got))
	}
	var want []string
	for i := range 12 {
		id := fmt.Sprintf("client-%02d", (i*7)%12) // stored out of order
		f.putClient(id)
		want = append(want, id)
	}
	slices.Sort(want)

	var seen []string
	after := ""
	for page := 0; page < 10; page++ {
		got, err := f.s.ListClients(f.ctx, after, 5)
		f.wantOK("ListClients", err)
		if len(got) > 5 {
			f.t.Fatalf("page of %d clients, limit 5", len(got))
		}
		for _, c := range got {
			seen = append(seen, c.ID)
		}
		if len(got) < 5 {
			break
		}
		after = got[len(got)-1].ID
	}
	checkEqual(f.t, "client IDs over all pages", seen, want)

	all, err := f.s.ListClients(f.ctx, "", -3)
	f.wantOK("ListClients(negative limit)", err)
	if len(all) != 12 {
		f.t.Errorf("ListClients with a negative limit: %d, want the default page holding all 12", len(all))
	}
	if len(all) > 0 {
		checkEqual(f.t, "listed client", normClient(all[0]), normClient(newClient("client-00")))
	}
	after5, err := f.s.ListClients(f.ctx, "client-04x", 1000000)
	f.wantOK("ListClients(after an absent ID, huge limit)", err)
	if len(after5) != 7 || after5[0].ID != "client-05" {
		f.t.Errorf("ListClients after client-04x: %v, want client-05 to client-11", len(after5))
	}
}

// testListGrants: filters by client, user ID and login (any case), and
// never lists lapsed or revoked grants.
func testListGrants(f *fixture) {
	f.putClient("client-a")
	f.putClient("client-b")
	a1 := f.issue("client-a", "a1")
	f.issueAs("client-a", "a2", otherUser, base.Add(refreshTTL))
	f.issue("client-b", "b1")
	f.issueAs("client-b", "b2", otherUser, base.Add(refreshTTL))
	f.issueAs("client-b", "b3-lapsed", otherUser, base.Add(time.Minute))
	revoked := f.issue("client-b", "b4-revoked")
	f.wantOK("RevokeGrant", f.s.RevokeGrant(f.ctx, revoked.g.ID))

	now := base.Add(time.Hour)
	checkEqual(f.t, "all grants", f.listGrants(store.GrantFilter{}, now),
		[]string{"grant-a1", "grant-a2", "grant-b1", "grant-b2"})
	checkEqual(f.t, "grants of client-a", f.listGrants(store.GrantFilter{ClientID: "client-a"}, now),
		[]string{"grant-a1", "grant-a2"})
	checkEqual(f.t, "grants of user 777", f.listGrants(store.GrantFilter{UserID: otherUser.ID}, now),
		[]string{"grant-a2", "grant-b2"})
	checkEqual(f.t, "grants of login hubot", f.listGrants(store.GrantFilter{UserLogin: "hubot"}, now),
		[]string{"grant-a2", "grant-b2"})
	checkEqual(f.t, "grants of hubot at client-b", f.listGrants(store.GrantFilter{UserLogin: "HUBOT", ClientID: "client-b"}, now),
		[]string{"grant-b2"})
	checkEqual(f.t, "grants of hubot before the lapse", f.listGrants(store.GrantFilter{UserLogin: "hubot", ClientID: "client-b"}, base),
		[]string{"grant-b2", "grant-b3-lapsed"})
	if got := f.listGrants(store.GrantFilter{ClientID: "client-unknown"}, now); len(got) != 0 {
		f.t.Errorf("grants of an unknown client: %v", got)
	}
	if got := f.listGrants(store.GrantFilter{UserLogin: "nobody"}, now); len(got) != 0 {
		f.t.Errorf("grants of an unknown login: %v", got)
	}

	gs, err := f.s.ListGrants(f.ctx, store.GrantFilter{ClientID: "client-a", UserID: testUser.ID}, now)
	f.wantOK("ListGrants", err)
	if len(gs) == 1 {
		checkEqual(f.t, "listed grant", normGrant(gs[0]), normGrant(a1.g))
	} else {
		f.t.Errorf("grants of user %d at client-a: %v", testUser.ID, grantIDs(gs))
	}
}

// testListGrantsPages: paging by the last ID visits every grant once,
// with and without the client index.
func testListGrantsPages(f *fixture) {
	f.putClient("client-a")
	f.putClient("client-b")
	var wantA, wantAll []string
	for i := range 7 {
		label := fmt.Sprintf("p%02d", i)
		client := "client-a"
		if i%3 == 0 {
			client = "client-b"
		} else {
			wantA = append(wantA, "grant-"+label)
		}
		f.issue(client, label)
		wantAll = append(wantAll, "grant-"+label)
	}
	for _, tc := range []struct {
		filter store.GrantFilter
		want   []string
	}{
		{store.GrantFilter{}, wantAll},
		{store.GrantFilter{ClientID: "client-a"}, wantA},
		{store.GrantFilter{UserLogin: testUser.Login}, wantAll},
	} {
		var seen []string
		filter := tc.filter
		filter.Limit = 2
		for page := 0; page < 10; page++ {
			ids := f.listGrants(filter, base)
			if len(ids) > 2 {
				f.t.Fatalf("page of %d grants, limit 2", len(ids))
			}
			seen = append(seen, ids...)
			if len(ids) < 2 {
				break
			}
			filter.After = ids[len(ids)-1]
		}
		checkEqual(f.t, fmt.Sprintf("grant IDs over all pages of %+v", tc.filter), seen, tc.want)
	}
}

// testRevokeGrants: revoking a user's grants takes down their tokens at
// every client and leaves other users alone; an empty filter is refused.
func testRevokeGrants(f *fixture) {
	f.putClient("client-a")
	f.putClient("client-b")
	mine := f.issue("client-a", "mine")
	hisA := f.issueAs("client-a", "his-a", otherUser, base.Add(refreshTTL))
	hisB := f.issueAs("client-b", "his-b", otherUser, base.Add(refreshTTL))
	hisBr := f.rotate(hisB, "his-b-rotated")

	if n, err := f.s.RevokeGrants(f.ctx, store.GrantFilter{}); err == nil {
		f.t.Errorf("RevokeGrants with an empty filter revoked %d grants, want an error", n)
	}
	f.issuedLive(mine)

	n, err := f.s.RevokeGrants(f.ctx, store.GrantFilter{UserLogin: "HUBOT", Limit: 1, After: "zzz"})
	f.wantOK("RevokeGrants(hubot)", err)
	if n != 2 {
		f.t.Errorf("RevokeGrants(hubot) = %d, want 2 (Limit and After ignored)", n)
	}
	f.issuedDead(hisA)
	f.accessDead(hisB.at.Hash, base)
	f.issuedDead(hisBr)
	f.issuedLive(mine)

	n, err = f.s.RevokeGrants(f.ctx, store.GrantFilter{UserID: otherUser.ID})
	f.wantOK("RevokeGrants(again)", err)
	if n != 0 {
		f.t.Errorf("RevokeGrants a second time = %d, want 0", n)
	}
	n, err = f.s.RevokeGrants(f.ctx, store.GrantFilter{ClientID: "client-a"})
	f.wantOK("RevokeGrants(client-a)", err)
	if n != 1 {
		f.t.Errorf("RevokeGrants(client-a) = %d, want 1", n)
	}
	f.issuedDead(mine)
	if _, err := f.s.GetClient(f.ctx, "client-a"); err != nil {
		f.t.Errorf("revoking a client's grants removed the client: %v", err)
	}
}
