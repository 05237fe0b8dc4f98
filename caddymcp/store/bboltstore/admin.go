package bboltstore

import (
	"bytes"
	"context"
	"errors"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// The listings an operator uses through the admin API. They page by ID so
// that no call holds a read transaction over the whole file. A filter by
// client walks the client_grants index; a filter by user alone walks the
// grants bucket, which is fine for an operator's occasional query and
// keeps the layout (and schema version) as it is.

// ListClients implements store.Store.
func (s *Store) ListClients(ctx context.Context, after string, limit int) ([]*store.Client, error) {
	limit = store.ClampLimit(limit)
	var out []*store.Client
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		c := tx.Bucket(bucketClients).Cursor()
		for k, _ := seekAfter(c, []byte(after)); k != nil && len(out) < limit; k, _ = c.Next() {
			var cl store.Client
			if _, err := get(tx.Bucket(bucketClients), k, &cl); err != nil {
				return err
			}
			out = append(out, &cl)
		}
		return nil
	})
	return out, err
}

// ListGrants implements store.Store.
func (s *Store) ListGrants(ctx context.Context, f store.GrantFilter, now time.Time) ([]*store.Grant, error) {
	limit := store.ClampLimit(f.Limit)
	var out []*store.Grant
	err := s.view(ctx, func(tx *bolt.Tx) error {
		out = out[:0]
		return eachGrant(tx, f, func(g *store.Grant) bool {
			if !store.Expired(g.ExpiresAt, now) {
				out = append(out, g)
			}
			return len(out) < limit
		})
	})
	return out, err
}

// RevokeGrants implements store.Store.
func (s *Store) RevokeGrants(ctx context.Context, f store.GrantFilter) (int, error) {
	if !f.NamesSubject() {
		return 0, errors.New("bboltstore: revoking grants needs a user or a client")
	}
	f.After = ""
	var n int
	err := s.update(ctx, func(tx *bolt.Tx) error {
		n = 0
		var ids []string
		if err := eachGrant(tx, f, func(g *store.Grant) bool {
			ids = append(ids, g.ID)
			return true
		}); err != nil {
			return err
		}
		for _, id := range ids {
			if _, err := revokeGrant(tx, id); err != nil {
				return err
			}
		}
		n = len(ids)
		return nil
	})
	return n, err
}

// eachGrant calls fn with every grant matching f after f.After, in ID
// order, until fn returns false.
func eachGrant(tx *bolt.Tx, f store.GrantFilter, fn func(*store.Grant) bool) error {
	grants := tx.Bucket(bucketGrants)
	visit := func(id []byte) (bool, error) {
		var g store.Grant
		ok, err := get(grants, id, &g)
		if err != nil || !ok || !f.Match(&g) {
			return true, err
		}
		return fn(&g), nil
	}
	if f.ClientID != "" {
		if !store.ValidID(f.ClientID) {
			return nil
		}
		prefix := lenPrefix(f.ClientID, 0)
		c := tx.Bucket(bucketClientGrants).Cursor()
		k, _ := c.Seek(prefix)
		if f.After != "" {
			k, _ = seekAfter(c, append(bytes.Clone(prefix), f.After...))
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			more, err := visit(k[len(prefix):])
			if err != nil || !more {
				return err
			}
		}
		return nil
	}
	c := grants.Cursor()
	for k, _ := seekAfter(c, []byte(f.After)); k != nil; k, _ = c.Next() {
		more, err := visit(k)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// seekAfter positions c on the first key after key, or on the first key
// of all for an empty one.
func seekAfter(c *bolt.Cursor, key []byte) ([]byte, []byte) {
	if len(key) == 0 {
		return c.First()
	}
	k, v := c.Seek(key)
	if k != nil && bytes.Equal(k, key) {
		return c.Next()
	}
	return k, v
}
