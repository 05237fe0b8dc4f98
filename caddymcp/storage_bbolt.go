package caddymcp

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/bboltstore"
)

func init() {
	caddy.RegisterModule(BboltStorage{})
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
// error), and so does a call that needs it before then. So `caddy
// validate` of a running server's config answers at once without touching
// its state file, and a second `caddy run` on the same file still fails at
// startup.
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

// Provision joins (or creates) the registry's store of the file, opens the
// file if it is free, and else has the mcp_auth app open it when the
// config starts.
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
	key := "bbolt " + abs
	shared, err := shareStore(key, log, func() (*sharedStore, error) {
		db, err := bboltstore.New(abs, bboltstore.Options{LockTimeout: timeout, Logger: log})
		if err != nil {
			return nil, err
		}
		return &sharedStore{Store: db, name: abs}, nil
	})
	if err != nil {
		return fmt.Errorf("storage bbolt: %w", err)
	}
	db := shared.Store.(*bboltstore.Store)
	if err := db.OpenFile(time.Millisecond); err != nil {
		if !errors.Is(err, bboltstore.ErrLocked) {
			_ = releaseStore(key)
			return fmt.Errorf("storage bbolt: %w", err)
		}
		log.Debug("the state file is locked by another process; waiting for it when the config starts", zap.String("path", abs))
	}
	b.key, b.shared = key, shared
	return onStart(ctx, func() error {
		if err := db.OpenFile(0); err != nil {
			return fmt.Errorf("storage bbolt: %w", err)
		}
		return nil
	})
}

// Store returns the shared store.
func (b *BboltStorage) Store() store.Store { return b.shared }

// Cleanup releases this config's use of the file.
func (b *BboltStorage) Cleanup() error {
	if b.shared == nil {
		return nil
	}
	return releaseStore(b.key)
}

// UnmarshalCaddyfile sets up the bbolt storage. Syntax:
//
//	storage bbolt [<path>] [{
//		lock_timeout <duration>
//	}]
func (b *BboltStorage) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the backend name
	if d.NextArg() {
		b.Path = d.Val()
	}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		if d.Val() != "lock_timeout" {
			return d.Errf("unrecognized bbolt option %q", d.Val())
		}
		if err := positiveDuration(d, &b.LockTimeout); err != nil {
			return err
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner     = (*BboltStorage)(nil)
	_ caddy.CleanerUpper    = (*BboltStorage)(nil)
	_ caddyfile.Unmarshaler = (*BboltStorage)(nil)
	_ StorageBackend        = (*BboltStorage)(nil)
)
