// Package bboltstore is the embedded store.Store backend: one bbolt file,
// opened once per process.
//
// # Layout
//
// One bucket per record kind, keyed by the record's digest (raw bytes) or ID
// (string bytes):
//
//	clients   client ID  -> Client
//	pending   state hash -> Pending
//	codes     code hash  -> Code
//	grants    grant ID   -> Grant
//	access    token hash -> AccessToken
//	refresh   token hash -> RefreshToken
//	consents  consent key -> Consent
//
// Every value is an 8-byte big-endian expiry (Unix nanoseconds) followed by
// the record: access and refresh tokens and grants in a binary form
// (codec.go), the others as JSON. The expiry prefix lets Sweep find
// expired records without decoding them.
//
// Two index buckets hold only keys, with empty values:
//
//	client_grants  len16(client ID) | grant ID          so DeleteClient finds the grants
//	user_consents  user ID (8 bytes) | len16(client ID) | consent key
//	                                                    so WithdrawConsents finds them
//
// The length prefix keeps one ID from being a key prefix of another.
//
// A meta bucket holds the schema version.
//
// # Revocation
//
// RevokeGrant (and DeleteClient, a replayed code, a reused refresh token,
// and Sweep of a lapsed grant) deletes the grant. That is what revokes its
// tokens: every lookup of an access or refresh token, and every rotation,
// checks that the token's grant exists, and grant IDs are never reused.
// The tokens themselves stay until Sweep removes them at their expiry, as
// rotated refresh tokens always did (so that presenting one again is
// recognised as reuse): an index from grants to tokens, which deleting
// them at once needs, cost more than a third of the time of every token
// issuance and refresh (BenchmarkRotateRefreshParallel), for records that
// are dead either way.
//
// # Writes
//
// Writes go through a group commit (commit.go) that, like bbolt's DB.Batch,
// groups concurrent writers into one transaction and one fsync, but
// without DB.Batch's fixed 10ms wait. A batched function may run more than once
// and a returned error rolls back the whole group, so functions here report
// the caller's outcome (ErrNotFound, ErrCodeReplayed, ...) through a variable
// they reset on entry and return nil; they only return an error for real
// failures, and they make every check before their first write.
package bboltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// DefaultLockTimeout is how long Open waits for another process to release
// the file when Options.LockTimeout is zero.
const DefaultLockTimeout = 2 * time.Second

var (
	bucketMeta         = []byte("meta")
	bucketClients      = []byte("clients")
	bucketPending      = []byte("pending")
	bucketCodes        = []byte("codes")
	bucketGrants       = []byte("grants")
	bucketAccess       = []byte("access")
	bucketRefresh      = []byte("refresh")
	bucketClientGrants = []byte("client_grants")
	bucketConsents     = []byte("consents")
	bucketUserConsents = []byte("user_consents")

	keySchemaVersion = []byte("schema_version")

	// bucketGrantTokensV2 is the index of schema version 2 that version
	// 3 deletes.
	bucketGrantTokensV2 = []byte("grant_tokens")

	dataBuckets = [][]byte{
		bucketClients, bucketPending, bucketCodes, bucketGrants,
		bucketAccess, bucketRefresh, bucketClientGrants,
		bucketConsents, bucketUserConsents,
		bucketLeftovers, bucketLeftoverKeys, bucketLeftoverCounts,
	}
)

// ErrLocked is matched (with errors.Is) by the error Open returns when
// another process or handle holds the file.
var ErrLocked = errors.New("bboltstore: file is locked")

// lockedError is Open's error for a file held by someone else; its message
// tells an operator what to look for.
type lockedError struct{ path string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("bboltstore: open %s: the file is locked by another process (is another Caddy instance using it?)", e.path)
}

func (e *lockedError) Is(target error) bool { return target == ErrLocked }

// Options tune Open and New.
type Options struct {
	// LockTimeout is how long Open waits for the file lock when another
	// process (or another handle in this process) has the file open.
	// Zero means DefaultLockTimeout.
	LockTimeout time.Duration

	// Logger, if set, is told when the file is opened. Default: nothing
	// is logged.
	Logger *zap.Logger
}

// Store is a store.Store in a bbolt file. It is safe for concurrent use.
type Store struct {
	path string
	opts Options

	// db and commits are set once, when the file is opened, before
	// ready; they are read only after ready.
	db      *bolt.DB
	commits *groupCommit
	ready   atomic.Bool
	mu      sync.Mutex // serializes opening and closing
	closed  bool

	tokens store.TokenCache
	// clients keeps the clients read: the token endpoint reads its
	// client on every request. Invalidated with the tokens (update,
	// Sweep); PutClient only adds clients, which are never cached absent.
	clients store.Cache[store.Client]
	walks   ledgerWalks
}

var _ store.Store = (*Store)(nil)

// ErrClosed is returned by the calls of a store closed before its file
// was opened.
var ErrClosed = errors.New("bboltstore: the store is closed")

// Open opens or creates the store file at path. The parent directory is
// created (mode 0700) if missing and a new file gets mode 0600, because the
// file holds token digests and sealed GitHub tokens. Open fails with an error
// matching ErrLocked if the file stays locked for opts.LockTimeout, and
// refuses files written by a newer schema version or by something else.
func Open(path string, opts Options) (*Store, error) {
	s, err := New(path, opts)
	if err != nil {
		return nil, err
	}
	if err := s.OpenFile(0); err != nil {
		return nil, err
	}
	return s, nil
}

// New returns the store of the file at path without opening the file. It
// is opened, as Open opens it, by OpenFile or by the first call that needs
// it, which waits up to opts.LockTimeout for another process to release
// it; a failed open is retried by the next call. A store closed before its
// file was opened never opens it: its calls fail with ErrClosed.
func New(path string, opts Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("bboltstore: open: empty path")
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	return &Store{path: path, opts: opts}, nil
}

// OpenFile opens the file if it is not open yet, waiting up to lockTimeout
// (0: Options.LockTimeout) for another process to release it.
func (s *Store) OpenFile(lockTimeout time.Duration) error {
	if s.ready.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ready.Load() {
		return nil
	}
	if s.closed {
		return ErrClosed
	}
	if lockTimeout <= 0 {
		lockTimeout = s.opts.LockTimeout
	}
	path := s.path
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("bboltstore: open %s: create directory: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: lockTimeout,
		// The hashmap freelist stays fast as the file grows and fragments.
		// The freelist is synced: without it, opening a file with 100,000
		// grants rebuilt the freelist by walking every page (130 ms
		// against 3 ms), while commits measured no faster
		// (BenchmarkOpen100kGrants, BenchmarkCreateGrantParallel).
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return &lockedError{path: path}
		}
		return fmt.Errorf("bboltstore: open %s: %w", path, err)
	}
	if err := db.Update(initSchema); err != nil {
		_ = db.Close()
		return fmt.Errorf("bboltstore: open %s: %w", path, err)
	}
	s.db, s.commits = db, &groupCommit{db: db}
	s.ready.Store(true)
	if s.opts.Logger != nil {
		s.opts.Logger.Info("opened state file", zap.String("path", path))
	}
	return nil
}

// opened opens the file if it is not open yet.
func (s *Store) opened() error {
	if s.ready.Load() {
		return nil
	}
	return s.OpenFile(0)
}

// Path returns the file the store was opened from.
func (s *Store) Path() string { return s.path }

// Close closes the file. It waits for running transactions; calling it
// again is a no-op. A store whose file is not open yet is closed without
// opening it.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if !s.ready.Load() {
		return nil
	}
	return s.db.Close()
}

// --- encoding --------------------------------------------------------------

// The range of instants that fit in int64 Unix nanoseconds; expiries outside
// it are clamped, which keeps their order against any `now` in range.
var (
	minNanoTime = time.Unix(0, math.MinInt64)
	maxNanoTime = time.Unix(0, math.MaxInt64)
)

// neverExpires is the expiry prefix of records that do not expire (clients).
const neverExpires = math.MaxInt64

func unixNano(t time.Time) int64 {
	switch {
	case t.Before(minNanoTime):
		return math.MinInt64
	case t.After(maxNanoTime):
		return math.MaxInt64
	}
	return t.UnixNano()
}

var errCorrupt = errors.New("bboltstore: corrupt record (value shorter than its header)")

// encode builds a value: expiry prefix, then v as JSON.
func encode(exp int64, v any) ([]byte, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("bboltstore: encode: %w", err)
	}
	buf := make([]byte, 8+len(js))
	binary.BigEndian.PutUint64(buf, uint64(exp))
	copy(buf[8:], js)
	return buf, nil
}

// valueExp returns the expiry prefix of a stored value.
func valueExp(raw []byte) (int64, error) {
	if len(raw) < 8 {
		return 0, errCorrupt
	}
	return int64(binary.BigEndian.Uint64(raw)), nil
}

// get decodes the value under key into v and reports whether it was there.
func get(b *bolt.Bucket, key []byte, v any) (bool, error) {
	if len(key) == 0 {
		return false, nil
	}
	raw := b.Get(key)
	if raw == nil {
		return false, nil
	}
	if len(raw) < 8 {
		return false, errCorrupt
	}
	if err := decodeRecord(raw[8:], v); err != nil {
		return false, err
	}
	return true, nil
}

// lenPrefix returns len16(s) | s, the start of an index key.
func lenPrefix(s string, extra int) []byte {
	k := make([]byte, 2, 2+len(s)+extra)
	binary.BigEndian.PutUint16(k, uint16(len(s)))
	return append(k, s...)
}

func clientGrantKey(clientID, grantID string) []byte {
	return append(lenPrefix(clientID, len(grantID)), grantID...)
}

// prefixKeys returns copies of the keys of b that start with prefix. They
// are copied because deleting while a cursor walks is unsafe in bbolt and
// keys point into pages that a write may change.
func prefixKeys(b *bolt.Bucket, prefix []byte) [][]byte {
	var keys [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		keys = append(keys, bytes.Clone(k))
	}
	return keys
}

// --- transactions ----------------------------------------------------------

// update runs fn in a batched write transaction. fn must follow the rules in
// the package comment: reset its outputs on entry, return nil for outcomes.
//
// It clears the caches once fn has committed, as fn may have revoked
// tokens or deleted a client; for writes that cannot use updateKeep.
func (s *Store) update(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	err := s.updateKeep(ctx, fn)
	s.invalidate() // also after a failure: fn may have committed in a group that failed later
	return err
}

// invalidate empties the caches, after a write that may have deleted an
// access token, a grant or a client.
func (s *Store) invalidate() {
	s.tokens.Invalidate()
	s.clients.Invalidate()
}

// updateKeep is update for writes that never delete an access token or a
// grant (inserts, and changes to other records), which leave the
// access-token cache alone.
func (s *Store) updateKeep(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.opened(); err != nil {
		return err
	}
	if err := s.commits.update(fn); err != nil {
		return fmt.Errorf("bboltstore: %w", err)
	}
	return nil
}

// view runs fn in a read-only transaction.
func (s *Store) view(ctx context.Context, fn func(tx *bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.opened(); err != nil {
		return err
	}
	if err := s.db.View(fn); err != nil {
		return fmt.Errorf("bboltstore: %w", err)
	}
	return nil
}

// exists is a read-only pre-check used before write transactions whose key
// comes from the network: a random or forged value is answered without a
// write transaction (and its fsync).
func (s *Store) exists(ctx context.Context, bucket, key []byte) (bool, error) {
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucket).Get(key) != nil
		return nil
	})
	return ok, err
}
