package bboltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/caddymcp/caddymcp/caddymcp/store"
)

// The ledger of leftovers (store/leftovers.go) is two buckets and a
// counter per kind:
//
//	leftovers       kind \x00 addr \x00 ledger key -> expiry
//	                                      an address's entries, by prefix
//	leftover_keys   ledger key -> expiry | addr
//	                                      so an entry is found by its record
//	leftover_counts kind -> uint64        entries stored, expired or not
//
// Both buckets' values start with the 8-byte expiry, so Sweep collects
// them like any record; the counter follows every insert and delete.
var (
	bucketLeftovers      = []byte("leftovers")
	bucketLeftoverKeys   = []byte("leftover_keys")
	bucketLeftoverCounts = []byte("leftover_counts")
)

// ledgerWalks rate-limits walking a whole kind to drop expired entries,
// which a flood keeping the server-wide bound reached would otherwise do
// on every request.
type ledgerWalks struct {
	mu   sync.Mutex
	last map[string]time.Time
}

func (w *ledgerWalks) due(kind string, now time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last == nil {
		w.last = map[string]time.Time{}
	}
	if last, ok := w.last[kind]; ok && now.Sub(last) < time.Second && !now.Before(last) {
		return false
	}
	w.last[kind] = now
	return true
}

func addrPrefix(kind, addr string) []byte {
	return []byte(kind + "\x00" + addr + "\x00")
}

// PutLeftover implements store.Store.
func (s *Store) PutLeftover(ctx context.Context, l *store.Leftover, limits store.LeftoverLimits, now time.Time) error {
	if strings.ContainsRune(l.Kind, 0) || strings.ContainsRune(l.Addr, 0) {
		return errors.New("bboltstore: a leftover's kind and address must not hold NUL")
	}
	lk := []byte(l.LedgerKey())
	if ok, err := s.exists(ctx, bucketLeftoverKeys, lk); err != nil || ok {
		return err // recorded already: the same record again
	}
	nowN := unixNano(now)
	var res error
	// Whether to walk the whole kind is decided once: the function below
	// may run again in a later group, and due() is not transactional.
	walkDecided, walk := false, false
	err := s.updateKeep(ctx, func(tx *bolt.Tx) error {
		res = nil
		if tx.Bucket(bucketLeftoverKeys).Get(lk) != nil {
			return nil
		}
		held, oldest, err := liveLeftovers(tx, addrPrefix(l.Kind, l.Addr), nowN)
		if err != nil {
			return err
		}
		total := leftoverCount(tx, l.Kind)
		ok, own := store.AdmitLeftover(limits, held, total)
		if !ok && !own && !walkDecided {
			walk, walkDecided = s.walks.due(l.Kind, now), true
		}
		if !ok && !own && walk {
			if _, _, err := liveLeftovers(tx, []byte(l.Kind+"\x00"), nowN); err != nil {
				return err
			}
			ok, own = store.AdmitLeftover(limits, held, leftoverCount(tx, l.Kind))
		}
		if !ok {
			retry := now.Add(time.Minute)
			if own {
				retry = time.Unix(0, oldest)
			}
			res = &store.LeftoverRefusal{RetryAt: retry}
			return nil
		}
		exp := binary.BigEndian.AppendUint64(nil, uint64(unixNano(l.ExpiresAt)))
		if err := tx.Bucket(bucketLeftovers).Put(append(addrPrefix(l.Kind, l.Addr), lk...), exp); err != nil {
			return err
		}
		withAddr := append(binary.BigEndian.AppendUint64(nil, uint64(unixNano(l.ExpiresAt))), l.Addr...)
		if err := tx.Bucket(bucketLeftoverKeys).Put(lk, withAddr); err != nil {
			return err
		}
		return addLeftoverCount(tx, l.Kind, 1)
	})
	if err != nil {
		return err
	}
	return res
}

// liveLeftovers walks the entries under prefix, deleting the expired ones,
// and returns how many are live and the earliest expiry among them.
func liveLeftovers(tx *bolt.Tx, prefix []byte, nowN int64) (held int, oldest int64, err error) {
	var dead [][]byte
	c := tx.Bucket(bucketLeftovers).Cursor()
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		exp, err := valueExp(v)
		if err != nil || nowN >= exp {
			dead = append(dead, bytes.Clone(k))
			continue
		}
		if held == 0 || exp < oldest {
			oldest = exp
		}
		held++
	}
	for _, k := range dead {
		// The ledger key follows the kind and the address.
		// PutLeftover refuses NUL in kind and address, so it splits
		// in three.
		parts := bytes.SplitN(k, []byte{0}, 3)
		if _, err := dropLeftover(tx, string(parts[len(parts)-1])); err != nil {
			return 0, 0, err
		}
	}
	return held, oldest, nil
}

// DropLeftover implements store.Store.
func (s *Store) DropLeftover(ctx context.Context, kind, key string) error {
	lk := []byte(store.LedgerKey(kind, key))
	if ok, err := s.exists(ctx, bucketLeftoverKeys, lk); err != nil || !ok {
		return err
	}
	return s.updateKeep(ctx, func(tx *bolt.Tx) error {
		_, err := dropLeftover(tx, string(lk))
		return err
	})
}

// dropLeftover deletes the entry with ledger key lk, if any, and reports
// how many it deleted (0 or 1). The transactions that make a record come
// to something (the first grant, the callback, deleting the client) call
// it, so an entry never outlives its reason.
func dropLeftover(tx *bolt.Tx, lk string) (int, error) {
	keys := tx.Bucket(bucketLeftoverKeys)
	v := keys.Get([]byte(lk))
	if v == nil {
		return 0, nil
	}
	kind, _, _ := strings.Cut(lk, ":")
	addr := string(v[min(8, len(v)):])
	if err := tx.Bucket(bucketLeftovers).Delete(append(addrPrefix(kind, addr), lk...)); err != nil {
		return 0, err
	}
	if err := keys.Delete([]byte(lk)); err != nil {
		return 0, err
	}
	return 1, addLeftoverCount(tx, kind, -1)
}

func leftoverCount(tx *bolt.Tx, kind string) int {
	v := tx.Bucket(bucketLeftoverCounts).Get([]byte(kind))
	if len(v) != 8 {
		return 0
	}
	return int(binary.BigEndian.Uint64(v))
}

func addLeftoverCount(tx *bolt.Tx, kind string, d int) error {
	n := max(leftoverCount(tx, kind)+d, 0)
	v := make([]byte, 8)
	binary.BigEndian.PutUint64(v, uint64(n))
	return tx.Bucket(bucketLeftoverCounts).Put([]byte(kind), v)
}
