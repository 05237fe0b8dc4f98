package bboltstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// GetAccessToken implements store.Store. This is the per-request hot path:
// one read-only transaction, two Gets, no writes.
func (s *Store) GetAccessToken(ctx context.Context, hash []byte, now time.Time) (*store.AccessToken, error) {
	if !store.ValidKey(hash) {
		return nil, store.ErrNotFound
	}
	cached, ok, gen := s.tokens.Get(hash, now)
	if ok {
		if store.Expired(cached.ExpiresAt, now) {
			return nil, store.ErrExpired
		}
		return &cached, nil
	}
	var at store.AccessToken
	var res error
	err := s.view(ctx, func(tx *bolt.Tx) error {
		res = store.ErrNotFound
		raw := tx.Bucket(bucketAccess).Get(hash)
		if raw == nil {
			return nil
		}
		// Reject an expired token from its prefix, before decoding.
		exp, err := valueExp(raw)
		if err != nil {
			return err
		}
		if unixNano(now) >= exp {
			res = store.ErrExpired
			return nil
		}
		if err := decodeRecord(raw[8:], &at); err != nil {
			return err
		}
		if store.Expired(at.ExpiresAt, now) {
			res = store.ErrExpired
			return nil
		}
		// Revocation deletes the grant; a token without one is dead.
		if !store.ValidID(at.GrantID) || tx.Bucket(bucketGrants).Get([]byte(at.GrantID)) == nil {
			return nil
		}
		res = nil
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res != nil {
		return nil, res
	}
	s.tokens.Put(hash, &at, gen, now)
	return &at, nil
}

// GetRefreshToken implements store.Store. It reads in a read-only
// transaction; only a reused token, which must revoke its grant, takes a
// write transaction.
func (s *Store) GetRefreshToken(ctx context.Context, hash []byte, use store.RefreshUse) (*store.RefreshToken, *store.Grant, store.RefreshVerdict, error) {
	if !store.ValidKey(hash) {
		return nil, nil, 0, store.ErrNotFound
	}
	var rt store.RefreshToken
	var g store.Grant
	var v store.RefreshVerdict
	var res error
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		v, res, err = judgeRefresh(tx, hash, use, &rt, &g)
		return err
	})
	if err != nil {
		return nil, nil, 0, err
	}
	if res == nil && v == store.RefreshReused {
		return nil, nil, 0, s.refreshReused(ctx, hash, use)
	}
	if res != nil {
		return nil, nil, 0, res
	}
	return &rt, &g, v, nil
}

// judgeRefresh reads the refresh token hash and its grant into rt and g
// and judges the token (store.JudgeRefresh). res is ErrNotFound for a
// token that is absent, expired, of a revoked grant, or issued to another
// client than use's; err is a failure to read.
func judgeRefresh(tx *bolt.Tx, hash []byte, use store.RefreshUse, rt *store.RefreshToken, g *store.Grant) (v store.RefreshVerdict, res, err error) {
	ok, err := get(tx.Bucket(bucketRefresh), hash, rt)
	if err != nil || !ok {
		return 0, store.ErrNotFound, err
	}
	grant := g
	if !store.ValidID(rt.GrantID) {
		grant = nil
	} else if ok, err = get(tx.Bucket(bucketGrants), []byte(rt.GrantID), g); err != nil {
		return 0, nil, err
	} else if !ok {
		grant = nil
	}
	v, res = store.JudgeRefresh(rt, grant, use)
	return v, res, nil
}

// refreshReused revokes the grant of a reused refresh token and returns
// ErrRefreshReused. It judges the token again in the write transaction:
// the token may have been swept, or its grant revoked, since it was read
// (ErrNotFound).
func (s *Store) refreshReused(ctx context.Context, hash []byte, use store.RefreshUse) error {
	var res error
	err := s.update(ctx, func(tx *bolt.Tx) error {
		var rt store.RefreshToken
		var g store.Grant
		v, notFound, err := judgeRefresh(tx, hash, use, &rt, &g)
		if err != nil || notFound != nil {
			res = notFound
			return err
		}
		res = nil
		if v != store.RefreshReused {
			// A generation only moves forward, so a token judged
			// reused stays reused; were it otherwise, revoking would
			// be wrong.
			return nil
		}
		if _, err := revokeGrant(tx, rt.GrantID); err != nil {
			return err
		}
		res = store.ErrRefreshReused
		return nil
	})
	s.tokens.Invalidate()
	if err != nil {
		return err
	}
	if res == nil {
		return store.ErrNotFound
	}
	return res
}

// RotateRefresh implements store.Store. Beyond the interface's rules: g
// must be the token's grant, and new token digests already stored are
// ErrExists.
func (s *Store) RotateRefresh(ctx context.Context, oldHash []byte, use store.RefreshUse, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken) (store.RefreshVerdict, error) {
	if err := store.CheckTokenPair(g, at, rt); err != nil {
		return 0, err
	}
	if !store.ValidKey(oldHash) {
		return 0, store.ErrNotFound
	}
	if ok, err := s.exists(ctx, bucketRefresh, oldHash); err != nil || !ok {
		return 0, orNotFound(err)
	}
	atVal := encodeAccess(at)
	var v store.RefreshVerdict
	var res error
	err := s.updateKeep(ctx, func(tx *bolt.Tx) error {
		var old store.RefreshToken
		var cur store.Grant
		var err error
		v, res, err = judgeRefresh(tx, oldHash, use, &old, &cur)
		if err != nil || res != nil {
			return err
		}
		if v == store.RefreshReused {
			// Commit the revocation, then report the reuse.
			if _, err := revokeGrant(tx, old.GrantID); err != nil {
				return err
			}
			res = store.ErrRefreshReused
			return nil
		}
		if g.ID != cur.ID || g.ClientID != cur.ClientID {
			res = fmt.Errorf("bboltstore: refresh token belongs to grant %q of client %q, not %q of %q", cur.ID, cur.ClientID, g.ID, g.ClientID)
			return nil
		}
		if tokenExists(tx, at, rt) {
			res = store.ErrExists
			return nil
		}

		// All checks passed; from here on, only writes. The old token
		// is not written: its generation, against the grant's, says
		// that it was used.
		store.ApplyRefresh(&cur, g, v, rt, use.Now)
		if err := tx.Bucket(bucketGrants).Put([]byte(cur.ID), encodeGrant(&cur)); err != nil {
			return err
		}
		if err := keepClient(tx, cur.ClientID, cur.ExpiresAt); err != nil {
			return err
		}
		return putTokens(tx, at, atVal, rt, encodeRefresh(rt))
	})
	if err != nil || errors.Is(res, store.ErrRefreshReused) {
		s.tokens.Invalidate() // the reuse revoked the grant
	}
	if err != nil {
		return 0, err
	}
	return v, res
}

// RevokeAccessToken implements store.Store.
func (s *Store) RevokeAccessToken(ctx context.Context, hash []byte) error {
	if !store.ValidKey(hash) {
		return nil
	}
	if ok, err := s.exists(ctx, bucketAccess, hash); err != nil || !ok {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketAccess).Delete(hash)
	})
}
