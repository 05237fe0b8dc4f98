package caddymcp

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// The collectors are process-wide, so counts carry on across config
// reloads; each config registers them into its own registry (Caddy makes
// a new one per config), which is what its /metrics serves.
var (
	metricRegistrations = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddymcp", Name: "registrations_total",
		Help: "Clients registered through dynamic client registration.",
	})
	metricAuthorizations = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddymcp", Name: "authorizations_total",
		Help: "Authorization requests by result (started, approved, denied) and, for denials, reason.",
	}, []string{"result", "reason"})
	metricTokens = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddymcp", Name: "tokens_total",
		Help: "Token events: issued (a new grant), refreshed, revoked (one access token, by its client).",
	}, []string{"event"})
	metricGrantsRevoked = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddymcp", Name: "grants_revoked_total",
		Help: "Grants revoked with all their tokens, by reason.",
	}, []string{"reason"})
	metricGate = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddymcp", Name: "gate_decisions_total",
		Help: "Requests to protected paths by the gate's decision.",
	}, []string{"decision"})
	metricCIMD = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddymcp", Name: "cimd_fetches_total",
		Help: "Client ID Metadata Document fetches by result.",
	}, []string{"result"})
	metricTokenDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddymcp", Name: "token_request_duration_seconds",
		Help:    "Time to answer token endpoint requests, by HTTP status.",
		Buckets: prometheus.DefBuckets,
	}, []string{"code"})
	metricGitHubDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "caddymcp", Name: "github_request_duration_seconds",
		Help:    "Time of calls to GitHub, by API (oauth: the login flow, rest: the REST API) and HTTP status (error: no response).",
		Buckets: prometheus.DefBuckets,
	}, []string{"api", "code"})

	allMetrics = []prometheus.Collector{metricRegistrations, metricAuthorizations, metricTokens, metricGrantsRevoked,
		metricGate, metricCIMD, metricTokenDuration, metricGitHubDuration}
)

func init() {
	// Known label values start at zero, so dashboards and alerts see
	// them before the first event.
	for _, d := range []string{oauth.GateAllowed, oauth.GateMissing, oauth.GateBadRequest, oauth.GateInvalid,
		oauth.GateExpired, oauth.GateWrongAudience, oauth.GateInsufficientScope, oauth.GateUnavailable} {
		metricGate.WithLabelValues(d)
	}
	metricAuthorizations.WithLabelValues("started", "")
	metricAuthorizations.WithLabelValues("approved", "")
	for _, r := range []string{oauth.ReasonNotAllowed, oauth.ReasonConsentDenied, oauth.ReasonOtherUser, oauth.ReasonLoginCancelled, oauth.ReasonGitHubError} {
		metricAuthorizations.WithLabelValues("denied", r)
	}
	for _, ev := range []string{"issued", "refreshed", "revoked"} {
		metricTokens.WithLabelValues(ev)
	}
}

// registerMetrics adds the collectors to a config's registry. Several
// handlers (sites) of one config register the same collectors: that is
// not an error.
func registerMetrics(reg *prometheus.Registry) error {
	if reg == nil {
		return nil
	}
	for _, c := range allMetrics {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if !errors.As(err, &already) {
				return err
			}
		}
	}
	return nil
}

// countEvent updates the counters for one event of the authorization
// server.
func countEvent(e oauth.Event) {
	switch e.Kind {
	case oauth.EventClientRegistered:
		metricRegistrations.Inc()
	case oauth.EventAuthorizationStarted:
		metricAuthorizations.WithLabelValues("started", "").Inc()
	case oauth.EventAuthorizationApproved:
		metricAuthorizations.WithLabelValues("approved", "").Inc()
	case oauth.EventAuthorizationDenied:
		metricAuthorizations.WithLabelValues("denied", e.Reason).Inc()
	case oauth.EventTokenIssued:
		metricTokens.WithLabelValues("issued").Inc()
	case oauth.EventTokenRefreshed:
		if e.Reason == oauth.ReasonRefreshRetried {
			metricTokens.WithLabelValues("refresh_retried").Inc()
		} else {
			metricTokens.WithLabelValues("refreshed").Inc()
		}
	case oauth.EventTokenRevoked:
		metricTokens.WithLabelValues("revoked").Inc()
	case oauth.EventGrantRevoked:
		metricGrantsRevoked.WithLabelValues(e.Reason).Inc()
	case oauth.EventGate:
		metricGate.WithLabelValues(e.Reason).Inc()
	case oauth.EventCIMDFetch:
		metricCIMD.WithLabelValues(e.Reason).Inc()
	}
}

// timeTokenRequest serves the token endpoint and observes how long it
// took, by the status it answered.
func timeTokenRequest(w http.ResponseWriter, r *http.Request, h http.HandlerFunc) {
	start := time.Now()
	rec := caddyhttp.NewResponseRecorder(w, nil, nil)
	h(rec, r)
	metricTokenDuration.WithLabelValues(strconv.Itoa(rec.Status())).Observe(time.Since(start).Seconds())
}

// githubTimer is the transport of the GitHub client: it observes how long
// each call to GitHub takes.
type githubTimer struct{ base http.RoundTripper }

func (t githubTimer) RoundTrip(r *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.base.RoundTrip(r)
	api := "rest"
	if strings.HasPrefix(r.URL.Path, "/login/oauth/") {
		api = "oauth"
	}
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	metricGitHubDuration.WithLabelValues(api, code).Observe(time.Since(start).Seconds())
	return resp, err
}
