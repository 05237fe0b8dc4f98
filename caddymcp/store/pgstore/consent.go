package pgstore

import (
	"context"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// PutConsent implements store.Store. A consent with the same key is
// replaced, with its user and client, in one statement.
func (s *Store) PutConsent(ctx context.Context, c *store.Consent) error {
	if err := store.CheckConsent(c); err != nil {
		return err
	}
	rec, err := encode(c)
	if err != nil {
		return err
	}
	_, err = s.pool.Exec(ctx, `INSERT INTO mcp_auth_consents (key, user_id, client_id, expires_at, rec)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (key) DO UPDATE SET user_id = EXCLUDED.user_id, client_id = EXCLUDED.client_id,
	expires_at = EXCLUDED.expires_at, rec = EXCLUDED.rec`, c.Key, c.UserID, c.ClientID, c.ExpiresAt, rec)
	return dbErr(err)
}

// GetConsent implements store.Store.
func (s *Store) GetConsent(ctx context.Context, key []byte, now time.Time) (*store.Consent, error) {
	if !store.ValidKey(key) {
		return nil, store.ErrNotFound
	}
	var c store.Consent
	if err := s.getRec(ctx, &c, `SELECT rec FROM mcp_auth_consents WHERE key = $1`, key); err != nil {
		return nil, err
	}
	if store.Expired(c.ExpiresAt, now) {
		return nil, store.ErrNotFound
	}
	return &c, nil
}

// WithdrawConsents implements store.Store.
func (s *Store) WithdrawConsents(ctx context.Context, userID int64, clientID string) (int, error) {
	sql, args := `DELETE FROM mcp_auth_consents WHERE user_id = $1`, []any{userID}
	if clientID != "" {
		if !store.ValidID(clientID) {
			return 0, nil
		}
		sql, args = sql+` AND client_id = $2`, append(args, clientID)
	}
	tag, err := s.pool.Exec(ctx, sql, args...)
	if err != nil {
		return 0, dbErr(err)
	}
	return int(tag.RowsAffected()), nil
}
