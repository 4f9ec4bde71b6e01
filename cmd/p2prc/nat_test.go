package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// The lab's services and the relay, all inside the lab's namespaces.
const (
	homeTCPService = homeAddr + ":7000"
	homeUDPService = homeAddr + ":7001"
	relayControl   = publicAddr + ":8700"
	relayPorts     = "30000-30009"
	natToken       = "nat-lab-token"
	natPeerTimeout = "3s" // both ends; keeps the link-cut part short
)

var (
	tcpGrant      = regexp.MustCompile(`tcp ` + regexp.QuoteMeta(homeTCPService) + ` -> (\S+)\n`)
	udpGrant      = regexp.MustCompile(`udp ` + regexp.QuoteMeta(homeUDPService) + ` -> (\S+)\n`)
	nodeConnected = regexp.MustCompile(`msg="node connected".* remote=(\S+)`)
	relayLost     = regexp.MustCompile(`lost the relay; reconnecting`)
)

// A node behind a real NAT escapes it through the relay: home is not
// reachable from the public side, yet visitors there reach home's services
// through the relay, intact, and again after the home link was cut.
func TestEscapeNAT(t *testing.T) {
	lab := newNATLab(t)
	bin := buildBinary(t)
	begin := time.Now()

	svc := startCmd(t, "home TCP service", lab.helperCommand(lab.home, "tcp-service", homeTCPService))
	svc.stdout.waitFor(t, regexp.MustCompile(`listening`), 10*time.Second)
	udp := startCmd(t, "home UDP service", lab.helperCommand(lab.home, "udp-service", homeUDPService))
	udp.stdout.waitFor(t, regexp.MustCompile(`listening`), 10*time.Second)

	t.Log("1. the home service is not reachable from the public side directly")
	for _, c := range []struct{ ns, addr, want, why string }{
		{lab.home, homeTCPService, "connected", "the service is up at home"},
		{lab.router, homeTCPService, "connected", "the router reaches home"},
		{lab.public, routerHomeAddr + ":7000", "refused", "the public side routes to the home range: the router itself answers"},
	} {
		if got := lab.dial(t, c.ns, c.addr); got != c.want {
			t.Fatalf("control check (%s): dialing %s from %s: %s, want %s", c.why, c.addr, c.ns, got, c.want)
		}
	}
	if got := lab.dial(t, lab.public, homeTCPService); got == "connected" {
		t.Fatalf("the public side reached the home service %s directly: the NAT lets it in", homeTCPService)
	} else {
		t.Logf("   public -> %s directly: %s", homeTCPService, got)
	}
	if got := lab.tool(t, lab.router, "udp-probe", homeUDPService); got != "reply" {
		t.Fatalf("control check: a datagram from the router to %s: %s, want a reply", homeUDPService, got)
	}
	if got := lab.tool(t, lab.public, "udp-probe", homeUDPService); got != "no reply" {
		t.Fatalf("a datagram from the public side straight to %s: %s, want no reply", homeUDPService, got)
	}

	t.Log("2. the node at home dials out to the relay and gets its mappings")
	relay := startCmd(t, "relay", lab.p2prc(lab.public, bin, "relay", "--listen", relayControl,
		"--public-host", publicAddr, "--ports", relayPorts, "--name", "public-relay",
		"--state", t.TempDir(), "--peer-timeout", natPeerTimeout))
	relay.stderr.waitFor(t, regexp.MustCompile(`relay ready`), 20*time.Second)
	args := []string{"node", "--relay", relayControl, "--name", "home", "--state", t.TempDir(),
		"--peer-timeout", natPeerTimeout, "--max-backoff", "2s", "--expose", "tcp:" + homeTCPService, "--expose", "udp:" + homeUDPService}
	node := startCmd(t, "node", lab.p2prc(lab.home, bin, args...))
	tcpPublic := node.stdout.waitFor(t, tcpGrant, 20*time.Second)[1]
	checkPublic(t, tcpPublic)
	udpPublic := node.stdout.waitFor(t, udpGrant, 20*time.Second)[1]
	checkPublic(t, udpPublic)

	t.Log("3. visitors on the public side reach home through the relay, intact both ways")
	lab.visit(t, tcpPublic, udpPublic)

	t.Log("4. the relay saw the node's connection come from the router's public address")
	checkSeenFromRouter(t, relay, 1)

	t.Log("5. the home link is cut: the node notices and reconnects by itself")
	cut := time.Now()
	if err := lab.setLink(lab.router, routerHomeLink, "down"); err != nil {
		t.Fatal(err)
	}
	node.stderr.waitFor(t, relayLost, 20*time.Second)
	if err := lab.setLink(lab.router, routerHomeLink, "up"); err != nil {
		t.Fatal(err)
	}
	t.Logf("   the link was down %v", time.Since(cut).Round(100*time.Millisecond))
	if again := waitForNth(t, node.stdout, tcpGrant, 2, 30*time.Second)[1]; again != tcpPublic {
		t.Fatalf("after reconnecting the node got %s, want its port back: %s", again, tcpPublic)
	}
	if again := waitForNth(t, node.stdout, udpGrant, 2, 30*time.Second)[1]; again != udpPublic {
		t.Fatalf("after reconnecting the node got udp %s, want its port back: %s", again, udpPublic)
	}
	checkSeenFromRouter(t, relay, 2)
	lab.visit(t, tcpPublic, udpPublic)
	t.Logf("   back %v after the cut; the whole check took %v",
		time.Since(cut).Round(100*time.Millisecond), time.Since(begin).Round(100*time.Millisecond))
}

// checkPublic fails unless addr is on the relay's public address.
func checkPublic(t *testing.T, addr string) {
	t.Helper()
	if !strings.HasPrefix(addr, publicAddr+":") {
		t.Fatalf("the node says it is reachable at %s, want %s:PORT", addr, publicAddr)
	}
}

// checkSeenFromRouter waits for the relay's nth "node connected" line and
// fails unless it names the router's public address.
func checkSeenFromRouter(t *testing.T, relay *proc, nth int) {
	t.Helper()
	remote := waitForNth(t, relay.stderr, nodeConnected, nth, 20*time.Second)[1]
	if !strings.HasPrefix(remote, routerPublicAddr+":") {
		t.Fatalf("the relay saw the node connect from %s, want the router's public address %s", remote, routerPublicAddr)
	}
	t.Logf("   relay: node connected from %s", remote)
}

// visit sends visitors from the public side through the relay: four TCP
// connections of 1 MiB each way, and two UDP flows.
func (l *natLab) visit(t *testing.T, tcpPublic, udpPublic string) {
	t.Helper()
	t.Logf("   %s", l.tool(t, l.public, "visit", tcpPublic, fmt.Sprint(1<<20), "4"))
	t.Logf("   %s", l.tool(t, l.public, "udp-visit", udpPublic, "2"))
}

// dial tries one TCP connection from namespace ns and names the outcome.
func (l *natLab) dial(t *testing.T, ns, addr string) string {
	t.Helper()
	return l.tool(t, ns, "dial", addr, "1500ms")
}

// tool runs a helper tool in namespace ns and returns what it printed; it
// fails the test if the tool fails or runs past a minute.
func (l *natLab) tool(t *testing.T, ns string, args ...string) string {
	t.Helper()
	cmd := l.helperCommand(ns, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	timer := time.AfterFunc(time.Minute, func() { cmd.Process.Kill() })
	err := cmd.Wait()
	timer.Stop()
	if err != nil {
		t.Fatalf("%s in %s: %v\n%s%s", strings.Join(args, " "), ns, err, stdout.String(), stderr.String())
	}
	return strings.TrimSpace(stdout.String())
}

// p2prc returns a command running the p2prc binary bin in namespace ns,
// with the lab's token in its environment.
func (l *natLab) p2prc(ns, bin string, args ...string) *exec.Cmd {
	cmd := l.command(ns, bin, args...)
	cmd.Env = append(os.Environ(), tokenEnv+"="+natToken)
	return cmd
}

// waitForNth waits until re has matched n times in b and returns the nth match.
func waitForNth(t *testing.T, b *lineBuffer, re *regexp.Regexp, n int, d time.Duration) []string {
	t.Helper()
	deadline := time.After(d)
	for {
		if all := re.FindAllStringSubmatch(b.String(), -1); len(all) >= n {
			return all[n-1]
		}
		select {
		case <-b.ch:
		case <-deadline:
			t.Fatalf("fewer than %d lines matching %v within %v; output:\n%s", n, re, d, b.String())
		}
	}
}
