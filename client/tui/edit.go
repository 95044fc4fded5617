package tui

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// maxEdit is the largest file the editor opens.
const maxEdit = 4 << 20

// Load returns the text of the selected file for the editor.
func (m *Model) Load() (path, text string, err error) {
	st := m.State()
	if st.File == "" {
		return "", "", m.fail(errors.New("no file selected: press F3 to select one"))
	}
	fi, err := os.Stat(st.File)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return "", "", m.fail(err)
		}
		return st.File, "", nil // a new file
	}
	if fi.Size() > maxEdit {
		return "", "", m.fail(fmt.Errorf("%s is %d bytes, too large for the editor", st.File, fi.Size()))
	}
	b, err := os.ReadFile(st.File)
	if err != nil {
		return "", "", m.fail(err)
	}
	return st.File, string(b), nil
}

// Save writes text to the selected file atomically: a temporary file in
// the same directory, synced, then renamed over it (keeping its mode).
// Until the rename, the old content stays whole.
func (m *Model) Save(text string) error {
	st := m.State()
	if st.File == "" {
		return m.fail(errors.New("no file selected"))
	}
	if err := WriteAtomic(st.File, []byte(text)); err != nil {
		return m.fail(err)
	}
	m.print(Note, "Saved %s (%d bytes).", st.File, len(text))
	return nil
}

// WriteAtomic replaces path with data through a temporary file and rename.
func WriteAtomic(path string, data []byte) (err error) {
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			os.Remove(f.Name())
		}
	}()
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), mode)
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return nil
}
