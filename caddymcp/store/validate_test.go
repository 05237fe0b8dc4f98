package store

import (
	"strings"
	"testing"
	"time"
)

func TestCheckTokenPair(t *testing.T) {
	pair := func() (*Grant, *AccessToken, *RefreshToken) {
		g := &Grant{ID: "g", ClientID: "c"}
		return g, &AccessToken{Hash: []byte("a"), GrantID: "g", ClientID: "c"}, &RefreshToken{Hash: []byte("r"), GrantID: "g", ClientID: "c"}
	}
	if err := CheckTokenPair(pair()); err != nil {
		t.Fatalf("a consistent pair: %v", err)
	}
	for name, mod := range map[string]func(g *Grant, at *AccessToken, rt *RefreshToken) (*Grant, *AccessToken, *RefreshToken){
		"nil grant": func(_ *Grant, at *AccessToken, rt *RefreshToken) (*Grant, *AccessToken, *RefreshToken) {
			return nil, at, rt
		},
		"nil access": func(g *Grant, _ *AccessToken, rt *RefreshToken) (*Grant, *AccessToken, *RefreshToken) {
			return g, nil, rt
		},
		"nil refresh": func(g *Grant, at *AccessToken, _ *RefreshToken) (*Grant, *AccessToken, *RefreshToken) {
			return g, at, nil
		},
		"access of another": func(g *Grant, at *AccessToken, rt *RefreshToken) (*Grant, *AccessToken, *RefreshToken) {
			at.GrantID = "x"
			return g, at, rt
		},
		"refresh of another": func(g *Grant, at *AccessToken, rt *RefreshToken) (*Grant, *AccessToken, *RefreshToken) {
			rt.GrantID = "x"
			return g, at, rt
		},
		"another client": func(g *Grant, at *AccessToken, rt *RefreshToken) (*Grant, *AccessToken, *RefreshToken) {
			rt.ClientID = "x"
			return g, at, rt
		},
		"same hash": func(g *Grant, at *AccessToken, rt *RefreshToken) (*Grant, *AccessToken, *RefreshToken) {
			rt.Hash = at.Hash
			return g, at, rt
		},
		"empty grant ID": func(g *Grant, at *AccessToken, rt *RefreshToken) (*Grant, *AccessToken, *RefreshToken) {
			g.ID, at.GrantID, rt.GrantID = "", "", ""
			return g, at, rt
		},
		"oversized client ID": func(g *Grant, at *AccessToken, rt *RefreshToken) (*Grant, *AccessToken, *RefreshToken) {
			id := strings.Repeat("c", MaxIDLen+1)
			g.ClientID, at.ClientID, rt.ClientID = id, id, id
			return g, at, rt
		},
		"empty access hash": func(g *Grant, at *AccessToken, rt *RefreshToken) (*Grant, *AccessToken, *RefreshToken) {
			at.Hash = nil
			return g, at, rt
		},
		"oversized refresh hash": func(g *Grant, at *AccessToken, rt *RefreshToken) (*Grant, *AccessToken, *RefreshToken) {
			rt.Hash = make([]byte, MaxKeyLen+1)
			return g, at, rt
		},
	} {
		if err := CheckTokenPair(mod(pair())); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestValidAndExpired(t *testing.T) {
	if ValidID("") || ValidID(strings.Repeat("x", MaxIDLen+1)) || !ValidID("x") {
		t.Errorf("ValidID bounds")
	}
	if ValidKey(nil) || ValidKey(make([]byte, MaxKeyLen+1)) || !ValidKey([]byte{1}) {
		t.Errorf("ValidKey bounds")
	}
	now := time.Now()
	if !Expired(now, now) || Expired(now.Add(time.Nanosecond), now) || !Expired(now.Add(-time.Second), now) {
		t.Errorf("a record is live strictly before its expiry")
	}
}

// TestCheckRecords: a record to be written must be there, with its key
// (and a consent's client ID) present and within bounds.
func TestCheckRecords(t *testing.T) {
	huge := make([]byte, MaxKeyLen+1)
	for name, err := range map[string]error{
		"nil client":             CheckClient(nil),
		"client without ID":      CheckClient(&Client{}),
		"nil pending":            CheckPending(nil),
		"pending with huge key":  CheckPending(&Pending{StateHash: huge}),
		"nil code":               CheckCode(nil),
		"code without hash":      CheckCode(&Code{}),
		"nil consent":            CheckConsent(nil),
		"consent without key":    CheckConsent(&Consent{ClientID: "c"}),
		"consent without client": CheckConsent(&Consent{Key: []byte("k")}),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	for name, err := range map[string]error{
		"client":  CheckClient(&Client{ID: "c"}),
		"pending": CheckPending(&Pending{StateHash: []byte("s")}),
		"code":    CheckCode(&Code{Hash: []byte("h")}),
		"consent": CheckConsent(&Consent{Key: []byte("k"), ClientID: "c"}),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}
