//go:build unix

package tunnel

import (
	"errors"
	"io"
	"net"
	"syscall"
)

// peekTCP waits for c's first byte and returns it without consuming it,
// honouring c's read deadline. ok is false if peeking is not possible.
func peekTCP(c *net.TCPConn) (b byte, ok bool, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, false, nil
	}
	var buf [1]byte
	var n int
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, perr = syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK)
		return !errors.Is(perr, syscall.EAGAIN) && !errors.Is(perr, syscall.EINTR)
	})
	switch {
	case err != nil:
		return 0, true, err
	case perr != nil:
		return 0, true, perr
	case n == 0:
		return 0, true, io.EOF
	}
	return buf[0], true, nil
}
