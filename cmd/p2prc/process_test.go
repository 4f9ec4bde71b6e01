package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// binary is the p2prc binary built once for the tests that run it as a
// separate process.
var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

func buildBinary(t *testing.T) string {
	t.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "p2prc-bin-*")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(dir, "p2prc")
		// No VCS stamp: the tests need none, and stamping fails where git
		// is missing or the clone belongs to another user.
		out, err := exec.Command("go", "build", "-buildvcs=false", "-o", binaryPath, ".").CombinedOutput()
		if err != nil {
			binaryErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binaryErr != nil {
		t.Fatal(binaryErr)
	}
	return binaryPath
}

func TestMain(m *testing.M) {
	natHelperMain() // when re-executed as a helper inside a namespace, runs it and exits
	// A command given no --state must not touch the real ~/.p2prc.
	state, err := os.MkdirTemp("", "p2prc-default-state-*")
	if err != nil {
		panic(err)
	}
	os.Setenv("P2PRC", state)
	code := m.Run()
	os.RemoveAll(state)
	if binaryPath != "" {
		os.RemoveAll(filepath.Dir(binaryPath))
	}
	os.Exit(code)
}

// proc is a p2prc process started by a test and stopped by its cleanup.
type proc struct {
	cmd    *exec.Cmd
	stdout *lineBuffer
	stderr *lineBuffer
	done   chan error
}

func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(buildBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	return startCmd(t, args[0], cmd)
}

// startCmd starts cmd; the test's log calls it name.
func startCmd(t *testing.T, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{cmd: cmd, stdout: newLineBuffer(), stderr: newLineBuffer(), done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = p.stdout, p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", name, p.stderr.String())
		}
	})
	return p
}

// wait returns the process's exit error, or fails the test after d.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.done <- err // for the cleanup
		return err
	case <-time.After(d):
		t.Fatalf("process still running after %v; stderr:\n%s", d, p.stderr.String())
		return nil
	}
}

// lineBuffer collects output and lets a test wait for a line matching a pattern.
type lineBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	ch  chan struct{}
}

func newLineBuffer() *lineBuffer { return &lineBuffer{ch: make(chan struct{}, 1)} }

func (b *lineBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	select {
	case b.ch <- struct{}{}:
	default:
	}
	return len(p), nil
}

func (b *lineBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits up to d for the first match of re and returns its groups.
func (b *lineBuffer) waitFor(t *testing.T, re *regexp.Regexp, d time.Duration) []string {
	t.Helper()
	return waitForNth(t, b, re, 1, d)
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// freeRange finds n consecutive ports free on 127.0.0.1, below Linux's
// ephemeral range (32768-60999): there, a busy machine's TIME-WAIT
// connections keep most ports from being bound.
func freeRange(t *testing.T, n int) (lo int) {
	t.Helper()
	for base := 15000; base+n <= 20000; base += n { // below the ephemeral range; tunnel tests use 20000-32000
		ok := true
		for p := base; p < base+n && ok; p++ {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			ln.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

func startRelayProcess(t *testing.T, token string) (addr string, lo int) {
	t.Helper()
	addr = freePort(t)
	lo = freeRange(t, 20)
	r := start(t, nil, relayArgs(addr, t.TempDir(), lo, "--token", token)...)
	r.stderr.waitFor(t, relayReady, 20*time.Second)
	return addr, lo
}

// relayArgs are the arguments of a relay process on addr with state dir
// state and ports lo..lo+19, then extra.
func relayArgs(addr, state string, lo int, extra ...string) []string {
	return append([]string{"relay", "--listen", addr, "--public-host", "127.0.0.1", "--bind-host", "127.0.0.1",
		"--ports", rangeArg(lo, 20), "--state", state}, extra...)
}

var relayReady = regexp.MustCompile(`relay ready`)

func rangeArg(lo, n int) string { return fmt.Sprintf("%d-%d", lo, lo+n-1) }

func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

var exposedLine = regexp.MustCompile(`tcp (\S+) -> (\S+)\n`)

// A relay and a node as real processes carry a visitor to the node's
// service; the node says in one line where its service is reachable.
func TestRelayAndNodeProcesses(t *testing.T) {
	addr, _ := startRelayProcess(t, "tok")
	svc := echoServer(t)
	n := start(t, []string{"P2PRC_TOKEN=tok"}, "node", "--relay", addr, "--expose", "tcp:"+svc, "--state", t.TempDir())
	m := n.stdout.waitFor(t, exposedLine, 20*time.Second)
	if m[1] != svc {
		t.Fatalf("node exposed %s, want %s", m[1], svc)
	}
	echoThrough(t, m[2])
}

// A bad token or a port owned by another node ends the node with a non-zero
// status and one clear line.
func TestNodeExitsOnFatalRefusal(t *testing.T) {
	addr, lo := startRelayProcess(t, "right")
	svc := echoServer(t)

	bad := start(t, []string{"P2PRC_TOKEN=wrong"}, "node", "--relay", addr, "--expose", "tcp:"+svc, "--state", t.TempDir())
	checkFatal(t, bad, "token")

	owner := start(t, []string{"P2PRC_TOKEN=right"}, "node", "--relay", addr, "--expose", fmt.Sprintf("tcp:%s=%d", svc, lo+3), "--state", t.TempDir())
	owner.stdout.waitFor(t, exposedLine, 20*time.Second)
	thief := start(t, []string{"P2PRC_TOKEN=right"}, "node", "--relay", addr, "--expose", fmt.Sprintf("tcp:%s=%d", svc, lo+3), "--state", t.TempDir())
	checkFatal(t, thief, "owned by another node")
}

func checkFatal(t *testing.T, p *proc, want string) {
	t.Helper()
	err := p.wait(t, 20*time.Second)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() == 0 {
		t.Fatalf("exit: %v, want a non-zero status", err)
	}
	var last string
	for _, l := range strings.Split(strings.TrimSpace(p.stderr.String()), "\n") {
		last = l
	}
	if !strings.HasPrefix(last, "p2prc: ") || !strings.Contains(last, want) {
		t.Fatalf("last stderr line %q, want a p2prc: line mentioning %q", last, want)
	}
}

// SIGINT stops a relay cleanly: exit status 0.
func TestRelayStopsCleanlyOnSignal(t *testing.T) {
	addr := freePort(t)
	r := start(t, nil, "relay", "--listen", addr, "--public-host", "127.0.0.1", "--ports", "45000-45010", "--state", t.TempDir())
	r.stderr.waitFor(t, regexp.MustCompile(`relay ready`), 20*time.Second)
	r.cmd.Process.Signal(os.Interrupt)
	if err := r.wait(t, 10*time.Second); err != nil {
		t.Fatalf("exit after SIGINT: %v", err)
	}
	if !strings.Contains(r.stderr.String(), "relay.token") {
		t.Errorf("a relay started without a token did not say where it stored one:\n%s", r.stderr.String())
	}
}
