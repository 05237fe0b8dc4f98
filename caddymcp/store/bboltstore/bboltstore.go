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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// schemaVersion is the layout version this code reads and writes. Bump it
// (and add a migration in initSchema) when the layout changes.
const schemaVersion = 4

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

// initSchema checks the schema version of an existing file, or stamps a new
// one, and creates missing buckets. It checks before it writes, so a file
// it refuses is left untouched.
func initSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		foreign := false
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error {
			foreign = true
			return nil
		})
		if foreign {
			return errors.New("the file holds data but no caddymcp schema version; is it a caddymcp state file?")
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keySchemaVersion, []byte(strconv.Itoa(schemaVersion))); err != nil {
			return err
		}
	} else {
		raw := meta.Get(keySchemaVersion)
		v, err := strconv.ParseUint(string(raw), 10, 32)
		if err != nil {
			return fmt.Errorf("invalid schema version %q in the file", raw)
		}
		if v > schemaVersion {
			return fmt.Errorf("the file has schema version %d, newer than this build of caddymcp supports (%d); upgrade caddymcp or use another file", v, schemaVersion)
		}
		if v < schemaVersion {
			// Version 2 writes access tokens in binary (codec.go),
			// version 3 refresh tokens and grants too, version 4 adds
			// refresh generations; records of older versions are still
			// read. Version 3 also dropped the
			// index from grants to their tokens, whose entries all
			// belong to live grants or to tokens Sweep will find by
			// their expiry. The rest is restamping the file.
			if tx.Bucket(bucketGrantTokensV2) != nil {
				if err := tx.DeleteBucket(bucketGrantTokensV2); err != nil {
					return err
				}
			}
			if err := meta.Put(keySchemaVersion, []byte(strconv.Itoa(schemaVersion))); err != nil {
				return err
			}
		}
	}
	for _, name := range dataBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
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

// revokeGrant deletes a grant and its index entry, and returns how many
// grants it deleted (0 or 1). Its tokens die with it, as every lookup
// checks the grant, and are left for Sweep (see Revocation in the package
// comment). An unknown grant is not an error.
func revokeGrant(tx *bolt.Tx, grantID string) (int, error) {
	if !store.ValidID(grantID) {
		return 0, nil
	}
	grants := tx.Bucket(bucketGrants)
	var g store.Grant
	ok, err := get(grants, []byte(grantID), &g)
	if err != nil || !ok {
		return 0, err
	}
	if err := grants.Delete([]byte(grantID)); err != nil {
		return 0, err
	}
	if store.ValidID(g.ClientID) {
		if err := tx.Bucket(bucketClientGrants).Delete(clientGrantKey(g.ClientID, grantID)); err != nil {
			return 0, err
		}
	}
	return 1, nil
}

// --- clients ---------------------------------------------------------------

// PutClient implements store.Store.
func (s *Store) PutClient(ctx context.Context, c *store.Client) error {
	if err := store.CheckClient(c); err != nil {
		return err
	}
	created := c.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	val, err := encode(unixNano(created.Add(store.UnusedClientTTL)), c)
	if err != nil {
		return err
	}
	key := []byte(c.ID)
	// The token endpoint puts the stored stand-in of a client that lives
	// outside the store at every exchange; once it is there, that costs
	// no write.
	if ok, err := s.exists(ctx, bucketClients, key); err != nil || ok {
		if err == nil {
			err = store.ErrExists
		}
		return err
	}
	var res error
	err = s.updateKeep(ctx, func(tx *bolt.Tx) error {
		res = nil
		b := tx.Bucket(bucketClients)
		if b.Get(key) != nil {
			res = store.ErrExists
			return nil
		}
		return b.Put(key, val)
	})
	if err != nil {
		return err
	}
	return res
}

// keepClient extends a client's expiry prefix to IdleClientTTL past a
// grant's expiry. It rewrites the record only when that gains more than a
// day, so that refreshing does not rewrite the client every time.
func keepClient(tx *bolt.Tx, clientID string, grantExp time.Time) error {
	b := tx.Bucket(bucketClients)
	raw := b.Get([]byte(clientID))
	if raw == nil {
		return nil
	}
	exp, err := valueExp(raw)
	if err != nil {
		return nil // not ours to judge; Sweep leaves it alone too
	}
	want := unixNano(grantExp.Add(store.IdleClientTTL))
	if exp >= want-int64(24*time.Hour) {
		return nil
	}
	val := make([]byte, len(raw))
	binary.BigEndian.PutUint64(val, uint64(want))
	copy(val[8:], raw[8:])
	return b.Put([]byte(clientID), val)
}

// GetClient implements store.Store.
func (s *Store) GetClient(ctx context.Context, id string) (*store.Client, error) {
	if !store.ValidID(id) {
		return nil, store.ErrNotFound
	}
	key := []byte(id)
	c, ok, gen := s.clients.Get(key, time.Time{})
	if ok {
		return c.Clone(), nil
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		ok, err = get(tx.Bucket(bucketClients), key, &c)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, store.ErrNotFound
	}
	s.clients.Put(key, &c, gen, time.Time{})
	return c.Clone(), nil
}

// GetGrant implements store.Store.
func (s *Store) GetGrant(ctx context.Context, id string, now time.Time) (*store.Grant, error) {
	if !store.ValidID(id) {
		return nil, store.ErrNotFound
	}
	var g store.Grant
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		ok, err = get(tx.Bucket(bucketGrants), []byte(id), &g)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ok || store.Expired(g.ExpiresAt, now) {
		return nil, store.ErrNotFound
	}
	return &g, nil
}

// DeleteClient implements store.Store. The client's grants are found
// through the client_grants index and revoked in the same transaction.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	if !store.ValidID(id) {
		return store.ErrNotFound
	}
	key := []byte(id)
	var res error
	err := s.update(ctx, func(tx *bolt.Tx) error {
		res = nil
		clients := tx.Bucket(bucketClients)
		if clients.Get(key) == nil {
			res = store.ErrNotFound
			return nil
		}
		prefix := lenPrefix(id, 0)
		for _, k := range prefixKeys(tx.Bucket(bucketClientGrants), prefix) {
			// revokeGrant also deletes this index entry.
			if _, err := revokeGrant(tx, string(k[len(prefix):])); err != nil {
				return err
			}
		}
		if _, err := dropLeftover(tx, store.LedgerKey(store.LeftoverClient, id)); err != nil {
			return err
		}
		return clients.Delete(key)
	})
	if err != nil {
		return err
	}
	return res
}

// --- pending ---------------------------------------------------------------

// PutPending implements store.Store. A state digest already stored is
// ErrExists: overwriting would let one request replace another.
func (s *Store) PutPending(ctx context.Context, p *store.Pending) error {
	if err := store.CheckPending(p); err != nil {
		return err
	}
	val, err := encode(unixNano(p.ExpiresAt), p)
	if err != nil {
		return err
	}
	return s.insert(ctx, bucketPending, p.StateHash, val)
}

// insert stores val under key in bucket unless the key is taken, which is
// ErrExists: for single-use records, overwriting would let one request
// replace another.
func (s *Store) insert(ctx context.Context, bucket, key, val []byte) error {
	var res error
	err := s.updateKeep(ctx, func(tx *bolt.Tx) error {
		res = nil // update may run this more than once
		b := tx.Bucket(bucket)
		if b.Get(key) != nil {
			res = store.ErrExists
			return nil
		}
		return b.Put(key, val)
	})
	if err != nil {
		return err
	}
	return res
}

// TakePending implements store.Store.
func (s *Store) TakePending(ctx context.Context, stateHash []byte, now time.Time) (*store.Pending, error) {
	if !store.ValidKey(stateHash) {
		return nil, store.ErrNotFound
	}
	if ok, err := s.exists(ctx, bucketPending, stateHash); err != nil || !ok {
		return nil, orNotFound(err)
	}
	var out *store.Pending
	var res error
	err := s.updateKeep(ctx, func(tx *bolt.Tx) error {
		out, res = nil, nil
		b := tx.Bucket(bucketPending)
		var p store.Pending
		ok, err := get(b, stateHash, &p)
		if err != nil {
			return err
		}
		if !ok {
			res = store.ErrNotFound
			return nil
		}
		// Delete even an expired one: it is dead either way, and this
		// saves Sweep the work. Its leftover entry goes with it.
		if err := b.Delete(stateHash); err != nil {
			return err
		}
		if _, err := dropLeftover(tx, store.LedgerKey(store.LeftoverSignIn, store.SignInKey(stateHash))); err != nil {
			return err
		}
		if store.Expired(p.ExpiresAt, now) {
			res = store.ErrNotFound
			return nil
		}
		out = &p
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, res
}

// orNotFound turns a nil error of a failed lookup into ErrNotFound.
func orNotFound(err error) error {
	if err != nil {
		return err
	}
	return store.ErrNotFound
}

// --- codes -----------------------------------------------------------------

// PutCode implements store.Store. A code digest already stored is
// ErrExists: overwriting a used code would reset its single use.
func (s *Store) PutCode(ctx context.Context, c *store.Code) error {
	if err := store.CheckCode(c); err != nil {
		return err
	}
	// The caller's Used and GrantID are ignored: the store maintains them.
	rec := *c
	rec.Used, rec.GrantID = false, ""
	val, err := encode(unixNano(c.ExpiresAt), &rec)
	if err != nil {
		return err
	}
	return s.insert(ctx, bucketCodes, c.Hash, val)
}

// GetCode implements store.Store.
func (s *Store) GetCode(ctx context.Context, codeHash []byte, now time.Time) (*store.Code, error) {
	if !store.ValidKey(codeHash) {
		return nil, store.ErrNotFound
	}
	var c store.Code
	var res error
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ok, err := get(tx.Bucket(bucketCodes), codeHash, &c)
		switch {
		case err != nil:
			return err
		case !ok:
			res = store.ErrNotFound
		default:
			res = store.CheckCodeUse(&c, now)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res != nil {
		return nil, res
	}
	return &c, nil
}

// RedeemCode implements store.Store.
func (s *Store) RedeemCode(ctx context.Context, codeHash []byte, now time.Time) (*store.Code, error) {
	if !store.ValidKey(codeHash) {
		return nil, store.ErrNotFound
	}
	if ok, err := s.exists(ctx, bucketCodes, codeHash); err != nil || !ok {
		return nil, orNotFound(err)
	}
	var out *store.Code
	var res error
	err := s.updateKeep(ctx, func(tx *bolt.Tx) error {
		out, res = nil, nil
		b := tx.Bucket(bucketCodes)
		var c store.Code
		ok, err := get(b, codeHash, &c)
		if err != nil {
			return err
		}
		if !ok {
			res = store.ErrNotFound
			return nil
		}
		if res = store.CheckCodeUse(&c, now); res != nil {
			if res == store.ErrCodeReplayed {
				// Commit the revocation, then report the replay.
				_, err := revokeGrant(tx, c.GrantID)
				return err
			}
			return nil
		}
		c.Used = true
		if err := putCode(b, &c); err != nil {
			return err
		}
		out = &c
		return nil
	})
	if err != nil || res == store.ErrCodeReplayed {
		s.tokens.Invalidate() // the replay revoked a grant
	}
	if err != nil {
		return nil, err
	}
	return out, res
}

func putCode(b *bolt.Bucket, rec *store.Code) error {
	val, err := encode(unixNano(rec.ExpiresAt), rec)
	if err != nil {
		return err
	}
	return b.Put(rec.Hash, val)
}

// --- grants ----------------------------------------------------------------

// putTokens stores a new access/refresh pair.
func putTokens(tx *bolt.Tx, at *store.AccessToken, atVal []byte, rt *store.RefreshToken, rtVal []byte) error {
	if err := tx.Bucket(bucketAccess).Put(at.Hash, atVal); err != nil {
		return err
	}
	return tx.Bucket(bucketRefresh).Put(rt.Hash, rtVal)
}

// tokenExists reports whether either new token digest is taken.
func tokenExists(tx *bolt.Tx, at *store.AccessToken, rt *store.RefreshToken) bool {
	return tx.Bucket(bucketAccess).Get(at.Hash) != nil || tx.Bucket(bucketRefresh).Get(rt.Hash) != nil
}

// CreateGrant implements store.Store. Beyond the interface's rules: the
// client must exist (ErrNotFound otherwise), so that a grant can never be
// created behind a DeleteClient, and a grant ID or token digest already
// stored is ErrExists.
func (s *Store) CreateGrant(ctx context.Context, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken, codeHash []byte) error {
	if err := store.CheckTokenPair(g, at, rt); err != nil {
		return err
	}
	withCode := codeHash != nil
	if withCode && !store.ValidKey(codeHash) {
		return store.ErrNotFound
	}
	gVal := encodeGrant(g)
	atVal := encodeAccess(at)
	rtVal := encodeRefresh(rt)
	gKey := []byte(g.ID)
	var res error
	revoked := false
	err := s.updateKeep(ctx, func(tx *bolt.Tx) error {
		res, revoked = nil, false
		var code store.Code
		if withCode {
			ok, err := get(tx.Bucket(bucketCodes), codeHash, &code)
			if err != nil {
				return err
			}
			if !ok {
				res = store.ErrNotFound
				return nil
			}
			if res = store.CheckCodeGrant(&code, g); res != nil {
				if res == store.ErrCodeReplayed {
					// Commit the revocation, then report the replay.
					revoked = code.GrantID != ""
					_, err := revokeGrant(tx, code.GrantID)
					return err
				}
				return nil
			}
		}
		if tx.Bucket(bucketClients).Get([]byte(g.ClientID)) == nil {
			res = store.ErrNotFound
			return nil
		}
		grants := tx.Bucket(bucketGrants)
		if grants.Get(gKey) != nil || tokenExists(tx, at, rt) {
			res = store.ErrExists
			return nil
		}

		// All checks passed; from here on, only writes.
		if withCode {
			code.Used = true
			code.GrantID = g.ID
			if err := putCode(tx.Bucket(bucketCodes), &code); err != nil {
				return err
			}
		}
		if err := grants.Put(gKey, gVal); err != nil {
			return err
		}
		if err := tx.Bucket(bucketClientGrants).Put(clientGrantKey(g.ClientID, g.ID), nil); err != nil {
			return err
		}
		if err := keepClient(tx, g.ClientID, g.ExpiresAt); err != nil {
			return err
		}
		// The client came to something: it no longer counts against
		// the address it registered from.
		if _, err := dropLeftover(tx, store.LedgerKey(store.LeftoverClient, g.ClientID)); err != nil {
			return err
		}
		return putTokens(tx, at, atVal, rt, rtVal)
	})
	if err != nil || revoked {
		s.tokens.Invalidate() // the replay revoked a grant
	}
	if err != nil {
		return err
	}
	return res
}

// --- tokens ----------------------------------------------------------------

// GetAccessToken implements store.Store. This is the per-request hot path:
// one read-only transaction, two Gets, no writes.
func (s *Store) GetAccessToken(ctx context.Context, hash []byte, now time.Time) (*store.AccessToken, error) {
	if !store.ValidKey(hash) {
		return nil, store.ErrNotFound
	}
	cached, ok, gen := s.tokens.Get(hash, now)
	if ok {
		if store.Expired(cached.ExpiresAt, now) {
			return nil, store.ErrExpired
		}
		return &cached, nil
	}
	var at store.AccessToken
	var res error
	err := s.view(ctx, func(tx *bolt.Tx) error {
		res = store.ErrNotFound
		raw := tx.Bucket(bucketAccess).Get(hash)
		if raw == nil {
			return nil
		}
		// Reject an expired token from its prefix, before decoding.
		exp, err := valueExp(raw)
		if err != nil {
			return err
		}
		if unixNano(now) >= exp {
			res = store.ErrExpired
			return nil
		}
		if err := decodeRecord(raw[8:], &at); err != nil {
			return err
		}
		if store.Expired(at.ExpiresAt, now) {
			res = store.ErrExpired
			return nil
		}
		// Revocation deletes the grant; a token without one is dead.
		if !store.ValidID(at.GrantID) || tx.Bucket(bucketGrants).Get([]byte(at.GrantID)) == nil {
			return nil
		}
		res = nil
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res != nil {
		return nil, res
	}
	s.tokens.Put(hash, &at, gen, now)
	return &at, nil
}

// GetRefreshToken implements store.Store. It reads in a read-only
// transaction; only a reused token, which must revoke its grant, takes a
// write transaction.
func (s *Store) GetRefreshToken(ctx context.Context, hash []byte, use store.RefreshUse) (*store.RefreshToken, *store.Grant, store.RefreshVerdict, error) {
	if !store.ValidKey(hash) {
		return nil, nil, 0, store.ErrNotFound
	}
	var rt store.RefreshToken
	var g store.Grant
	var v store.RefreshVerdict
	var res error
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		v, res, err = judgeRefresh(tx, hash, use, &rt, &g)
		return err
	})
	if err != nil {
		return nil, nil, 0, err
	}
	if res == nil && v == store.RefreshReused {
		return nil, nil, 0, s.refreshReused(ctx, hash, use)
	}
	if res != nil {
		return nil, nil, 0, res
	}
	return &rt, &g, v, nil
}

// judgeRefresh reads the refresh token hash and its grant into rt and g
// and judges the token (store.ClassifyRefresh). res is ErrNotFound for a
// token that is absent, expired, of a revoked grant, or issued to another
// client than use's; err is a failure to read.
func judgeRefresh(tx *bolt.Tx, hash []byte, use store.RefreshUse, rt *store.RefreshToken, g *store.Grant) (v store.RefreshVerdict, res, err error) {
	ok, err := get(tx.Bucket(bucketRefresh), hash, rt)
	if err != nil || !ok {
		return 0, store.ErrNotFound, err
	}
	// Another client's token is unknown to this one, whatever its
	// state: it must not be able to revoke the owner's grant.
	if rt.ClientID != use.ClientID || store.Expired(rt.ExpiresAt, use.Now) || !store.ValidID(rt.GrantID) {
		return 0, store.ErrNotFound, nil
	}
	ok, err = get(tx.Bucket(bucketGrants), []byte(rt.GrantID), g)
	if err != nil || !ok {
		return 0, store.ErrNotFound, err
	}
	if store.Expired(g.ExpiresAt, use.Now) || g.ClientID != rt.ClientID {
		return 0, store.ErrNotFound, nil
	}
	return store.ClassifyRefresh(rt, g, use), nil, nil
}

// refreshReused revokes the grant of a reused refresh token and returns
// ErrRefreshReused. It judges the token again in the write transaction:
// the token may have been swept, or its grant revoked, since it was read
// (ErrNotFound).
func (s *Store) refreshReused(ctx context.Context, hash []byte, use store.RefreshUse) error {
	var res error
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var rt store.RefreshToken
		var g store.Grant
		v, notFound, err := judgeRefresh(tx, hash, use, &rt, &g)
		if err != nil || notFound != nil {
			res = notFound
			return err
		}
		res = nil
		if v != store.RefreshReused {
			// A generation only moves forward, so a token judged
			// reused stays reused; were it otherwise, revoking would
			// be wrong.
			return nil
		}
		if _, err := revokeGrant(tx, rt.GrantID); err != nil {
			return err
		}
		res = store.ErrRefreshReused
		return nil
	})
	s.tokens.Invalidate()
	if err != nil {
		return err
	}
	if res == nil {
		return store.ErrNotFound
	}
	return res
}

// RotateRefresh implements store.Store. Beyond the interface's rules: g
// must be the token's grant, and new token digests already stored are
// ErrExists.
func (s *Store) RotateRefresh(ctx context.Context, oldHash []byte, use store.RefreshUse, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken) (store.RefreshVerdict, error) {
	if err := store.CheckTokenPair(g, at, rt); err != nil {
		return 0, err
	}
	if !store.ValidKey(oldHash) {
		return 0, store.ErrNotFound
	}
	if ok, err := s.exists(ctx, bucketRefresh, oldHash); err != nil || !ok {
		return 0, orNotFound(err)
	}
	atVal := encodeAccess(at)
	var v store.RefreshVerdict
	var res error
	err := s.updateKeep(ctx, func(tx *bolt.Tx) error {
		var old store.RefreshToken
		var cur store.Grant
		var err error
		v, res, err = judgeRefresh(tx, oldHash, use, &old, &cur)
		if err != nil || res != nil {
			return err
		}
		if v == store.RefreshReused {
			// Commit the revocation, then report the reuse.
			if _, err := revokeGrant(tx, old.GrantID); err != nil {
				return err
			}
			res = store.ErrRefreshReused
			return nil
		}
		if g.ID != cur.ID || g.ClientID != cur.ClientID {
			res = fmt.Errorf("bboltstore: refresh token belongs to grant %q of client %q, not %q of %q", cur.ID, cur.ClientID, g.ID, g.ClientID)
			return nil
		}
		if tokenExists(tx, at, rt) {
			res = store.ErrExists
			return nil
		}

		// All checks passed; from here on, only writes. The old token
		// is not written: its generation, against the grant's, says
		// that it was used.
		store.ApplyRefresh(&cur, g, v, rt, use.Now)
		if err := tx.Bucket(bucketGrants).Put([]byte(cur.ID), encodeGrant(&cur)); err != nil {
			return err
		}
		if err := keepClient(tx, cur.ClientID, cur.ExpiresAt); err != nil {
			return err
		}
		return putTokens(tx, at, atVal, rt, encodeRefresh(rt))
	})
	if err != nil || errors.Is(res, store.ErrRefreshReused) {
		s.tokens.Invalidate() // the reuse revoked the grant
	}
	if err != nil {
		return 0, err
	}
	return v, res
}

// RevokeAccessToken implements store.Store.
func (s *Store) RevokeAccessToken(ctx context.Context, hash []byte) error {
	if !store.ValidKey(hash) {
		return nil
	}
	if ok, err := s.exists(ctx, bucketAccess, hash); err != nil || !ok {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccess).Delete(hash)
	})
}

// RevokeGrant implements store.Store.
func (s *Store) RevokeGrant(ctx context.Context, grantID string) error {
	if !store.ValidID(grantID) {
		return nil
	}
	// Nothing to delete unless the grant exists.
	if ok, err := s.exists(ctx, bucketGrants, []byte(grantID)); err != nil || !ok {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		_, err := revokeGrant(tx, grantID)
		return err
	})
}
