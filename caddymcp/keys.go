package caddymcp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
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

// masterKey returns the 32-byte key that seals GitHub tokens and signs
// cookies: the configured one, or the one generated into Caddy's data
// directory the first time the plugin ran.
func masterKey(configured string, log *zap.Logger) ([]byte, error) {
	if configured != "" {
		return configuredKey(configured)
	}
	return loadOrCreateKeyFile(filepath.Join(caddy.AppDataDir(), "mcp_auth", "secret.key"), log)
}

// previousKeys decodes the keys being rotated out. They only make sense
// next to a configured current key: a generated one is never rotated.
func previousKeys(configured []string, current string) ([][]byte, error) {
	if len(configured) > 0 && current == "" {
		return nil, errors.New("secret_key: previous keys need a current key: secret_key <new> <old...>")
	}
	var out [][]byte
	for i, p := range configured {
		key, err := configuredKey(p)
		if err != nil {
			return nil, fmt.Errorf("previous key %d: %w", i+1, err)
		}
		out = append(out, key)
	}
	return out, nil
}

// configuredKey decodes the secret_key option, placeholders replaced.
func configuredKey(configured string) ([]byte, error) {
	key, err := decodeKey(caddy.NewReplacer().ReplaceKnown(configured, ""))
	if err != nil {
		return nil, fmt.Errorf("secret_key: %w", err)
	}
	return key, nil
}

func decodeKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if key, err := enc.DecodeString(s); err == nil && len(key) == oauth.KeySize {
			return key, nil
		}
	}
	return nil, fmt.Errorf("must be %d random bytes in base64 (for example the output of `openssl rand -base64 32`)", oauth.KeySize)
}

// loadOrCreateKeyFile reads the key file, or creates it with mode 0600.
//
// The new key is written to a temporary file and linked into place, so the
// key file is never seen half-written, and if two processes start at once
// the link of one fails and it reads the other's key.
func loadOrCreateKeyFile(path string, log *zap.Logger) ([]byte, error) {
	key, err := readKeyFile(path, log)
	if !errors.Is(err, fs.ErrNotExist) {
		return key, err
	}
	if fi, lerr := os.Lstat(path); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
		return nil, fmt.Errorf("key file %s is a symbolic link to a missing file; mount the secret or set secret_key", path)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating key directory: %w", err)
	}
	key = make([]byte, oauth.KeySize)
	rand.Read(key)
	tmp, err := os.CreateTemp(dir, ".secret.key-*")
	if err != nil {
		return nil, fmt.Errorf("creating key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	serr := tmp.Sync()
	cerr := tmp.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		return nil, fmt.Errorf("writing key file: %w", err)
	}
	// CreateTemp already made it 0600.
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return readKeyFile(path, log) // another process won the race
	} else if err != nil {
		return nil, fmt.Errorf("installing key file: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // make the new directory entry durable
		d.Close()
	}
	log.Info("generated a new secret key; back it up with the state file", zap.String("path", path))
	return key, nil
}

// readKeyFile reads an existing key file; fs.ErrNotExist if there is none.
func readKeyFile(path string, log *zap.Logger) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the key file is readable by other users; chmod 600 it", zap.String("path", path))
	}
	key, err := decodeKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}
