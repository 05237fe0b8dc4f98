package store

import (
	"encoding/hex"
	"time"
)

// An anonymous caller can make the server store things: a client it
// registers, a sign-in it approves on the consent page and never brings
// back from GitHub. Those are what must be bounded, not how often anyone
// comes back: hosted clients (Claude.ai, ChatGPT) register from a handful
// of egress addresses for all of their users, and a company signs in
// from behind one NAT. So the store keeps a ledger of leftovers: per
// client address, the records that have not (yet) come to anything. An
// entry goes the moment its record does (CreateGrant for the client's
// first grant, TakePending for the sign-in's callback, DeleteClient), or
// when it expires with the record it stands for. Being in the store, the
// ledger is one for every instance sharing it, and survives restarts.

// Leftover kinds.
const (
	// LeftoverClient is a client registered through open registration
	// that has not obtained a grant; its key is the client ID.
	LeftoverClient = "client"
	// LeftoverSignIn is a sign-in approved on the consent page whose
	// callback has not come back; its key is SignInKey of the state
	// digest.
	LeftoverSignIn = "sign_in"
)

// SignInKey is the leftover key of the sign-in with that state digest:
// hex, so that every ledger key is text.
func SignInKey(stateHash []byte) string { return hex.EncodeToString(stateHash) }

// LeftoverLimits bound the leftovers of one kind.
type LeftoverLimits struct {
	// PerAddress bounds the leftovers of one client address (an IPv6
	// address counts as its /64; the caller groups them).
	PerAddress int
	// Total bounds the leftovers of all addresses together; an address
	// holding fewer than LeftoverFloor is admitted past it.
	Total int
}

// LeftoverFloor is how many leftovers an address may hold even when the
// server-wide bound is reached, so that a flood from other addresses
// never locks a newcomer out. Past twice the bound, nobody is admitted:
// only a flood from very many addresses gets there.
const LeftoverFloor = 5

// Leftover is one entry of the ledger.
type Leftover struct {
	Kind string
	// Addr is the client address (or /64) that left it.
	Addr string
	// Key names the record: a client ID, or a SignInKey.
	Key string
	// ExpiresAt is when the store would collect the record anyway.
	ExpiresAt time.Time
}

// LedgerKey is the key of a leftover in a backend: its kind and key.
func (l *Leftover) LedgerKey() string { return LedgerKey(l.Kind, l.Key) }

// LedgerKey is the key of the leftover of kind for the record key.
func LedgerKey(kind, key string) string { return kind + ":" + key }

// AdmitLeftover decides whether an address that holds held live
// leftovers of a kind may leave one more, when all addresses hold total.
// A refusal says whether the address's own bound refused it (then it may
// retry once its oldest leftover expires) or the server-wide one.
func AdmitLeftover(l LeftoverLimits, held, total int) (ok, ownBound bool) {
	switch {
	case held >= l.PerAddress:
		return false, true
	case total >= 2*l.Total, total >= l.Total && held >= LeftoverFloor:
		return false, false
	}
	return true, false
}

// LeftoverRefusal is the answer of PutLeftover past a bound.
type LeftoverRefusal struct {
	// RetryAt is when trying again may succeed: when the address's oldest
	// leftover expires, if its own bound refused it; otherwise a minute
	// from now.
	RetryAt time.Time
}

func (*LeftoverRefusal) Error() string { return "store: too many leftovers" }
