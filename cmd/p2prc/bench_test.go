package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/p2prc/p2prc/cmd/p2prc/internal/bench"
)

// processesUnder returns the PIDs of running processes whose command line
// or environment mentions dir: the bench run with TMPDIR=dir, and the
// relays, nodes and services process it started, which inherit it.
func processesUnder(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Skip("no /proc: cannot see the bench's processes")
	}
	var pids []string
	for _, e := range ents {
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		environ, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && (strings.Contains(string(cmdline), dir) || strings.Contains(string(environ), "TMPDIR="+dir+"\x00")) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// commandLine is a process's arguments, space-separated.
func commandLine(pid string) string {
	b, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
	return strings.ReplaceAll(string(b), "\x00", " ")
}

// waitGone fails the test unless every process under dir ends within d.
func waitGone(t *testing.T, dir string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		pids := processesUnder(t, dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, pid := range pids {
				if p, err := findProcess(pid); err == nil {
					p.Kill()
				}
			}
			t.Fatalf("processes %v outlived the bench", pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// findProcess finds the process of a PID read from /proc.
func findProcess(pid string) (*os.Process, error) {
	n, err := strconv.Atoi(pid)
	if err != nil {
		return nil, err
	}
	return os.FindProcess(n)
}

// p2prc bench starts a relay and a node, measures each workload directly,
// through them and (--forwarders) through two plain forwarders, prints
// figures a script can read, and leaves no process or file behind.
func TestBenchMeasuresBothPaths(t *testing.T) {
	tmp := t.TempDir()
	b := start(t, []string{"TMPDIR=" + tmp}, "bench", "--json", "--duration", "150ms",
		"--workloads", "tcp-1,rr,conn,mem", "--concurrency", "4", "--open-conns", "50", "--modes", "tls", "--forwarders")
	if err := b.wait(t, 2*time.Minute); err != nil {
		t.Fatalf("bench: %v\n%s", err, b.stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(b.stdout.String()), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, b.stdout.String())
	}
	if strings.Join(rep.Modes, ",") != "tls,forwarders" {
		t.Fatalf("columns %q, want tls and forwarders", rep.Modes)
	}
	mode := rep.Modes[0]
	seen := map[string]bool{}
	for _, row := range rep.Rows {
		seen[row.Workload+" "+row.Metric] = true
		for _, m := range rep.Modes {
			if v, ok := row.Relay[m]; !ok || v <= 0 {
				t.Errorf("%s %s via %s: %v, want a positive figure", row.Workload, row.Metric, m, v)
			}
			if row.Workload != "mem" && !strings.Contains(row.Metric, "CPU") && (row.Direct == nil || *row.Direct <= 0 || row.Ratio[m] <= 0) {
				t.Errorf("%s %s via %s: direct %v, ratio %v; want both", row.Workload, row.Metric, m, row.Direct, row.Ratio[m])
			}
		}
	}
	for _, want := range []string{"tcp-1 Gbit/s", "tcp-1 relay CPU s/GB", "tcp-1 node CPU s/GB", "rr req/s", "rr p99 ms",
		"conn conn/s", "conn p50 ms", "mem relay RSS idle MB", "mem relay RSS, 50 conns MB", "mem node RSS, 50 conns MB"} {
		if !seen[want] {
			t.Errorf("no %q row", want)
		}
	}
	if !regexp.MustCompile(`\[\d+/\d+\] ` + mode + `: requests on kept-alive`).MatchString(b.stderr.String()) {
		t.Errorf("no progress lines on stderr:\n%s", b.stderr.String())
	}
	waitGone(t, tmp, 5*time.Second)
	if left, _ := os.ReadDir(tmp); len(left) > 0 {
		t.Errorf("the bench left %v in its temporary folder", left)
	}
}

// Pointed at a relay of one's own (here on loopback), the bench starts
// only a node and measures through that relay; the relay's own CPU and
// memory are not the bench's to read.
func TestBenchThroughOwnRelay(t *testing.T) {
	addr, _ := startRelayProcess(t, "own-token")
	tmp := t.TempDir()
	b := start(t, []string{"TMPDIR=" + tmp, "P2PRC_TOKEN=own-token"}, "bench", "--relay", addr, "--json",
		"--duration", "150ms", "--workloads", "rr,mem", "--concurrency", "2", "--open-conns", "20")
	if err := b.wait(t, time.Minute); err != nil {
		t.Fatalf("bench: %v\n%s", err, b.stderr.String())
	}
	var rep bench.Report
	if err := json.Unmarshal([]byte(b.stdout.String()), &rep); err != nil {
		t.Fatalf("--json output: %v\n%s", err, b.stdout.String())
	}
	if rep.Relay != addr {
		t.Errorf("report names relay %q, want %q", rep.Relay, addr)
	}
	metrics := map[string]float64{}
	for _, row := range rep.Rows {
		metrics[row.Workload+" "+row.Metric] = row.Relay[rep.Modes[0]]
	}
	if metrics["rr req/s"] <= 0 || metrics["mem node RSS, 20 conns MB"] <= 0 {
		t.Errorf("no figures through the relay: %v", metrics)
	}
	for m := range metrics {
		if strings.HasPrefix(m, "rr relay") || strings.HasPrefix(m, "mem relay") {
			t.Errorf("a figure %q for a relay the bench does not run", m)
		}
	}
	waitGone(t, tmp, 5*time.Second)
}

// Interrupted or killed, the bench takes its relay, node, services and
// forwarders with it.
func TestBenchStopsItsProcesses(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL} {
		t.Run(sig.String(), func(t *testing.T) {
			tmp := t.TempDir()
			b := start(t, []string{"TMPDIR=" + tmp}, "bench", "--duration", "30s", "--workloads", "rr", "--concurrency", "2", "--forwarders")
			b.stderr.waitFor(t, regexp.MustCompile(`\[1/\d+\]`), time.Minute) // relay and node are up
			roles := map[string]bool{}
			for _, pid := range processesUnder(t, tmp) {
				for _, role := range []string{"relay", "node", "--serve-services", "--serve-forwarder"} {
					if strings.Contains(commandLine(pid), " "+role+" ") {
						roles[role] = true
					}
				}
			}
			if len(roles) < 4 {
				t.Fatalf("found processes %v, want the relay's, the node's, the services' and the forwarders'", roles)
			}
			b.cmd.Process.Signal(sig)
			err := b.wait(t, 20*time.Second)
			if sig == syscall.SIGINT && (err == nil || !strings.Contains(b.stderr.String(), "interrupted")) {
				t.Errorf("an interrupted bench exited with %v and said:\n%s", err, b.stderr.String())
			}
			waitGone(t, tmp, 10*time.Second)
		})
	}
}

func TestBenchRefusesBadFlags(t *testing.T) {
	t.Setenv("P2PRC_TOKEN", "") // so --relay fails for want of a token, before dialing
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--workloads", "tcp-2"}, "tcp-1,tcp-8"},
		{[]string{"--modes", "fast"}, "unknown mode"},
		{[]string{"--duration", "1ns"}, "10ms"},
		{[]string{"--gomaxprocs", "0,-1"}, "GOMAXPROCS -1"},
		{[]string{"--relay", "127.0.0.1:1"}, "token"},
	} {
		_, _, err := runCmd(t, append([]string{"bench"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("bench %q: %v, want an error mentioning %q", tt.args, err, tt.want)
		}
	}
}

// When the services process dies during a run, the bench says so, with
// that process's last words, rather than reporting a reset connection.
func TestBenchNamesADeadServicesProcess(t *testing.T) {
	tmp := t.TempDir()
	b := start(t, []string{"TMPDIR=" + tmp}, "bench", "--duration", "30s", "--workloads", "rr", "--concurrency", "2", "--modes", "plain")
	b.stderr.waitFor(t, regexp.MustCompile(`\[1/\d+\]`), time.Minute)
	killed := false
	for _, pid := range processesUnder(t, tmp) {
		if strings.Contains(commandLine(pid), " --serve-services ") {
			if p, err := findProcess(pid); err == nil && p.Signal(syscall.SIGKILL) == nil {
				killed = true
			}
		}
	}
	if !killed {
		t.Fatal("found no services process to kill")
	}
	err := b.wait(t, time.Minute)
	if err == nil || !strings.Contains(b.stderr.String(), "the services process exited") {
		t.Errorf("the bench exited with %v and said:\n%s", err, b.stderr.String())
	}
	waitGone(t, tmp, 10*time.Second)
}
