package slave

import (
	"container/list"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// maxArtifactBytes caps one cached file (a binary or a .class file).
const maxArtifactBytes = 64 << 20

// Artifact is one file produced by a compile step.
type Artifact struct {
	Name string      // base name inside the job directory
	Mode fs.FileMode // permission bits
	Data []byte
}

// CacheKey returns the cache key of one compile: the SHA-256 of the owner
// (the client whose entry it is; "" for a cache shared by all clients),
// the language, the compiler version, its flags, the file name (only Java
// needs it; pass "" otherwise) and the source, each length-prefixed.
func CacheKey(owner, lang, compiler string, flags []string, fileName string, source []byte) string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte("kiln compile cache v2"))
	field([]byte(owner))
	field([]byte(lang))
	field([]byte(compiler))
	field([]byte(strings.Join(flags, "\x00")))
	field([]byte(fileName))
	field(source)
	return hex.EncodeToString(h.Sum(nil))
}

// Cache keeps compile artifacts on disk under one directory, one
// subdirectory per key, and evicts the least recently used entries when
// their total size passes the bound. Entries found in the directory at
// start are kept (oldest modification first out). Cache is safe for
// concurrent use: two identical compiles may both Put, the second is a
// no-op.
type Cache struct {
	dir string
	max int64

	mu    sync.Mutex
	lru   *list.List               // of *cacheEntry, front is most recent
	byKey map[string]*list.Element // key → element of lru
	size  int64
}

type cacheEntry struct {
	key  string
	size int64
}

// NewCache opens (creating it if needed) a cache in dir bounded to
// maxBytes of artifacts.
func NewCache(dir string, maxBytes int64) (*Cache, error) {
	if maxBytes <= 0 {
		return nil, errors.New("slave: cache size must be positive")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("slave: cache: %w", err)
	}
	c := &Cache{dir: dir, max: maxBytes, lru: list.New(), byKey: map[string]*list.Element{}}
	if err := c.load(); err != nil {
		return nil, fmt.Errorf("slave: cache: %w", err)
	}
	return c, nil
}

// load indexes the entries already on disk and drops unfinished ones.
func (c *Cache) load() error {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	type found struct {
		key  string
		size int64
		mod  time.Time
	}
	var all []found
	for _, e := range ents {
		p := filepath.Join(c.dir, e.Name())
		if !e.IsDir() || !validKey(e.Name()) {
			_ = os.RemoveAll(p) // a leftover temp dir or a stranger
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		all = append(all, found{e.Name(), dirSize(p), info.ModTime()})
	}
	slices.SortFunc(all, func(a, b found) int { return a.mod.Compare(b.mod) })
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range all {
		c.byKey[f.key] = c.lru.PushFront(&cacheEntry{f.key, f.size})
		c.size += f.size
	}
	c.evictLocked()
	return nil
}

// Get returns the artifacts stored under key, marking it recently used.
func (c *Cache) Get(key string) ([]Artifact, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	arts, err := readEntry(filepath.Join(c.dir, key))
	if err != nil || len(arts) == 0 {
		c.removeLocked(el) // damaged on disk: forget it
		return nil, false
	}
	c.lru.MoveToFront(el)
	now := time.Now()
	_ = os.Chtimes(filepath.Join(c.dir, key), now, now)
	return arts, true
}

// Put stores arts under key, then evicts old entries past the bound. A set
// larger than the whole cache is not stored.
func (c *Cache) Put(key string, arts []Artifact) error {
	if !validKey(key) || len(arts) == 0 {
		return errors.New("slave: cache: bad key or no artifacts")
	}
	var size int64
	for _, a := range arts {
		size += int64(len(a.Data))
	}
	if size > c.max {
		return nil
	}
	tmp, err := c.writeTemp(arts)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		_ = os.RemoveAll(tmp)
		c.lru.MoveToFront(el)
		return nil
	}
	if err := os.Rename(tmp, filepath.Join(c.dir, key)); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("slave: cache: %w", err)
	}
	c.byKey[key] = c.lru.PushFront(&cacheEntry{key, size})
	c.size += size
	c.evictLocked()
	return nil
}

// Len returns the number of entries; Size their total bytes.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// Size returns the total bytes of the cached artifacts.
func (c *Cache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

func (c *Cache) writeTemp(arts []Artifact) (string, error) {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := filepath.Join(c.dir, ".tmp-"+hex.EncodeToString(rnd[:]))
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", fmt.Errorf("slave: cache: %w", err)
	}
	for _, a := range arts {
		if !safeBaseName(a.Name) {
			_ = os.RemoveAll(tmp)
			return "", fmt.Errorf("slave: cache: bad artifact name %q", a.Name)
		}
		if err := writeNew(tmp, a.Name, a.Data, a.Mode.Perm()|0o400); err != nil {
			_ = os.RemoveAll(tmp)
			return "", fmt.Errorf("slave: cache: %w", err)
		}
	}
	return tmp, nil
}

func (c *Cache) evictLocked() {
	for c.size > c.max && c.lru.Len() > 0 {
		c.removeLocked(c.lru.Back())
	}
}

func (c *Cache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cacheEntry)
	delete(c.byKey, e.key)
	c.size -= e.size
	_ = os.RemoveAll(filepath.Join(c.dir, e.key))
}

// readEntry reads every artifact of one entry directory.
func readEntry(dir string) ([]Artifact, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	arts := make([]Artifact, 0, len(ents))
	for _, e := range ents {
		data, mode, err := readRegular(filepath.Join(dir, e.Name()), maxArtifactBytes)
		if err != nil {
			return nil, err
		}
		arts = append(arts, Artifact{Name: e.Name(), Mode: mode, Data: data})
	}
	return arts, nil
}

func dirSize(dir string) int64 {
	var n int64
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if info, err := e.Info(); err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
	}
	return n
}

func validKey(k string) bool {
	if len(k) != 64 {
		return false
	}
	_, err := hex.DecodeString(k)
	return err == nil && strings.ToLower(k) == k
}
