package lockersim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
)

// What a simulated locker keeps on disk, in the data directory (--data):
//
//	ca.crt            the hub CA (shared by all lockers)
//	ID.crt, ID.key    the locker's certificate and key (0600)
//	ID.state.json     boot counter and applied desired version
//	ID.keys.json      idempotency keys seen, with their first result, until not_after
//	ID.codes.json     pickup-code secret and offline parcel list, with their versions (0600; pickup.go)

// deviceState is ID.state.json.
type deviceState struct {
	Boot           uint32 `json:"boot"`
	DesiredVersion *int64 `json:"desired_version,omitempty"`
}

func statePath(dir, id string) string { return filepath.Join(dir, id+".state.json") }
func keysPath(dir, id string) string  { return filepath.Join(dir, id+".keys.json") }

// loadState reads ID.state.json; a missing file is a locker that never booted.
func loadState(dir, id string) (deviceState, error) { return loadJSON[deviceState](statePath(dir, id)) }

func saveState(dir, id string, st deviceState) error {
	return saveJSON(statePath(dir, id), st, 0o644)
}

// loadJSON reads a JSON file into a T; a missing file is T's zero value.
func loadJSON[T any](path string) (T, error) {
	var v T
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return v, nil
	}
	if err != nil {
		return v, err
	}
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// saveJSON writes v as JSON to path atomically.
func saveJSON(path string, v any, perm os.FileMode) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, data, perm)
}

// nextBoot increments the boot counter on disk and returns the new value:
// what a locker does first at every boot.
func nextBoot(dir, id string) (deviceState, error) {
	st, err := loadState(dir, id)
	if err != nil {
		return st, err
	}
	st.Boot++
	if err := saveState(dir, id, st); err != nil {
		return st, err
	}
	return st, nil
}

// writeFileAtomic writes data to a temporary file and renames it over path, so
// a crash leaves either the old or the new content.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	cerr := f.Close()
	if err := errors.Join(werr, cerr, os.Chmod(tmp, perm)); err != nil {
		os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// keyEntry is the first result of a request with an idempotency key.
type keyEntry struct {
	NotAfter int64           `json:"not_after"` // Unix ms; the entry is forgotten after it
	Result   json.RawMessage `json:"result,omitempty"`
	Error    *protocol.Error `json:"error,omitempty"`
}

// keyTTLWithoutNotAfter is how long a key is kept when its request had no not_after.
const keyTTLWithoutNotAfter = 24 * time.Hour

// keyCache remembers the idempotency keys a locker has acted on, on disk, until
// their not_after: a repeated key is answered with the first result without
// acting again, also after a reboot. Not safe for concurrent use (the locker's mutex).
type keyCache struct {
	path string
	m    map[string]keyEntry
}

// loadKeyCache reads the cache file and forgets entries whose not_after has passed.
func loadKeyCache(path string, nowMs int64) (*keyCache, error) {
	k := &keyCache{path: path}
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &k.m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	k.prune(nowMs)
	return k, nil
}

// get returns the entry for key if it has not expired at nowMs.
func (k *keyCache) get(key string, nowMs int64) (keyEntry, bool) {
	e, ok := k.m[key]
	if !ok || nowMs > e.NotAfter {
		return keyEntry{}, false
	}
	return e, true
}

// put records the first result for key and writes the cache to disk.
func (k *keyCache) put(key string, e keyEntry, nowMs int64) error {
	if k.m == nil {
		k.m = map[string]keyEntry{}
	}
	k.m[key] = e
	k.prune(nowMs)
	data, err := json.Marshal(k.m)
	if err != nil {
		return err
	}
	return writeFileAtomic(k.path, data, 0o644)
}

func (k *keyCache) prune(nowMs int64) {
	for key, e := range k.m {
		if nowMs > e.NotAfter {
			delete(k.m, key)
		}
	}
}

func (k *keyCache) len() int { return len(k.m) }
