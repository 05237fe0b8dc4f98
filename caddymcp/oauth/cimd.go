package oauth

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document,
// the MCP authorization spec's preferred way for a client to identify
// itself): a client_id that is an https URL names a JSON document of
// client metadata, which we fetch instead of asking the client to
// register. Such clients are never stored; the document is the record.

// maxClientIDURLLen bounds a client_id URL: stores key clients by ID.
const maxClientIDURLLen = store.MaxIDLen

// Bounds on fetching a document. The size is the MCP specification's
// recommendation; real documents are a few hundred bytes.
const (
	cimdMaxBytes  = 5 << 10
	cimdTimeout   = 5 * time.Second
	cimdMinTTL    = time.Minute
	cimdMaxTTL    = 24 * time.Hour
	cimdStaleTTL  = 7 * 24 * time.Hour // how long a cached document may stand in when a refetch fails
	cimdCacheSize = 1024
)

// CIMDConfig configures Client ID Metadata Documents.
type CIMDConfig struct {
	// Disabled turns them off: an https client_id is then unknown, and
	// the metadata does not advertise them.
	Disabled bool
	// AllowHosts may resolve to loopback or private addresses: each a
	// host (any port) or host:port. By default only public addresses are
	// fetched from.
	AllowHosts []string
	// RootCAs verify the documents' servers; the system's if nil.
	RootCAs *x509.CertPool
}

// cimdError is a document that could not be used, with a description fit
// to show the user and the client: it says what is wrong with the
// document, never anything about our network beyond "refused".
type cimdError struct {
	description string
	// transient errors (network, timeouts, 5xx) may fall back to a stale
	// cached copy; a document that is wrong may not.
	transient bool
	// status is the HTTP status of the authorization endpoint's page: 0
	// for 400, or 429 when the requesting address is over its fetch
	// budget. A document whose server failed is a 400 there too: the
	// client_id cannot be used now, and our own 5xx rates stay about us.
	status int
	// refused is set when the address guard refused the host.
	refused bool
}

// fetchFailed refuses a document whose server, not the document, is at
// fault: worth retrying.
func fetchFailed(description string) *cimdError {
	return &cimdError{description: description, transient: true}
}

func (e *cimdError) Error() string { return e.description }

// isClientIDURL reports whether a client_id names a metadata document.
// Registered client IDs never contain a colon.
func isClientIDURL(id string) bool { return strings.HasPrefix(id, "https://") }

// checkClientIDURL applies the draft's rules for a client identifier URL:
// https, a host, a path other than "/", no dot segments, no fragment, no
// user information. The comparison with the document's client_id is
// exact, so nothing here normalizes.
func checkClientIDURL(id string) error {
	if len(id) > maxClientIDURLLen {
		return fmt.Errorf("the client_id URL is longer than %d bytes", maxClientIDURLLen)
	}
	u, err := url.Parse(id)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" || u.Opaque != "" {
		return errors.New("the client_id URL is not an absolute https URL")
	}
	if u.User != nil || u.Fragment != "" || strings.Contains(id, "#") {
		return errors.New("the client_id URL must not contain user information or a fragment")
	}
	if u.Path == "" || u.Path == "/" {
		return errors.New("the client_id URL must have a path")
	}
	for _, seg := range strings.Split(u.EscapedPath(), "/") {
		if dec, err := url.PathUnescape(seg); err != nil || dec == "." || dec == ".." {
			return errors.New("the client_id URL must not contain dot segments")
		}
	}
	for _, r := range u.Host {
		if r < 0x21 || r > 0x7e {
			return errors.New("the client_id URL must write its host in ASCII (punycode)")
		}
	}
	return nil
}

// cimdDocument is a fetched document: client metadata as in RFC 7591 plus
// the client_id it claims. Members that reveal a shared secret are read
// only to refuse them.
type cimdDocument struct {
	registrationRequest
	ClientID              string          `json:"client_id"`
	ClientSecret          json.RawMessage `json:"client_secret"`
	ClientSecretExpiresAt json.RawMessage `json:"client_secret_expires_at"`
}

// cimdResolver fetches, validates and caches documents.
type cimdResolver struct {
	s     *Server
	fetch *publicFetcher

	// The fetch budget: per client address, server-wide, and a slot per
	// fetch in flight.
	limit    *rateLimiter
	global   *rateLimiter
	fetching chan struct{}

	mu       sync.Mutex
	cache    map[string]*cimdEntry
	inflight map[string]*cimdCall
}

type cimdEntry struct {
	client  *store.Client
	fresh   time.Time // until when it is used without refetching
	expires time.Time // until when it may stand in for a failed refetch
}

// cimdCall is one fetch in progress that concurrent lookups wait for.
type cimdCall struct {
	done   chan struct{}
	client *store.Client
	ttl    time.Duration
	err    error
}

func newCIMDResolver(s *Server, cfg CIMDConfig) *cimdResolver {
	return &cimdResolver{
		s:        s,
		fetch:    newPublicFetcher(cfg.AllowHosts, cfg.RootCAs, cimdTimeout),
		limit:    newRateLimiter(fetchBurst, fetchEvery),
		global:   newRateLimiter(fetchGlobalBurst, fetchGlobalEvery),
		fetching: make(chan struct{}, maxFetching),
		cache:    map[string]*cimdEntry{},
		inflight: map[string]*cimdCall{},
	}
}

// client returns the client a document describes. Fresh copies come from
// the cache; otherwise one fetch is made however many requests ask at
// once, and only if the requesting address (addr) has fetch budget left.
func (c *cimdResolver) client(ctx context.Context, id, addr string) (*store.Client, error) {
	if err := checkClientIDURL(id); err != nil {
		return nil, &cimdError{description: err.Error()}
	}
	now := c.s.now()
	c.mu.Lock()
	old := c.cache[id]
	if old != nil && now.Before(old.fresh) {
		c.mu.Unlock()
		return old.client, nil
	}
	call := c.inflight[id]
	if call == nil {
		if refusal := c.budget(addr, now); refusal != nil {
			c.mu.Unlock()
			if old != nil && now.Before(old.expires) {
				// Over budget, but the document was good: one noisy
				// neighbour behind the same address must not break
				// the clients we already know.
				return old.client, nil
			}
			return nil, refusal
		}
		call = &cimdCall{done: make(chan struct{})}
		c.inflight[id] = call
		c.mu.Unlock()
		// Detached from this request: other requests may wait for the
		// same fetch, which its own timeout bounds.
		call.client, call.ttl, call.err = c.fetchDocument(context.WithoutCancel(ctx), id)
		<-c.fetching
		c.s.emit(Event{Kind: EventCIMDFetch, ClientID: id, Reason: fetchResult(call.err)})
		c.mu.Lock()
		delete(c.inflight, id)
		if call.err == nil {
			c.put(id, call, now)
		}
		c.mu.Unlock()
		close(call.done)
	} else {
		c.mu.Unlock()
	}
	select {
	case <-call.done:
	case <-ctx.Done():
		return nil, fetchFailed("the request ended before the client metadata document was fetched")
	}
	if call.err != nil {
		var ce *cimdError
		if errors.As(call.err, &ce) && ce.transient && old != nil && now.Before(old.expires) {
			// The server hosting a good document is down for a moment:
			// keep the client working on the copy we have.
			return old.client, nil
		}
		return nil, call.err
	}
	return call.client, nil
}

// budget takes a fetch from the requesting address's budget and the
// server's, and a slot among the fetches in flight (released by the
// caller when the fetch is done); c.mu is held. It returns the refusal
// when any is spent.
func (c *cimdResolver) budget(addr string, now time.Time) *cimdError {
	tooMany := func(description string) *cimdError {
		return &cimdError{description: description, transient: true, status: http.StatusTooManyRequests}
	}
	if !c.limit.allow(addr, now) {
		return tooMany("too many client metadata documents were fetched from this address; try again in a minute")
	}
	if !c.global.allow("", now) {
		return tooMany("this server is fetching too many client metadata documents right now; try again in a minute")
	}
	select {
	case c.fetching <- struct{}{}:
		return nil
	default:
		return tooMany("this server is fetching too many client metadata documents right now; try again in a minute")
	}
}

// put caches a good document; c.mu is held. Failures are not cached (the
// fetch budget bounds retries). A full cache drops expired entries first,
// then arbitrary ones.
func (c *cimdResolver) put(id string, call *cimdCall, now time.Time) {
	if _, ok := c.cache[id]; !ok && len(c.cache) >= cimdCacheSize {
		for k, v := range c.cache {
			if now.After(v.expires) {
				delete(c.cache, k)
			}
		}
		for k := range c.cache {
			if len(c.cache) < cimdCacheSize {
				break
			}
			delete(c.cache, k)
		}
	}
	c.cache[id] = &cimdEntry{client: call.client, fresh: now.Add(call.ttl), expires: now.Add(cimdStaleTTL)}
}

// fetchDocument fetches and validates the document at id, returning the
// client it describes and how long to cache it.
func (c *cimdResolver) fetchDocument(ctx context.Context, id string) (*store.Client, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, cimdTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, id, nil)
	if err != nil {
		return nil, 0, &cimdError{description: "the client_id URL cannot be requested"}
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.fetch.client.Do(req)
	if err != nil {
		c.s.log.Info("client metadata document not fetched", zap.String("client_id", id), zapErr(err))
		if errors.Is(err, errForbiddenAddress) {
			return nil, 0, &cimdError{description: "the client_id URL's host is not a public address", refused: true}
		}
		return nil, 0, fetchFailed("the client metadata document could not be fetched")
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, 0, &cimdError{description: "the client metadata document is a redirect, which is not followed"}
	case resp.StatusCode >= 500:
		return nil, 0, fetchFailed("the client metadata document's server failed (" + strconv.Itoa(resp.StatusCode) + ")")
	case resp.StatusCode != http.StatusOK:
		return nil, 0, &cimdError{description: "the client metadata document was not found (" + strconv.Itoa(resp.StatusCode) + ")"}
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "application/json" && !strings.HasSuffix(ct, "+json") {
		return nil, 0, &cimdError{description: "the client metadata document is not application/json"}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, cimdMaxBytes+1))
	if err != nil {
		return nil, 0, fetchFailed("the client metadata document could not be read")
	}
	if len(body) > cimdMaxBytes {
		return nil, 0, &cimdError{description: fmt.Sprintf("the client metadata document is larger than %d bytes", cimdMaxBytes)}
	}
	client, err := c.s.clientFromDocument(id, body)
	if err != nil {
		return nil, 0, err
	}
	c.s.log.Debug("client metadata document fetched", clientFields(client)...)
	return client, cacheTTL(resp.Header), nil
}

// clientFromDocument validates a document with the registration rules.
func (s *Server) clientFromDocument(id string, body []byte) (*store.Client, error) {
	var doc cimdDocument
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, &cimdError{description: "the client metadata document is not a JSON object of client metadata"}
	}
	if doc.ClientID != id {
		return nil, &cimdError{description: "the client metadata document's client_id differs from its URL"}
	}
	if doc.ClientSecret != nil || doc.ClientSecretExpiresAt != nil {
		return nil, &cimdError{description: "the client metadata document must not contain a client secret"}
	}
	if strings.TrimSpace(doc.ClientName) == "" {
		return nil, &cimdError{description: "the client metadata document has no client_name"}
	}
	switch doc.TokenEndpointAuthMethod {
	case "", authMethodNone:
		doc.TokenEndpointAuthMethod = authMethodNone
	default:
		// A published document cannot hold a shared secret; keys
		// (private_key_jwt) are not supported here.
		return nil, &cimdError{description: `the client metadata document's token_endpoint_auth_method must be "none"`}
	}
	c, cerr := newClient(&doc.registrationRequest)
	if cerr != nil {
		return nil, &cimdError{description: "the client metadata document is invalid: " + cerr.Description}
	}
	// No creation time: the document is the client, whenever it was
	// fetched, so approvals of it do not lapse each time the cache
	// refreshes (see clientEpoch).
	c.ID = id
	return c, nil
}

// cacheTTL reads how long a document may be cached from its response's
// Cache-Control, within bounds: documents that say no-store are still
// kept for the minimum, so one sign-in does not fetch them three times.
func cacheTTL(h http.Header) time.Duration {
	ttl := time.Hour
	for _, d := range strings.Split(h.Get("Cache-Control"), ",") {
		name, val, _ := strings.Cut(strings.TrimSpace(d), "=")
		switch strings.ToLower(name) {
		case "no-store", "no-cache":
			return cimdMinTTL
		case "max-age":
			if n, err := strconv.Atoi(strings.Trim(val, `"`)); err == nil && n >= 0 {
				ttl = time.Duration(min(n, int(cimdMaxTTL/time.Second))) * time.Second
			}
		}
	}
	return min(max(ttl, cimdMinTTL), cimdMaxTTL)
}

// fetchResult names the outcome of a fetch for metrics: "ok", "refused"
// (a non-public address), "unavailable" (the document's server failed) or
// "invalid" (the document is wrong).
func fetchResult(err error) string {
	var ce *cimdError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &ce) && ce.refused:
		return "refused"
	case errors.As(err, &ce) && ce.transient:
		return "unavailable"
	}
	return "invalid"
}
