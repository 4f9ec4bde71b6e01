//go:build unix

package tunnel

import (
	"net"
	"syscall"
)

// readDatagram waits for one datagram on c and reads it into a buffer from
// udpBufs, which the caller puts back. Waiting holds no buffer, so a
// thousand quiet flows cost no 64 KiB each. It honours c's read deadline.
func readDatagram(c *net.UDPConn, rc syscall.RawConn) (buf *[]byte, n int, err error) {
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		b := udpBufs.Get().(*[]byte)
		for {
			m, e := syscall.Read(int(fd), *b)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				udpBufs.Put(b)
				return false // wait until readable
			case nil:
				buf, n = b, m
			default:
				udpBufs.Put(b)
				rerr = e
			}
			return true
		}
	})
	if err == nil {
		err = rerr
	}
	return buf, n, err
}
