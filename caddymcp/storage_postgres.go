package caddymcp

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/pgstore"
)

func init() {
	caddy.RegisterModule(PostgresStorage{})
}

// PostgresStorage keeps the authorization server's state in a PostgreSQL
// database, so that several Caddy instances behind a load balancer share
// it: a client registered on one instance, authorized on another, can
// redeem its code and refresh on any.
//
// The schema (tables named mcp_auth_*, in the schema the connection's
// search_path selects) is created or migrated when the first instance
// starts. One connection pool per database is shared by every config and
// site of the process, across config reloads. Every instance runs the
// sweeper; a database lock lets one at a time do the work.
//
// Unless secret_key is configured, the secret key is generated once and
// kept in the database for every instance; a configured one is checked
// against the fingerprint of the key the other instances use, and an
// instance whose key differs refuses to start.
type PostgresStorage struct {
	// DSN is the connection string: a postgres:// URL or key=value pairs,
	// as libpq takes them, plus pgx's pool settings such as
	// pool_max_conns. Required. Placeholders such as {env.*} and {file.*}
	// are replaced; give the password through one, so it stays out of
	// the config. The DSN is never logged.
	DSN string `json:"dsn,omitempty"`

	// ConnectTimeout bounds the connection and schema check at startup;
	// a database that does not answer within it fails the config. Default:
	// 10s.
	ConnectTimeout caddy.Duration `json:"connect_timeout,omitempty"`

	key    string
	secret string // the DSN's password, scrubbed from errors
	shared *sharedStore
	db     *pgstore.Store // shared's store
}

// CaddyModule returns the Caddy module information.
func (PostgresStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "mcp_auth.storage.postgres",
		New: func() caddy.Module { return new(PostgresStorage) },
	}
}

// Provision connects to the database (or joins the pool already open for
// it) and creates or migrates the schema. An unreachable database fails
// the config with an error that names the host and database, never the
// password.
func (p *PostgresStorage) Provision(ctx caddy.Context) error {
	dsn := strings.TrimSpace(caddy.NewReplacer().ReplaceKnown(p.DSN, ""))
	if dsn == "" {
		return errors.New("storage postgres: a connection string is required (for example {env.MCP_AUTH_DATABASE_URL})")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return fmt.Errorf("storage postgres: %w", pgstore.ErrBadDSN)
	}
	p.secret = cfg.ConnConfig.Password
	sum := sha256.Sum256([]byte(dsn))
	p.key = "postgres " + hex.EncodeToString(sum[:])
	timeout := time.Duration(p.ConnectTimeout)
	log := ctx.Logger()
	shared, err := shareStore(p.key, log, func() (*sharedStore, error) {
		st, err := pgstore.OpenConfig(context.Background(), cfg, pgstore.Options{ConnectTimeout: timeout, Logger: log.Named("revocations")})
		if err != nil {
			return nil, err
		}
		name := fmt.Sprintf("postgres://%s@%s:%d/%s", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
		// Every instance sweeps; the one that gets the database lock
		// does the work.
		sweep := func(ctx context.Context, now time.Time) (int, error) {
			n, err := st.Sweep(ctx, now)
			return n, p.scrub(err)
		}
		log.Info("connected to PostgreSQL", zap.String("host", cfg.ConnConfig.Host),
			zap.Uint16("port", cfg.ConnConfig.Port), zap.String("database", cfg.ConnConfig.Database),
			zap.String("user", cfg.ConnConfig.User))
		return &sharedStore{Store: st, name: name, sweep: sweep}, nil
	})
	if err != nil {
		return fmt.Errorf("storage postgres: connecting to %s:%d, database %q: %w", cfg.ConnConfig.Host,
			cfg.ConnConfig.Port, cfg.ConnConfig.Database, p.scrub(err))
	}
	p.shared, p.db = shared, shared.Store.(*pgstore.Store)
	return nil
}

// scrub returns err with the DSN's password masked, in case a driver
// message ever repeats it.
func (p *PostgresStorage) scrub(err error) error {
	if err == nil || p.secret == "" || !strings.Contains(err.Error(), p.secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), p.secret, "xxxxx"))
}

// Store returns the shared store.
func (p *PostgresStorage) Store() store.Store { return p.shared }

// SharedKey returns the secret key of every instance on this database:
// configured (checked against the others') or generated once and kept in
// the database.
func (p *PostgresStorage) SharedKey(ctx context.Context, configured []byte, previous [][]byte) ([]byte, error) {
	key, err := p.db.SecretKey(ctx, configured, oauth.KeySize, previous...)
	if err != nil {
		return nil, fmt.Errorf("storage postgres: %w", p.scrub(err))
	}
	return key, nil
}

// Cleanup releases this config's use of the database.
func (p *PostgresStorage) Cleanup() error {
	if p.shared == nil {
		return nil
	}
	return releaseStore(p.key)
}

// UnmarshalCaddyfile sets up the PostgreSQL storage. Syntax:
//
//	storage postgres <dsn> [{
//		connect_timeout <duration>
//	}]
func (p *PostgresStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the backend name
	if !d.NextArg() {
		return d.Err("storage postgres needs a connection string, such as {env.MCP_AUTH_DATABASE_URL}")
	}
	p.DSN = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() != "connect_timeout" {
			return d.Errf("unrecognized postgres option %q", d.Val())
		}
		if err := positiveDuration(d, &p.ConnectTimeout); err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*PostgresStorage)(nil)
	_ caddy.CleanerUpper    = (*PostgresStorage)(nil)
	_ caddyfile.Unmarshaler = (*PostgresStorage)(nil)
	_ StorageBackend        = (*PostgresStorage)(nil)
	_ keySharer             = (*PostgresStorage)(nil)
)
