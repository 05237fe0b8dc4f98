package oauth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
)

// Prefixes make our secrets recognisable to secret scanners and to people
// reading a leaked log, without weakening them: the random part is 256
// bits.
const (
	prefixAccessToken  = "mcp_at_"
	prefixRefreshToken = "mcp_rt_"
	prefixCode         = "mcp_ac_"
	prefixClientSecret = "mcp_cs_"
)

// maxSecretLen bounds every secret we accept from a request before hashing
// it: ours are 61 characters at most, so anything much longer is not one
// of ours.
const maxSecretLen = 256

// newSecret returns prefix followed by 256 random bits in base64url
// (43 characters). Secrets looked up by their key come from
// store.NewSecret instead.
func newSecret(prefix string) string {
	var b [32]byte
	rand.Read(b[:])
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// hashSecret is how a secret that is compared, not looked up (a client
// secret, a browser cookie), is stored: its SHA-256.
func hashSecret(s string) []byte {
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

// Keys holds the key material derived from the master key the operator
// configures (or that is generated once), and from the previous master
// keys kept while one is rotated out.
//
// New values are sealed, signed and MACed with the current key only.
// Sealed GitHub tokens and signed cookies made under a previous key still
// open and verify, so rotating the key logs nobody out. What is derived
// by MAC for lookups (consent approvals, CSRF tokens, the IDs of
// re-registering public clients) simply changes: users see the consent
// page once more, nothing else.
type Keys struct {
	current  keySet
	previous []keySet
}

type keySet struct {
	aead      cipher.AEAD
	cookieKey []byte
}

// KeySize is the length of the master key in bytes.
const KeySize = 32

// NewKeys derives independent keys for sealing GitHub tokens and for
// signing cookies from master, so that one secret is all an operator
// keeps, and likewise from each previous master key.
func NewKeys(master []byte, previous ...[]byte) (*Keys, error) {
	cur, err := deriveKeys(master)
	if err != nil {
		return nil, err
	}
	k := &Keys{current: cur}
	for i, p := range previous {
		ks, err := deriveKeys(p)
		if err != nil {
			return nil, fmt.Errorf("oauth: previous key %d: %w", i+1, err)
		}
		k.previous = append(k.previous, ks)
	}
	return k, nil
}

func deriveKeys(master []byte) (keySet, error) {
	if len(master) != KeySize {
		return keySet{}, fmt.Errorf("oauth: master key must be %d bytes, got %d", KeySize, len(master))
	}
	encKey, err := hkdf.Key(sha256.New, master, nil, "caddymcp github-token sealing v1", 32)
	if err != nil {
		return keySet{}, err
	}
	cookieKey, err := hkdf.Key(sha256.New, master, nil, "caddymcp cookie signing v1", 32)
	if err != nil {
		return keySet{}, err
	}
	block, err := aes.NewCipher(encKey)
	if err != nil {
		return keySet{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return keySet{}, err
	}
	return keySet{aead: aead, cookieKey: cookieKey}, nil
}

// Seal encrypts plaintext with AES-GCM under the current key. The
// associated data binds the ciphertext to its purpose so that it cannot be
// moved to another record.
func (k *Keys) Seal(plaintext, associated []byte) []byte {
	aead := k.current.aead
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	rand.Read(nonce)
	return aead.Seal(nonce, nonce, plaintext, associated)
}

var errUnseal = errors.New("oauth: sealed value is corrupt or was sealed under another key")

// Open decrypts what Seal produced, under the current or a previous key.
func (k *Keys) Open(sealed, associated []byte) ([]byte, error) {
	for i := -1; i < len(k.previous); i++ {
		aead := k.current.aead
		if i >= 0 {
			aead = k.previous[i].aead
		}
		n := aead.NonceSize()
		if len(sealed) < n+aead.Overhead() {
			return nil, errUnseal
		}
		if out, err := aead.Open(nil, sealed[:n], sealed[n:], associated); err == nil {
			return out, nil
		}
	}
	return nil, errUnseal
}

// mac returns the HMAC-SHA256 of the parts under the current cookie key.
func (k *Keys) mac(purpose string, parts ...string) []byte {
	return macWith(k.current.cookieKey, purpose, parts...)
}

// macWith is the HMAC-SHA256 of the parts under key, with each part
// length-prefixed so that ("ab","c") and ("a","bc") differ.
func macWith(key []byte, purpose string, parts ...string) []byte {
	h := hmac.New(sha256.New, key)
	write := func(s string) {
		var n [4]byte
		n[0], n[1], n[2], n[3] = byte(len(s)>>24), byte(len(s)>>16), byte(len(s)>>8), byte(len(s))
		h.Write(n[:])
		h.Write([]byte(s))
	}
	write(purpose)
	for _, p := range parts {
		write(p)
	}
	return h.Sum(nil)
}

// sign returns value.signature for a cookie of the given purpose.
func (k *Keys) sign(purpose, value string) string {
	return value + "." + base64.RawURLEncoding.EncodeToString(k.mac(purpose, value))
}

// verify checks a value produced by sign, under the current or a previous
// key, and returns the value.
func (k *Keys) verify(purpose, signed string) (string, bool) {
	i := len(signed) - base64.RawURLEncoding.EncodedLen(sha256.Size) - 1
	if i < 0 || signed[i] != '.' {
		return "", false
	}
	sig, err := base64.RawURLEncoding.DecodeString(signed[i+1:])
	if err != nil {
		return "", false
	}
	value := signed[:i]
	if hmac.Equal(sig, k.mac(purpose, value)) {
		return value, true
	}
	for _, p := range k.previous {
		if hmac.Equal(sig, macWith(p.cookieKey, purpose, value)) {
			return value, true
		}
	}
	return "", false
}

// constantTimeEqual compares two strings without leaking where they differ.
func constantTimeEqual(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
