package store

import (
	"errors"
	"fmt"
	"time"
)

// Limits on the keys of records: IDs (clients, grants) and digests. Real
// IDs and SHA-256 digests are far shorter; the limits keep any backend's
// keys and indexes bounded (bbolt's keys, with a 16-bit length prefix in
// its indexes).
const (
	MaxIDLen  = 1024
	MaxKeyLen = 1024
)

// CheckID refuses an empty or oversized ID of a record to be written.
func CheckID(what, id string) error {
	switch {
	case id == "":
		return fmt.Errorf("store: %s is empty", what)
	case len(id) > MaxIDLen:
		return fmt.Errorf("store: %s is longer than %d bytes", what, MaxIDLen)
	}
	return nil
}

// CheckKey refuses an empty or oversized digest of a record to be written.
func CheckKey(what string, key []byte) error {
	switch {
	case len(key) == 0:
		return fmt.Errorf("store: %s is empty", what)
	case len(key) > MaxKeyLen:
		return fmt.Errorf("store: %s is longer than %d bytes", what, MaxKeyLen)
	}
	return nil
}

// ValidKey reports whether key can name a stored record; lookups answer
// ErrNotFound (or nothing) for one that cannot, without asking the backend.
func ValidKey(key []byte) bool { return len(key) > 0 && len(key) <= MaxKeyLen }

// ValidID is ValidKey for string IDs.
func ValidID(id string) bool { return id != "" && len(id) <= MaxIDLen }

// Expired reports whether a record expiring at exp is dead at now: records
// are live strictly before their expiry.
func Expired(exp, now time.Time) bool { return !now.Before(exp) }

// CheckClient checks a client before a backend writes it: present, with
// an ID within bounds.
func CheckClient(c *Client) error {
	if c == nil {
		return errors.New("store: nil client")
	}
	return CheckID("client ID", c.ID)
}

// CheckPending is CheckClient for a pending request and its state digest.
func CheckPending(p *Pending) error {
	if p == nil {
		return errors.New("store: nil pending request")
	}
	return CheckKey("state hash", p.StateHash)
}

// CheckCode is CheckClient for a code and its digest.
func CheckCode(c *Code) error {
	if c == nil {
		return errors.New("store: nil code")
	}
	return CheckKey("code hash", c.Hash)
}

// CheckConsent is CheckClient for a consent, its key and its client ID
// (which a backend indexes).
func CheckConsent(c *Consent) error {
	if c == nil {
		return errors.New("store: nil consent")
	}
	return errors.Join(CheckKey("consent key", c.Key), CheckID("client ID", c.ClientID))
}

// CheckTokenPair checks a grant and the token pair issued with it before a
// backend writes them: all present, IDs and digests within bounds, both
// tokens naming the grant and its client, and two distinct digests.
func CheckTokenPair(g *Grant, at *AccessToken, rt *RefreshToken) error {
	switch {
	case g == nil:
		return errors.New("store: nil grant")
	case at == nil:
		return errors.New("store: nil access token")
	case rt == nil:
		return errors.New("store: nil refresh token")
	case at.GrantID != g.ID || rt.GrantID != g.ID:
		return fmt.Errorf("store: tokens name grant %q/%q, not %q", at.GrantID, rt.GrantID, g.ID)
	case at.ClientID != g.ClientID || rt.ClientID != g.ClientID:
		return fmt.Errorf("store: tokens name client %q/%q, not the grant's %q", at.ClientID, rt.ClientID, g.ClientID)
	case string(at.Hash) == string(rt.Hash):
		return errors.New("store: access and refresh token have the same hash")
	}
	return errors.Join(CheckID("grant ID", g.ID), CheckID("client ID", g.ClientID),
		CheckKey("access token hash", at.Hash), CheckKey("refresh token hash", rt.Hash))
}

// CheckCodeUse checks that the stored code c can be used at now: a used
// one is ErrCodeReplayed, checked before expiry so that a replay is
// treated as one (and revokes the grant c.GrantID) until Sweep removes the
// code; an expired one is ErrNotFound.
func CheckCodeUse(c *Code, now time.Time) error {
	switch {
	case c.Used:
		return ErrCodeReplayed
	case Expired(c.ExpiresAt, now):
		return ErrNotFound
	}
	return nil
}

// CheckCodeGrant checks that grant g can be issued from the stored code
// c, as CreateGrant requires: CheckCodeUse at g.CreatedAt, and c issued to
// g's client.
func CheckCodeGrant(c *Code, g *Grant) error {
	if err := CheckCodeUse(c, g.CreatedAt); err != nil {
		return err
	}
	if c.ClientID != g.ClientID {
		return fmt.Errorf("store: code was issued to client %q, not %q", c.ClientID, g.ClientID)
	}
	return nil
}
