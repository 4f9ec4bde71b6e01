package main

import (
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// heldLab is a lab held by another process: another run of the tests.
type heldLab struct {
	p       *proc
	name    string
	sleeper int // a process inside the lab's home namespace
}

// holdLabElsewhere starts a second process that builds a lab, starts a
// process inside it and waits.
func holdLabElsewhere(t *testing.T) heldLab {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "hold-lab")
	cmd.Env = append(os.Environ(), natHelperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p := startCmd(t, "second run", cmd)
	m := p.stdout.waitFor(t, regexp.MustCompile(`holding (\S+) (\d+)\n`), 20*time.Second)
	pid, _ := strconv.Atoi(m[2])
	return heldLab{p: p, name: m[1], sleeper: pid}
}

// labNamespaces lists the namespaces of the lab called name that exist.
func labNamespaces(name string) []string {
	var found []string
	for _, ns := range listNetns(lookTool("ip")) {
		if ns == name+"-home" || ns == name+"-router" || ns == name+"-public" {
			found = append(found, ns)
		}
	}
	return found
}

// checkLabGone fails unless the lab's namespaces and its process are gone.
func checkLabGone(t *testing.T, h heldLab) {
	t.Helper()
	if left := labNamespaces(h.name); len(left) > 0 {
		t.Errorf("namespaces left behind: %v", left)
	}
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(h.sleeper) {
		if time.Now().After(deadline) {
			t.Errorf("process %d inside the lab still runs", h.sleeper)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Two runs at once do not collide, neither removes the other's lab, and an
// interrupted run removes its own.
func TestNATLabRunsDoNotCollideAndInterruptCleansUp(t *testing.T) {
	if reason := natLabMissing(); reason != "" {
		skipOrFail(t, reason+"; "+natLabNeeds)
	}
	other := holdLabElsewhere(t)
	mine := newNATLab(t)
	if mine.name == other.name {
		t.Fatalf("two runs chose the same lab name %s", mine.name)
	}
	if got := labNamespaces(other.name); len(got) != 3 {
		t.Fatalf("setting up a second lab disturbed the first: its namespaces are now %v", got)
	}
	if got := labNamespaces(mine.name); len(got) != 3 {
		t.Fatalf("the second lab has namespaces %v, want 3", got)
	}
	if err := mine.close(); err != nil {
		t.Fatal(err)
	}
	if got := labNamespaces(mine.name); len(got) > 0 {
		t.Fatalf("close left %v", got)
	}
	if got := labNamespaces(other.name); len(got) != 3 || !processAlive(other.sleeper) {
		t.Fatalf("closing one lab disturbed another run's: its namespaces are now %v", got)
	}

	other.p.cmd.Process.Signal(os.Interrupt)
	if err := other.p.wait(t, 20*time.Second); err == nil {
		t.Errorf("the interrupted run exited 0; want it to die by its signal")
	}
	checkLabGone(t, other)
	if !strings.Contains(other.p.stderr.String(), "removed 1 lab(s) on interrupt") {
		t.Errorf("the interrupted run did not say it removed its lab; stderr:\n%s", other.p.stderr.String())
	}
}

// A run killed outright (go test's -timeout panic, SIGKILL) leaves its lab;
// the next run removes it, and what runs inside it.
func TestNATLabSweepsAKilledRun(t *testing.T) {
	if reason := natLabMissing(); reason != "" {
		skipOrFail(t, reason+"; "+natLabNeeds)
	}
	dead := holdLabElsewhere(t)
	dead.p.cmd.Process.Kill()
	dead.p.wait(t, 10*time.Second)
	if got := labNamespaces(dead.name); len(got) != 3 || !processAlive(dead.sleeper) {
		t.Fatalf("a killed run should leave its lab (namespaces %v, sleeper alive %v); nothing to sweep", got, processAlive(dead.sleeper))
	}
	newNATLab(t)
	checkLabGone(t, dead)
}
