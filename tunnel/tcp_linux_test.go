package tunnel

import (
	"context"
	"net"
	"syscall"
	"testing"
)

// Visitors of a public port get keepalive from the port itself: a visitor
// that vanishes is still noticed, without per-connection system calls.
func TestVisitorsInheritKeepalive(t *testing.T) {
	ln, err := visitorListenConfig.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	v, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	raw, err := v.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	raw.Control(func(fd uintptr) {
		got["SO_KEEPALIVE"], _ = syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
		got["TCP_KEEPIDLE"], _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
		got["TCP_KEEPCNT"], _ = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT)
	})
	if got["SO_KEEPALIVE"] != 1 || got["TCP_KEEPIDLE"] != 15 || got["TCP_KEEPCNT"] != 4 {
		t.Fatalf("an accepted visitor has %v; want keepalive on, 15 s idle, 4 probes", got)
	}
}
