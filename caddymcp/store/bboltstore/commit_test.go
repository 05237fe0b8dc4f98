package bboltstore

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestGroupCommit runs many writers at once, some of which fail or panic:
// every successful write is committed, every failure reaches only its own
// caller, and a failed function's writes are not committed.
func TestGroupCommit(t *testing.T) {
	s := openTemp(t)
	bucket := []byte("clients")
	errBoom := errors.New("boom")
	const n = 300
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.commits.update(func(tx *bolt.Tx) error {
				if err := tx.Bucket(bucket).Put(fmt.Appendf(nil, "k%03d", i), []byte("v")); err != nil {
					return err
				}
				switch i % 10 {
				case 3:
					return errBoom
				case 7:
					panic("bad writer")
				}
				return nil
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		switch i % 10 {
		case 3:
			if !errors.Is(err, errBoom) {
				t.Errorf("writer %d: %v, want its own error", i, err)
			}
		case 7:
			if err == nil {
				t.Errorf("writer %d panicked but got no error", i)
			}
		default:
			if err != nil {
				t.Errorf("writer %d: %v", i, err)
			}
		}
	}
	must(t, s.db.View(func(tx *bolt.Tx) error {
		for i := range n {
			got := tx.Bucket(bucket).Get(fmt.Appendf(nil, "k%03d", i)) != nil
			if want := i%10 != 3 && i%10 != 7; got != want {
				t.Errorf("key %d stored=%v, want %v", i, got, want)
			}
		}
		return nil
	}))
}
