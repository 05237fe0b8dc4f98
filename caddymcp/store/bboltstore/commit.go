package bboltstore

import (
	"errors"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// groupCommit runs write functions of concurrent callers together in one
// transaction and one fsync, like bbolt's DB.Batch, but without its fixed
// delay: DB.Batch holds every batch open for MaxBatchDelay (10ms) unless
// 1,000 callers arrive first, which caps a server with tens of clients at
// a few thousand writes per second whatever the disk. Here the first
// caller's transaction starts at once, and whoever arrives while it
// commits joins the next one, so batches grow exactly as large as the
// load makes them.
//
// The contract is DB.Batch's: a function may run more than once, and if
// it returns an error the others are retried without it and it runs again
// alone, so that its error reaches only its own caller.
type groupCommit struct {
	db *bolt.DB

	mu      sync.Mutex
	pending []*commitCall
	running bool
}

type commitCall struct {
	fn  func(*bolt.Tx) error
	err chan error
}

// errRunAlone tells a caller that its function failed in a group and must
// be run again in a transaction of its own.
var errRunAlone = errors.New("bboltstore: run alone")

// maxGroup bounds one transaction, so that a burst does not build a huge
// one that every member waits for.
const maxGroup = 1000

// update runs fn in a write transaction shared with concurrent callers.
func (g *groupCommit) update(fn func(*bolt.Tx) error) error {
	c := &commitCall{fn: fn, err: make(chan error, 1)}
	g.mu.Lock()
	g.pending = append(g.pending, c)
	if !g.running {
		g.running = true
		go g.loop()
	}
	g.mu.Unlock()
	err := <-c.err
	if err == errRunAlone {
		err = g.db.Update(func(tx *bolt.Tx) error { return safeCall(fn, tx) })
	}
	return err
}

// loop commits groups until nobody is waiting.
func (g *groupCommit) loop() {
	for {
		g.mu.Lock()
		n := min(len(g.pending), maxGroup)
		if n == 0 {
			g.running = false
			g.mu.Unlock()
			return
		}
		group := g.pending[:n:n]
		g.pending = append([]*commitCall(nil), g.pending[n:]...)
		g.mu.Unlock()
		g.commit(group)
	}
}

// commit runs a group in one transaction. A member that fails is taken out
// and told to run alone; the rest are retried.
func (g *groupCommit) commit(group []*commitCall) {
	for len(group) > 0 {
		failed := -1
		err := g.db.Update(func(tx *bolt.Tx) error {
			for i, c := range group {
				if err := safeCall(c.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed >= 0 {
			group[failed].err <- errRunAlone
			group = append(group[:failed], group[failed+1:]...)
			continue
		}
		for _, c := range group {
			c.err <- err
		}
		return
	}
}

// safeCall turns a panic of fn into an error, so that one bad function
// cannot take the committer (and every caller waiting on it) down.
func safeCall(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic in a write transaction: %v", p)
		}
	}()
	return fn(tx)
}
