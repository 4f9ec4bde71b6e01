package main

// The NAT test's small tools: the home services and the visitors. The test
// binary re-executes itself inside a namespace with natHelperEnv set and
// the tool's name and arguments as its arguments; natHelperMain (called
// first thing in TestMain) runs the tool and exits.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// natHelperEnv, set to 1, makes the test binary a helper tool.
const natHelperEnv = "P2PRC_NAT_HELPER"

// maxExchange caps what a helper reads from one connection.
const maxExchange = 64 << 20

// udpSizes are the datagram sizes a UDP visitor sends: the smallest, a
// typical one, and one far above a 1500-byte MTU (boundaries and sizes kept).
var udpSizes = []int{1, 1400, 9000}

func natHelperMain() {
	if os.Getenv(natHelperEnv) != "1" {
		return
	}
	if err := runNATHelper(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "nat helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// helperCommand returns a command running helper tool args in namespace ns.
func (l *natLab) helperCommand(ns string, args ...string) *exec.Cmd {
	self, err := os.Executable()
	if err != nil {
		self = os.Args[0]
	}
	cmd := l.command(ns, self, args...)
	cmd.Env = append(os.Environ(), natHelperEnv+"=1")
	return cmd
}

func runNATHelper(args []string) error {
	if len(args) == 0 {
		return errors.New("no tool named")
	}
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch args[0] {
	case "tcp-service":
		return tcpService(arg(1))
	case "dial":
		d, err := time.ParseDuration(arg(2))
		if err != nil {
			return err
		}
		fmt.Println(dialOutcome(arg(1), d))
		return nil
	case "visit":
		size, err1 := strconv.Atoi(arg(2))
		conns, err2 := strconv.Atoi(arg(3))
		if err := errors.Join(err1, err2); err != nil {
			return err
		}
		return visitTCP(arg(1), size, conns)
	case "udp-service":
		return udpService(arg(1))
	case "udp-visit":
		flows, err := strconv.Atoi(arg(2))
		if err != nil {
			return err
		}
		return visitUDP(arg(1), flows)
	case "udp-probe":
		fmt.Println(udpProbe(arg(1)))
		return nil
	case "hold-lab":
		return holdLab()
	}
	return fmt.Errorf("unknown tool %q", args[0])
}

// tcpService serves each connection by reading until the visitor shuts down
// writing, then answering SHA-256 of what arrived followed by all of it
// back. So the visitor learns whether its bytes arrived intact, whether the
// reply did, and that its half-close reached the service while the way
// back stayed open.
func tcpService(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Println("listening", ln.Addr())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go serveDigestEcho(c)
	}
}

func serveDigestEcho(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	got, err := io.ReadAll(io.LimitReader(c, maxExchange))
	if err != nil {
		return
	}
	sum := sha256.Sum256(got)
	c.Write(append(sum[:], got...))
}

// dialOutcome tries one TCP connection and names what happened:
// connected, refused, timeout, unreachable or the error.
func dialOutcome(addr string, timeout time.Duration) string {
	c, err := net.DialTimeout("tcp", addr, timeout)
	var ne net.Error
	switch {
	case err == nil:
		c.Close()
		return "connected"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "unreachable"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "error: " + err.Error()
}

// visitTCP runs conns visitors at once, each sending size random bytes,
// shutting down writing and checking what the service answers.
func visitTCP(addr string, size, conns int) error {
	if err := concurrently(conns, "visitor", func() error { return exchangeDigest(addr, size) }); err != nil {
		return err
	}
	fmt.Printf("ok: %d visitors, %d bytes each way each, digests match\n", conns, size)
	return nil
}

// concurrently runs f n times at once and joins the errors, each named
// after its run ("visitor 2: …").
func concurrently(n int, what string, f func() error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil {
				errs[i] = fmt.Errorf("%s %d: %w", what, i, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func exchangeDigest(addr string, size int) error {
	sent := make([]byte, size)
	rand.Read(sent)
	want := sha256.Sum256(sent)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Write(sent); err != nil {
		return fmt.Errorf("sending: %w", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return fmt.Errorf("shutting down writing: %w", err)
	}
	got, err := io.ReadAll(io.LimitReader(c, maxExchange))
	switch {
	case err != nil:
		return fmt.Errorf("reading the answer after %d bytes: %w", len(got), err)
	case len(got) < sha256.Size:
		return fmt.Errorf("the answer ended after %d bytes; the service never saw the half-close, or the way back broke", len(got))
	case !bytes.Equal(got[:sha256.Size], want[:]):
		return fmt.Errorf("the service received other bytes than were sent: sha256 %x, sent %x", got[:sha256.Size], want)
	case sha256.Sum256(got[sha256.Size:]) != want:
		return fmt.Errorf("the reply came back changed: %d bytes, sha256 %x; want %d bytes, sha256 %x",
			len(got)-sha256.Size, sha256.Sum256(got[sha256.Size:]), size, want)
	}
	return nil
}

// udpService echoes every datagram to its sender.
func udpService(addr string) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	fmt.Println("listening", pc.LocalAddr())
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		pc.WriteTo(buf[:n], from)
	}
}

// visitUDP runs flows visitors at once, each from its own socket, each
// sending one datagram of each of udpSizes and expecting it echoed intact.
// A lost datagram is sent again, a bounded number of times.
func visitUDP(addr string, flows int) error {
	if err := concurrently(flows, "flow", func() error { return echoDatagrams(addr) }); err != nil {
		return err
	}
	fmt.Printf("ok: %d flows, datagrams of %v bytes echoed intact\n", flows, udpSizes)
	return nil
}

func echoDatagrams(addr string) error {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 65535)
	for _, size := range udpSizes {
		sent := make([]byte, size)
		rand.Read(sent)
		var got []byte
		for try := 0; try < 5 && got == nil; try++ {
			if _, err := c.Write(sent); err != nil {
				return fmt.Errorf("sending %d bytes: %w", size, err)
			}
			c.SetReadDeadline(time.Now().Add(time.Second))
			for {
				n, err := c.Read(buf)
				if err != nil {
					break // lost: send again
				}
				if bytes.Equal(buf[:n], sent) {
					got = buf[:n]
					break
				}
				// An echo of an earlier try of a previous datagram: read on.
			}
		}
		if got == nil {
			return fmt.Errorf("a %d-byte datagram was not echoed intact in 5 tries", size)
		}
	}
	return nil
}

// udpProbe sends one datagram straight to addr and says whether anything
// answered within a second: "reply", "no reply" or "refused".
func udpProbe(addr string) string {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "error: " + err.Error()
	}
	defer c.Close()
	c.Write([]byte("direct?"))
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err = c.Read(make([]byte, 64))
	var ne net.Error
	switch {
	case err == nil:
		return "reply"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.As(err, &ne) && ne.Timeout():
		return "no reply"
	}
	return "error: " + err.Error()
}

// holdLab builds a lab, starts a sleeper inside its home namespace that
// does not die with this process, says so, and waits to be stopped: the
// cleanup tests interrupt or kill it and look at what is left.
func holdLab() error {
	l, err := setupNATLab()
	if err != nil {
		return err
	}
	sleeper := exec.Command(l.ip, "netns", "exec", l.home, "sleep", "60")
	if err := sleeper.Start(); err != nil {
		l.close()
		return err
	}
	fmt.Println("holding", l.name, sleeper.Process.Pid)
	sleeper.Wait()
	l.close()
	return errors.New("the sleeper ended before this process was stopped")
}
