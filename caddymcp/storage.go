package caddymcp

import (
	"context"
	"fmt"
	"path/filepath"
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
// The file is opened once per process and shared by every config that
// names it: a config reload provisions the new handler before cleaning up
// the old one, so the file stays open (and its lock held) across reloads.
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

// storePool holds the open bbolt files of this process, by absolute path.
var storePool = caddy.NewUsagePool()

// sharedStore is one open file and the sweeper that collects its expired
// records.
type sharedStore struct {
	*bboltstore.Store
	stop context.CancelFunc
	done chan struct{}
}

// Destruct closes the file when the last config using it is gone.
func (s *sharedStore) Destruct() error {
	s.stop()
	<-s.done
	return s.Store.Close()
}

// sweepInterval is how often expired records are collected.
const sweepInterval = 10 * time.Minute

// Provision opens (or joins) the shared bbolt file.
func (b *BboltStorage) Provision(ctx caddy.Context) error {
	path := caddy.NewReplacer().ReplaceKnown(b.Path, "")
	if path == "" {
		path = filepath.Join(caddy.AppDataDir(), "mcp_auth", "state.db")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("storage bbolt: %w", err)
	}
	b.key = abs
	log := ctx.Logger()
	timeout := time.Duration(b.LockTimeout)
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	val, _, err := storePool.LoadOrNew(abs, func() (caddy.Destructor, error) {
		st, err := bboltstore.Open(abs, bboltstore.Options{LockTimeout: timeout})
		if err != nil {
			return nil, err
		}
		sweepCtx, stop := context.WithCancel(context.Background())
		s := &sharedStore{Store: st, stop: stop, done: make(chan struct{})}
		go s.sweep(sweepCtx, log.Named("sweeper"))
		log.Info("opened state file", zap.String("path", abs))
		return s, nil
	})
	if err != nil {
		return fmt.Errorf("storage bbolt: %w", err)
	}
	b.shared = val.(*sharedStore)
	return nil
}

// sweep deletes expired records until ctx is done.
func (s *sharedStore) sweep(ctx context.Context, log *zap.Logger) {
	defer close(s.done)
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			n, err := s.Sweep(ctx, time.Now())
			if err != nil {
				log.Error("sweeping expired records", zap.Error(err))
			} else if n > 0 {
				log.Debug("swept expired records", zap.Int("removed", n))
			}
		}
	}
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

// Interface guards
var (
	_ caddy.Provisioner  = (*BboltStorage)(nil)
	_ caddy.CleanerUpper = (*BboltStorage)(nil)
	_ StorageBackend     = (*BboltStorage)(nil)
)
