package bboltstore

import (
	"errors"
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// schemaVersion is the layout version this code reads and writes. Bump it
// (and add a migration in initSchema) when the layout changes.
const schemaVersion = 4

// initSchema checks the schema version of an existing file, or stamps a new
// one, and creates missing buckets. It checks before it writes, so a file
// it refuses is left untouched.
func initSchema(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		foreign := false
		_ = tx.ForEach(func([]byte, *bolt.Bucket) error {
			foreign = true
			return nil
		})
		if foreign {
			return errors.New("the file holds data but no caddymcp schema version; is it a caddymcp state file?")
		}
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(keySchemaVersion, []byte(strconv.Itoa(schemaVersion))); err != nil {
			return err
		}
	} else {
		raw := meta.Get(keySchemaVersion)
		v, err := strconv.ParseUint(string(raw), 10, 32)
		if err != nil {
			return fmt.Errorf("invalid schema version %q in the file", raw)
		}
		if v > schemaVersion {
			return fmt.Errorf("the file has schema version %d, newer than this build of caddymcp supports (%d); upgrade caddymcp or use another file", v, schemaVersion)
		}
		if v < schemaVersion {
			// Version 2 writes access tokens in binary (codec.go),
			// version 3 refresh tokens and grants too, version 4 adds
			// refresh generations; records of older versions are still
			// read. Version 3 also dropped the
			// index from grants to their tokens, whose entries all
			// belong to live grants or to tokens Sweep will find by
			// their expiry. The rest is restamping the file.
			if tx.Bucket(bucketGrantTokensV2) != nil {
				if err := tx.DeleteBucket(bucketGrantTokensV2); err != nil {
					return err
				}
			}
			if err := meta.Put(keySchemaVersion, []byte(strconv.Itoa(schemaVersion))); err != nil {
				return err
			}
		}
	}
	for _, name := range dataBuckets {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	return nil
}
