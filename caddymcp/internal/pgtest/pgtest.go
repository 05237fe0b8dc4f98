// Package pgtest gives tests a real PostgreSQL server.
//
// With CADDYMCP_TEST_POSTGRES set to a connection string, tests use that
// server (its role must be allowed to create schemas in its database).
// Otherwise the first test that asks starts a throwaway server from the
// PostgreSQL binaries it finds (on PATH, or in /usr/lib/postgresql/*/bin
// as Debian installs them): initdb in a temporary directory, listening on
// a free loopback port only, with a random password, run as the postgres
// (or nobody) user when the tests run as root, because PostgreSQL refuses
// to run as root. Each test gets its own empty schema, dropped when it
// ends. A package that uses this calls Main from its TestMain, so that the
// server stops when the package's tests are done.
//
// Without either, tests fail with a message saying how to install
// PostgreSQL: the suite is meant to run against a real server everywhere.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// EnvDSN names the environment variable with the connection string of an
// existing server to test against.
const EnvDSN = "CADDYMCP_TEST_POSTGRES"

// InstallHint is the message of a test that found no PostgreSQL.
const InstallHint = "these tests need a PostgreSQL server: install its server binaries " +
	"(Debian/Ubuntu: apt-get install postgresql; the tests start their own throwaway server from " +
	"/usr/lib/postgresql/*/bin or PATH), or set " + EnvDSN + " to the connection string of a server " +
	"whose role may create schemas"

var shared struct {
	once   sync.Once
	server *Server // nil when EnvDSN is used
	dsn    string
	err    error
}

// Main runs the package's tests and then stops the server they started, if
// any. Call it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if shared.server != nil {
		shared.server.stop()
		shared.server.remove()
	}
	return code
}

// DSN returns the connection string of a new, empty schema on the shared
// server (search_path names it), dropped when t ends.
func DSN(t testing.TB) string {
	t.Helper()
	shared.once.Do(func() {
		if dsn := os.Getenv(EnvDSN); dsn != "" {
			shared.dsn = dsn
			return
		}
		shared.server, shared.err = newServer()
		if shared.err == nil {
			shared.dsn = shared.server.dsn
		}
	})
	if shared.err != nil {
		t.Fatalf("pgtest: %v", shared.err)
	}
	return NewSchema(t, shared.dsn)
}

// SharedPassword returns the password of the shared server this package
// started, for tests that check it never reaches a log; "" when EnvDSN is
// used (its password, if any, is in the DSN).
func SharedPassword() string {
	if shared.server == nil {
		return ""
	}
	return shared.server.password
}

// NewSchema creates an empty schema on the server that base connects to
// and returns base with search_path set to it. The schema is dropped, with
// everything in it, when t ends.
func NewSchema(t testing.TB, base string) string {
	t.Helper()
	name := "t_" + randomHex(8)
	if err := execSQL(base, `CREATE SCHEMA `+name); err != nil {
		t.Fatalf("pgtest: creating a schema: %v", err)
	}
	t.Cleanup(func() {
		if err := execSQL(base, `DROP SCHEMA `+name+` CASCADE`); err != nil {
			t.Logf("pgtest: dropping schema %s: %v", name, err)
		}
	})
	return WithParam(base, "search_path", name)
}

// WithParam returns dsn with one more connection parameter, in the DSN's
// own form (URL or key=value).
func WithParam(dsn, key, value string) string {
	if strings.Contains(dsn, "://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set(key, value)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " " + key + "=" + value
}

// execSQL runs one statement on a connection of its own.
func execSQL(dsn, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Start starts a private server for a test that stops and restarts it; it
// is removed when t ends. It needs the PostgreSQL binaries even when
// EnvDSN is set, since only a server of its own can be restarted.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := newServer()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		s.stop()
		s.remove()
	})
	return s
}

// StartServer starts a private server outside a test, for the load
// driver; Close stops and removes it.
func StartServer() (*Server, error) { return newServer() }

// Close stops the server and removes its files.
func (s *Server) Close() {
	s.stop()
	s.remove()
}

// DSN returns the connection string of the server's postgres database.
func (s *Server) DSN() string { return s.dsn }

// Password returns the server's superuser password, for tests that check
// it never reaches a log or an error.
func (s *Server) Password() string { return s.password }

// Stop shuts the server down (fast shutdown: open connections are cut).
func (s *Server) Stop() { s.stop() }

// Restart starts the stopped server again, on the same port and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(); err != nil {
		t.Fatalf("pgtest: restarting the server: %v", err)
	}
}

// String names the server for messages, without its password.
func (s *Server) String() string { return fmt.Sprintf("PostgreSQL on 127.0.0.1:%d", s.port) }
