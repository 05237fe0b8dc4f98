// Package store defines the persistent state of the caddymcp authorization
// server and the contract every backend must keep.
//
// The interface is shaped by operations, not by a key-value API, because the
// security properties live in them: a state or code is consumed exactly once,
// a refresh token rotates atomically and its reuse revokes the grant, and a
// revoked grant takes every token issued from it down at once. A backend
// implements each method as one atomic transaction.
//
// Secrets never reach a store in the clear: codes, states, access tokens
// and refresh tokens are stored under SecretKey (their SHA-256 digest,
// after the time they were made), client secrets as their SHA-256 digest,
// and the GitHub token as AES-GCM ciphertext sealed by the caller.
package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Errors returned by a Store. Backends return these values (possibly wrapped),
// so that callers can tell them apart with errors.Is.
var (
	// ErrNotFound means the record does not exist, has expired, or belongs
	// to a revoked grant.
	ErrNotFound = errors.New("store: not found")

	// ErrExpired means an access token exists but has expired. It
	// matches ErrNotFound too (errors.Is), which is all most callers need
	// to know; the gate tells the two apart for its metrics.
	ErrExpired = fmt.Errorf("%w (expired)", ErrNotFound)

	// ErrCodeReplayed means an authorization code was presented a second
	// time. The store has already revoked the grant issued from it.
	ErrCodeReplayed = errors.New("store: authorization code already used")

	// ErrRefreshReused means a refresh token that was already rotated was
	// presented again. The store has already revoked its grant.
	ErrRefreshReused = errors.New("store: refresh token already used")

	// ErrExists means a record with the same key is already stored.
	ErrExists = errors.New("store: already exists")
)

// Store is the state of one authorization server. Implementations must be
// safe for concurrent use; each method is atomic.
type Store interface {
	// PutClient stores a newly registered client. It returns ErrExists if a
	// client with that ID is already stored.
	PutClient(ctx context.Context, c *Client) error
	// GetClient returns a client by its ID, or ErrNotFound.
	GetClient(ctx context.Context, id string) (*Client, error)
	// DeleteClient removes a client and revokes every grant issued to it.
	// Deleting an unknown client returns ErrNotFound.
	DeleteClient(ctx context.Context, id string) error

	// PutPending stores an authorization request that waits for GitHub's
	// callback, keyed by the digest of the state sent to GitHub.
	PutPending(ctx context.Context, p *Pending) error
	// TakePending returns and deletes the pending request with that state
	// digest, so that a state is used at most once. An absent or expired
	// request is ErrNotFound.
	TakePending(ctx context.Context, stateHash []byte, now time.Time) (*Pending, error)

	// PutCode stores an authorization code.
	PutCode(ctx context.Context, c *Code) error
	// GetCode returns an authorization code without redeeming it, so that
	// the token endpoint can check a request against it and then issue
	// the grant in one write (CreateGrant). An absent or expired code is
	// ErrNotFound, a used one ErrCodeReplayed; nothing is written either
	// way (RedeemCode acts on a replay).
	GetCode(ctx context.Context, codeHash []byte, now time.Time) (*Code, error)
	// RedeemCode marks the code as used and returns it: it uses up a code
	// that was presented with a request that failed the checks. An absent
	// or expired code is ErrNotFound. A code that was already used is
	// ErrCodeReplayed, and the grant issued from it (if any) is revoked in
	// the same transaction.
	RedeemCode(ctx context.Context, codeHash []byte, now time.Time) (*Code, error)

	// CreateGrant stores a grant with its first access and refresh token.
	// If codeHash is not nil, the grant is issued from that code, which
	// is redeemed in the same transaction: it must be stored, issued to
	// g.ClientID, unexpired at g.CreatedAt and unused. An absent or
	// expired code is ErrNotFound. A used one is ErrCodeReplayed, and the
	// grant it produced (if any) is revoked, as RedeemCode does: of two
	// exchanges of one code that raced, neither keeps its tokens. All or
	// nothing. g.ID must be new, never that of a grant stored before (even
	// one revoked since): a backend may keep the tokens of a revoked grant
	// until they expire, dead only because their grant is gone.
	CreateGrant(ctx context.Context, g *Grant, at *AccessToken, rt *RefreshToken, codeHash []byte) error

	// GetGrant returns a live grant by ID. An absent, lapsed or revoked
	// grant is ErrNotFound.
	GetGrant(ctx context.Context, id string, now time.Time) (*Grant, error)

	// GetAccessToken returns a live access token by digest. A token that is
	// absent or whose grant was revoked is ErrNotFound, one that expired is
	// ErrExpired (which matches ErrNotFound).
	GetAccessToken(ctx context.Context, hash []byte, now time.Time) (*AccessToken, error)

	// GetRefreshToken returns a refresh token presented by use, with its
	// grant and the token's verdict (RefreshLive or RefreshRetry, see
	// ClassifyRefresh). An absent, expired or revoked one, or one issued
	// to another client, is ErrNotFound; a reused one is ErrRefreshReused
	// and revokes the grant.
	GetRefreshToken(ctx context.Context, hash []byte, use RefreshUse) (*RefreshToken, *Grant, RefreshVerdict, error)

	// RotateRefresh answers the refresh token oldHash, presented by use,
	// with the new pair for the same grant, in one transaction: it judges
	// the token again (ClassifyRefresh), moves the grant's generation on
	// or counts the retry, sets rt.Gen, and updates the grant from g as
	// ApplyRefresh does. A reused token (two uses raced past the grace,
	// or a stolen token was replayed) revokes the grant and returns
	// ErrRefreshReused; an absent, expired or revoked one, or one issued
	// to another client, is ErrNotFound. It returns the verdict it acted
	// on.
	RotateRefresh(ctx context.Context, oldHash []byte, use RefreshUse, g *Grant, at *AccessToken, rt *RefreshToken) (RefreshVerdict, error)

	// RevokeAccessToken deletes one access token. Unknown is not an error.
	RevokeAccessToken(ctx context.Context, hash []byte) error
	// RevokeGrant deletes a grant, so that every access and refresh token
	// issued from it stops working at once. Unknown is not an error.
	RevokeGrant(ctx context.Context, grantID string) error

	// PutConsent records a user's approval of a client's request,
	// replacing one with the same key.
	PutConsent(ctx context.Context, c *Consent) error
	// GetConsent returns a live consent by key, or ErrNotFound.
	GetConsent(ctx context.Context, key []byte, now time.Time) (*Consent, error)
	// WithdrawConsents deletes a user's consents for one client, or for
	// every client when clientID is empty, and returns how many.
	WithdrawConsents(ctx context.Context, userID int64, clientID string) (int, error)

	// ListClients returns up to limit registered clients in order of
	// their IDs, starting after the ID after ("" for the first). A limit
	// outside 1..MaxListLimit is clamped into it (0 means DefaultListLimit).
	ListClients(ctx context.Context, after string, limit int) ([]*Client, error)

	// ListGrants returns up to f.Limit live grants that match f, in order
	// of their IDs, starting after the ID f.After.
	ListGrants(ctx context.Context, f GrantFilter, now time.Time) ([]*Grant, error)

	// RevokeGrants revokes every grant that matches f (live or lapsed;
	// After and Limit are ignored) in one transaction, and returns how
	// many it revoked. A filter that names neither a user nor a client
	// would revoke everything and is refused with an error.
	RevokeGrants(ctx context.Context, f GrantFilter) (int, error)

	// PutLeftover records l in the ledger of leftovers (leftovers.go)
	// unless the bounds refuse it: then it returns a *LeftoverRefusal.
	// Bounds count only live entries. Recording an entry already
	// recorded is no error. CreateGrant drops the entry of its client,
	// TakePending that of its state, DeleteClient that of its client, and
	// Sweep the expired ones.
	PutLeftover(ctx context.Context, l *Leftover, limits LeftoverLimits, now time.Time) error
	// DropLeftover forgets the leftover of kind for key, for a record
	// that was never stored after all. Unknown is not an error.
	DropLeftover(ctx context.Context, kind, key string) error

	// Sweep deletes expired records, the tokens of revoked grants among
	// them if the backend kept those (they are dead either way), and
	// unused clients (see UnusedClientTTL), and returns how many it
	// removed.
	Sweep(ctx context.Context, now time.Time) (int, error)

	// Close releases the backend.
	Close() error
}

// Clients are collected when nobody uses them, so that open registration
// cannot fill the store: a client that obtained no grant within
// UnusedClientTTL of its CreatedAt is deleted by Sweep, and so is one
// with no grant left IdleClientTTL after its last grant's expiry: each
// grant issued or refreshed keeps its client until then (a revoked grant
// too, until the expiry it had), and a store may extend that lazily, by up
// to a day.
const (
	UnusedClientTTL = 24 * time.Hour
	IdleClientTTL   = 30 * 24 * time.Hour
)

// Bounds on list sizes, so that no listing can hold the store or the
// caller's memory for long.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// ClampLimit applies DefaultListLimit and MaxListLimit to a requested list
// size.
func ClampLimit(n int) int {
	switch {
	case n <= 0:
		return DefaultListLimit
	case n > MaxListLimit:
		return MaxListLimit
	}
	return n
}

// GrantFilter selects grants for ListGrants and RevokeGrants. Fields left
// zero match everything.
type GrantFilter struct {
	// ClientID selects the grants of one client.
	ClientID string
	// UserID selects the grants of one GitHub user by numeric ID.
	UserID int64
	// UserLogin selects the grants of one GitHub user by login, compared
	// case-insensitively as GitHub does.
	UserLogin string
	// After is the ID of the last grant of the previous page.
	After string
	// Limit bounds the page as ClampLimit does.
	Limit int
}

// NamesSubject reports whether f selects by user or client, as
// RevokeGrants requires.
func (f GrantFilter) NamesSubject() bool {
	return f.ClientID != "" || f.UserID != 0 || f.UserLogin != ""
}

// Match reports whether g is selected by f's user and client fields.
func (f GrantFilter) Match(g *Grant) bool {
	return (f.ClientID == "" || g.ClientID == f.ClientID) &&
		(f.UserID == 0 || g.User.ID == f.UserID) &&
		(f.UserLogin == "" || strings.EqualFold(g.User.Login, f.UserLogin))
}

// Client is an OAuth client registered through RFC 7591.
type Client struct {
	ID string `json:"id"`
	// SecretHash is the SHA-256 of the client secret; nil for a public
	// client (token_endpoint_auth_method "none").
	SecretHash              []byte    `json:"secret_hash,omitempty"`
	Name                    string    `json:"name,omitempty"`
	RedirectURIs            []string  `json:"redirect_uris"`
	TokenEndpointAuthMethod string    `json:"token_endpoint_auth_method"`
	GrantTypes              []string  `json:"grant_types,omitempty"`
	ResponseTypes           []string  `json:"response_types,omitempty"`
	ApplicationType         string    `json:"application_type,omitempty"`
	Scope                   string    `json:"scope,omitempty"`
	ClientURI               string    `json:"client_uri,omitempty"`
	LogoURI                 string    `json:"logo_uri,omitempty"`
	SoftwareID              string    `json:"software_id,omitempty"`
	SoftwareVersion         string    `json:"software_version,omitempty"`
	CreatedAt               time.Time `json:"created_at"`
	// Issuer is the site (the authorization server's issuer) a client
	// registered itself at; another site sharing the store never honours
	// it. Empty for a client registered before clients were bound to
	// their site, and for stand-ins.
	Issuer string `json:"issuer,omitempty"`
	// Origin is empty for a client that registered itself (RFC 7591).
	// "configured" and "document" mark the stored stand-ins of a client
	// from the server's configuration or from a metadata document, which
	// are stored only so that grants hang off a client: they are never
	// looked up as clients themselves.
	Origin string `json:"origin,omitempty"`
}

// Clone returns a copy of c that shares no memory with it.
func (c *Client) Clone() *Client {
	d := *c
	d.SecretHash = slices.Clone(c.SecretHash)
	d.RedirectURIs = slices.Clone(c.RedirectURIs)
	d.GrantTypes = slices.Clone(c.GrantTypes)
	d.ResponseTypes = slices.Clone(c.ResponseTypes)
	return &d
}

// Client origins; see Client.Origin.
const (
	OriginConfigured = "configured"
	OriginDocument   = "document"
)

// Pending is a validated authorization request that has been sent on to
// GitHub and waits for the callback.
type Pending struct {
	StateHash     []byte `json:"state_hash"`
	ClientID      string `json:"client_id"`
	RedirectURI   string `json:"redirect_uri"`
	ClientState   string `json:"client_state,omitempty"`
	CodeChallenge string `json:"code_challenge"`
	Resource      string `json:"resource,omitempty"`
	Scope         string `json:"scope,omitempty"`
	// GitHubVerifier is the PKCE verifier (RFC 7636) sent to GitHub with
	// the sign-in, sealed by the caller: the callback presents it with
	// GitHub's code.
	GitHubVerifier []byte `json:"github_verifier,omitempty"`
	// BrowserHash is the digest of the browser-binding cookie of the
	// browser that started (and consented to) the request; the callback
	// must come from the same browser.
	BrowserHash []byte `json:"browser_hash,omitempty"`
	// ApprovedBy is the GitHub user ID whose remembered approval skipped
	// the consent page, or 0 if the user consented in this request. The
	// callback refuses another user: consent is theirs to give.
	ApprovedBy int64     `json:"approved_by,omitempty"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// Identity is the GitHub user a grant was issued to.
type Identity struct {
	ID        int64  `json:"id"`
	Login     string `json:"login"`
	Name      string `json:"name,omitempty"`
	Email     string `json:"email,omitempty"`
	AvatarURL string `json:"avatar_url,omitempty"`
}

// Code is an authorization code, bound to the client, the redirect URI, the
// PKCE challenge and the resource of the request that produced it.
type Code struct {
	Hash          []byte    `json:"hash"`
	ClientID      string    `json:"client_id"`
	RedirectURI   string    `json:"redirect_uri"`
	CodeChallenge string    `json:"code_challenge"`
	Resource      string    `json:"resource,omitempty"`
	Scope         string    `json:"scope,omitempty"`
	User          Identity  `json:"user"`
	GitHubToken   []byte    `json:"github_token,omitempty"` // sealed
	ExpiresAt     time.Time `json:"expires_at"`
	// Used and GrantID are maintained by the store.
	Used    bool   `json:"used,omitempty"`
	GrantID string `json:"grant_id,omitempty"`
}

// Grant is one user's authorization of one client for one resource. Access
// and refresh tokens hang off it; revoking it revokes them all.
type Grant struct {
	ID          string    `json:"id"`
	ClientID    string    `json:"client_id"`
	User        Identity  `json:"user"`
	Scope       string    `json:"scope,omitempty"`
	Resource    string    `json:"resource,omitempty"`
	GitHubToken []byte    `json:"github_token,omitempty"` // sealed
	CreatedAt   time.Time `json:"created_at"`
	// ExpiresAt is when the grant lapses if it is not refreshed: the
	// expiry of its current refresh token.
	ExpiresAt time.Time `json:"expires_at"`
	// CheckedAt is when GitHub last confirmed that the user is still
	// admitted: at sign-in and at every refresh that reached GitHub.
	// While GitHub cannot be reached, a refresh is served from it for a
	// while.
	CheckedAt time.Time `json:"checked_at,omitzero"`
	// RefreshGen, RotatedAt and Retries are maintained by the store (see
	// refresh.go): the generation of the live refresh tokens, when it
	// began, and how many retries of the previous one it has served.
	RefreshGen uint64    `json:"refresh_gen,omitempty"`
	RotatedAt  time.Time `json:"rotated_at,omitzero"`
	Retries    int       `json:"retries,omitempty"`
}

// AccessToken is an issued access token, audience-bound to Resource.
type AccessToken struct {
	Hash      []byte    `json:"hash"`
	GrantID   string    `json:"grant_id"`
	ClientID  string    `json:"client_id"`
	User      Identity  `json:"user"`
	Scope     string    `json:"scope,omitempty"`
	Resource  string    `json:"resource,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// RefreshToken is an issued refresh token. Used ones are kept until they
// expire so that their reuse can be detected: a token is live while its
// generation is its grant's (see refresh.go).
type RefreshToken struct {
	Hash      []byte    `json:"hash"`
	GrantID   string    `json:"grant_id"`
	ClientID  string    `json:"client_id"`
	ExpiresAt time.Time `json:"expires_at"`
	// Gen is the generation of the grant's tokens this one belongs to;
	// set by the store.
	Gen uint64 `json:"gen,omitempty"`
	// Rotated marks a token used under the rules of earlier releases,
	// which rotated tokens one by one; no longer written.
	Rotated bool `json:"rotated,omitempty"`
}

// Consent is a user's approval on the consent page of one client's request:
// its redirect URI, resource and scope, digested into Key by the server. A
// browser remembers the approval in a signed cookie; the cookie counts
// only while this record exists, so withdrawing it here (when the client
// revokes its grant, or an operator cuts the user off) makes the consent
// page show again.
type Consent struct {
	Key       []byte    `json:"key"`
	UserID    int64     `json:"user_id"`
	ClientID  string    `json:"client_id"`
	Resource  string    `json:"resource,omitempty"`
	Scope     string    `json:"scope,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}
