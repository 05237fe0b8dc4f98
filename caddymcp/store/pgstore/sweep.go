package pgstore

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// sweepBatch bounds the rows one sweep transaction deletes, so that Sweep
// never holds many row locks, or one long transaction, while instances
// serve requests. A variable so that tests can force many batches.
var sweepBatch = 1000

// sweepTables are swept after the grants, in this order: clients come
// right after the grants, so that one whose last grant just lapsed is seen
// without it.
var sweepTables = []struct{ table, key string }{
	{"mcp_auth_clients", "id"},
	{"mcp_auth_access", "hash"},
	{"mcp_auth_refresh", "hash"},
	{"mcp_auth_codes", "hash"},
	{"mcp_auth_pending", "state_hash"},
	{"mcp_auth_consents", "key"},
	{"mcp_auth_leftovers", "key"},
}

// Sweep implements store.Store. One instance sweeps at a time: Sweep holds
// a session advisory lock while it works, and an instance that finds the
// lock taken returns 0 at once, because another is doing the work. Rows
// another transaction holds (a rotation in progress) are skipped, not
// waited for; the next sweep gets them.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, dbErr(err)
	}
	defer conn.Release()
	var locked bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, `+lockKeySQL+`)`, lockClass, lockSweep).Scan(&locked); err != nil {
		return 0, dbErr(err)
	}
	if !locked {
		return 0, nil
	}
	defer func() {
		// A lock that cannot be released (the context ended, the
		// connection broke) is released by closing the connection.
		uctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := conn.Exec(uctx, `SELECT pg_advisory_unlock($1, `+lockKeySQL+`)`, lockClass, lockSweep); err != nil {
			_ = conn.Conn().Close(uctx)
		}
	}()

	// Lapsed grants take live access tokens with them, and unused
	// clients go.
	defer s.invalidate()
	total, err := s.sweepGrants(ctx, conn, now)
	if err != nil {
		return total, dbErr(err)
	}
	for _, t := range sweepTables {
		n, err := sweepTable(ctx, conn, t.table, t.key, now)
		total += n
		if err != nil {
			return total, dbErr(err)
		}
	}
	return total, nil
}

// sweepGrants revokes lapsed grants, a batch per transaction, and returns
// how many records it deleted. Each batch notifies the other instances,
// since a lapsed grant's access tokens may still be live.
func (s *Store) sweepGrants(ctx context.Context, conn *pgxpool.Conn, now time.Time) (int, error) {
	total := 0
	for {
		var n, records int
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT id FROM mcp_auth_grants WHERE expires_at <= $1
LIMIT $2 FOR UPDATE SKIP LOCKED`, now, sweepBatch)
			if err != nil {
				return err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return err
			}
			n = len(ids)
			if n == 0 {
				return nil
			}
			_, records, err = s.revokeGrantsWhere(ctx, tx, `id = ANY($1)`, ids)
			return err
		})
		if err != nil {
			return total, err
		}
		total += records
		if n < sweepBatch {
			return total, nil
		}
	}
}

// sweepTable deletes the expired rows of one table, a batch per statement,
// and returns how many it deleted. An expired client is deleted only if no
// grant names it any more.
func sweepTable(ctx context.Context, conn *pgxpool.Conn, table, key string, now time.Time) (int, error) {
	extra := ""
	if table == "mcp_auth_clients" {
		extra = ` AND NOT EXISTS (SELECT 1 FROM mcp_auth_grants g WHERE g.client_id = t.id)`
	}
	sql := `DELETE FROM ` + table + ` WHERE ` + key + ` IN (SELECT t.` + key + ` FROM ` + table + ` t
WHERE t.expires_at <= $1` + extra + ` LIMIT $2 FOR UPDATE SKIP LOCKED)`
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		tag, err := conn.Exec(ctx, sql, now, sweepBatch)
		if err != nil {
			return total, err
		}
		n := int(tag.RowsAffected())
		total += n
		if n < sweepBatch {
			return total, nil
		}
	}
}
