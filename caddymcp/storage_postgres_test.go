package caddymcp

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddymcp/caddymcp/caddymcp/internal/pgtest"
	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/pgstore"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

func TestAdaptPostgresErrors(t *testing.T) {
	for name, tc := range map[string]struct{ body, want string }{
		"no dsn":       {"storage postgres", "needs a connection string"},
		"extra arg":    {"storage postgres a b", "wrong argument count"},
		"bad timeout":  {"storage postgres a {\nconnect_timeout soon\n}", `connect_timeout: "soon" is not a positive duration`},
		"unknown opt":  {"storage postgres a {\ncolour red\n}", `unrecognized postgres option "colour"`},
		"timeout args": {"storage postgres a {\nconnect_timeout\n}", "wrong argument count"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := adapt(t, "localhost {\nmcp_auth {\n"+tc.body+"\n}\n}\n")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// provisionPostgres provisions the storage module as a config would, with
// the DSN in an environment variable, and cleans it up when t ends.
func provisionPostgres(t *testing.T, dsn string, timeout time.Duration) (*PostgresStorage, error) {
	t.Helper()
	t.Setenv("TEST_MCP_AUTH_DATABASE_URL", dsn)
	p := &PostgresStorage{DSN: "{env.TEST_MCP_AUTH_DATABASE_URL}", ConnectTimeout: caddy.Duration(timeout)}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	t.Cleanup(cancel)
	if err := p.Provision(ctx); err != nil {
		return nil, err
	}
	t.Cleanup(func() {
		if err := p.Cleanup(); err != nil {
			t.Errorf("Cleanup: %v", err)
		}
	})
	return p, nil
}

// TestPostgresStorageShared: configs naming the same database share one
// pool (as a reload does), which closes when the last one is cleaned up.
func TestPostgresStorageShared(t *testing.T) {
	dsn := pgtest.DSN(t)
	a, err := provisionPostgres(t, dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := provisionPostgres(t, dsn, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Store() != b.Store() {
		t.Error("two configs on one database got two pools")
	}
	// The admin API finds it, by a name without the password.
	var found bool
	for _, ns := range runningStores() {
		if strings.HasPrefix(ns.path, "postgres://postgres@127.0.0.1:") && ns.st == a.Store() {
			found = true
		}
		if pw := pgtest.SharedPassword(); pw != "" && strings.Contains(ns.path, pw) {
			t.Errorf("the admin API names a store with its password: %s", ns.path)
		}
	}
	if !found && os.Getenv(pgtest.EnvDSN) == "" {
		t.Errorf("the admin API does not list the database: %+v", runningStores())
	}
	ctx := context.Background()
	if err := a.Store().PutClient(ctx, &store.Client{ID: "c1", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Store().GetClient(ctx, "c1"); err != nil {
		t.Errorf("the other config does not see the client: %v", err)
	}
	// a's cleanup leaves b's pool open.
	if err := a.Cleanup(); err != nil {
		t.Fatal(err)
	}
	a.shared = nil
	if _, err := b.Store().GetClient(ctx, "c1"); err != nil {
		t.Errorf("after the old config's cleanup: %v", err)
	}
}

// TestPostgresStorageUnreachable: a database that does not answer fails
// provisioning within the timeout, naming where it looked and never the
// password; a DSN that does not parse is not repeated either.
func TestPostgresStorageUnreachable(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := srv.DSN()
	srv.Stop()
	start := time.Now()
	_, err := provisionPostgres(t, dsn, 2*time.Second)
	if err == nil {
		t.Fatal("provisioning succeeded with the database down")
	}
	msg := err.Error()
	if strings.Contains(msg, srv.Password()) {
		t.Errorf("the provisioning error shows the password: %s", msg)
	}
	if !strings.Contains(msg, "127.0.0.1") || !strings.Contains(msg, `database "postgres"`) {
		t.Errorf("the provisioning error does not say where it tried: %s", msg)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("provisioning took %v with a 2s timeout", d)
	}

	const pw = "Pa55-w0rd-in-a-bad-dsn"
	_, err = provisionPostgres(t, "postgres://u:"+pw+"@127.0.0.1:port/db", time.Second)
	if err == nil || strings.Contains(err.Error(), pw) || !errors.Is(err, pgstore.ErrBadDSN) {
		t.Errorf("bad DSN: %v", err)
	}
	_, err = provisionPostgres(t, "  ", time.Second)
	if err == nil || !strings.Contains(err.Error(), "connection string is required") {
		t.Errorf("empty DSN: %v", err)
	}
}
