package bboltstore

import (
	"context"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// revokeGrant deletes a grant and its index entry, and returns how many
// grants it deleted (0 or 1). Its tokens die with it, as every lookup
// checks the grant, and are left for Sweep (see Revocation in the package
// comment). An unknown grant is not an error.
func revokeGrant(tx *bolt.Tx, grantID string) (int, error) {
	if !store.ValidID(grantID) {
		return 0, nil
	}
	grants := tx.Bucket(bucketGrants)
	var g store.Grant
	ok, err := get(grants, []byte(grantID), &g)
	if err != nil || !ok {
		return 0, err
	}
	if err := grants.Delete([]byte(grantID)); err != nil {
		return 0, err
	}
	if store.ValidID(g.ClientID) {
		if err := tx.Bucket(bucketClientGrants).Delete(clientGrantKey(g.ClientID, grantID)); err != nil {
			return 0, err
		}
	}
	return 1, nil
}

// GetGrant implements store.Store.
func (s *Store) GetGrant(ctx context.Context, id string, now time.Time) (*store.Grant, error) {
	if !store.ValidID(id) {
		return nil, store.ErrNotFound
	}
	var g store.Grant
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		ok, err = get(tx.Bucket(bucketGrants), []byte(id), &g)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ok || store.Expired(g.ExpiresAt, now) {
		return nil, store.ErrNotFound
	}
	return &g, nil
}

// putTokens stores a new access/refresh pair.
func putTokens(tx *bolt.Tx, at *store.AccessToken, atVal []byte, rt *store.RefreshToken, rtVal []byte) error {
	if err := tx.Bucket(bucketAccess).Put(at.Hash, atVal); err != nil {
		return err
	}
	return tx.Bucket(bucketRefresh).Put(rt.Hash, rtVal)
}

// tokenExists reports whether either new token digest is taken.
func tokenExists(tx *bolt.Tx, at *store.AccessToken, rt *store.RefreshToken) bool {
	return tx.Bucket(bucketAccess).Get(at.Hash) != nil || tx.Bucket(bucketRefresh).Get(rt.Hash) != nil
}

// CreateGrant implements store.Store. Beyond the interface's rules: the
// client must exist (ErrNotFound otherwise), so that a grant can never be
// created behind a DeleteClient, and a grant ID or token digest already
// stored is ErrExists.
func (s *Store) CreateGrant(ctx context.Context, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken, codeHash []byte) error {
	if err := store.CheckTokenPair(g, at, rt); err != nil {
		return err
	}
	withCode := codeHash != nil
	if withCode && !store.ValidKey(codeHash) {
		return store.ErrNotFound
	}
	gVal := encodeGrant(g)
	atVal := encodeAccess(at)
	rtVal := encodeRefresh(rt)
	gKey := []byte(g.ID)
	var res error
	revoked := false
	err := s.updateKeep(ctx, func(tx *bolt.Tx) error {
		res, revoked = nil, false
		var code store.Code
		if withCode {
			ok, err := get(tx.Bucket(bucketCodes), codeHash, &code)
			if err != nil {
				return err
			}
			if !ok {
				res = store.ErrNotFound
				return nil
			}
			if res = store.CheckCodeGrant(&code, g); res != nil {
				if res == store.ErrCodeReplayed {
					// Commit the revocation, then report the replay.
					revoked = code.GrantID != ""
					_, err := revokeGrant(tx, code.GrantID)
					return err
				}
				return nil
			}
		}
		if tx.Bucket(bucketClients).Get([]byte(g.ClientID)) == nil {
			res = store.ErrNotFound
			return nil
		}
		grants := tx.Bucket(bucketGrants)
		if grants.Get(gKey) != nil || tokenExists(tx, at, rt) {
			res = store.ErrExists
			return nil
		}

		// All checks passed; from here on, only writes.
		if withCode {
			code.Used = true
			code.GrantID = g.ID
			if err := putCode(tx.Bucket(bucketCodes), &code); err != nil {
				return err
			}
		}
		if err := grants.Put(gKey, gVal); err != nil {
			return err
		}
		if err := tx.Bucket(bucketClientGrants).Put(clientGrantKey(g.ClientID, g.ID), nil); err != nil {
			return err
		}
		if err := keepClient(tx, g.ClientID, g.ExpiresAt); err != nil {
			return err
		}
		// The client came to something: it no longer counts against
		// the address it registered from.
		if _, err := dropLeftover(tx, store.LedgerKey(store.LeftoverClient, g.ClientID)); err != nil {
			return err
		}
		return putTokens(tx, at, atVal, rt, rtVal)
	})
	if err != nil || revoked {
		s.tokens.Invalidate() // the replay revoked a grant
	}
	if err != nil {
		return err
	}
	return res
}

// RevokeGrant implements store.Store.
func (s *Store) RevokeGrant(ctx context.Context, grantID string) error {
	if !store.ValidID(grantID) {
		return nil
	}
	// Nothing to delete unless the grant exists.
	if ok, err := s.exists(ctx, bucketGrants, []byte(grantID)); err != nil || !ok {
		return err
	}
	return s.update(ctx, func(tx *bolt.Tx) error {
		_, err := revokeGrant(tx, grantID)
		return err
	})
}
