package pgstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// schemaVersion is the layout version this code reads and writes. Bump it
// and append to migrations when the layout changes.
const schemaVersion = 2

// lockClass is the first key of every advisory lock this package takes
// ("mcpa"); the second is derived from the schema name, so that stores in
// different schemas of one database do not wait for each other.
const lockClass = 0x6d637061

// Advisory lock purposes, mixed into the second key.
const (
	lockMigrate = "migrate"
	lockSweep   = "sweep"
)

// lockKeySQL computes the second advisory lock key for a purpose ($2; $1 is lockClass).
const lockKeySQL = `hashtext(current_schema() || ':' || $2::text)`

// migrations[i] takes the schema from version i to i+1. Identifiers are
// text COLLATE "C" so that listings order by bytes, as bbolt does.
var migrations = []string{
	`
CREATE TABLE mcp_auth_clients (
	id         text COLLATE "C" PRIMARY KEY,
	expires_at timestamptz NOT NULL,
	rec        jsonb NOT NULL
);
CREATE INDEX mcp_auth_clients_expires ON mcp_auth_clients (expires_at);

CREATE TABLE mcp_auth_pending (
	state_hash bytea PRIMARY KEY,
	expires_at timestamptz NOT NULL,
	rec        jsonb NOT NULL
);
CREATE INDEX mcp_auth_pending_expires ON mcp_auth_pending (expires_at);

CREATE TABLE mcp_auth_codes (
	hash       bytea PRIMARY KEY,
	expires_at timestamptz NOT NULL,
	used       boolean NOT NULL DEFAULT false,
	-- replayed is no longer read or written, since an exchange
	-- redeems its code in the transaction that stores the grant. It is
	-- kept so that instances of the previous release keep working
	-- during a rolling upgrade; a later schema version drops it.
	replayed   boolean NOT NULL DEFAULT false,
	grant_id   text COLLATE "C",
	rec        jsonb NOT NULL
);
CREATE INDEX mcp_auth_codes_expires ON mcp_auth_codes (expires_at);

CREATE TABLE mcp_auth_grants (
	id         text COLLATE "C" PRIMARY KEY,
	client_id  text COLLATE "C" NOT NULL,
	user_id    bigint NOT NULL,
	user_login text NOT NULL,
	expires_at timestamptz NOT NULL,
	rec        jsonb NOT NULL
);
CREATE INDEX mcp_auth_grants_client ON mcp_auth_grants (client_id, id);
CREATE INDEX mcp_auth_grants_user ON mcp_auth_grants (user_id);
CREATE INDEX mcp_auth_grants_login ON mcp_auth_grants (lower(user_login));
CREATE INDEX mcp_auth_grants_expires ON mcp_auth_grants (expires_at);

CREATE TABLE mcp_auth_access (
	hash       bytea PRIMARY KEY,
	grant_id   text COLLATE "C" NOT NULL,
	expires_at timestamptz NOT NULL,
	rec        jsonb NOT NULL
);
CREATE INDEX mcp_auth_access_grant ON mcp_auth_access (grant_id);
CREATE INDEX mcp_auth_access_expires ON mcp_auth_access (expires_at);

CREATE TABLE mcp_auth_refresh (
	hash       bytea PRIMARY KEY,
	grant_id   text COLLATE "C" NOT NULL,
	rotated    boolean NOT NULL DEFAULT false,
	expires_at timestamptz NOT NULL,
	rec        jsonb NOT NULL
);
CREATE INDEX mcp_auth_refresh_grant ON mcp_auth_refresh (grant_id);
CREATE INDEX mcp_auth_refresh_expires ON mcp_auth_refresh (expires_at);

CREATE TABLE mcp_auth_consents (
	key        bytea PRIMARY KEY,
	user_id    bigint NOT NULL,
	client_id  text COLLATE "C" NOT NULL,
	expires_at timestamptz NOT NULL,
	rec        jsonb NOT NULL
);
CREATE INDEX mcp_auth_consents_user ON mcp_auth_consents (user_id, client_id);
CREATE INDEX mcp_auth_consents_expires ON mcp_auth_consents (expires_at);

CREATE TABLE mcp_auth_keys (
	name       text COLLATE "C" PRIMARY KEY,
	value      bytea NOT NULL,
	created_at timestamptz NOT NULL DEFAULT now()
);
`,
	// 2: the ledger of leftovers (leftovers.go).
	`
CREATE TABLE mcp_auth_leftovers (
	key        text COLLATE "C" PRIMARY KEY,
	kind       text NOT NULL,
	addr       text NOT NULL,
	expires_at timestamptz NOT NULL
);
CREATE INDEX mcp_auth_leftovers_addr ON mcp_auth_leftovers (kind, addr, expires_at);
CREATE INDEX mcp_auth_leftovers_kind ON mcp_auth_leftovers (kind, expires_at);
CREATE INDEX mcp_auth_leftovers_expires ON mcp_auth_leftovers (expires_at);
`,
}

// migrate creates the schema, or brings an older one up to schemaVersion,
// under an advisory lock so that instances starting together take turns.
// A schema newer than this build is refused before anything is written.
func (s *Store) migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, `+lockKeySQL+`)`, lockClass, lockMigrate); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS mcp_auth_schema (
	version integer NOT NULL,
	singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton)
)`); err != nil {
			return err
		}
		var v int
		err := tx.QueryRow(ctx, `SELECT version FROM mcp_auth_schema`).Scan(&v)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			v = 0
			if _, err := tx.Exec(ctx, `INSERT INTO mcp_auth_schema (version) VALUES (0)`); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		if v > schemaVersion {
			return fmt.Errorf("the database has caddymcp schema version %d, newer than this build supports (%d); upgrade caddymcp on every instance, or use another database", v, schemaVersion)
		}
		for ; v < schemaVersion; v++ {
			if _, err := tx.Exec(ctx, migrations[v]); err != nil {
				return fmt.Errorf("migrating the schema to version %d: %w", v+1, err)
			}
		}
		_, err = tx.Exec(ctx, `UPDATE mcp_auth_schema SET version = $1`, schemaVersion)
		return err
	})
	if err != nil {
		return fmt.Errorf("pgstore: %w", err)
	}
	return nil
}
