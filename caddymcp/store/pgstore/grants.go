package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// CreateGrant implements store.Store. Beyond the interface's rules, as in
// bboltstore: the client must exist (ErrNotFound otherwise), and its row is
// locked so that a DeleteClient cannot slip in between, and so is the
// code's. A grant ID or token digest already stored is ErrExists, and
// nothing of the call is kept.
func (s *Store) CreateGrant(ctx context.Context, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken, codeHash []byte) error {
	if err := store.CheckTokenPair(g, at, rt); err != nil {
		return err
	}
	withCode := codeHash != nil
	if withCode && !store.ValidKey(codeHash) {
		return store.ErrNotFound
	}
	gRec, err := encode(g)
	if err != nil {
		return err
	}
	var res error
	revoked := false
	// Only a replay deletes a grant, and then the cache is cleared below.
	err = s.txKeep(ctx, func(tx pgx.Tx) error {
		res, revoked = nil, false
		// The checks in one round trip: the client's row, then the
		// code's, locked in that order.
		var b pgx.Batch
		clientFound := false
		b.Queue(`SELECT 1 FROM mcp_auth_clients WHERE id = $1 FOR NO KEY UPDATE`, g.ClientID).
			QueryRow(func(row pgx.Row) error { return noRows(row.Scan(new(int)), &clientFound) })
		var code lockedCode
		if withCode {
			b.Queue(`SELECT used, grant_id, rec FROM mcp_auth_codes WHERE hash = $1 FOR UPDATE`, codeHash).
				QueryRow(code.scan)
		}
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return err
		}
		if !clientFound {
			res = store.ErrNotFound
			return nil
		}
		if withCode {
			refusal, rev, err := code.refusal(ctx, s, tx, g)
			if err != nil || refusal != nil {
				res, revoked = refusal, rev
				return err
			}
		}
		// The writes in another. A duplicate key aborts the
		// transaction: all or nothing.
		b = pgx.Batch{}
		b.Queue(`INSERT INTO mcp_auth_grants (id, client_id, user_id, user_login, expires_at, rec)
VALUES ($1, $2, $3, $4, $5, $6)`, g.ID, g.ClientID, g.User.ID, g.User.Login, g.ExpiresAt, gRec)
		if err := queueTokens(&b, at, rt); err != nil {
			return err
		}
		if withCode {
			b.Queue(`UPDATE mcp_auth_codes SET used = true, grant_id = $2 WHERE hash = $1`, codeHash, g.ID)
		}
		queueKeepClient(&b, g.ClientID, g.ExpiresAt)
		// The client came to something: it no longer counts against the
		// address it registered from.
		b.Queue(`DELETE FROM mcp_auth_leftovers WHERE key = $1`, store.LedgerKey(store.LeftoverClient, g.ClientID))
		return tx.SendBatch(ctx, &b).Close()
	})
	if err != nil || revoked {
		s.tokens.Invalidate() // the replay revoked a grant
	}
	if err != nil {
		return err
	}
	return res
}

// lockedCode is the row of the code a grant is issued from, as read
// under a row lock; found is false if there is none.
type lockedCode struct {
	found bool
	used  bool
	bound *string // the grant the code produced
	raw   []byte
}

func (c *lockedCode) scan(row pgx.Row) error {
	return noRows(row.Scan(&c.used, &c.bound, &c.raw), &c.found)
}

// refusal returns the outcome that refuses grant g from this code, if
// any. A replay revokes the grant the code produced, and revoked says
// whether there was one.
func (c *lockedCode) refusal(ctx context.Context, s *Store, tx pgx.Tx, g *store.Grant) (refusal error, revoked bool, err error) {
	if !c.found {
		return store.ErrNotFound, false, nil
	}
	var code store.Code
	if err := decode(c.raw, &code); err != nil {
		return nil, false, err
	}
	code.Used = c.used
	refusal = store.CheckCodeGrant(&code, g)
	if refusal == store.ErrCodeReplayed && c.bound != nil {
		if _, _, err := s.revokeGrantsWhere(ctx, tx, `id = $1`, *c.bound); err != nil {
			return nil, false, err
		}
		return refusal, true, nil
	}
	return refusal, false, nil
}

// noRows sets found to whether a scan found its row, and turns its
// absence into no error.
func noRows(err error, found *bool) error {
	*found = err == nil
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	return err
}

// queueTokens queues the insertion of a new access/refresh pair. A digest
// already stored fails with a unique violation, which the caller's
// transaction turns into ErrExists.
func queueTokens(b *pgx.Batch, at *store.AccessToken, rt *store.RefreshToken) error {
	atRec, err := encode(at)
	if err != nil {
		return err
	}
	rtRec, err := encode(rt)
	if err != nil {
		return err
	}
	b.Queue(`INSERT INTO mcp_auth_access (hash, grant_id, expires_at, rec) VALUES ($1, $2, $3, $4)`,
		at.Hash, at.GrantID, at.ExpiresAt, atRec)
	b.Queue(`INSERT INTO mcp_auth_refresh (hash, grant_id, expires_at, rec) VALUES ($1, $2, $3, $4)`,
		rt.Hash, rt.GrantID, rt.ExpiresAt, rtRec)
	return nil
}

// GetGrant implements store.Store.
func (s *Store) GetGrant(ctx context.Context, id string, now time.Time) (*store.Grant, error) {
	if !store.ValidID(id) {
		return nil, store.ErrNotFound
	}
	var g store.Grant
	if err := s.getRec(ctx, &g, `SELECT rec FROM mcp_auth_grants WHERE id = $1`, id); err != nil {
		return nil, err
	}
	if store.Expired(g.ExpiresAt, now) {
		return nil, store.ErrNotFound
	}
	return &g, nil
}

// GetAccessToken implements store.Store. This is the per-request hot path:
// one indexed query, joined with the grant because revocation deletes the
// grant and a token without one is dead.
func (s *Store) GetAccessToken(ctx context.Context, hash []byte, now time.Time) (*store.AccessToken, error) {
	if !store.ValidKey(hash) {
		return nil, store.ErrNotFound
	}
	cached, ok, gen := s.tokens.Get(hash, time.Now())
	if ok {
		if store.Expired(cached.ExpiresAt, now) {
			return nil, store.ErrExpired
		}
		return &cached, nil
	}
	var at store.AccessToken
	err := s.getRec(ctx, &at, `SELECT a.rec FROM mcp_auth_access a JOIN mcp_auth_grants g ON g.id = a.grant_id
WHERE a.hash = $1`, hash)
	if err != nil {
		return nil, err
	}
	if store.Expired(at.ExpiresAt, now) {
		return nil, store.ErrExpired
	}
	// Wall time for the cache's TTL: it bounds real staleness, whatever
	// clock the caller judges expiry by.
	s.tokens.Put(hash, &at, gen, time.Now())
	return &at, nil
}

// GetRefreshToken implements store.Store. It reads with one query; only a
// reused token, which must revoke its grant, takes a write transaction.
func (s *Store) GetRefreshToken(ctx context.Context, hash []byte, use store.RefreshUse) (*store.RefreshToken, *store.Grant, store.RefreshVerdict, error) {
	if !store.ValidKey(hash) {
		return nil, nil, 0, store.ErrNotFound
	}
	var rtRaw, gRaw []byte
	err := s.pool.QueryRow(ctx, `SELECT r.rec, g.rec FROM mcp_auth_refresh r
LEFT JOIN mcp_auth_grants g ON g.id = r.grant_id WHERE r.hash = $1`, hash).Scan(&rtRaw, &gRaw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil, 0, store.ErrNotFound
	}
	if err != nil {
		return nil, nil, 0, dbErr(err)
	}
	var rt store.RefreshToken
	var g store.Grant
	v, res, err := judgeRefresh(rtRaw, gRaw, use, &rt, &g)
	if err != nil || res != nil {
		return nil, nil, 0, orErr(err, res)
	}
	if v == store.RefreshReused {
		return nil, nil, 0, s.refreshReused(ctx, hash, use)
	}
	return &rt, &g, v, nil
}

// judgeRefresh decodes a refresh token and its grant (nil if there is
// none) into rt and g and judges the token (store.JudgeRefresh). res
// is ErrNotFound for a token that is expired, of a revoked grant, or
// issued to another client than use's; err is a record that cannot be
// decoded.
func judgeRefresh(rtRaw, gRaw []byte, use store.RefreshUse, rt *store.RefreshToken, g *store.Grant) (v store.RefreshVerdict, res, err error) {
	if err := decode(rtRaw, rt); err != nil {
		return 0, nil, err
	}
	grant := g
	if gRaw == nil {
		grant = nil
	} else if err := decode(gRaw, g); err != nil {
		return 0, nil, err
	}
	v, res = store.JudgeRefresh(rt, grant, use)
	return v, res, nil
}

// orErr returns err if it is set, else res.
func orErr(err, res error) error {
	if err != nil {
		return err
	}
	return res
}

// refreshReused revokes the grant of a reused refresh token and returns
// ErrRefreshReused, judging the token again under the grant's lock: it
// may have been swept, or its grant revoked, since it was read.
func (s *Store) refreshReused(ctx context.Context, hash []byte, use store.RefreshUse) error {
	var res error
	err := s.tx(ctx, func(tx pgx.Tx) error {
		_, cur, v, notFound, err := lockRefresh(ctx, tx, hash, use)
		if err != nil || notFound != nil {
			res = notFound
			return err
		}
		res = store.ErrNotFound
		if v != store.RefreshReused {
			// A generation only moves forward: unreachable, but never
			// revoke a token that is not reused.
			return nil
		}
		if _, _, err := s.revokeGrantsWhere(ctx, tx, `id = $1`, cur.ID); err != nil {
			return err
		}
		res = store.ErrRefreshReused
		return nil
	})
	if err != nil {
		return err
	}
	return res
}

// lockRefresh reads the refresh token hash and its grant, locked in the
// order revocation takes them (the grant, then the token) in one round
// trip, and judges the token.
func lockRefresh(ctx context.Context, tx pgx.Tx, hash []byte, use store.RefreshUse) (old *store.RefreshToken, cur *store.Grant, v store.RefreshVerdict, res, err error) {
	var b pgx.Batch
	var gRaw, oldRaw []byte
	b.Queue(`SELECT rec FROM mcp_auth_grants WHERE id = (SELECT grant_id FROM mcp_auth_refresh WHERE hash = $1) FOR UPDATE`, hash).
		QueryRow(func(row pgx.Row) error { return noRows(row.Scan(&gRaw), new(bool)) })
	oldFound := false
	b.Queue(`SELECT rec FROM mcp_auth_refresh WHERE hash = $1 FOR UPDATE`, hash).
		QueryRow(func(row pgx.Row) error { return noRows(row.Scan(&oldRaw), &oldFound) })
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return nil, nil, 0, nil, err
	}
	if !oldFound {
		return nil, nil, 0, store.ErrNotFound, nil
	}
	old, cur = new(store.RefreshToken), new(store.Grant)
	v, res, err = judgeRefresh(oldRaw, gRaw, use, old, cur)
	return old, cur, v, res, err
}

// RotateRefresh implements store.Store. It locks the grant, then the old
// token, so that of two instances given the same token at once one
// rotates the generation and the other judges the token against the
// moved grant (a retry within the grace, or reuse). Beyond the
// interface's rules: g must be the token's grant, and new token digests
// already stored are ErrExists.
func (s *Store) RotateRefresh(ctx context.Context, oldHash []byte, use store.RefreshUse, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken) (store.RefreshVerdict, error) {
	if err := store.CheckTokenPair(g, at, rt); err != nil {
		return 0, err
	}
	if !store.ValidKey(oldHash) {
		return 0, store.ErrNotFound
	}
	var v store.RefreshVerdict
	var res error
	err := s.txKeep(ctx, func(tx pgx.Tx) error {
		_, cur, verdict, notFound, err := lockRefresh(ctx, tx, oldHash, use)
		v, res = verdict, notFound
		if err != nil || notFound != nil {
			return err
		}
		if v == store.RefreshReused {
			// Commit the revocation, then report the reuse.
			if _, _, err := s.revokeGrantsWhere(ctx, tx, `id = $1`, cur.ID); err != nil {
				return err
			}
			res = store.ErrRefreshReused
			return nil
		}
		if g.ID != cur.ID || g.ClientID != cur.ClientID {
			res = fmt.Errorf("pgstore: refresh token belongs to grant %q of client %q, not %q of %q", cur.ID, cur.ClientID, g.ID, g.ClientID)
			return nil
		}
		return rotate(ctx, tx, cur, g, v, at, rt, use.Now)
	})
	if err != nil || errors.Is(res, store.ErrRefreshReused) {
		s.tokens.Invalidate() // the reuse revoked the grant
	}
	if err != nil {
		return 0, err
	}
	return v, res
}

// rotate writes a checked refresh in one round trip: the new pair first
// (a duplicate digest aborts the transaction before anything else
// changed), then the grant's generation, scope and expiry, and the
// client's. The old token is not written: its generation, against the
// grant's, says that it was used.
func rotate(ctx context.Context, tx pgx.Tx, cur, g *store.Grant, v store.RefreshVerdict, at *store.AccessToken, rt *store.RefreshToken, now time.Time) error {
	store.ApplyRefresh(cur, g, v, rt, now)
	var b pgx.Batch
	if err := queueTokens(&b, at, rt); err != nil {
		return err
	}
	gRec, err := encode(cur)
	if err != nil {
		return err
	}
	b.Queue(`UPDATE mcp_auth_grants SET expires_at = $2, user_login = $3, rec = $4 WHERE id = $1`, cur.ID, cur.ExpiresAt, cur.User.Login, gRec)
	queueKeepClient(&b, cur.ClientID, cur.ExpiresAt)
	return tx.SendBatch(ctx, &b).Close()
}

// RevokeAccessToken implements store.Store. One statement, so one
// transaction: the token's deletion and, if there was a token, the
// notification to the other instances.
func (s *Store) RevokeAccessToken(ctx context.Context, hash []byte) error {
	if !store.ValidKey(hash) {
		return nil
	}
	_, err := s.pool.Exec(ctx, `WITH d AS (DELETE FROM mcp_auth_access WHERE hash = $1 RETURNING 1)
SELECT pg_notify($2, $3) FROM d`, hash, s.channel, s.self)
	s.tokens.Invalidate()
	return dbErr(err)
}

// RevokeGrant implements store.Store.
func (s *Store) RevokeGrant(ctx context.Context, grantID string) error {
	if !store.ValidID(grantID) {
		return nil
	}
	return s.tx(ctx, func(tx pgx.Tx) error {
		_, _, err := s.revokeGrantsWhere(ctx, tx, `id = $1`, grantID)
		return err
	})
}

// revokeGrantsWhere revokes the grants matching cond (an SQL condition on
// mcp_auth_grants with parameters args): it deletes them, their access
// tokens and their refresh tokens, and returns how many grants and how
// many records in all it deleted. If it deleted a grant, the other
// instances are notified when tx commits. (Access tokens are deleted only
// with their grant, and a token whose grant is gone is dead already.)
//
// The grants are locked first, in a statement of their own, so that a
// rotation that holds one finishes before the tokens are collected, and
// the token deletions (each with a fresh snapshot) see its new pair.
func (s *Store) revokeGrantsWhere(ctx context.Context, tx pgx.Tx, cond string, args ...any) (grants, records int, err error) {
	if _, err := tx.Exec(ctx, `SELECT 1 FROM mcp_auth_grants WHERE `+cond+` FOR UPDATE`, args...); err != nil {
		return 0, 0, err
	}
	sub := `(SELECT id FROM mcp_auth_grants WHERE ` + cond + `)`
	for _, sql := range []string{
		`DELETE FROM mcp_auth_access WHERE grant_id IN ` + sub,
		`DELETE FROM mcp_auth_refresh WHERE grant_id IN ` + sub,
		`DELETE FROM mcp_auth_grants WHERE ` + cond,
	} {
		tag, err := tx.Exec(ctx, sql, args...)
		if err != nil {
			return 0, 0, err
		}
		records += int(tag.RowsAffected())
		grants = int(tag.RowsAffected()) // the last statement's count
	}
	if grants > 0 {
		if err := s.notifyRevoked(ctx, tx); err != nil {
			return 0, 0, err
		}
	}
	return grants, records, nil
}
