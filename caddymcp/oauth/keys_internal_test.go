package oauth

import (
	"bytes"
	"testing"
)

// TestSignedUnderPreviousKey: cookies signed under a previous key verify;
// new ones are signed under the current key; a key that is neither fails.
func TestSignedUnderPreviousKey(t *testing.T) {
	oldKey, newKey, other := bytes.Repeat([]byte{1}, KeySize), bytes.Repeat([]byte{2}, KeySize), bytes.Repeat([]byte{3}, KeySize)
	before, _ := NewKeys(oldKey)
	rotated, _ := NewKeys(newKey, oldKey)
	after, _ := NewKeys(newKey)
	stranger, _ := NewKeys(other)

	signed := before.sign("cookie", "payload")
	if v, ok := rotated.verify("cookie", signed); !ok || v != "payload" {
		t.Errorf("a cookie signed under the previous key: %q %v", v, ok)
	}
	if _, ok := after.verify("cookie", signed); ok {
		t.Errorf("a cookie signed under a dropped key still verifies")
	}
	if _, ok := rotated.verify("cookie", stranger.sign("cookie", "payload")); ok {
		t.Errorf("a cookie signed under an unknown key verifies")
	}
	if _, ok := after.verify("cookie", rotated.sign("cookie", "payload")); !ok {
		t.Errorf("the rotated keys do not sign with the current key")
	}
	if _, err := NewKeys(newKey, []byte("short")); err == nil {
		t.Errorf("a short previous key was accepted")
	}
}
