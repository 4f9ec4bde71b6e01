package main

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/p2prc/p2prc/registry"
)

// Recovery tests run relay and node as real processes and kill them the
// hard way, as a crash or an OOM killer would.

// echoes reports whether a line sent to addr comes back.
func echoes(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := fmt.Fprintln(c, "ping"); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && line == "ping\n"
}

// untilEchoes polls addr until a line comes back and returns how long it took.
func untilEchoes(t *testing.T, addr string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if echoes(addr) {
			return time.Since(start)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not carry traffic within %v", addr, within)
	return 0
}

// After the relay is killed with SIGKILL, or stopped cleanly, and started
// again on the same state dir, the node's port comes back: same number,
// traffic flowing.
func TestRelayRestartKeepsNodePort(t *testing.T) {
	for _, how := range []string{"kill -9", "SIGTERM"} {
		t.Run(how, func(t *testing.T) {
			addr, lo, state := freePort(t), freeRange(t, 20), t.TempDir()
			relay := start(t, nil, relayArgs(addr, state, lo, "--token", "tok")...)
			relay.stderr.waitFor(t, relayReady, 20*time.Second)
			svc := echoServer(t)
			node := start(t, []string{"P2PRC_TOKEN=tok"}, "node", "--relay", addr, "--expose", "tcp:"+svc,
				"--state", t.TempDir(), "--max-backoff", "1s")
			public := node.stdout.waitFor(t, exposedLine, 20*time.Second)[2]
			untilEchoes(t, public, 5*time.Second)

			if how == "kill -9" {
				relay.cmd.Process.Kill()
			} else {
				relay.cmd.Process.Signal(os.Interrupt)
			}
			relay.wait(t, 10*time.Second)
			restarted := time.Now()
			again := start(t, nil, relayArgs(addr, state, lo, "--token", "tok")...)
			again.stderr.waitFor(t, relayReady, 20*time.Second)
			untilEchoes(t, public, 20*time.Second)
			t.Logf("%s: %s carried traffic again %v after the relay restarted", how, public, time.Since(restarted).Round(time.Millisecond))
		})
	}
}

// A node stopped and started again on the same state dir gets its port back.
func TestNodeRestartKeepsPort(t *testing.T) {
	addr, lo := freePort(t), freeRange(t, 20)
	relay := start(t, nil, relayArgs(addr, t.TempDir(), lo, "--token", "tok")...)
	relay.stderr.waitFor(t, relayReady, 20*time.Second)
	svc, state := echoServer(t), t.TempDir()
	args := []string{"node", "--relay", addr, "--expose", "tcp:" + svc, "--state", state}
	first := start(t, []string{"P2PRC_TOKEN=tok"}, args...)
	public := first.stdout.waitFor(t, exposedLine, 20*time.Second)[2]
	first.cmd.Process.Kill() // no goodbye: the relay finds out by itself
	first.wait(t, 10*time.Second)
	restarted := time.Now()
	second := start(t, []string{"P2PRC_TOKEN=tok"}, args...)
	if got := second.stdout.waitFor(t, exposedLine, 20*time.Second)[2]; got != public {
		t.Fatalf("after a restart the node got %s, before %s", got, public)
	}
	untilEchoes(t, public, 10*time.Second)
	t.Logf("node restarted after kill -9: %s carried traffic again after %v", public, time.Since(restarted).Round(time.Millisecond))
}

// Killing the relay at random moments while nodes come and go never leaves
// a torn mapping file or a port recorded twice.
func TestRelayCrashLoopKeepsMappingFileWhole(t *testing.T) {
	const rounds = 12
	addr, lo, state := freePort(t), freeRange(t, 20), t.TempDir()
	svc := echoServer(t)
	path := filepath.Join(state, registry.MappingFileName)
	for round := range rounds {
		relay := start(t, nil, relayArgs(addr, state, lo, "--token", "tok", "--lease", "150ms")...)
		relay.stderr.waitFor(t, relayReady, 20*time.Second)
		// Nodes with fresh identities grant ports; the short lease frees them.
		for i := range 3 {
			n := start(t, []string{"P2PRC_TOKEN=tok"}, "node", "--relay", addr, "--expose", "tcp:"+svc,
				"--state", t.TempDir(), "--name", fmt.Sprintf("r%dn%d", round, i))
			n.stdout.waitFor(t, exposedLine, 20*time.Second)
			n.cmd.Process.Kill()
			n.wait(t, 10*time.Second)
		}
		time.Sleep(time.Duration(rand.IntN(200)) * time.Millisecond)
		relay.cmd.Process.Kill()
		relay.wait(t, 10*time.Second)

		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if _, err := registry.OpenMappings(path); err != nil {
			t.Fatalf("round %d: the mapping file is not whole after kill -9: %v\n%s", round, err, b)
		}
	}
}

// One gigabyte through relay and node processes arrives intact.
func TestOneGigabyteIntact(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 1 GiB; skipped with -short")
	}
	const size = 1 << 30
	addr, lo := freePort(t), freeRange(t, 20)
	relay := start(t, nil, relayArgs(addr, t.TempDir(), lo, "--token", "tok")...)
	relay.stderr.waitFor(t, relayReady, 20*time.Second)
	digests := make(chan [32]byte, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		h := sha256.New()
		io.Copy(h, c)
		var sum [32]byte
		h.Sum(sum[:0])
		c.Write(sum[:])
		digests <- sum
	}()
	node := start(t, []string{"P2PRC_TOKEN=tok"}, "node", "--relay", addr, "--expose", "tcp:"+ln.Addr().String(), "--state", t.TempDir())
	public := node.stdout.waitFor(t, exposedLine, 20*time.Second)[2]

	c, err := net.Dial("tcp", public)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	sent := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8([32]byte{1}), size), sent)
	startAt := time.Now()
	if _, err := io.CopyBuffer(c, src, make([]byte, 256<<10)); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	var back [32]byte
	if _, err := io.ReadFull(c, back[:]); err != nil {
		t.Fatalf("reading the service's digest: %v", err)
	}
	if want := sent.Sum(nil); string(back[:]) != string(want) {
		t.Fatalf("1 GiB arrived changed: digest %x, sent %x", back, want)
	}
	t.Logf("1 GiB intact through relay and node in %v", time.Since(startAt).Round(time.Millisecond))
}
