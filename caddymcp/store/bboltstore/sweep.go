package bboltstore

import (
	"bytes"
	"context"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Sweep works in rounds so that it never holds bbolt's single write lock
// (which every token issuance waits for) or a long read transaction (which
// keeps freed pages from being reused) for long: a read transaction looks at
// up to sweepScan records and collects up to sweepDelete expired ones, then
// a write transaction deletes those.
// Variables, not constants, so that tests can force many rounds.
var (
	sweepScan   = 20000
	sweepDelete = 1000
)

// sweepOrder lists the buckets Sweep walks. Clients come after grants, so
// that one whose last grant just lapsed is seen without it.
var sweepOrder = [][]byte{bucketGrants, bucketClients, bucketAccess, bucketRefresh, bucketCodes, bucketPending, bucketConsents, bucketLeftoverKeys}

// Sweep implements store.Store. Expiry is read from each value's prefix, so
// live records are never decoded. Every candidate is checked again in the
// write transaction, because a rotation may have extended a grant since the
// read. Tokens, including those of revoked grants and rotated refresh
// tokens, go when they expire.
func (s *Store) Sweep(ctx context.Context, now time.Time) (int, error) {
	nowN := unixNano(now)
	total := 0
	for _, bucket := range sweepOrder {
		n, err := s.sweepBucket(ctx, bucket, nowN)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// sweepBucket removes the expired records of one bucket, in rounds, and
// returns how many records it removed.
func (s *Store) sweepBucket(ctx context.Context, bucket []byte, nowN int64) (int, error) {
	total := 0
	var after []byte // last key examined; the next round starts behind it
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var cands [][]byte
		done := false
		err := s.view(ctx, func(tx *bolt.Tx) error {
			c := tx.Bucket(bucket).Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else {
				k, v = c.Seek(after)
				if bytes.Equal(k, after) {
					k, v = c.Next()
				}
			}
			var last []byte
			for scanned := 0; k != nil && scanned < sweepScan && len(cands) < sweepDelete; k, v = c.Next() {
				scanned++
				last = k
				// A value too short to have an expiry is not ours to
				// judge; leave it alone.
				if exp, err := valueExp(v); err == nil && nowN >= exp {
					cands = append(cands, bytes.Clone(k))
				}
			}
			done = k == nil
			if last != nil {
				after = bytes.Clone(last)
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		if len(cands) > 0 {
			n := 0
			err := s.db.Update(func(tx *bolt.Tx) error {
				n = 0
				for _, k := range cands {
					d, err := sweepOne(tx, bucket, k, nowN)
					if err != nil {
						return err
					}
					n += d
				}
				return nil
			})
			// A lapsed grant takes live access tokens with it, and
			// clients go too.
			s.invalidate()
			if err != nil {
				return total, err
			}
			total += n
		}
		if done {
			return total, nil
		}
	}
}

// sweepOne deletes the record under key if it is still expired, with its
// index entries, and returns how many records it deleted.
func sweepOne(tx *bolt.Tx, bucket, key []byte, nowN int64) (int, error) {
	b := tx.Bucket(bucket)
	raw := b.Get(key)
	if raw == nil {
		return 0, nil
	}
	exp, err := valueExp(raw)
	if err != nil || nowN < exp {
		return 0, nil
	}
	switch {
	case bytes.Equal(bucket, bucketGrants):
		return revokeGrant(tx, string(key))
	case bytes.Equal(bucket, bucketConsents):
		return sweepConsent(tx, key, raw)
	case bytes.Equal(bucket, bucketLeftoverKeys):
		return dropLeftover(tx, string(key))
	case bytes.Equal(bucket, bucketClients):
		// A client with a grant left is in use, whatever its prefix
		// says (keepClient may lag by a day).
		prefix := lenPrefix(string(key), 0)
		if k, _ := tx.Bucket(bucketClientGrants).Cursor().Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) {
			return 0, nil
		}
		return 1, b.Delete(key)
	default:
		if err := b.Delete(key); err != nil {
			return 0, err
		}
		return 1, nil
	}
}
