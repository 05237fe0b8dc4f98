package caddymcp

import (
	"sync"

	"github.com/caddyserver/caddy/v2"
)

func init() {
	caddy.RegisterModule(App{})
}

const appModuleID = "mcp_auth"

// App is the mcp_auth app. It needs no configuration: mcp_auth's storage
// loads it, and it makes sure the config's state files are open when the
// config starts, waiting for one that another process holds. A config that
// is only validated (`caddy validate`) is never started, so it never waits
// for, or fails on, a state file that a running server holds.
type App struct {
	mu     *sync.Mutex
	stores []*sharedStore
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  appModuleID,
		New: func() caddy.Module { return &App{mu: new(sync.Mutex)} },
	}
}

func (a *App) addStore(s *sharedStore) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.stores = append(a.stores, s)
}

// Start opens the state files, so that a file another process holds fails
// the config at startup with a clear error rather than its first request.
func (a *App) Start() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, s := range a.stores {
		if _, err := s.open(0); err != nil {
			return err
		}
	}
	return nil
}

// Stop does nothing: files stay open across reloads and are closed when
// the last config using them is cleaned up.
func (a *App) Stop() error { return nil }

// Interface guards
var _ caddy.App = (*App)(nil)
