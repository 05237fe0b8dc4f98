package oauth

import (
	"time"

	"go.uber.org/zap"
	"golang.org/x/oauth2"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Decisions that the Observer reports (registrations, logins, grants,
// refreshes, revocations) are logged here at debug level only: the
// audit log records them at info level, once. Failures are logged at
// warn or error.
//
// Log fields. Nothing secret goes through these: identifiers, names and
// decisions only, never a token, code, state, verifier or secret.

func zapErr(err error) zap.Field { return zap.Error(err) }

func clientFields(c *store.Client) []zap.Field {
	return []zap.Field{zap.String("client_id", c.ID), zap.String("client_name", c.Name)}
}

func unixOrZero(t *oauth2.Token) int64 {
	if t.Expiry.IsZero() {
		return 0
	}
	return t.Expiry.Unix()
}

func timeFromUnix(sec int64) time.Time { return time.Unix(sec, 0) }
