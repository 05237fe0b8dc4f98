package pgstore

import (
	"context"
	crand "crypto/rand"
	"errors"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
)

// Revocations are pushed to the other instances with PostgreSQL's
// LISTEN/NOTIFY. Every transaction that deletes a grant or an access token
// also runs pg_notify on the schema's channel, so that the notification is
// delivered when, and only if, the revocation commits. Each store keeps one
// connection of its own (outside the pool) listening on that channel, and
// empties its caches when another instance's notification arrives.
//
// Emptying the whole cache, rather than the revoked tokens, is deliberate:
// the cache is keyed by token digest, a revocation names grants (of a
// user, a client, a sweep batch) whose tokens this instance may not know,
// and emptying is what keeps a lookup racing the notification from putting
// back what it read before the commit (store.Cache's generations).
// Revocations are rare; the price of one is a query per active token on
// its next request.
//
// A notification can be lost while the listener's connection is down, so
// every successful LISTEN (the first one too) is followed by emptying the
// caches; meanwhile, and for any other loss, entries still live no longer
// than the cache TTL.

const (
	// channelPrefix starts the channel name; the rest is the md5 of the
	// schema name, so that stores in different schemas of one database
	// (whose advisory locks schema.go keeps apart the same way) do not
	// empty each other's caches, and the name stays within PostgreSQL's
	// 63 bytes.
	channelPrefix = "mcp_auth_revoked_"
	channelSQL    = `SELECT '` + channelPrefix + `' || md5(current_schema())`

	// ListenerAppSuffix is appended to the connection's application_name
	// ("caddymcp" when it sets none) to name the listener's session in
	// pg_stat_activity.
	ListenerAppSuffix = " revocation listener"

	// listenBackoffMin and listenBackoffMax bound the wait before each
	// reconnection attempt; it doubles from the first to the second, with
	// jitter so that instances do not reconnect in step after a database
	// restart.
	listenBackoffMin = 100 * time.Millisecond
	listenBackoffMax = 10 * time.Second

	// listenIdle is how long the listener waits for a notification
	// before it checks the connection with a ping (bounded by
	// listenPingTimeout), so that a connection the network lost without
	// a word is noticed and replaced.
	listenIdle        = 30 * time.Second
	listenPingTimeout = 5 * time.Second
)

// notifyRevoked queues, in tx, the notification that makes the other
// instances empty their caches. PostgreSQL sends it at commit, once per
// transaction however often it was queued.
func (s *Store) notifyRevoked(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, s.channel, s.self)
	return err
}

// listener is the goroutine that listens on a store's channel.
type listener struct {
	cfg     *pgx.ConnConfig
	channel string
	self    string // the payload of this store's own notifications
	drop    func() // empties the store's caches
	log     *zap.Logger
	secret  string // the password, scrubbed from logged errors

	cancel context.CancelFunc
	done   chan struct{}
}

// newNonce returns the payload that marks a store's own notifications.
func newNonce() string { return crand.Text() }

// startListener connects the listener and LISTENs once within ctx (Open
// fails if that fails), then listens in the background until stop.
func startListener(ctx context.Context, s *Store, cfg *pgx.ConnConfig, log *zap.Logger) (*listener, error) {
	lcfg := cfg.Copy()
	app := lcfg.RuntimeParams["application_name"]
	if app == "" {
		app = "caddymcp"
	}
	lcfg.RuntimeParams["application_name"] = app + ListenerAppSuffix
	l := &listener{cfg: lcfg, channel: s.channel, self: s.self, drop: s.invalidate, log: log,
		secret: cfg.Password, done: make(chan struct{})}
	conn, err := l.connect(ctx)
	if err != nil {
		return nil, l.scrubErr(err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	go l.run(lctx, conn)
	return l, nil
}

// stop ends the listener and waits for it.
func (l *listener) stop() {
	l.cancel()
	<-l.done
}

// connect opens the listener's connection and LISTENs, then empties the
// caches: notifications sent before now may have been missed.
func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, `LISTEN `+pgx.Identifier{l.channel}.Sanitize()); err != nil {
		closeConn(conn)
		return nil, err
	}
	l.drop()
	return conn, nil
}

// run listens on conn until ctx ends, reconnecting whenever the connection
// fails.
func (l *listener) run(ctx context.Context, conn *pgx.Conn) {
	defer close(l.done)
	backoff := listenBackoffMin
	for {
		up := time.Now()
		err := l.serve(ctx, conn)
		closeConn(conn)
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("the revocation listener lost its connection; reconnecting (until then, revocations made on other instances are refused here within the cache TTL)",
			zap.String("error", l.scrub(err)))
		if time.Since(up) > listenBackoffMax {
			backoff = listenBackoffMin
		}
		for attempt := 1; ; attempt++ {
			if !sleep(ctx, backoff/2+rand.N(backoff/2+1)) {
				return
			}
			backoff = min(2*backoff, listenBackoffMax)
			conn, err = l.connect(ctx)
			if err == nil {
				l.log.Info("the revocation listener reconnected", zap.Int("attempts", attempt))
				break
			}
			if ctx.Err() != nil {
				return
			}
			log := l.log.Debug
			if attempt == 1 {
				log = l.log.Warn
			}
			log("the revocation listener cannot reconnect; retrying", zap.String("error", l.scrub(err)),
				zap.Duration("next_in", backoff))
		}
	}
}

// serve waits for notifications on conn and empties the caches for each
// that another store sent, until conn fails or ctx ends. An idle
// connection is pinged now and then.
func (l *listener) serve(ctx context.Context, conn *pgx.Conn) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, listenIdle)
		n, err := conn.WaitForNotification(wctx)
		idle := wctx.Err() != nil
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			if n.Payload != l.self { // this store emptied its own already
				l.drop()
			}
		case idle && !conn.IsClosed():
			pctx, cancel := context.WithTimeout(ctx, listenPingTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// closeConn closes a listener connection, waiting a moment at most.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = conn.Close(ctx)
}

// sleep waits for d, or until ctx ends (then it returns false).
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// scrub returns err's message with the password masked, in case a driver
// message ever repeats it.
func (l *listener) scrub(err error) string {
	if err == nil {
		return ""
	}
	return l.scrubErr(err).Error()
}

// scrubErr is scrub for an error to return: err itself unless its message
// holds the password.
func (l *listener) scrubErr(err error) error {
	if l.secret == "" || !strings.Contains(err.Error(), l.secret) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), l.secret, "xxxxx"))
}
