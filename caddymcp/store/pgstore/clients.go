package pgstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// PutClient implements store.Store. The client's expiry column starts at
// UnusedClientTTL after its registration; grants push it on (queueKeepClient).
func (s *Store) PutClient(ctx context.Context, c *store.Client) error {
	if err := store.CheckClient(c); err != nil {
		return err
	}
	created := c.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	rec, err := encode(c)
	if err != nil {
		return err
	}
	tag, err := s.pool.Exec(ctx, `INSERT INTO mcp_auth_clients (id, expires_at, rec) VALUES ($1, $2, $3)
ON CONFLICT (id) DO NOTHING`, c.ID, created.Add(store.UnusedClientTTL), rec)
	if err != nil {
		return dbErr(err)
	}
	if tag.RowsAffected() == 0 {
		return store.ErrExists
	}
	return nil
}

// GetClient implements store.Store, from this instance's client cache
// when it can.
func (s *Store) GetClient(ctx context.Context, id string) (*store.Client, error) {
	if !store.ValidID(id) {
		return nil, store.ErrNotFound
	}
	key := []byte(id)
	c, ok, gen := s.clients.Get(key, time.Now())
	if ok {
		return c.Clone(), nil
	}
	if err := s.getRec(ctx, &c, `SELECT rec FROM mcp_auth_clients WHERE id = $1`, id); err != nil {
		return nil, err
	}
	s.clients.Put(key, &c, gen, time.Now())
	return c.Clone(), nil
}

// DeleteClient implements store.Store. Deleting the row first locks it, so
// that a CreateGrant for this client either finished before (and its grant
// is revoked here) or finds the client gone. The other instances are
// notified even if the client had no grant, to forget the client.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	if !store.ValidID(id) {
		return store.ErrNotFound
	}
	var res error
	err := s.tx(ctx, func(tx pgx.Tx) error {
		res = nil
		tag, err := tx.Exec(ctx, `DELETE FROM mcp_auth_clients WHERE id = $1`, id)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			res = store.ErrNotFound
			return nil
		}
		if _, err := tx.Exec(ctx, `DELETE FROM mcp_auth_leftovers WHERE key = $1`, store.LedgerKey(store.LeftoverClient, id)); err != nil {
			return err
		}
		if err := s.notifyRevoked(ctx, tx); err != nil {
			return err
		}
		_, _, err = s.revokeGrantsWhere(ctx, tx, `client_id = $1`, id)
		return err
	})
	if err != nil {
		return err
	}
	return res
}

// queueKeepClient queues pushing a client's expiry to IdleClientTTL past a grant's
// expiry. It writes only when that gains more than a day, so that
// refreshing does not rewrite the client every time.
func queueKeepClient(b *pgx.Batch, clientID string, grantExp time.Time) {
	want := grantExp.Add(store.IdleClientTTL)
	b.Queue(`UPDATE mcp_auth_clients SET expires_at = $2
WHERE id = $1 AND expires_at < $3`, clientID, want, want.Add(-24*time.Hour))
}

// --- encoding --------------------------------------------------------------

// encode returns v as JSON for a rec column.
func encode(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("pgstore: encode: %w", err)
	}
	return b, nil
}

// decode reads a rec column into v.
func decode(raw []byte, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("pgstore: decode record: %w", err)
	}
	return nil
}

// getRec runs a query for one rec column and decodes it into v; no row is
// ErrNotFound.
func (s *Store) getRec(ctx context.Context, v any, sql string, args ...any) error {
	var raw []byte
	if err := s.pool.QueryRow(ctx, sql, args...).Scan(&raw); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return store.ErrNotFound
		}
		return dbErr(err)
	}
	return decode(raw, v)
}
