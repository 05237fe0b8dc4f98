package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// The ledger of leftovers (store/leftovers.go) is the table
// mcp_auth_leftovers, keyed by the ledger key. It is one ledger for every
// instance: the bounds hold however many instances share the database.

// lockLeftovers serializes the admissions of one kind, so that two
// instances counting at once cannot both admit past a bound.
const lockLeftovers = "leftovers:"

// PutLeftover implements store.Store.
func (s *Store) PutLeftover(ctx context.Context, l *store.Leftover, limits store.LeftoverLimits, now time.Time) error {
	var res error
	err := s.txKeep(ctx, func(tx pgx.Tx) error {
		res = nil
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, `+lockKeySQL+`)`, lockClass, lockLeftovers+l.Kind); err != nil {
			return err
		}
		var b pgx.Batch
		exists := false
		b.Queue(`SELECT 1 FROM mcp_auth_leftovers WHERE key = $1 AND expires_at > $2`, l.LedgerKey(), now).
			QueryRow(func(row pgx.Row) error { return noRows(row.Scan(new(int)), &exists) })
		var held, total int
		var oldest *time.Time
		b.Queue(`SELECT count(*), min(expires_at) FROM mcp_auth_leftovers WHERE kind = $1 AND addr = $2 AND expires_at > $3`,
			l.Kind, l.Addr, now).QueryRow(func(row pgx.Row) error { return row.Scan(&held, &oldest) })
		b.Queue(`SELECT count(*) FROM mcp_auth_leftovers WHERE kind = $1 AND expires_at > $2`, l.Kind, now).
			QueryRow(func(row pgx.Row) error { return row.Scan(&total) })
		if err := tx.SendBatch(ctx, &b).Close(); err != nil {
			return err
		}
		if exists {
			return nil // recorded already: the same record again
		}
		if ok, own := store.AdmitLeftover(limits, held, total); !ok {
			retry := now.Add(time.Minute)
			if own && oldest != nil {
				retry = *oldest
			}
			res = &store.LeftoverRefusal{RetryAt: retry}
			return nil
		}
		// An expired entry under the same key (not yet swept) is replaced.
		_, err := tx.Exec(ctx, `INSERT INTO mcp_auth_leftovers (key, kind, addr, expires_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (key) DO UPDATE SET addr = EXCLUDED.addr, expires_at = EXCLUDED.expires_at`, l.LedgerKey(), l.Kind, l.Addr, l.ExpiresAt)
		return err
	})
	if err != nil {
		return err
	}
	return res
}

// DropLeftover implements store.Store.
func (s *Store) DropLeftover(ctx context.Context, kind, key string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM mcp_auth_leftovers WHERE key = $1`, store.LedgerKey(kind, key))
	return dbErr(err)
}
