// Package pgstore is the store.Store backend for several Caddy instances:
// one PostgreSQL database (through a pgx connection pool) shared by every
// instance behind a load balancer.
//
// # Layout
//
// One table per record kind, in the schema the connection's search_path
// selects (normally public), all named mcp_auth_*. Each row holds the key
// and the columns that queries, locks and Sweep need, and the record itself
// as JSON in `rec`, exactly as the server gave it: codes, states, tokens
// and client secrets only as their SHA-256 digests, the GitHub token only
// as the AES-GCM ciphertext the server sealed.
//
// # Concurrency
//
// Every method is one transaction at READ COMMITTED, and every
// check-then-write takes a row lock first (SELECT ... FOR UPDATE, or a
// single DELETE/UPDATE ... RETURNING), so that two instances racing for a
// single-use record, or rotating the same refresh token, see one winner.
// Locks are taken grant first, then its tokens, so that revocation and
// rotation of one grant queue up instead of deadlocking; a transaction that
// PostgreSQL still aborts for a deadlock or a serialization failure is run
// again, whole, a few times.
//
// # Revocation
//
// Revoking a grant deletes the grant, its access tokens and its current
// refresh token in one transaction (bboltstore deletes only the grant and
// leaves its dead tokens to Sweep), and keeps rotated refresh tokens until
// they expire so that their reuse is still recognised. Token lookups join
// the grant, so a token never outlives its grant.
//
// Each instance keeps the access tokens and clients it read in memory for
// Options.CacheTTL. Every transaction that revokes also sends a
// notification (LISTEN/NOTIFY, notify.go) on which the other instances
// empty their caches at once; a notification that is lost leaves the TTL
// as the bound.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// maxAttempts bounds how often a transaction that PostgreSQL aborted for a
// deadlock or a serialization failure is run.
const maxAttempts = 4

// Options tune Open.
type Options struct {
	// ConnectTimeout bounds Open's first connection and schema check.
	// Zero means 10 seconds.
	ConnectTimeout time.Duration

	// CacheTTL is how long an access token or client read from the
	// database is served from memory: the longest a revocation made on
	// another instance takes to be refused here when its notification is
	// lost. Zero means CacheTTL (1 second).
	CacheTTL time.Duration

	// Logger receives the revocation listener's reports (its connection
	// lost, and back), never a password. Nil discards them.
	Logger *zap.Logger
}

// Store is a store.Store in PostgreSQL. It is safe for concurrent use, by
// any number of processes sharing the database.
type Store struct {
	pool *pgxpool.Pool
	// tokens caches access tokens for the gate, and clients those the
	// token endpoint reads on every request. This instance empties them
	// after each of its own deleting writes, and when another instance's
	// revocation is notified (notify.go); a deletion whose notification
	// was lost is seen within the TTL.
	tokens  store.TokenCache
	clients store.Cache[store.Client]

	// channel is the schema's notification channel, self the payload of
	// this store's notifications, listener the goroutine that hears the
	// others'.
	channel  string
	self     string
	listener *listener
	closing  sync.Once
}

// CacheTTL is the default of Options.CacheTTL: how long an access token or
// client read from the database is served from memory. Revocations made on
// this instance are refused at once, and those made on another as soon as
// its notification arrives; CacheTTL bounds the delay when a notification
// is lost. (A client deleted elsewhere and still cached here gets no
// tokens: issuing and refreshing lock its row or its grant.)
const CacheTTL = time.Second

var _ store.Store = (*Store)(nil)

// ErrBadDSN is matched (with errors.Is) by Open's error for a connection
// string that does not parse. The error never repeats the string, which
// may hold a password.
var ErrBadDSN = errors.New("pgstore: the connection string does not parse (it is not shown, because it may hold a password)")

// Open connects to the database named by dsn (a PostgreSQL URL or key=value
// connection string; pool settings such as pool_max_conns are accepted),
// creates or migrates the schema, and returns the store. It fails if the
// database cannot be reached within opts.ConnectTimeout, or holds a schema
// written by a newer caddymcp. It starts the revocation listener, which
// holds one more connection to the database, outside the pool.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, ErrBadDSN
	}
	return OpenConfig(ctx, cfg, opts)
}

// OpenConfig is Open with a parsed pool configuration.
func OpenConfig(ctx context.Context, cfg *pgxpool.Config, opts Options) (*Store, error) {
	timeout := opts.ConnectTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	if cfg.ConnConfig.ConnectTimeout <= 0 || cfg.ConnConfig.ConnectTimeout > timeout {
		cfg.ConnConfig.ConnectTimeout = timeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	ttl := opts.CacheTTL
	if ttl <= 0 {
		ttl = CacheTTL
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	s := &Store{pool: pool, self: newNonce()}
	s.tokens.TTL = ttl
	s.clients.TTL = ttl
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := pool.QueryRow(ctx, channelSQL).Scan(&s.channel); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: naming the notification channel: %w", err)
	}
	if s.listener, err = startListener(ctx, s, cfg.ConnConfig, log); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: listening for revocations: %w", err)
	}
	return s, nil
}

// Close stops the revocation listener and closes the pool. It waits for
// connections in use; calling it again is a no-op.
func (s *Store) Close() error {
	s.closing.Do(func() {
		s.listener.stop()
		s.pool.Close()
	})
	return nil
}

// --- transactions ----------------------------------------------------------

// tx runs fn in a transaction and commits it if fn returns nil. Like
// bboltstore, functions report the caller's outcome (ErrNotFound,
// ErrCodeReplayed, ...) through a variable they reset on entry and return
// nil, so that a revocation they made is committed; they return an error
// only to roll back. fn may run more than once.
//
// It empties this instance's caches afterwards, as fn may have revoked
// tokens or deleted a client; for writes that cannot use txKeep.
func (s *Store) tx(ctx context.Context, fn func(pgx.Tx) error) error {
	err := s.txKeep(ctx, fn)
	s.invalidate() // also after a failure: the commit may have happened
	return err
}

// invalidate empties this instance's caches.
func (s *Store) invalidate() {
	s.tokens.Invalidate()
	s.clients.Invalidate()
}

// txKeep is tx for transactions that never delete an access token or a
// grant, which leave the access-token cache alone.
func (s *Store) txKeep(ctx context.Context, fn func(pgx.Tx) error) error {
	var err error
	for range maxAttempts {
		err = pgx.BeginFunc(ctx, s.pool, fn)
		if !retryable(err) || ctx.Err() != nil {
			break
		}
	}
	return dbErr(err)
}

// retryable reports whether PostgreSQL aborted the transaction for a
// deadlock (40P01) or a serialization failure (40001), after which running
// it again is the documented remedy.
func retryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// uniqueViolation reports whether err is PostgreSQL's 23505.
func uniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// dbErr maps a database error to the store's: a unique violation is
// ErrExists; store errors and context errors pass unchanged; anything else
// is wrapped as a failure of this backend.
func dbErr(err error) error {
	switch {
	case err == nil:
		return nil
	case uniqueViolation(err):
		return store.ErrExists
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrExists),
		errors.Is(err, store.ErrCodeReplayed), errors.Is(err, store.ErrRefreshReused),
		errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("pgstore: %w", err)
}
