package bboltstore

import (
	"context"
	"encoding/binary"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// PutClient implements store.Store.
func (s *Store) PutClient(ctx context.Context, c *store.Client) error {
	if err := store.CheckClient(c); err != nil {
		return err
	}
	created := c.CreatedAt
	if created.IsZero() {
		created = time.Now()
	}
	val, err := encode(unixNano(created.Add(store.UnusedClientTTL)), c)
	if err != nil {
		return err
	}
	key := []byte(c.ID)
	// The token endpoint puts the stored stand-in of a client that lives
	// outside the store at every exchange; once it is there, that costs
	// no write.
	if ok, err := s.exists(ctx, bucketClients, key); err != nil || ok {
		if err == nil {
			err = store.ErrExists
		}
		return err
	}
	var res error
	err = s.updateKeep(ctx, func(tx *bolt.Tx) error {
		res = nil
		b := tx.Bucket(bucketClients)
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

// keepClient extends a client's expiry prefix to IdleClientTTL past a
// grant's expiry. It rewrites the record only when that gains more than a
// day, so that refreshing does not rewrite the client every time.
func keepClient(tx *bolt.Tx, clientID string, grantExp time.Time) error {
	b := tx.Bucket(bucketClients)
	raw := b.Get([]byte(clientID))
	if raw == nil {
		return nil
	}
	exp, err := valueExp(raw)
	if err != nil {
		return nil // not ours to judge; Sweep leaves it alone too
	}
	want := unixNano(grantExp.Add(store.IdleClientTTL))
	if exp >= want-int64(24*time.Hour) {
		return nil
	}
	val := make([]byte, len(raw))
	binary.BigEndian.PutUint64(val, uint64(want))
	copy(val[8:], raw[8:])
	return b.Put([]byte(clientID), val)
}

// GetClient implements store.Store.
func (s *Store) GetClient(ctx context.Context, id string) (*store.Client, error) {
	if !store.ValidID(id) {
		return nil, store.ErrNotFound
	}
	key := []byte(id)
	c, ok, gen := s.clients.Get(key, time.Time{})
	if ok {
		return c.Clone(), nil
	}
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var err error
		ok, err = get(tx.Bucket(bucketClients), key, &c)
		return err
	})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, store.ErrNotFound
	}
	s.clients.Put(key, &c, gen, time.Time{})
	return c.Clone(), nil
}

// DeleteClient implements store.Store. The client's grants are found
// through the client_grants index and revoked in the same transaction.
func (s *Store) DeleteClient(ctx context.Context, id string) error {
	if !store.ValidID(id) {
		return store.ErrNotFound
	}
	key := []byte(id)
	var res error
	err := s.update(ctx, func(tx *bolt.Tx) error {
		res = nil
		clients := tx.Bucket(bucketClients)
		if clients.Get(key) == nil {
			res = store.ErrNotFound
			return nil
		}
		prefix := lenPrefix(id, 0)
		for _, k := range prefixKeys(tx.Bucket(bucketClientGrants), prefix) {
			// revokeGrant also deletes this index entry.
			if _, err := revokeGrant(tx, string(k[len(prefix):])); err != nil {
				return err
			}
		}
		if _, err := dropLeftover(tx, store.LedgerKey(store.LeftoverClient, id)); err != nil {
			return err
		}
		return clients.Delete(key)
	})
	if err != nil {
		return err
	}
	return res
}
