package store

import "time"

// Refresh tokens rotate on every use, and presenting a rotated one again
// is how a stolen token gives itself away: the grant is revoked. But a
// legitimate client presents a rotated token too, when the answer to its
// refresh was lost (a timeout, a dropped connection, a desktop app that
// restarted) or when two of its processes sharing one token store
// refresh at once. Treating those as theft logs the user out.
//
// So a grant's refresh tokens come in generations. The tokens of the
// current generation (Grant.RefreshGen) are live. Using one rotates the
// generation: the grant moves to the next, recording when (RotatedAt).
// A token of the generation just rotated may be presented again by its
// own client within a grace period, as long as no token of the current
// generation has been used (the grant would have moved on), and at most
// a few times: it gets a new token of the current generation, beside the
// one the lost answer carried. Either then works, and using either rotates
// the generation again. Anything else is reuse.

// RefreshUse is one presentation of a refresh token at the token endpoint.
type RefreshUse struct {
	// ClientID is the authenticated client presenting the token. A token
	// issued to another client is ErrNotFound and changes nothing (RFC
	// 7009 section 2.1; RFC 6749 section 10.4): it must not be able to
	// revoke its owner's grant.
	ClientID string
	// Now is the time of the request.
	Now time.Time
	// Grace is how long after its generation was rotated a token may be
	// presented again; zero means never (every reuse revokes).
	Grace time.Duration
	// MaxRetries bounds how many tokens such retries may add to one
	// generation.
	MaxRetries int
}

// RefreshVerdict is what a presented refresh token is to its grant.
type RefreshVerdict int

const (
	// RefreshLive: the token is of the grant's current generation.
	RefreshLive RefreshVerdict = iota
	// RefreshRetry: the token's generation was rotated within the grace
	// period, no token of the current one was used, and retries are
	// left. It gets a new token of the current generation.
	RefreshRetry
	// RefreshReused: the token was rotated and may not come back. The
	// grant must be revoked.
	RefreshReused
)

// ClassifyRefresh judges rt, a stored refresh token of grant g, presented
// by use. The caller has checked that rt belongs to g and to use.ClientID,
// and that neither expired.
func ClassifyRefresh(rt *RefreshToken, g *Grant, use RefreshUse) RefreshVerdict {
	switch {
	case rt.Rotated:
		// Marked by a build that rotated tokens one by one: the mark
		// carries no generation, so no retry can be told apart.
		return RefreshReused
	case rt.Gen == g.RefreshGen:
		return RefreshLive
	case rt.Gen+1 == g.RefreshGen && use.Grace > 0 && !use.Now.After(g.RotatedAt.Add(use.Grace)) && g.Retries < use.MaxRetries:
		return RefreshRetry
	}
	return RefreshReused
}

// ApplyRefresh updates the stored grant cur for a refresh that rt, a
// token of verdict v (live or retry), answers with the new token next,
// and sets next's generation. From g it takes what the caller decided: the
// scope, the expiry, the user's current profile, the time GitHub last
// confirmed them and, if g has one, the sealed GitHub token (sealed anew
// under the current key).
func ApplyRefresh(cur, g *Grant, v RefreshVerdict, next *RefreshToken, now time.Time) {
	cur.Scope, cur.ExpiresAt = g.Scope, g.ExpiresAt
	if g.User.ID == cur.User.ID {
		// The grant follows the numeric ID; login, name and email are
		// GitHub's current ones.
		cur.User = g.User
	}
	if g.CheckedAt.After(cur.CheckedAt) {
		cur.CheckedAt = g.CheckedAt
	}
	if g.GitHubToken != nil {
		cur.GitHubToken = g.GitHubToken
	}
	if v == RefreshRetry {
		cur.Retries++
	} else {
		cur.RefreshGen++
		cur.RotatedAt = now
		cur.Retries = 0
	}
	next.Gen = cur.RefreshGen
}

// JudgeRefresh judges rt, a stored refresh token presented by use, given
// its grant g (nil if the grant is gone). A token that expired, whose
// grant is gone or lapsed, or that belongs to another client than use's
// is ErrNotFound: in particular another client's token is unknown to
// this one, whatever its state, so that it cannot revoke the owner's
// grant. Otherwise it returns ClassifyRefresh's verdict. Both backends
// judge with it, under their own reads and locks.
func JudgeRefresh(rt *RefreshToken, g *Grant, use RefreshUse) (RefreshVerdict, error) {
	if rt.ClientID != use.ClientID || Expired(rt.ExpiresAt, use.Now) || g == nil ||
		Expired(g.ExpiresAt, use.Now) || g.ClientID != rt.ClientID {
		return 0, ErrNotFound
	}
	return ClassifyRefresh(rt, g, use), nil
}
