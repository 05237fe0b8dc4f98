package pgstore_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/caddymcp/caddymcp/caddymcp/internal/pgtest"
	"github.com/caddymcp/caddymcp/caddymcp/store"
	"github.com/caddymcp/caddymcp/caddymcp/store/pgstore"
)

func mustExec(t *testing.T, dsn, sql string, args ...any) {
	t.Helper()
	withConn(t, dsn, func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
		return nil
	})
}

// queryInt runs a query that returns one integer.
func queryInt(t *testing.T, dsn, sql string, args ...any) int {
	t.Helper()
	var n int
	withConn(t, dsn, func(ctx context.Context, conn *pgx.Conn) error {
		if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			return fmt.Errorf("%s: %w", sql, err)
		}
		return nil
	})
	return n
}

// withConn runs fn on a connection of its own and fails t on an error.
func withConn(t *testing.T, dsn string, fn func(context.Context, *pgx.Conn) error) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := fn(ctx, conn); err != nil {
		t.Fatal(err)
	}
}

// TestDatabaseDown: while the server is down, every lookup fails with an
// error that is not ErrNotFound (so the server answers 503, never "invalid
// token"), and never a password; when it is back, the same store works
// again without being reopened.
func TestDatabaseDown(t *testing.T) {
	srv := pgtest.Start(t)
	dsn := pgtest.NewSchema(t, srv.DSN())
	s, err := pgstore.Open(context.Background(), dsn, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Now()
	_, at, rt := issue(t, s, "down", now)

	srv.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	checks := map[string]error{}
	_, checks["GetAccessToken"] = s.GetAccessToken(ctx, at.Hash, now)
	_, _, _, checks["GetRefreshToken"] = s.GetRefreshToken(ctx, rt.Hash, store.RefreshUse{ClientID: rt.ClientID, Now: now})
	_, checks["GetClient"] = s.GetClient(ctx, "client-down")
	_, checks["TakePending"] = s.TakePending(ctx, digest("state"), now)
	_, checks["RedeemCode"] = s.RedeemCode(ctx, digest("code"), now)
	checks["RevokeGrant"] = s.RevokeGrant(ctx, "grant-down")
	_, checks["Sweep"] = s.Sweep(ctx, now)
	for op, err := range checks {
		switch {
		case err == nil:
			t.Errorf("%s succeeded with the database down", op)
		case errors.Is(err, store.ErrNotFound):
			t.Errorf("%s answered ErrNotFound with the database down: a valid token would be called invalid", op)
		case strings.Contains(err.Error(), srv.Password()):
			t.Errorf("%s: the error shows the password", op)
		}
	}

	srv.Restart(t)
	if _, err := s.GetAccessToken(context.Background(), at.Hash, now); err != nil {
		t.Fatalf("after the restart the pool did not recover: %v", err)
	}
	if err := s.RevokeGrant(context.Background(), "grant-down"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccessToken(context.Background(), at.Hash, now); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after revocation: %v", err)
	}
}

// TestOpenErrors: a connection string that does not parse, and a server
// that does not answer, are clear errors that never show the password.
func TestOpenErrors(t *testing.T) {
	const pw = "s3cret-Pa55word"
	_, err := pgstore.Open(context.Background(), "postgres://caddy:"+pw+"@127.0.0.1:notaport/db", pgstore.Options{})
	if !errors.Is(err, pgstore.ErrBadDSN) || strings.Contains(err.Error(), pw) {
		t.Errorf("bad DSN: %v", err)
	}
	// A port nobody listens on: the server that was there is gone.
	srv := pgtest.Start(t)
	dead := strings.Replace(srv.DSN(), srv.Password(), pw, 1)
	srv.Stop()
	start := time.Now()
	_, err = pgstore.Open(context.Background(), dead, pgstore.Options{ConnectTimeout: 3 * time.Second})
	if err == nil {
		t.Fatal("Open succeeded with no server")
	}
	if strings.Contains(err.Error(), pw) {
		t.Errorf("the error shows the password: %v", err)
	}
	if time.Since(start) > 20*time.Second {
		t.Errorf("Open took %v, past its ConnectTimeout", time.Since(start))
	}
}
