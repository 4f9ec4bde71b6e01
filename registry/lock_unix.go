//go:build unix

package registry

import (
	"os"
	"syscall"
)

// withFileLock runs f holding an exclusive lock on a sibling of path (the
// same name with .lock added, created if missing), so that processes sharing
// a state dir — a running node, `p2prc relays add`, a probe — take turns.
func withFileLock(path string, f func() error) error {
	l, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, fileMode)
	if err != nil {
		return err
	}
	defer l.Close()
	if err := syscall.Flock(int(l.Fd()), syscall.LOCK_EX); err != nil {
		return err
	}
	defer syscall.Flock(int(l.Fd()), syscall.LOCK_UN)
	return f()
}
