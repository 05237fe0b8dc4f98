package caddymcp

import (
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// The audit log: one line per login, grant and revocation, on its own
// logger (http.handlers.mcp_auth.audit, and admin.api.mcp_auth.audit for
// operators' actions), so that operators can route it with the `log`
// global option's include and exclude. Lines name users, clients,
// grants and resources, never a token, code, state, verifier or secret:
// oauth.Event carries none.

// observer returns the oauth.Observer of a handler: metrics for every
// event, an audit line for those worth keeping.
func observer(audit *zap.Logger) oauth.Observer {
	return func(e oauth.Event) {
		countEvent(e)
		auditEvent(audit, e)
	}
}

// auditMessages are the audit lines' messages, by event; events not here
// (gate decisions, started authorizations) are not audited.
var auditMessages = map[oauth.EventKind]string{
	oauth.EventClientRegistered:      "client registered",
	oauth.EventAuthorizationApproved: "user logged in",
	oauth.EventAuthorizationDenied:   "authorization denied",
	oauth.EventTokenIssued:           "grant created",
	oauth.EventTokenRefreshed:        "grant refreshed",
	oauth.EventTokenRevoked:          "access token revoked",
	oauth.EventGrantRevoked:          "grant revoked",
}

func auditEvent(audit *zap.Logger, e oauth.Event) {
	msg, ok := auditMessages[e.Kind]
	if !ok {
		return
	}
	level := zapcore.InfoLevel
	if e.Kind == oauth.EventGrantRevoked && (e.Reason == oauth.ReasonCodeReplayed || e.Reason == oauth.ReasonRefreshReused) {
		// A replayed code or reused refresh token may be a stolen one.
		level = zapcore.WarnLevel
	}
	if ce := audit.Check(level, msg); ce != nil {
		ce.Write(eventFields(e)...)
	}
}

// eventFields are the log fields of an event; empty ones are left out.
func eventFields(e oauth.Event) []zap.Field {
	f := []zap.Field{zap.String("event", string(e.Kind))}
	add := func(key, val string) {
		if val != "" {
			f = append(f, zap.String(key, val))
		}
	}
	add("reason", e.Reason)
	add("client_id", e.ClientID)
	add("client_name", e.ClientName)
	if e.User.ID != 0 {
		f = append(f, zap.Int64("user_id", e.User.ID))
	}
	add("login", e.User.Login)
	add("grant", e.GrantID)
	add("resource", e.Resource)
	add("scope", e.Scope)
	return f
}
