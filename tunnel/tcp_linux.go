package tunnel

import (
	"net"
	"syscall"
	"time"
)

// tcpUserTimeout is Linux's TCP_USER_TIMEOUT socket option.
const tcpUserTimeout = 0x12

func setUserTimeout(tc *net.TCPConn, d time.Duration) {
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d/time.Millisecond))
	})
}

// visitorListenConfig binds public TCP ports. Linux copies a listening
// socket's keepalive settings to each connection it accepts, so they are set
// once on the port instead of with four system calls per visitor (Go's
// default): a visitor that vanishes is probed after 15 s idle, every 15 s,
// and dropped after 4 unanswered probes.
var visitorListenConfig = net.ListenConfig{
	KeepAlive: -1,
	Control: func(_, _ string, c syscall.RawConn) error {
		var err error
		c.Control(func(fd uintptr) {
			for _, o := range [][3]int{
				{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, 15},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, 15},
				{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, 4},
			} {
				if e := syscall.SetsockoptInt(int(fd), o[0], o[1], o[2]); e != nil && err == nil {
					err = e
				}
			}
		})
		return err
	},
}
