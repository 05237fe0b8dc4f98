package bboltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// userConsentKey is the index key of a consent: the user ID, then the
// length-prefixed client ID, then the consent key, so that one prefix
// finds a user's consents and a longer one their consents for a client.
func userConsentKey(userID int64, clientID string, key []byte) []byte {
	k := make([]byte, 8, 8+2+len(clientID)+len(key))
	binary.BigEndian.PutUint64(k, uint64(userID))
	k = append(k, lenPrefix(clientID, 0)...)
	return append(k, key...)
}

// PutConsent implements store.Store.
func (s *Store) PutConsent(ctx context.Context, c *store.Consent) error {
	if err := store.CheckConsent(c); err != nil {
		return err
	}
	val, err := encode(unixNano(c.ExpiresAt), c)
	if err != nil {
		return err
	}
	return s.updateKeep(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketConsents)
		// A replaced consent may have named another user: drop its
		// index entry first.
		if old := b.Get(c.Key); old != nil {
			if err := unindexConsent(tx, c.Key, old); err != nil {
				return err
			}
		}
		if err := b.Put(c.Key, val); err != nil {
			return err
		}
		return tx.Bucket(bucketUserConsents).Put(userConsentKey(c.UserID, c.ClientID, c.Key), nil)
	})
}

// GetConsent implements store.Store.
func (s *Store) GetConsent(ctx context.Context, key []byte, now time.Time) (*store.Consent, error) {
	if !store.ValidKey(key) {
		return nil, store.ErrNotFound
	}
	var c store.Consent
	var ok bool
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		ok, err = get(tx.Bucket(bucketConsents), key, &c)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ok || store.Expired(c.ExpiresAt, now) {
		return nil, store.ErrNotFound
	}
	return &c, nil
}

// WithdrawConsents implements store.Store.
func (s *Store) WithdrawConsents(ctx context.Context, userID int64, clientID string) (int, error) {
	prefix := make([]byte, 8, 8+2+len(clientID))
	binary.BigEndian.PutUint64(prefix, uint64(userID))
	if clientID != "" {
		if !store.ValidID(clientID) {
			return 0, nil
		}
		prefix = append(prefix, lenPrefix(clientID, 0)...)
	}
	n := 0
	err := s.updateKeep(ctx, func(tx *bolt.Tx) error {
		n = 0
		idx, consents := tx.Bucket(bucketUserConsents), tx.Bucket(bucketConsents)
		for _, k := range prefixKeys(idx, prefix) {
			key := consentKeyOf(k)
			if key != nil && consents.Get(key) != nil {
				if err := consents.Delete(key); err != nil {
					return err
				}
				n++
			}
			if err := idx.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// consentKeyOf returns the consent key at the end of an index key.
func consentKeyOf(idxKey []byte) []byte {
	if len(idxKey) < 10 {
		return nil
	}
	n := int(binary.BigEndian.Uint16(idxKey[8:10]))
	if len(idxKey) < 10+n {
		return nil
	}
	return idxKey[10+n:]
}

// unindexConsent deletes the index entry of the stored consent raw. A
// value that does not decode has no entry we could find; it is left.
func unindexConsent(tx *bolt.Tx, key, raw []byte) error {
	if len(raw) < 8 {
		return nil
	}
	var c struct {
		UserID   int64  `json:"user_id"`
		ClientID string `json:"client_id"`
	}
	if json.Unmarshal(raw[8:], &c) != nil || !store.ValidID(c.ClientID) {
		return nil
	}
	return tx.Bucket(bucketUserConsents).Delete(userConsentKey(c.UserID, c.ClientID, key))
}

// sweepConsent deletes an expired consent with its index entry.
func sweepConsent(tx *bolt.Tx, key, raw []byte) (int, error) {
	if err := unindexConsent(tx, key, raw); err != nil {
		return 0, err
	}
	return 1, tx.Bucket(bucketConsents).Delete(bytes.Clone(key))
}
