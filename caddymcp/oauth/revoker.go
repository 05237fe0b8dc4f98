package oauth

import (
	"context"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Revoker revokes grants in a store and reports them: the one operation
// behind a client's RFC 7009 revocation of its refresh token and an
// operator's revocations (the admin API). Revoking a grant withdraws the
// remembered consents of its user to its client, so that connecting again
// asks the user again, and reports an EventGrantRevoked.
//
// It works on a store, not on a Server: the admin API finds the state
// files of the running config, and one file may back several mcp_auth
// handlers, each with a Server, so none of them is the one to ask.
type Revoker struct {
	Store store.Store
	// Observer hears an EventGrantRevoked for each grant revoked; nil
	// hears nothing.
	Observer Observer
	// Reason is the events' reason, such as ReasonAdmin.
	Reason string
	// MaxListed bounds how many grants RevokeGrants lists, in pages of
	// ListPage, to report and to withdraw their users' consents; zero
	// means DefaultMaxListed and store.MaxListLimit. What is revoked is
	// never bounded.
	MaxListed, ListPage int
}

// DefaultMaxListed is Revoker.MaxListed when zero.
const DefaultMaxListed = 100_000

// Revoked is what RevokeGrants did.
type Revoked struct {
	// Count is how many grants were revoked.
	Count int
	// Listed is how many of them were reported one by one, and had their
	// users' consents withdrawn. It may be less than Count: past
	// MaxListed (then Truncated), or for grants issued between the
	// listing and the revocation.
	Listed    int
	Truncated bool
}

// RevokeGrant revokes the live grant id. It returns store.ErrNotFound if
// there is none.
func (r Revoker) RevokeGrant(ctx context.Context, id string, now time.Time) error {
	g, err := r.Store.GetGrant(ctx, id, now)
	if err != nil {
		return err
	}
	return r.revokeGrant(ctx, g, Event{ClientID: g.ClientID, User: g.User, GrantID: g.ID, Resource: g.Resource})
}

// revokeGrant withdraws the consents of g's user to g's client, revokes
// g, and reports e, with Kind and Reason set here. Withdrawn first: if
// revoking then fails, a retry still finds the grant and finishes.
func (r Revoker) revokeGrant(ctx context.Context, g *store.Grant, e Event) error {
	if _, err := r.Store.WithdrawConsents(ctx, g.User.ID, g.ClientID); err != nil {
		return err
	}
	if err := r.Store.RevokeGrant(ctx, g.ID); err != nil {
		return err
	}
	r.report(e)
	return nil
}

// RevokeGrants revokes every grant f selects (live or lapsed, in one
// transaction; f must name a user or a client), having withdrawn the
// consents of the users of the live ones (and of f.UserID) for f.ClientID
// or, if empty, for every client. clientName, if known, goes into the
// events. The live grants are listed first, up to MaxListed, only to be
// reported and to have their users' consents withdrawn.
func (r Revoker) RevokeGrants(ctx context.Context, f store.GrantFilter, clientName string, now time.Time) (Revoked, error) {
	grants, truncated, err := r.list(ctx, f, now)
	if err != nil {
		return Revoked{}, err
	}
	users := map[int64]bool{}
	if f.UserID != 0 {
		users[f.UserID] = true
	}
	for _, g := range grants {
		users[g.User.ID] = true
	}
	for u := range users {
		if _, err := r.Store.WithdrawConsents(ctx, u, f.ClientID); err != nil {
			return Revoked{}, err
		}
	}
	n, err := r.Store.RevokeGrants(ctx, f)
	if err != nil {
		return Revoked{}, err
	}
	for _, g := range grants {
		r.report(Event{ClientID: g.ClientID, ClientName: clientName, User: g.User, GrantID: g.ID, Resource: g.Resource})
	}
	return Revoked{Count: n, Listed: len(grants), Truncated: truncated}, nil
}

// list lists, page by page, up to MaxListed live grants matching f, and
// says whether there were more.
func (r Revoker) list(ctx context.Context, f store.GrantFilter, now time.Time) ([]*store.Grant, bool, error) {
	most := r.MaxListed
	if most <= 0 {
		most = DefaultMaxListed
	}
	f.After, f.Limit = "", r.ListPage
	if f.Limit <= 0 {
		f.Limit = store.MaxListLimit
	}
	var out []*store.Grant
	for len(out) <= most {
		page, err := r.Store.ListGrants(ctx, f, now)
		if err != nil {
			return nil, false, err
		}
		out = append(out, page...)
		if len(page) < f.Limit {
			break
		}
		f.After = page[len(page)-1].ID
	}
	if len(out) > most {
		return out[:most], true, nil
	}
	return out, false, nil
}

func (r Revoker) report(e Event) {
	if r.Observer != nil {
		e.Kind, e.Reason = EventGrantRevoked, r.Reason
		r.Observer(e)
	}
}
