package caddymcp

import (
	"context"
	"time"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// The store.Store methods of sharedStore: each opens the file if it is not
// open yet (see BboltStorage) and passes the call on.

func (s *sharedStore) PutClient(ctx context.Context, c *store.Client) error {
	db, err := s.open(0)
	if err != nil {
		return err
	}
	return db.PutClient(ctx, c)
}

func (s *sharedStore) GetClient(ctx context.Context, id string) (*store.Client, error) {
	db, err := s.open(0)
	if err != nil {
		return nil, err
	}
	return db.GetClient(ctx, id)
}

func (s *sharedStore) DeleteClient(ctx context.Context, id string) error {
	db, err := s.open(0)
	if err != nil {
		return err
	}
	return db.DeleteClient(ctx, id)
}

func (s *sharedStore) PutPending(ctx context.Context, p *store.Pending) error {
	db, err := s.open(0)
	if err != nil {
		return err
	}
	return db.PutPending(ctx, p)
}

func (s *sharedStore) TakePending(ctx context.Context, stateHash []byte, now time.Time) (*store.Pending, error) {
	db, err := s.open(0)
	if err != nil {
		return nil, err
	}
	return db.TakePending(ctx, stateHash, now)
}

func (s *sharedStore) PutCode(ctx context.Context, c *store.Code) error {
	db, err := s.open(0)
	if err != nil {
		return err
	}
	return db.PutCode(ctx, c)
}

func (s *sharedStore) GetCode(ctx context.Context, codeHash []byte, now time.Time) (*store.Code, error) {
	db, err := s.open(0)
	if err != nil {
		return nil, err
	}
	return db.GetCode(ctx, codeHash, now)
}

func (s *sharedStore) RedeemCode(ctx context.Context, codeHash []byte, now time.Time) (*store.Code, error) {
	db, err := s.open(0)
	if err != nil {
		return nil, err
	}
	return db.RedeemCode(ctx, codeHash, now)
}

func (s *sharedStore) CreateGrant(ctx context.Context, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken, codeHash []byte) error {
	db, err := s.open(0)
	if err != nil {
		return err
	}
	return db.CreateGrant(ctx, g, at, rt, codeHash)
}

func (s *sharedStore) GetGrant(ctx context.Context, id string, now time.Time) (*store.Grant, error) {
	db, err := s.open(0)
	if err != nil {
		return nil, err
	}
	return db.GetGrant(ctx, id, now)
}

func (s *sharedStore) GetAccessToken(ctx context.Context, hash []byte, now time.Time) (*store.AccessToken, error) {
	db, err := s.open(0)
	if err != nil {
		return nil, err
	}
	return db.GetAccessToken(ctx, hash, now)
}

func (s *sharedStore) GetRefreshToken(ctx context.Context, hash []byte, use store.RefreshUse) (*store.RefreshToken, *store.Grant, store.RefreshVerdict, error) {
	db, err := s.open(0)
	if err != nil {
		return nil, nil, 0, err
	}
	return db.GetRefreshToken(ctx, hash, use)
}

func (s *sharedStore) RotateRefresh(ctx context.Context, oldHash []byte, use store.RefreshUse, g *store.Grant, at *store.AccessToken, rt *store.RefreshToken) (store.RefreshVerdict, error) {
	db, err := s.open(0)
	if err != nil {
		return 0, err
	}
	return db.RotateRefresh(ctx, oldHash, use, g, at, rt)
}

func (s *sharedStore) RevokeAccessToken(ctx context.Context, hash []byte) error {
	db, err := s.open(0)
	if err != nil {
		return err
	}
	return db.RevokeAccessToken(ctx, hash)
}

func (s *sharedStore) RevokeGrant(ctx context.Context, grantID string) error {
	db, err := s.open(0)
	if err != nil {
		return err
	}
	return db.RevokeGrant(ctx, grantID)
}

func (s *sharedStore) PutConsent(ctx context.Context, c *store.Consent) error {
	db, err := s.open(0)
	if err != nil {
		return err
	}
	return db.PutConsent(ctx, c)
}

func (s *sharedStore) GetConsent(ctx context.Context, key []byte, now time.Time) (*store.Consent, error) {
	db, err := s.open(0)
	if err != nil {
		return nil, err
	}
	return db.GetConsent(ctx, key, now)
}

func (s *sharedStore) WithdrawConsents(ctx context.Context, userID int64, clientID string) (int, error) {
	db, err := s.open(0)
	if err != nil {
		return 0, err
	}
	return db.WithdrawConsents(ctx, userID, clientID)
}

func (s *sharedStore) ListClients(ctx context.Context, after string, limit int) ([]*store.Client, error) {
	db, err := s.open(0)
	if err != nil {
		return nil, err
	}
	return db.ListClients(ctx, after, limit)
}

func (s *sharedStore) ListGrants(ctx context.Context, f store.GrantFilter, now time.Time) ([]*store.Grant, error) {
	db, err := s.open(0)
	if err != nil {
		return nil, err
	}
	return db.ListGrants(ctx, f, now)
}

func (s *sharedStore) RevokeGrants(ctx context.Context, f store.GrantFilter) (int, error) {
	db, err := s.open(0)
	if err != nil {
		return 0, err
	}
	return db.RevokeGrants(ctx, f)
}

func (s *sharedStore) Sweep(ctx context.Context, now time.Time) (int, error) {
	db, err := s.open(0)
	if err != nil {
		return 0, err
	}
	return db.Sweep(ctx, now)
}

// Close does nothing: the file is closed by Destruct when the last config
// using it is cleaned up, never by one of its users.
func (s *sharedStore) Close() error { return nil }

func (s *sharedStore) PutLeftover(ctx context.Context, l *store.Leftover, limits store.LeftoverLimits, now time.Time) error {
	db, err := s.open(0)
	if err != nil {
		return err
	}
	return db.PutLeftover(ctx, l, limits, now)
}

func (s *sharedStore) DropLeftover(ctx context.Context, kind, key string) error {
	db, err := s.open(0)
	if err != nil {
		return err
	}
	return db.DropLeftover(ctx, kind, key)
}
