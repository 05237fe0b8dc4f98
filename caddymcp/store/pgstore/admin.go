package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// The listings and bulk revocation an operator uses through the admin API.
// Listings page by ID (byte order, as the id columns collate "C") with a
// bounded LIMIT, so no call reads or holds more than one page.

// ListClients returns up to limit registered clients in order of their
// IDs, starting after the ID after ("" for the first). A limit outside
// 1..store.MaxListLimit is clamped into it (0 means store.DefaultListLimit).
func (s *Store) ListClients(ctx context.Context, after string, limit int) ([]*store.Client, error) {
	rows, err := s.pool.Query(ctx, `SELECT rec FROM mcp_auth_clients WHERE id > $1 ORDER BY id LIMIT $2`,
		after, store.ClampLimit(limit))
	if err != nil {
		return nil, dbErr(err)
	}
	return collect[store.Client](rows)
}

// ListGrants returns up to f.Limit live grants that match f, in order of
// their IDs, starting after the ID f.After.
func (s *Store) ListGrants(ctx context.Context, f store.GrantFilter, now time.Time) ([]*store.Grant, error) {
	cond, args := grantCond(f)
	args = append(args, now, f.After, store.ClampLimit(f.Limit))
	n := len(args)
	rows, err := s.pool.Query(ctx, fmt.Sprintf(`SELECT rec FROM mcp_auth_grants WHERE %s AND expires_at > $%d AND id > $%d
ORDER BY id LIMIT $%d`, cond, n-2, n-1, n), args...)
	if err != nil {
		return nil, dbErr(err)
	}
	return collect[store.Grant](rows) // the query keeps live grants only
}

// RevokeGrants revokes every grant that matches f (live or lapsed; After
// and Limit are ignored) in one transaction, and returns how many it
// revoked. A filter that names neither a user nor a client would revoke
// everything and is refused with an error.
func (s *Store) RevokeGrants(ctx context.Context, f store.GrantFilter) (int, error) {
	if !f.NamesSubject() {
		return 0, errors.New("pgstore: revoking grants needs a user or a client")
	}
	cond, args := grantCond(f)
	var n int
	err := s.tx(ctx, func(tx pgx.Tx) error {
		var err error
		n, _, err = s.revokeGrantsWhere(ctx, tx, cond, args...)
		return err
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// grantCond turns f's user and client fields into an SQL condition on
// mcp_auth_grants with its parameters, numbered from $1. Logins compare
// case-insensitively, as GitHub's do.
func grantCond(f store.GrantFilter) (string, []any) {
	conds, args := []string{"true"}, []any{}
	add := func(sql string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(sql, len(args)))
	}
	if f.ClientID != "" {
		add("client_id = $%d", f.ClientID)
	}
	if f.UserID != 0 {
		add("user_id = $%d", f.UserID)
	}
	if f.UserLogin != "" {
		add("lower(user_login) = lower($%d)", f.UserLogin)
	}
	return strings.Join(conds, " AND "), args
}

// collect decodes the rec column of every row (at most one page).
func collect[T any](rows pgx.Rows) ([]*T, error) {
	defer rows.Close()
	var out []*T
	for rows.Next() {
		var raw []byte
		if err := rows.Scan(&raw); err != nil {
			return nil, dbErr(err)
		}
		v := new(T)
		if err := decode(raw, v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, dbErr(err)
	}
	return out, nil
}
