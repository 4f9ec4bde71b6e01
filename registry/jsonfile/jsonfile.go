// Package jsonfile reads and writes the small JSON state files p2prc keeps
// (mappings, known relays) so that a crash at any moment leaves either the
// old file or the new one on disk, never a torn one.
//
// A missing file is an empty state. A file that cannot be decoded is an
// error naming the file and, where the decoder knows it, the line and
// column; p2prc never overwrites such a file, so the user can repair it.
package jsonfile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// MaxSize caps how much of a file Load reads. State files hold at most a few
// thousand small entries; anything larger is not a p2prc file.
const MaxSize = 64 << 20

// ErrCorrupt marks a file that exists but cannot be decoded, is too large,
// or fails its own Validate method. Such a file is never overwritten.
var ErrCorrupt = errors.New("corrupt state file")

// Validator is implemented by file shapes that check their decoded content,
// e.g. for duplicate keys. Load calls Validate after decoding.
type Validator interface {
	Validate() error
}

// Load reads the JSON file at path into v.
//
// A missing file, or one holding only whitespace (e.g. 0 bytes left by a
// tool that truncated it), is an empty state: Load returns (false, nil) and
// leaves v untouched. A file that cannot be decoded returns an error that
// wraps ErrCorrupt and names the file, the line and the column. If v
// implements Validator, a failed Validate is reported the same way.
func Load(path string, v any) (exists bool, err error) {
	data, err := readCapped(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return false, nil
	}
	if err := json.Unmarshal(data, v); err != nil {
		return true, decodeError(path, data, err)
	}
	if val, ok := v.(Validator); ok {
		if err := val.Validate(); err != nil {
			return true, &corruptError{path: path, cause: err}
		}
	}
	return true, nil
}

// readCapped reads at most MaxSize bytes of path and fails if there are more.
func readCapped(path string) ([]byte, error) {
	data, err := ReadAtMost(path, MaxSize)
	if errors.Is(err, ErrTooLarge) {
		return nil, &corruptError{path: path, cause: fmt.Errorf("larger than %d MiB, too big to be a p2prc file", MaxSize>>20)}
	}
	return data, err
}

// ErrTooLarge is returned by ReadAtMost for a file larger than allowed.
var ErrTooLarge = errors.New("file too large")

// ReadAtMost reads the file at path, refusing one larger than max bytes
// with ErrTooLarge without reading more than max+1 of it: a state file
// pointed at a device or a huge file costs nothing.
func ReadAtMost(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		return nil, ErrTooLarge // without reading it
	}
	// The limit still matters: a file may grow after Stat, or be a device.
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > max {
		return nil, ErrTooLarge
	}
	return data, nil
}

// decodeError turns a json error into one a user can act on.
func decodeError(path string, data []byte, err error) error {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var invalid *json.InvalidUnmarshalError
	switch {
	case errors.As(err, &invalid):
		return err // a programming error, not the file's fault
	case errors.As(err, &syntax):
		return newPositioned(path, data, syntax.Offset, err)
	case errors.As(err, &typ):
		return newPositioned(path, data, typ.Offset, err)
	default:
		return &corruptError{path: path, cause: err}
	}
}

func newPositioned(path string, data []byte, offset int64, cause error) error {
	line, col := position(data, offset)
	return &corruptError{path: path, line: line, col: col, cause: cause}
}

// position converts the decoder's byte offset (bytes read when it failed)
// into a 1-based line and column.
func position(data []byte, offset int64) (line, col int) {
	off := int(max(0, min(offset, int64(len(data)))))
	before := data[:off]
	line = 1 + bytes.Count(before, []byte{'\n'})
	col = off - (bytes.LastIndexByte(before, '\n') + 1)
	return line, max(col, 1)
}

// corruptError names the file and, when known, where in it decoding failed.
type corruptError struct {
	path      string
	line, col int // 0 when unknown
	cause     error
}

func (e *corruptError) Error() string {
	where := e.path
	if e.line > 0 {
		where = fmt.Sprintf("%s: line %d, column %d", e.path, e.line, e.col)
	}
	return fmt.Sprintf("%s: %v; fix or move the file away, p2prc never overwrites it", where, e.cause)
}

func (e *corruptError) Unwrap() []error { return []error{ErrCorrupt, e.cause} }

// Save writes v to path as JSON indented by two spaces, with a trailing
// newline and mode perm, atomically as WriteFile does.
func Save(path string, v any, perm os.FileMode) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	return WriteFile(path, append(data, '\n'), perm)
}

// WriteFile writes data to path with mode perm, atomically: the bytes go to
// a temporary file in the same directory, which is synced and renamed over
// path, and then the directory is synced. On error the temporary file is
// removed and the old file at path is left as it was; the one exception is
// a failed directory sync, reported after the rename, when the new file is
// in place but may not survive a power cut.
//
// A symbolic link at path is followed, as a plain write would follow it:
// the file it points to is replaced and the link stays (an operator may
// keep P2PRC's IP table elsewhere and link it into the state dir).
func WriteFile(path string, data []byte, perm os.FileMode) error {
	target, err := followLinks(path)
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	if err := writeTemp(dir, base, data, perm, target); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	removeStaleTemps(dir, base, time.Now())
	return nil
}

// maxLinks bounds the symbolic links followLinks follows, as the kernel's
// own limit (40) bounds a path's.
const maxLinks = 40

// followLinks returns the path a chain of symbolic links at path ends at,
// which need not exist yet (a dangling link names the file to create), or
// path itself when it is no link.
func followLinks(path string) (string, error) {
	for range maxLinks {
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return path, nil
		}
		to, err := os.Readlink(path)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(to) {
			to = filepath.Join(filepath.Dir(path), to)
		}
		path = to
	}
	return "", fmt.Errorf("more than %d symbolic links in a row; is there a loop?", maxLinks)
}

// staleTempAge is how old a temporary file must be before a later save
// removes it. A save takes milliseconds; an older one was left by a process
// killed in the middle of writing.
const staleTempAge = 10 * time.Minute

// removeStaleTemps removes temporary files of base left behind by crashes.
func removeStaleTemps(dir, base string, now time.Time) {
	matches, _ := filepath.Glob(filepath.Join(dir, "."+base+".tmp-*"))
	for _, m := range matches {
		if fi, err := os.Lstat(m); err == nil && fi.Mode().IsRegular() && now.Sub(fi.ModTime()) > staleTempAge {
			os.Remove(m)
		}
	}
}

// writeTemp does the steps of Save that leave a temporary file behind on
// failure, removing it in that case.
func writeTemp(dir, base string, data []byte, perm os.FileMode, path string) (err error) {
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(dir)
}

// syncDir makes the rename itself durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
