package pgstore

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// PutPending implements store.Store. A state digest already stored is
// ErrExists: overwriting would let one request replace another.
func (s *Store) PutPending(ctx context.Context, p *store.Pending) error {
	if err := store.CheckPending(p); err != nil {
		return err
	}
	rec, err := encode(p)
	if err != nil {
		return err
	}
	return s.insert(ctx, `INSERT INTO mcp_auth_pending (state_hash, expires_at, rec) VALUES ($1, $2, $3)
ON CONFLICT (state_hash) DO NOTHING`, p.StateHash, p.ExpiresAt, rec)
}

// insert runs an INSERT ... ON CONFLICT DO NOTHING; a row that was not
// inserted is ErrExists.
func (s *Store) insert(ctx context.Context, sql string, args ...any) error {
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return dbErr(err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrExists
	}
	return nil
}

// TakePending implements store.Store. One DELETE ... RETURNING: of two
// instances taking the same state, the second waits for the first's row
// lock and then finds nothing. An expired request is deleted too: it is
// dead either way.
func (s *Store) TakePending(ctx context.Context, stateHash []byte, now time.Time) (*store.Pending, error) {
	if !store.ValidKey(stateHash) {
		return nil, store.ErrNotFound
	}
	var p store.Pending
	// Its leftover entry goes in the same statement.
	if err := s.getRec(ctx, &p, `WITH l AS (DELETE FROM mcp_auth_leftovers WHERE key = $2)
DELETE FROM mcp_auth_pending WHERE state_hash = $1 RETURNING rec`, stateHash, store.LedgerKey(store.LeftoverSignIn, store.SignInKey(stateHash))); err != nil {
		return nil, err
	}
	if store.Expired(p.ExpiresAt, now) {
		return nil, store.ErrNotFound
	}
	return &p, nil
}

// PutCode implements store.Store. A code digest already stored is
// ErrExists: overwriting a used code would reset its single use. The
// caller's Used and GrantID are ignored: the store maintains them.
func (s *Store) PutCode(ctx context.Context, c *store.Code) error {
	if err := store.CheckCode(c); err != nil {
		return err
	}
	rec := *c
	rec.Used, rec.GrantID = false, ""
	raw, err := encode(&rec)
	if err != nil {
		return err
	}
	return s.insert(ctx, `INSERT INTO mcp_auth_codes (hash, expires_at, rec) VALUES ($1, $2, $3)
ON CONFLICT (hash) DO NOTHING`, c.Hash, c.ExpiresAt, raw)
}

// GetCode implements store.Store. Used and GrantID live in columns of
// their own; the rec column keeps the code as it was stored.
func (s *Store) GetCode(ctx context.Context, codeHash []byte, now time.Time) (*store.Code, error) {
	if !store.ValidKey(codeHash) {
		return nil, store.ErrNotFound
	}
	var used bool
	var raw []byte
	err := s.pool.QueryRow(ctx, `SELECT used, rec FROM mcp_auth_codes WHERE hash = $1`, codeHash).Scan(&used, &raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, dbErr(err)
	}
	var c store.Code
	if err := decode(raw, &c); err != nil {
		return nil, err
	}
	c.Used = used
	if err := store.CheckCodeUse(&c, now); err != nil {
		return nil, err
	}
	return &c, nil
}

// RedeemCode implements store.Store.
func (s *Store) RedeemCode(ctx context.Context, codeHash []byte, now time.Time) (*store.Code, error) {
	if !store.ValidKey(codeHash) {
		return nil, store.ErrNotFound
	}
	var out *store.Code
	var res error
	err := s.txKeep(ctx, func(tx pgx.Tx) error {
		out, res = nil, nil
		var used bool
		var grantID *string
		var raw []byte
		err := tx.QueryRow(ctx, `SELECT used, grant_id, rec FROM mcp_auth_codes WHERE hash = $1 FOR UPDATE`, codeHash).
			Scan(&used, &grantID, &raw)
		if errors.Is(err, pgx.ErrNoRows) {
			res = store.ErrNotFound
			return nil
		}
		if err != nil {
			return err
		}
		var c store.Code
		if err := decode(raw, &c); err != nil {
			return err
		}
		c.Used = used
		if res = store.CheckCodeUse(&c, now); res != nil {
			if res == store.ErrCodeReplayed && grantID != nil {
				_, _, err := s.revokeGrantsWhere(ctx, tx, `id = $1`, *grantID)
				return err
			}
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE mcp_auth_codes SET used = true WHERE hash = $1`, codeHash); err != nil {
			return err
		}
		c.Used, c.GrantID = true, ""
		out = &c
		return nil
	})
	if err != nil || errors.Is(res, store.ErrCodeReplayed) {
		s.tokens.Invalidate() // the replay revoked a grant
	}
	if err != nil {
		return nil, err
	}
	return out, res
}
