package lockersim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/lockerhub/lockerhub/protocol"
)

// What a simulated locker keeps on disk, in the data directory (--data):
//
//	ca.crt            the hub CA (shared by all lockers)
//	ID.crt, ID.key    the locker's certificate and key (0600)
//	ID.state.json     boot counter, applied desired version, installed firmware
//	ID.keys.jsonl     idempotency keys seen, with their first result, until not_after (a journal)
//	ID.codes.json     pickup-code secret and offline parcel list, with their versions (0600; pickup.go)

// deviceState is ID.state.json.
type deviceState struct {
	Boot           uint32 `json:"boot"`
	DesiredVersion *int64 `json:"desired_version,omitempty"`
	Firmware       string `json:"firmware,omitempty"` // installed by ota.install; "" = Firmware
}

func statePath(dir, id string) string { return filepath.Join(dir, id+".state.json") }
func keysPath(dir, id string) string  { return filepath.Join(dir, id+".keys.jsonl") }

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
// acting again, also after a reboot. The file is a journal, one JSON line
// {"k","e"} per key appended at put (one small write, no temporary file and
// rename per command), rewritten with only the live keys once it holds many
// more lines than those. A torn last line (a crash mid-write) is ignored: its
// put had not returned, so its response was never published. Not safe for
// concurrent use (the locker's mutex).
type keyCache struct {
	path  string
	m     map[string]keyEntry
	lines int      // lines in the file
	f     *os.File // the journal open for appends; nil until the first put
}

type keyLine struct {
	K string   `json:"k"`
	E keyEntry `json:"e"`
}

// loadKeyCache reads the journal and forgets entries whose not_after has
// passed. A cache file of the older format (ID.keys.json, one JSON object)
// is taken over and removed.
func loadKeyCache(path string, nowMs int64) (*keyCache, error) {
	k := &keyCache{path: path, m: map[string]keyEntry{}}
	legacy := strings.TrimSuffix(path, "l") // ID.keys.jsonl → ID.keys.json
	if old, err := loadJSON[map[string]keyEntry](legacy); err != nil {
		return nil, err
	} else if len(old) > 0 {
		k.m = old
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	lines := bytes.Split(data, []byte("\n"))
	for i, line := range lines {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var kl keyLine
		if err := json.Unmarshal(line, &kl); err != nil {
			if i == len(lines)-1 {
				break // torn by a crash during its put
			}
			return nil, fmt.Errorf("%s line %d: %w", path, i+1, err)
		}
		k.m[kl.K] = kl.E
		k.lines++
	}
	k.prune(nowMs)
	if _, err := os.Stat(legacy); err == nil {
		if err := k.compact(); err != nil {
			return nil, err
		}
		if err := os.Remove(legacy); err != nil {
			return nil, err
		}
	}
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

// put records the first result for key on disk before it returns.
func (k *keyCache) put(key string, e keyEntry, nowMs int64) error {
	k.m[key] = e
	k.prune(nowMs)
	if k.lines >= 4*len(k.m)+64 {
		return k.compact()
	}
	line, err := json.Marshal(keyLine{K: key, E: e})
	if err != nil {
		return err
	}
	if k.f == nil {
		// Kept open: opening the file for every command cost the benchmark's
		// lockers more than the write.
		if k.f, err = os.OpenFile(k.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644); err != nil {
			return err
		}
	}
	if _, err := k.f.Write(append(line, '\n')); err != nil {
		return err
	}
	k.lines++
	return nil
}

// close closes the journal; a later put opens it again.
func (k *keyCache) close() error {
	if k.f == nil {
		return nil
	}
	err := k.f.Close()
	k.f = nil
	return err
}

// compact rewrites the journal with the live keys only.
func (k *keyCache) compact() error {
	var buf bytes.Buffer
	for key, e := range k.m {
		line, err := json.Marshal(keyLine{K: key, E: e})
		if err != nil {
			return err
		}
		buf.Write(line)
		buf.WriteByte('\n')
	}
	if err := k.close(); err != nil { // the rename replaces the file it appends to
		return err
	}
	if err := writeFileAtomic(k.path, buf.Bytes(), 0o644); err != nil {
		return err
	}
	k.lines = len(k.m)
	return nil
}

func (k *keyCache) prune(nowMs int64) {
	for key, e := range k.m {
		if nowMs > e.NotAfter {
			delete(k.m, key)
		}
	}
}

func (k *keyCache) len() int { return len(k.m) }
