package main

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore"
)

// recordCounts are the grants and tokens a store holds.
type recordCounts struct {
	grants, access, refresh int
}

// storeCounts counts the grants and tokens in the state of e, with Caddy
// stopped (bbolt) or running (PostgreSQL).
func (e *env) storeCounts() (recordCounts, error) {
	var n recordCounts
	ctx := context.Background()
	if e.dsn != "" {
		conn, err := pgx.Connect(ctx, e.dsn)
		if err != nil {
			return n, err
		}
		defer conn.Close(ctx)
		err = conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM mcp_auth_grants), (SELECT count(*) FROM mcp_auth_access),
	(SELECT count(*) FROM mcp_auth_refresh)`).Scan(&n.grants, &n.access, &n.refresh)
		return n, err
	}
	st, err := bboltstore.Open(e.stateFile(), bboltstore.Options{})
	if err != nil {
		return n, err
	}
	defer st.Close()
	c, err := st.Count(ctx)
	return recordCounts{grants: c.Grants, access: c.AccessTokens, refresh: c.RefreshTokens}, err
}
