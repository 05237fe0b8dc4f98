package oauth

import (
	"errors"
	"net/http"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// An anonymous caller can make this server store things: a client it
// registers, a sign-in it approves on the consent page and never brings
// back from GitHub. Those are what must be bounded, not how often anyone
// comes back: hosted clients (Claude.ai, ChatGPT) register from a handful
// of egress addresses for all of their users, and a company signs in from
// behind one NAT. So the store keeps a ledger (store/leftovers.go) of what
// each client address left that has not (yet) come to anything, and the
// store itself forgets an entry the moment its record does (the client's
// first grant, the sign-in's callback). A registration or sign-in that
// goes on to complete never counts against anyone. The ledger is in the
// store, so several instances sharing one enforce one bound.

// LeftoverLimits bound what anonymous callers leave behind; see
// Config.RegistrationLimits and Config.PendingSignIns.
type LeftoverLimits = store.LeftoverLimits

// maxLeftoverWait caps the Retry-After of a refusal: the honest wait
// (until the address's oldest leftover expires) can be a day.
const maxLeftoverWait = time.Hour

// leaveBehind records in the ledger that the request's client address
// leaves the record key of kind, which the store would collect at exp.
// ok is false, with how long to wait, when a bound refuses it; err is a
// store failure.
func (s *Server) leaveBehind(r *http.Request, kind, key string, exp time.Time, limits LeftoverLimits) (ok bool, wait time.Duration, err error) {
	now := s.now()
	l := &store.Leftover{Kind: kind, Addr: limitKey(s.cfg.ClientAddr(r)), Key: key, ExpiresAt: exp}
	err = s.store.PutLeftover(r.Context(), l, limits, now)
	var refusal *store.LeftoverRefusal
	if errors.As(err, &refusal) {
		return false, min(max(refusal.RetryAt.Sub(now), time.Second), maxLeftoverWait), nil
	}
	return err == nil, 0, err
}

// forgetLeftover undoes leaveBehind for a record that was not stored
// after all; a failure only costs the address that entry until it
// expires.
func (s *Server) forgetLeftover(r *http.Request, kind, key string) {
	if err := s.store.DropLeftover(r.Context(), kind, key); err != nil {
		s.log.Warn("forgetting a leftover", zapErr(err))
	}
}
