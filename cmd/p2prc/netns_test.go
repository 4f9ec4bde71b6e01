package main

// A NAT lab: three network namespaces that put a home host behind a
// masquerading router, with a public side where the relay and the visitors
// live (SPEC.md, "Testing with a real NAT"):
//
//	home 192.168.77.2 ── home0 · rhome0 ── router ── rwan0 · pub0 ── public 203.0.113.1
//	                        192.168.77.1   (MASQUERADE)   203.0.113.2
//
// The router masquerades home's traffic behind 203.0.113.2 and drops new
// connections coming in from the public side, as a home router does. The
// public side has a route to 192.168.77.0/24 through the router, so "home is
// not reachable directly" is the router's doing, not a missing route. The
// namespaces are connected to nothing else: no packet leaves them.
//
// Names are unique per run (p2prc-nat-PID-RANDOM-…), so two runs never
// collide. Everything a lab made is removed by close, by a SIGINT, SIGTERM
// or SIGHUP handler while the lab is open, and — for a run that died
// without either (go test's -timeout panic, SIGKILL) — by the next lab's
// sweep of namespaces whose owning process is gone. Processes started in a
// lab's namespaces also get SIGKILL when the test binary dies (Pdeathsig).

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Addresses and links of a lab; documentation and private ranges, inside
// the lab's namespaces only.
const (
	homeAddr         = "192.168.77.2"
	routerHomeAddr   = "192.168.77.1"
	routerPublicAddr = "203.0.113.2"
	publicAddr       = "203.0.113.1"
	homeNet          = "192.168.77.0/24"

	homeLink       = "home0"  // home's end of the home–router link
	routerHomeLink = "rhome0" // router's end of it: the cable a link cut pulls
	routerWANLink  = "rwan0"
	publicLink     = "pub0"
)

// labPrefix starts every lab namespace's name; the owning process's PID
// follows, so a sweep can tell a dead run's leftovers from a live run's.
const labPrefix = "p2prc-nat-"

// natLab is one set of namespaces. close is idempotent.
type natLab struct {
	name                 string // p2prc-nat-PID-RANDOM
	home, router, public string // namespace names
	ip                   string // path of ip(8)
	iptables             string // the iptables command that worked in the router

	mu      sync.Mutex
	created []string // namespaces made so far, removed by teardown
}

// natLabMissing says what this machine lacks for a lab, or "".
func natLabMissing() string {
	if os.Geteuid() != 0 {
		return "needs root (network namespaces and iptables)"
	}
	if lookTool("ip") == "" {
		return "needs ip(8) from iproute2 (apt-get install iproute2)"
	}
	if lookTool("iptables") == "" && lookTool("iptables-legacy") == "" {
		return "needs iptables (apt-get install iptables)"
	}
	return ""
}

// skipOrFail skips a test the machine cannot run, unless P2PRC_CI=1, where
// a skip would hide a broken CI set-up and is a failure instead.
func skipOrFail(t *testing.T, reason string) {
	t.Helper()
	if os.Getenv("P2PRC_CI") == "1" {
		t.Fatalf("%s; P2PRC_CI=1, so this is a failure, not a skip (.ci/run installs what the tests need)", reason)
	}
	t.Skip(reason)
}

// natLabNeeds is what a machine needs for the NAT lab, said with each skip.
const natLabNeeds = "run as root with iproute2 and iptables to include this test"

// lookTool finds a command in PATH or in the sbin folders a user's PATH may lack.
func lookTool(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return ""
}

// errNoNetns means this machine refused to create a network namespace.
var errNoNetns = errors.New("cannot create network namespaces here")

// newNATLab sets up a lab removed at the end of the test, or skips (fails
// under P2PRC_CI=1) when the machine cannot have one.
func newNATLab(t *testing.T) *natLab {
	t.Helper()
	if reason := natLabMissing(); reason != "" {
		skipOrFail(t, reason+"; "+natLabNeeds)
	}
	l, err := setupNATLab()
	if errors.Is(err, errNoNetns) {
		skipOrFail(t, err.Error()+"; "+natLabNeeds)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.close(); err != nil {
			t.Errorf("removing the NAT lab: %v", err)
		}
	})
	t.Logf("NAT lab %s (router uses %s)", l.name, filepath.Base(l.iptables))
	return l
}

// setupNATLab sweeps dead runs' leftovers and builds a fresh lab.
func setupNATLab() (*natLab, error) {
	ip := lookTool("ip")
	sweepStaleLabs(ip)
	var rnd [3]byte
	rand.Read(rnd[:])
	name := fmt.Sprintf("%s%d-%s", labPrefix, os.Getpid(), hex.EncodeToString(rnd[:]))
	l := &natLab{name: name, home: name + "-home", router: name + "-router", public: name + "-public", ip: ip}
	interrupts.add(l) // from here on, an interrupt removes what exists
	if err := l.build(); err != nil {
		if cerr := l.close(); cerr != nil {
			err = fmt.Errorf("%w (and removing it: %v)", err, cerr)
		}
		return nil, fmt.Errorf("building NAT lab %s: %w", name, err)
	}
	return l, nil
}

func (l *natLab) build() error {
	for i, ns := range []string{l.home, l.router, l.public} {
		out, err := exec.Command(l.ip, "netns", "add", ns).CombinedOutput()
		if err != nil {
			if i == 0 {
				return fmt.Errorf("%w: ip netns add: %v: %s", errNoNetns, err, bytes.TrimSpace(out))
			}
			return fmt.Errorf("ip netns add %s: %v: %s", ns, err, bytes.TrimSpace(out))
		}
		l.mu.Lock()
		l.created = append(l.created, ns)
		l.mu.Unlock()
	}
	// Each veth is made with both ends inside their namespaces, so link
	// names never meet in the host's namespace.
	steps := [][]string{
		{"link", "add", homeLink, "netns", l.home, "type", "veth", "peer", "name", routerHomeLink, "netns", l.router},
		{"link", "add", routerWANLink, "netns", l.router, "type", "veth", "peer", "name", publicLink, "netns", l.public},
		{"-n", l.home, "addr", "add", homeAddr + "/24", "dev", homeLink},
		{"-n", l.router, "addr", "add", routerHomeAddr + "/24", "dev", routerHomeLink},
		{"-n", l.router, "addr", "add", routerPublicAddr + "/24", "dev", routerWANLink},
		{"-n", l.public, "addr", "add", publicAddr + "/24", "dev", publicLink},
	}
	for _, ns := range []string{l.home, l.router, l.public} {
		steps = append(steps, []string{"-n", ns, "link", "set", "lo", "up"})
	}
	steps = append(steps,
		[]string{"-n", l.home, "link", "set", homeLink, "up"},
		[]string{"-n", l.router, "link", "set", routerHomeLink, "up"},
		[]string{"-n", l.router, "link", "set", routerWANLink, "up"},
		[]string{"-n", l.public, "link", "set", publicLink, "up"},
		[]string{"-n", l.home, "route", "add", "default", "via", routerHomeAddr},
		[]string{"-n", l.public, "route", "add", homeNet, "via", routerPublicAddr},
		[]string{"netns", "exec", l.router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"},
	)
	for _, s := range steps {
		if err := l.run(l.ip, s...); err != nil {
			return err
		}
	}
	return l.buildRouterRules()
}

// buildRouterRules makes the router a home router: masquerade outgoing
// traffic, drop new connections from the public side. Debian's iptables is
// the nf_tables one; where the kernel lacks nf_tables, the legacy one works.
func (l *natLab) buildRouterRules() error {
	rules := [][]string{
		{"-t", "nat", "-A", "POSTROUTING", "-o", routerWANLink, "-j", "MASQUERADE"},
		{"-A", "FORWARD", "-i", routerWANLink, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
		{"-A", "FORWARD", "-i", routerWANLink, "-j", "DROP"},
	}
	var errs []error
	for _, name := range []string{"iptables", "iptables-legacy"} {
		ipt := lookTool(name)
		if ipt == "" {
			continue
		}
		var err error
		for _, r := range rules {
			if err = l.run(l.ip, append([]string{"netns", "exec", l.router, ipt, "-w"}, r...)...); err != nil {
				break
			}
		}
		if err == nil {
			l.iptables = ipt
			return nil
		}
		errs = append(errs, err)
		// Start clean for the next backend.
		l.run(l.ip, "netns", "exec", l.router, ipt, "-t", "nat", "-F")
		l.run(l.ip, "netns", "exec", l.router, ipt, "-F")
	}
	return fmt.Errorf("no iptables backend could set up the router: %w", errors.Join(errs...))
}

func (l *natLab) run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v: %s", filepath.Base(name), strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// command returns a command that runs name inside namespace ns and dies
// with the test binary.
func (l *natLab) command(ns, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(l.ip, append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// setLink sets a link of namespace ns "up" or "down".
func (l *natLab) setLink(ns, link, state string) error {
	return l.run(l.ip, "-n", ns, "link", "set", link, state)
}

// close removes the lab: its processes (by PID), namespaces and links.
func (l *natLab) close() error {
	interrupts.remove(l)
	return l.teardown()
}

// teardown kills what runs in the lab's namespaces and deletes them;
// deleting a namespace destroys its veths, and so their peers.
func (l *natLab) teardown() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	var errs []error
	for i := len(l.created) - 1; i >= 0; i-- {
		if err := removeNetns(l.ip, l.created[i]); err != nil {
			errs = append(errs, err)
		}
	}
	l.created = nil
	return errors.Join(errs...)
}
