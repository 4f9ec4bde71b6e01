package main

import (
	"errors"
	"net"
	"regexp"
	"testing"
	"time"
)

// udpEchoServer sends each datagram back until the test ends.
func udpEchoServer(t *testing.T) string {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 1<<16)
		for {
			n, from, err := c.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err == nil {
				c.WriteToUDPAddrPort(buf[:n], from)
			}
		}
	}()
	return c.LocalAddr().String()
}

// A UDP service exposed by a node process answers through the relay
// process, and the node's one-glance line says so.
func TestUDPThroughProcesses(t *testing.T) {
	addr, _ := startRelayProcess(t, "tok")
	svc := udpEchoServer(t)
	n := start(t, []string{"P2PRC_TOKEN=tok"}, "node", "--relay", addr, "--expose", "udp:"+svc,
		"--udp-idle", "5s", "--udp-max-flows", "16", "--state", t.TempDir())
	m := n.stdout.waitFor(t, regexp.MustCompile(`udp (\S+) -> (\S+)\n`), 20*time.Second)
	if m[1] != svc {
		t.Fatalf("node exposed %s, want %s", m[1], svc)
	}
	c, err := net.Dial("udp", m[2])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1<<16)
	for try := range 3 {
		c.Write([]byte("hello over udp"))
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err == nil {
			if got := string(buf[:n]); got != "hello over udp" {
				t.Fatalf("echo: %q", got)
			}
			return
		}
		t.Logf("try %d: %v", try, err)
	}
	t.Fatal("no echo through the relay")
}
