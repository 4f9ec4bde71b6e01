package main

// Removing labs: what runs inside them, by PID; their namespaces; the
// leftovers of runs that died outright; and every open lab on an interrupt.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// removeNetns kills every process inside ns, by PID, then deletes ns.
func removeNetns(ip, ns string) error {
	for _, pid := range netnsPIDs(ip, ns) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	out, err := exec.Command(ip, "netns", "delete", ns).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns delete %s: %v: %s", ns, err, bytes.TrimSpace(out))
	}
	return nil
}

// netnsPIDs lists the processes inside ns.
func netnsPIDs(ip, ns string) []int {
	out, _ := exec.Command(ip, "netns", "pids", ns).Output()
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// listNetns returns the names of the namespaces ip(8) knows.
func listNetns(ip string) []string {
	out, _ := exec.Command(ip, "netns", "list").Output()
	var names []string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// sweepStaleLabs removes the namespaces, and what runs in them, of labs
// whose owning process is gone. A live run's lab is left alone.
func sweepStaleLabs(ip string) {
	for _, ns := range listNetns(ip) {
		rest, ok := strings.CutPrefix(ns, labPrefix)
		if !ok {
			continue
		}
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if err != nil || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		removeNetns(ip, ns)
	}
}

// processAlive reports whether pid is a running (not zombie) process.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name, which may hold spaces.
	_, after, ok := bytes.Cut(b, []byte(") "))
	return ok && len(after) > 0 && after[0] != 'Z' && after[0] != 'X'
}

// interrupts removes the open labs when the test binary is told to stop,
// then lets the signal do what it would have done. It watches only while
// a lab is open.
var interrupts labWatch

type labWatch struct {
	mu   sync.Mutex
	labs map[*natLab]bool
	sigs chan os.Signal
	done chan struct{}
	wg   sync.WaitGroup
}

func (w *labWatch) add(l *natLab) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.labs == nil {
		w.labs = make(map[*natLab]bool)
	}
	if len(w.labs) == 0 {
		w.sigs = make(chan os.Signal, 1)
		w.done = make(chan struct{})
		signal.Notify(w.sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
		w.wg.Add(1)
		go w.watch(w.sigs, w.done)
	}
	w.labs[l] = true
}

func (w *labWatch) remove(l *natLab) {
	w.mu.Lock()
	if !w.labs[l] {
		w.mu.Unlock()
		return
	}
	delete(w.labs, l)
	if len(w.labs) > 0 {
		w.mu.Unlock()
		return
	}
	signal.Stop(w.sigs)
	close(w.done)
	w.mu.Unlock()
	w.wg.Wait()
}

func (w *labWatch) watch(sigs chan os.Signal, done chan struct{}) {
	defer w.wg.Done()
	select {
	case <-done:
	case sig := <-sigs:
		w.mu.Lock()
		labs := make([]*natLab, 0, len(w.labs))
		for l := range w.labs {
			labs = append(labs, l)
		}
		w.mu.Unlock()
		for _, l := range labs {
			if err := l.teardown(); err != nil {
				fmt.Fprintf(os.Stderr, "removing NAT lab %s: %v\n", l.name, err)
			}
		}
		fmt.Fprintf(os.Stderr, "NAT lab: removed %d lab(s) on %v\n", len(labs), sig)
		signal.Reset(sig)
		syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		time.Sleep(time.Second) // the signal ends the process
		os.Exit(2)
	}
}
