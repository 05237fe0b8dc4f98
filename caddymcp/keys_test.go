package caddymcp

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
)

func TestKeyFileCreatedOnceWithMode0600(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mcp_auth", "secret.key")
	key, err := loadOrCreateKeyFile(path, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, mode %v", err, fi.Mode().Perm())
	}
	again, err := loadOrCreateKeyFile(path, zap.NewNop())
	if err != nil || !bytes.Equal(key, again) {
		t.Fatalf("second load: %v, same key %v", err, bytes.Equal(key, again))
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestKeyFileConcurrentFirstStartAgrees(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.key")
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := loadOrCreateKeyFile(path, zap.NewNop())
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for i := range keys {
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("starters disagree on the key")
		}
	}
}

func TestKeyFileRefusals(t *testing.T) {
	dir := t.TempDir()
	dangling := filepath.Join(dir, "dangling.key")
	if err := os.Symlink(filepath.Join(dir, "not-mounted", "key"), dangling); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateKeyFile(dangling, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("dangling symlink: %v", err)
	}
	bad := filepath.Join(dir, "bad.key")
	os.WriteFile(bad, []byte("not base64 at all!\n"), 0o600)
	if _, err := loadOrCreateKeyFile(bad, zap.NewNop()); err == nil || !strings.Contains(err.Error(), "32 random bytes") {
		t.Errorf("bad key file: %v", err)
	}
	empty := filepath.Join(dir, "empty.key")
	os.WriteFile(empty, nil, 0o600)
	if _, err := loadOrCreateKeyFile(empty, zap.NewNop()); err == nil {
		t.Error("an empty key file was accepted")
	}
	if _, err := masterKey("c2hvcnQ=", zap.NewNop()); err == nil || !strings.Contains(err.Error(), "secret_key") {
		t.Errorf("short configured key: %v", err)
	}
}

func TestPreviousKeys(t *testing.T) {
	k1 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32))
	k2 := base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32))
	got, err := previousKeys([]string{k1}, k2)
	if err != nil || len(got) != 1 || !bytes.Equal(got[0], bytes.Repeat([]byte{1}, 32)) {
		t.Errorf("previousKeys: %x %v", got, err)
	}
	if _, err := previousKeys([]string{k1}, ""); err == nil {
		t.Errorf("previous keys without a current one were accepted")
	}
	if _, err := previousKeys([]string{"short"}, k2); err == nil || !strings.Contains(err.Error(), "previous key 1") {
		t.Errorf("a malformed previous key: %v", err)
	}
	if got, err := previousKeys(nil, ""); err != nil || got != nil {
		t.Errorf("no previous keys: %v %v", got, err)
	}
}
