package caddymcp

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore"
)

func init() {
	caddy.RegisterModule(BboltStorage{})
}

// StorageBackend is a module in the mcp_auth.storage namespace: it provides
// the store that holds clients, grants and tokens.
type StorageBackend interface {
	// Store returns the provisioned store.
	Store() store.Store
}

// BboltStorage keeps the authorization server's state in one bbolt file.
//
// The file is opened once per process and shared by every config and
// every site that names it: a config reload provisions the new handler
// before cleaning up the old one, so the file stays open (and its lock
// held) across reloads.
//
// Provisioning opens the file only if it is free at once. If another
// process holds it, the mcp_auth app waits for it when the config starts
// (up to lock_timeout, then fails with a clear "locked by another process"
// error). So `caddy validate` of a running server's config answers at once
// without touching its state file, and a second `caddy run` on the same
// file still fails at startup.
type BboltStorage struct {
	// Path of the bbolt file. Default: `mcp_auth/state.db` in Caddy's data
	// directory. Placeholders such as {env.*} are replaced.
	Path string `json:"path,omitempty"`

	// LockTimeout is how long to wait for the file if another process
	// holds it before failing with a clear error. Default: 2s.
	LockTimeout caddy.Duration `json:"lock_timeout,omitempty"`

	key    string
	shared *sharedStore
}

// CaddyModule returns the Caddy module information.
func (BboltStorage) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "mcp_auth.storage.bbolt",
		New: func() caddy.Module { return new(BboltStorage) },
	}
}

// storePool holds the state files of this process, by absolute path. The
// admin API finds the running stores here.
var storePool = caddy.NewUsagePool()

// sweepInterval is how often expired records are collected.
const sweepInterval = 10 * time.Minute

// Provision joins (or creates) the pool entry of the file, without opening
// it, and has the mcp_auth app open it when the config starts.
func (b *BboltStorage) Provision(ctx caddy.Context) error {
	path := caddy.NewReplacer().ReplaceKnown(b.Path, "")
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "mcp_auth", "state.db")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("storage bbolt: %w", err)
	}
	timeout := time.Duration(b.LockTimeout)
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	log := ctx.Logger()
	val, _, err := storePool.LoadOrNew(abs, func() (caddy.Destructor, error) {
		return &sharedStore{path: abs, timeout: timeout, log: log}, nil
	})
	if err != nil {
		return fmt.Errorf("storage bbolt: %w", err)
	}
	b.key, b.shared = abs, val.(*sharedStore)
	if _, err := b.shared.open(time.Millisecond); err != nil {
		if !errors.Is(err, bboltstore.ErrLocked) {
			_, _ = storePool.Delete(abs)
			b.shared = nil
			return err
		}
		log.Debug("the state file is locked by another process; waiting for it when the config starts", zap.String("path", abs))
	}
	app, err := ctx.App(appModuleID)
	if err != nil {
		return err
	}
	app.(*App).addStore(b.shared)
	return nil
}

// Store returns the shared store.
func (b *BboltStorage) Store() store.Store { return b.shared }

// Cleanup releases this config's use of the file.
func (b *BboltStorage) Cleanup() error {
	if b.shared == nil {
		return nil
	}
	_, err := storePool.Delete(b.key)
	return err
}

// sharedStore is one state file of this process, opened on first use, and
// the sweeper that collects its expired records. It implements store.Store
// by passing each call to the open file.
type sharedStore struct {
	path    string
	timeout time.Duration
	log     *zap.Logger

	db      atomic.Pointer[bboltstore.Store] // set once opened
	mu      sync.Mutex                       // serializes opening and closing
	closed  bool
	sweeper *sweeper
}

var errStoreClosed = errors.New("storage bbolt: the state file was closed by a config change")

// open returns the open file, opening it on first use and waiting up to
// lockTimeout (0: the configured lock_timeout) for another process to
// release it. A failed open is retried by the next call.
func (s *sharedStore) open(lockTimeout time.Duration) (*bboltstore.Store, error) {
	if db := s.db.Load(); db != nil {
		return db, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if db := s.db.Load(); db != nil {
		return db, nil
	}
	if s.closed {
		return nil, errStoreClosed
	}
	if lockTimeout <= 0 {
		lockTimeout = s.timeout
	}
	db, err := bboltstore.Open(s.path, bboltstore.Options{LockTimeout: lockTimeout})
	if err != nil {
		return nil, fmt.Errorf("storage bbolt: %w", err)
	}
	s.sweeper = startSweeper(s.log.Named("sweeper"), db.Sweep)
	s.log.Info("opened state file", zap.String("path", s.path))
	s.db.Store(db)
	return db, nil
}

// Destruct closes the file when the last config using it is gone.
func (s *sharedStore) Destruct() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	db := s.db.Swap(nil)
	if db == nil {
		return nil
	}
	s.sweeper.halt()
	return db.Close()
}

// sweeper collects a store's expired records in the background, every
// sweepInterval, for as long as the store is open.
type sweeper struct {
	stop context.CancelFunc
	done chan struct{}
}

// startSweeper calls sweep every sweepInterval until halted.
func startSweeper(log *zap.Logger, sweep func(context.Context, time.Time) (int, error)) *sweeper {
	ctx, stop := context.WithCancel(context.Background())
	s := &sweeper{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(sweepInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				n, err := sweep(ctx, time.Now())
				if err != nil && ctx.Err() == nil {
					log.Error("sweeping expired records", zap.Error(err))
				} else if n > 0 {
					log.Debug("swept expired records", zap.Int("removed", n))
				}
			}
		}
	}()
	return s
}

// halt stops the sweeper and waits for a sweep in progress to end, so the
// store can be closed.
func (s *sweeper) halt() {
	s.stop()
	<-s.done
}

// Interface guards
var (
	_ caddy.Provisioner  = (*BboltStorage)(nil)
	_ caddy.CleanerUpper = (*BboltStorage)(nil)
	_ StorageBackend     = (*BboltStorage)(nil)
	_ store.Store        = (*sharedStore)(nil)
	_ caddy.Destructor   = (*sharedStore)(nil)
)
