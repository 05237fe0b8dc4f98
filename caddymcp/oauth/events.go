package oauth

import "github.com/caddymcp/caddymcp/caddymcp/store"

// Event is a decision of the authorization server that an operator counts
// (metrics) or keeps (audit log). It names who and what, never a secret:
// no token, code, state, verifier or client secret is ever put in one.
type Event struct {
	Kind EventKind
	// Reason qualifies Kind: why an authorization was denied or a grant
	// revoked, the gate's decision, a fetch's result. One of the Reason*
	// and Gate* constants (or a short result word for EventCIMDFetch).
	Reason   string
	ClientID string
	// ClientName is the name the client registered, when known.
	ClientName string
	// User is who the event concerns; zero when not known yet.
	User     store.Identity
	GrantID  string
	Resource string
	Scope    string
}

// EventKind names what happened.
type EventKind string

// The kinds of events.
const (
	EventClientRegistered      EventKind = "client_registered"
	EventAuthorizationStarted  EventKind = "authorization_started"  // a valid request, before consent
	EventAuthorizationApproved EventKind = "authorization_approved" // the user logged in; a code was issued
	EventAuthorizationDenied   EventKind = "authorization_denied"   // Reason says why
	EventTokenIssued           EventKind = "token_issued"           // a grant was created from a code
	EventTokenRefreshed        EventKind = "token_refreshed"
	EventTokenRevoked          EventKind = "token_revoked" // one access token; Reason says by whom
	EventGrantRevoked          EventKind = "grant_revoked" // a grant and all its tokens; Reason says why
	EventGate                  EventKind = "gate"          // Reason is the decision
	// EventCIMDFetch is the fetch of a Client ID Metadata Document;
	// Reason is its result ("ok", or a short word for the failure).
	EventCIMDFetch EventKind = "cimd_fetch"
)

// Reasons of denials and revocations.
const (
	ReasonNotAllowed      = "not_allowed"      // no allow-list admits the user
	ReasonConsentDenied   = "consent_denied"   // the user pressed Deny
	ReasonOtherUser       = "other_user"       // another GitHub user signed in through someone's remembered approval
	ReasonLoginCancelled  = "login_cancelled"  // GitHub returned an error (the user cancelled there)
	ReasonGitHubError     = "github_error"     // GitHub could not be asked
	ReasonClientRequest   = "client_request"   // RFC 7009 revocation by the client
	ReasonCodeReplayed    = "code_replayed"    // an authorization code was used twice
	ReasonRefreshReused   = "refresh_reused"   // a rotated refresh token was used again
	ReasonRefreshRetried  = "retried"          // a refresh answered a rotated token within the grace (EventTokenRefreshed)
	ReasonUpstreamRevoked = "upstream_revoked" // GitHub no longer accepts the user's token
	ReasonUnusable        = "unusable"         // the stored GitHub token cannot be opened
	ReasonAdmin           = "admin"            // an operator, through the admin API
)

// Decisions of the gate, the Reason of EventGate and of a Refusal.
const (
	GateAllowed           = "allowed"
	GateMissing           = "missing"            // no bearer token
	GateBadRequest        = "bad_request"        // a token in the URL, several Authorization headers
	GateInvalid           = "invalid"            // malformed, unknown or revoked
	GateExpired           = "expired"            // a token of ours, past its lifetime
	GateWrongAudience     = "wrong_audience"     // issued for another resource
	GateInsufficientScope = "insufficient_scope" // lacks a scope the resource requires
	GateUnavailable       = "unavailable"        // the store could not be asked
)

// Observer receives events. It is called synchronously on the request's
// goroutine, so it must be quick and must not block.
type Observer func(Event)

// emit passes e to the configured observer, if any.
func (s *Server) emit(e Event) {
	if s.cfg.Observer != nil {
		s.cfg.Observer(e)
	}
}
