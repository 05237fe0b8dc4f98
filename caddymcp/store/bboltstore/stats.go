package bboltstore

import (
	"context"

	bolt "go.etcd.io/bbolt"
)

// Counts is how many records of each kind a store file holds, expired ones
// not yet swept included.
type Counts struct {
	Clients       int
	Pending       int
	Codes         int
	Grants        int
	AccessTokens  int
	RefreshTokens int
}

// Count returns the number of records of each kind, for operators and for
// the load driver's check that no grant was lost or duplicated.
func (s *Store) Count(ctx context.Context) (Counts, error) {
	var c Counts
	err := s.view(ctx, func(tx *bolt.Tx) error {
		for _, b := range []struct {
			name []byte
			n    *int
		}{
			{bucketClients, &c.Clients}, {bucketPending, &c.Pending}, {bucketCodes, &c.Codes},
			{bucketGrants, &c.Grants}, {bucketAccess, &c.AccessTokens}, {bucketRefresh, &c.RefreshTokens},
		} {
			*b.n = tx.Bucket(b.name).Stats().KeyN
		}
		return nil
	})
	return c, err
}
