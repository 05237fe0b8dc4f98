package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"
)

func TestSecretKeysSortByTime(t *testing.T) {
	var prev []byte
	seen := map[string]bool{}
	for range 1000 {
		s := NewSecret("mcp_at_")
		body, ok := strings.CutPrefix(s, "mcp_at_")
		if !ok || len(body) != secretBodyLen {
			t.Fatalf("secret %q: want the prefix and %d characters", s, secretBodyLen)
		}
		if seen[s] {
			t.Fatalf("secret %q made twice", s)
		}
		seen[s] = true
		key := SecretKey("mcp_at_", s)
		sum := sha256.Sum256([]byte(s))
		if len(key) != secretOrderLen+sha256.Size || !bytes.Equal(key[secretOrderLen:], sum[:]) {
			t.Fatalf("key %x of %q does not end in its digest %x", key, s, sum)
		}
		raw, err := base64.RawURLEncoding.DecodeString(body)
		if err == nil && len(raw) != secretOrderLen+32 {
			t.Fatalf("secret %q does not hold 256 random bits after its time stamp", s)
		}
		if err != nil || !bytes.Equal(key[:secretOrderLen], raw[:secretOrderLen]) {
			t.Fatalf("key %x of %q does not start with its time stamp (%v)", key, s, err)
		}
		if prev != nil && bytes.Compare(key[:secretOrderLen], prev[:secretOrderLen]) <= 0 {
			t.Fatalf("key %x does not sort after the previous one %x", key, prev)
		}
		prev = key
	}
}

// TestSecretKeyOtherShapes: anything that is not a secret made by
// NewSecret with that prefix is looked up under its plain digest, so that
// secrets of the older format (43 characters of randomness) still work
// and no input can choose a key.
func TestSecretKeyOtherShapes(t *testing.T) {
	ordered := NewSecret("mcp_rt_")
	body := strings.TrimPrefix(ordered, "mcp_rt_")
	for _, s := range []string{
		"mcp_rt_" + strings.Repeat("A", 43),    // the older format
		"mcp_rt_" + strings.Repeat("A", 44),    // an earlier draft's length
		"mcp_rt_" + body[:secretBodyLen-1],     // one short
		"mcp_rt_" + body + "A",                 // one long
		"mcp_rt_" + "!!!!!!!!!!!!" + body[12:], // not base64
		"mcp_at_" + body,                       // another prefix
		"",                                     // empty
		"mcp_rt_",                              // prefix only
		"mcp_rt_" + strings.Repeat("é", secretBodyLen/2), // 54 bytes, not base64
		"mcp_rt_" + "AAAAAAAAAAA=" + body[12:],           // padding inside
	} {
		sum := sha256.Sum256([]byte(s))
		if key := SecretKey("mcp_rt_", s); !bytes.Equal(key, sum[:]) {
			t.Errorf("SecretKey(%q) = %x, want its plain digest %x", s, key, sum)
		}
	}
	if key, sum := SecretKey("mcp_rt_", ordered), sha256.Sum256([]byte(ordered)); bytes.Equal(key, sum[:]) {
		t.Errorf("an ordered secret got its plain digest as key")
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	prev := ""
	for range 1000 {
		id := NewID()
		if len(id) != 22 || !ValidID(id) {
			t.Fatalf("ID %q: want 22 valid characters", id)
		}
		if strings.ContainsAny(id, "+/=") {
			t.Fatalf("ID %q is not URL-safe", id)
		}
		if id <= prev {
			t.Fatalf("ID %q does not sort after %q", id, prev)
		}
		prev = id
	}
}

func BenchmarkSecretKey(b *testing.B) {
	s := NewSecret("mcp_at_")
	b.ReportAllocs()
	for b.Loop() {
		SecretKey("mcp_at_", s)
	}
}
