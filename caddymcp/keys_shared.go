package caddymcp

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// keySharer is a storage backend that several instances share, and that
// therefore keeps the secret key for all of them: it checks a configured
// key against the other instances', or hands out the key generated once.
type keySharer interface {
	SharedKey(ctx context.Context, configured []byte, previous [][]byte) ([]byte, error)
}

// sharedKeyTimeout bounds the key exchange with a shared backend.
const sharedKeyTimeout = 10 * time.Second

// secretKeyFor returns the master key for a config: through the storage
// backend when it is shared by several instances, else as masterKey does
// (configured, or generated into Caddy's data directory).
func secretKeyFor(storage StorageBackend, configured string, previous [][]byte, log *zap.Logger) ([]byte, error) {
	ks, ok := storage.(keySharer)
	if !ok {
		return masterKey(configured, log)
	}
	var key []byte
	if configured != "" {
		var err error
		if key, err = configuredKey(configured); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedKeyTimeout)
	defer cancel()
	return ks.SharedKey(ctx, key, previous)
}
