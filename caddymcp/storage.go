package caddymcp

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

func init() {
	caddy.RegisterModule(App{})
}

// StorageBackend is a module in the mcp_auth.storage namespace: it provides
// the store that holds clients, grants and tokens.
//
// A backend keeps its store in the registry (shareStore), so that every
// config and every site of the process that names the same file or
// database shares one store, across config reloads: a reload provisions
// the new config before cleaning up the old one, so the store stays open.
// The registry sweeps each store and lists them for the admin API.
type StorageBackend interface {
	// Store returns the provisioned store.
	Store() store.Store
}

// registry holds the stores open in this process, by backend and
// identity (the bbolt file's absolute path, the digest of the PostgreSQL
// DSN).
var registry = caddy.NewUsagePool()

// sharedStore is a store in the registry and the sweeper that collects
// its expired records. It is the backend's own store: every call goes to
// it, but Close, which only the registry does.
type sharedStore struct {
	store.Store
	// name identifies the store in the admin API: the bbolt file's path,
	// or postgres://user@host:port/database (never the password).
	name string
	// sweep collects expired records. Default: the store's Sweep.
	sweep   func(context.Context, time.Time) (int, error)
	sweeper *sweeper
}

// Close does nothing: the store is closed by Destruct when the last config
// using it is cleaned up, never by one of its users.
func (s *sharedStore) Close() error { return nil }

// Destruct stops the sweeper and closes the store when the last config
// using it is gone.
func (s *sharedStore) Destruct() error {
	s.sweeper.halt()
	return s.Store.Close()
}

// shareStore returns the store in the registry under key, creating it with
// create if this process has none, and starts its sweeper. Every
// successful call is released by releaseStore.
func shareStore(key string, log *zap.Logger, create func() (*sharedStore, error)) (*sharedStore, error) {
	val, _, err := registry.LoadOrNew(key, func() (caddy.Destructor, error) {
		s, err := create()
		if err != nil {
			return nil, err
		}
		sweep := s.sweep
		if sweep == nil {
			sweep = s.Store.Sweep
		}
		s.sweeper = startSweeper(log.Named("sweeper"), sweep)
		return s, nil
	})
	if err != nil {
		return nil, err
	}
	return val.(*sharedStore), nil
}

// releaseStore releases one use of the store under key.
func releaseStore(key string) error {
	_, err := registry.Delete(key)
	return err
}

// runningStores are the stores in this process's registry, for the admin
// API, by name.
func runningStores() []namedStore {
	var out []namedStore
	registry.Range(func(_, val any) bool {
		s := val.(*sharedStore)
		out = append(out, namedStore{path: s.name, st: s})
		return true
	})
	slices.SortFunc(out, func(a, b namedStore) int { return strings.Compare(a.path, b.path) })
	return out
}

// sweepInterval is how often expired records are collected.
const sweepInterval = 10 * time.Minute

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

const appModuleID = "mcp_auth"

// App is the mcp_auth app. It needs no configuration: a storage backend
// that defers work to the config's start (bbolt waiting for a file another
// process holds) loads it and registers that work. A config that is only
// validated (`caddy validate`) is never started, so it never waits for,
// or fails on, a state file that a running server holds.
type App struct {
	mu     *sync.Mutex
	starts []func() error
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  appModuleID,
		New: func() caddy.Module { return &App{mu: new(sync.Mutex)} },
	}
}

// onStart has the app call start when the config starts.
func onStart(ctx caddy.Context, start func() error) error {
	app, err := ctx.App(appModuleID)
	if err != nil {
		return err
	}
	a := app.(*App)
	a.mu.Lock()
	defer a.mu.Unlock()
	a.starts = append(a.starts, start)
	return nil
}

// Start does the backends' work, so that a state file another process
// holds fails the config at startup with a clear error rather than its
// first request.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, start := range a.starts {
		if err := start(); err != nil {
			return err
		}
	}
	return nil
}

// Stop does nothing: stores stay open across reloads and are closed when
// the last config using them is cleaned up.
func (a *App) Stop() error { return nil }

// Interface guards
var (
	_ caddy.App        = (*App)(nil)
	_ store.Store      = (*sharedStore)(nil)
	_ caddy.Destructor = (*sharedStore)(nil)
)
