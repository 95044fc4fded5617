package slave

import (
	"container/list"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// maxArtifactBytes caps one cached file (a binary or a .class file).
const maxArtifactBytes = 64 << 20

// DefaultCacheMemoryBytes is the default of CacheLimits.MemoryBytes.
const DefaultCacheMemoryBytes = 64 << 20

// CacheLimits bounds a [Cache]. Entries are keyed as the cache is (per
// client unless the cache is shared, see [CacheKey]), in memory as on disk.
type CacheLimits struct {
	// DiskBytes bounds the artifacts kept on disk, sealed (kiln slave
	// --cache-size); it must be positive. Past it the least recently used
	// entries are evicted; a set of artifacts larger than the bound is not
	// stored. Each artifact is at most 64 MiB.
	DiskBytes int64
	// MemoryBytes bounds the artifacts also kept opened in memory, so that
	// a run of a recently used build neither reads nor decrypts its files:
	// the most recently used entries that fit (an entry larger than the
	// bound is never kept). They are the process's own memory, like the
	// job directories on the private tmpfs, and go with their entry. Zero
	// means DefaultCacheMemoryBytes; negative keeps none.
	MemoryBytes int64
}

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
// their total size passes the bound. Nothing of a job is at rest there in
// plaintext: each file is sealed with XChaCha20-Poly1305 under a key drawn
// at NewCache and kept only in memory, and an entry's directory is named
// by an HMAC of its key, so a copy of the disk (or what a killed slave
// left) tells neither programs nor which sources were compiled. Entries
// therefore live as long as the process: NewCache removes whatever the
// directory holds. The most recently used entries are also kept opened in
// memory (CacheLimits.MemoryBytes). Cache is safe for concurrent use: two
// identical compiles may both Put, the second is a no-op.
type Cache struct {
	dir  string
	max  int64
	aead cipher.AEAD
	mac  []byte // HMAC key naming entry directories

	memMax int64 // CacheLimits.MemoryBytes; 0: none

	mu      sync.Mutex
	lru     *list.List               // of *cacheEntry, front is most recent
	byKey   map[string]*list.Element // key → element of lru
	size    int64
	mem     *list.List // of *cacheEntry holding arts, front is most recent
	memSize int64      // bytes of the artifacts held in memory
}

type cacheEntry struct {
	key   string
	size  int64
	arts  []Artifact    // opened artifacts kept in memory, or nil
	memEl *list.Element // element of Cache.mem while arts is set
}

// NewCache is OpenCache with maxBytes on disk and the default memory
// bound.
func NewCache(dir string, maxBytes int64) (*Cache, error) {
	return OpenCache(dir, CacheLimits{DiskBytes: maxBytes})
}

// OpenCache opens (creating it if needed) a cache in dir bounded by l,
// and empties it: entries of an earlier process are sealed under a key
// that died with it.
func OpenCache(dir string, l CacheLimits) (*Cache, error) {
	maxBytes := l.DiskBytes
	if maxBytes <= 0 {
		return nil, errors.New("slave: cache size must be positive")
	}
	memMax := l.MemoryBytes
	switch {
	case memMax == 0:
		memMax = DefaultCacheMemoryBytes
	case memMax < 0:
		memMax = 0
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("slave: cache: %w", err)
	}
	var secret [chacha20poly1305.KeySize + 32]byte
	if _, err := rand.Read(secret[:]); err != nil {
		return nil, fmt.Errorf("slave: cache: %w", err)
	}
	aead, err := chacha20poly1305.NewX(secret[:chacha20poly1305.KeySize])
	if err != nil {
		return nil, fmt.Errorf("slave: cache: %w", err)
	}
	c := &Cache{dir: dir, max: maxBytes, aead: aead, mac: secret[chacha20poly1305.KeySize:], memMax: memMax,
		lru: list.New(), byKey: map[string]*list.Element{}, mem: list.New()}
	if err := c.sweep(); err != nil {
		return nil, fmt.Errorf("slave: cache: %w", err)
	}
	return c, nil
}

// sweep removes everything in the cache directory.
func (c *Cache) sweep() error {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := removeTree(filepath.Join(c.dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// path returns the directory of the entry of key.
func (c *Cache) path(key string) string {
	m := hmac.New(sha256.New, c.mac)
	m.Write([]byte(key))
	return filepath.Join(c.dir, hex.EncodeToString(m.Sum(nil)))
}

// seal encrypts one artifact, bound to its entry and name.
func (c *Cache) seal(key string, a Artifact) []byte {
	nonce := make([]byte, c.aead.NonceSize(), c.aead.NonceSize()+len(a.Data)+c.aead.Overhead())
	_, _ = rand.Read(nonce)
	return c.aead.Seal(nonce, nonce, a.Data, artifactAD(key, a.Name, a.Mode))
}

// open decrypts one artifact file.
func (c *Cache) open(key, name string, mode fs.FileMode, sealed []byte) ([]byte, error) {
	if len(sealed) < c.aead.NonceSize() {
		return nil, errors.New("short cache file")
	}
	n := c.aead.NonceSize()
	return c.aead.Open(nil, sealed[:n], sealed[n:], artifactAD(key, name, mode))
}

func artifactAD(key, name string, mode fs.FileMode) []byte {
	return fmt.Appendf(nil, "kiln cache v1\x00%s\x00%s\x00%o", key, name, mode.Perm())
}

// Get returns the artifacts stored under key, marking it recently used:
// from memory when the entry is held there, else read from disk and
// opened (and then held in memory, within its bound). The artifacts' Data
// may be shared with other callers: read it, never modify it.
func (c *Cache) Get(key string) ([]Artifact, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return nil, false
	}
	e := el.Value.(*cacheEntry)
	c.lru.MoveToFront(el)
	if e.arts != nil {
		c.mem.MoveToFront(e.memEl)
		return e.arts, true
	}
	arts, err := c.readEntry(key)
	if err != nil || len(arts) == 0 {
		c.removeLocked(el) // damaged on disk: forget it
		return nil, false
	}
	c.holdLocked(e, arts)
	return arts, true
}

// holdLocked keeps e's artifacts in memory, letting go of the least
// recently used ones past the memory bound.
func (c *Cache) holdLocked(e *cacheEntry, arts []Artifact) {
	if e.arts != nil || e.size > c.memMax {
		return
	}
	e.arts, e.memEl = arts, c.mem.PushFront(e)
	c.memSize += e.size
	for c.memSize > c.memMax {
		c.dropLocked(c.mem.Back().Value.(*cacheEntry))
	}
}

// dropLocked lets go of e's artifacts in memory, if held.
func (c *Cache) dropLocked(e *cacheEntry) {
	if e.arts == nil {
		return
	}
	c.mem.Remove(e.memEl)
	c.memSize -= e.size
	e.arts, e.memEl = nil, nil
}

// MemorySize returns the bytes of the artifacts held in memory.
func (c *Cache) MemorySize() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.memSize
}

// Put stores arts under key, then evicts old entries past the bound. A set
// larger than the whole cache is not stored. The cache keeps arts' Data
// (held in memory, see Get): the caller must not modify it afterwards.
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
	tmp, err := c.writeTemp(key, arts)
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
	if err := os.Rename(tmp, c.path(key)); err != nil {
		_ = os.RemoveAll(tmp)
		return fmt.Errorf("slave: cache: %w", err)
	}
	e := &cacheEntry{key: key, size: size}
	c.byKey[key] = c.lru.PushFront(e)
	c.size += size
	held := make([]Artifact, len(arts))
	for i, a := range arts { // as they come back from disk
		held[i] = Artifact{Name: a.Name, Mode: a.Mode.Perm()&0o700 | 0o600, Data: a.Data}
	}
	c.holdLocked(e, held)
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

func (c *Cache) writeTemp(key string, arts []Artifact) (string, error) {
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
		a.Mode = a.Mode.Perm()&0o700 | 0o600
		if err := writeNew(tmp, a.Name, c.seal(key, a), a.Mode); err != nil {
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
	c.dropLocked(e)
	delete(c.byKey, e.key)
	c.size -= e.size
	_ = os.RemoveAll(c.path(e.key))
}

// readEntry reads and opens every artifact of the entry of key.
func (c *Cache) readEntry(key string) ([]Artifact, error) {
	dir := c.path(key)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	arts := make([]Artifact, 0, len(ents))
	for _, e := range ents {
		sealed, mode, err := readRegular(filepath.Join(dir, e.Name()), maxArtifactBytes+1024)
		if err != nil {
			return nil, err
		}
		data, err := c.open(key, e.Name(), mode, sealed)
		if err != nil {
			return nil, fmt.Errorf("cache entry %s: %w", e.Name(), err)
		}
		arts = append(arts, Artifact{Name: e.Name(), Mode: mode, Data: data})
	}
	return arts, nil
}

func validKey(k string) bool {
	if len(k) != 64 {
		return false
	}
	_, err := hex.DecodeString(k)
	return err == nil && strings.ToLower(k) == k
}
