package caddymcp

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/caddymcp/caddymcp/caddymcp/oauth"
)

// masterKey returns the 32-byte key that seals GitHub tokens and signs
// cookies: the configured one, or the one generated into Caddy's data
// directory the first time the plugin ran.
func masterKey(configured string, log *zap.Logger) ([]byte, error) {
	if configured != "" {
		key, err := decodeKey(caddy.NewReplacer().ReplaceKnown(configured, ""))
		if err != nil {
			return nil, fmt.Errorf("secret_key: %w", err)
		}
		return key, nil
	}
	return loadOrCreateKeyFile(filepath.Join(caddy.AppDataDir(), "mcp_auth", "secret.key"), log)
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
// Creation uses O_EXCL so two processes starting at once agree on one key.
func loadOrCreateKeyFile(path string, log *zap.Logger) ([]byte, error) {
	if b, err := os.ReadFile(path); err == nil {
		if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("the key file is readable by other users; chmod 600 it", zap.String("path", path))
		}
		key, err := decodeKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", path, err)
		}
		return key, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating key directory: %w", err)
	}
	key := make([]byte, oauth.KeySize)
	rand.Read(key)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return loadOrCreateKeyFile(path, log) // another process won the race
	}
	if err != nil {
		return nil, fmt.Errorf("creating key file: %w", err)
	}
	_, werr := f.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	serr := f.Sync()
	cerr := f.Close()
	if err := errors.Join(werr, serr, cerr); err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("writing key file: %w", err)
	}
	log.Info("generated a new secret key; back it up with the state file", zap.String("path", path))
	return key, nil
}
