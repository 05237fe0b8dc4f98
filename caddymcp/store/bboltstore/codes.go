package bboltstore

import (
	"context"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// PutPending implements store.Store. A state digest already stored is
// ErrExists: overwriting would let one request replace another.
func (s *Store) PutPending(ctx context.Context, p *store.Pending) error {
	if err := store.CheckPending(p); err != nil {
		return err
	}
	val, err := encode(unixNano(p.ExpiresAt), p)
	if err != nil {
		return err
	}
	return s.insert(ctx, bucketPending, p.StateHash, val)
}

// insert stores val under key in bucket unless the key is taken, which is
// ErrExists: for single-use records, overwriting would let one request
// replace another.
func (s *Store) insert(ctx context.Context, bucket, key, val []byte) error {
	var res error
	err := s.updateKeep(ctx, func(tx *bolt.Tx) error {
		res = nil // update may run this more than once
		b := tx.Bucket(bucket)
		if b.Get(key) != nil {
			res = store.ErrExists
			return nil
		}
		return b.Put(key, val)
	})
	if err != nil {
		return err
	}
	return res
}

// TakePending implements store.Store.
func (s *Store) TakePending(ctx context.Context, stateHash []byte, now time.Time) (*store.Pending, error) {
	if !store.ValidKey(stateHash) {
		return nil, store.ErrNotFound
	}
	if ok, err := s.exists(ctx, bucketPending, stateHash); err != nil || !ok {
		return nil, orNotFound(err)
	}
	var out *store.Pending
	var res error
	err := s.updateKeep(ctx, func(tx *bolt.Tx) error {
		out, res = nil, nil
		b := tx.Bucket(bucketPending)
		var p store.Pending
		ok, err := get(b, stateHash, &p)
		if err != nil {
			return err
		}
		if !ok {
			res = store.ErrNotFound
			return nil
		}
		// Delete even an expired one: it is dead either way, and this
		// saves Sweep the work. Its leftover entry goes with it.
		if err := b.Delete(stateHash); err != nil {
			return err
		}
		if _, err := dropLeftover(tx, store.LedgerKey(store.LeftoverSignIn, store.SignInKey(stateHash))); err != nil {
			return err
		}
		if store.Expired(p.ExpiresAt, now) {
			res = store.ErrNotFound
			return nil
		}
		out = &p
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, res
}

// orNotFound turns a nil error of a failed lookup into ErrNotFound.
func orNotFound(err error) error {
	if err != nil {
		return err
	}
	return store.ErrNotFound
}

// PutCode implements store.Store. A code digest already stored is
// ErrExists: overwriting a used code would reset its single use.
func (s *Store) PutCode(ctx context.Context, c *store.Code) error {
	if err := store.CheckCode(c); err != nil {
		return err
	}
	// The caller's Used and GrantID are ignored: the store maintains them.
	rec := *c
	rec.Used, rec.GrantID = false, ""
	val, err := encode(unixNano(c.ExpiresAt), &rec)
	if err != nil {
		return err
	}
	return s.insert(ctx, bucketCodes, c.Hash, val)
}

// GetCode implements store.Store.
func (s *Store) GetCode(ctx context.Context, codeHash []byte, now time.Time) (*store.Code, error) {
	if !store.ValidKey(codeHash) {
		return nil, store.ErrNotFound
	}
	var c store.Code
	var res error
	err := s.view(ctx, func(tx *bolt.Tx) error {
		ok, err := get(tx.Bucket(bucketCodes), codeHash, &c)
		switch {
		case err != nil:
			return err
		case !ok:
			res = store.ErrNotFound
		default:
			res = store.CheckCodeUse(&c, now)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if res != nil {
		return nil, res
	}
	return &c, nil
}

// RedeemCode implements store.Store.
func (s *Store) RedeemCode(ctx context.Context, codeHash []byte, now time.Time) (*store.Code, error) {
	if !store.ValidKey(codeHash) {
		return nil, store.ErrNotFound
	}
	if ok, err := s.exists(ctx, bucketCodes, codeHash); err != nil || !ok {
		return nil, orNotFound(err)
	}
	var out *store.Code
	var res error
	err := s.updateKeep(ctx, func(tx *bolt.Tx) error {
		out, res = nil, nil
		b := tx.Bucket(bucketCodes)
		var c store.Code
		ok, err := get(b, codeHash, &c)
		if err != nil {
			return err
		}
		if !ok {
			res = store.ErrNotFound
			return nil
		}
		if res = store.CheckCodeUse(&c, now); res != nil {
			if res == store.ErrCodeReplayed {
				// Commit the revocation, then report the replay.
				_, err := revokeGrant(tx, c.GrantID)
				return err
			}
			return nil
		}
		c.Used = true
		if err := putCode(b, &c); err != nil {
			return err
		}
		out = &c
		return nil
	})
	if err != nil || res == store.ErrCodeReplayed {
		s.tokens.Invalidate() // the replay revoked a grant
	}
	if err != nil {
		return nil, err
	}
	return out, res
}

func putCode(b *bolt.Bucket, rec *store.Code) error {
	val, err := encode(unixNano(rec.ExpiresAt), rec)
	if err != nil {
		return err
	}
	return b.Put(rec.Hash, val)
}
