package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a child gets to end after SIGTERM before it is
// killed.
const stopGrace = 5 * time.Second

// child is a relay or node process the bench started: the same binary,
// re-executed with a subcommand, so its CPU time and memory are its own.
type child struct {
	name string
	cmd  *exec.Cmd

	stdout, stderr *lines
	done           chan struct{} // closed when the process has exited
	waitErr        error         // set before done is closed

	stopOnce sync.Once
}

// startChild runs exe with args and env added to the bench's own
// environment. The child is killed if the bench dies without stopping it
// (see setParentDeath).
func startChild(name, exe string, args, env []string) (*child, error) {
	cmd := exec.Command(exe, args...)
	for _, kv := range os.Environ() {
		// A profile the bench itself writes is not the child's to overwrite.
		if !strings.HasPrefix(kv, ProfileEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	c := &child{name: name, cmd: cmd, stdout: newLines(), stderr: newLines(), done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = c.stdout, c.stderr
	setParentDeath(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the %s process: %w", name, err)
	}
	go func() {
		c.waitErr = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

// pid is the child's process ID.
func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the child has ended, and why.
func (c *child) exited() (bool, error) {
	select {
	case <-c.done:
		return true, c.waitErr
	default:
		return false, nil
	}
}

// stop ends the child: SIGTERM (a clean shutdown, which also writes a CPU
// profile if one was asked for), then SIGKILL after stopGrace. It waits for
// the process to be gone. Safe to call more than once.
func (c *child) stop() {
	c.stopOnce.Do(func() {
		select {
		case <-c.done:
			return
		default:
		}
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(stopGrace):
			c.cmd.Process.Kill()
			<-c.done
		}
	})
}

// failure describes a child that ended or failed to get ready, with the
// last lines it wrote to stderr, which say why.
func (c *child) failure(what string) error {
	tail := c.stderr.tail(5)
	if ok, err := c.exited(); ok {
		return fmt.Errorf("the %s process exited (%v) %s; its last output:\n%s", c.name, err, what, tail)
	}
	return fmt.Errorf("the %s process %s; its last output:\n%s", c.name, what, tail)
}

// waitLine waits until one of the child's streams has a line for which
// match returns true, and returns that line.
func (c *child) waitLine(ctx context.Context, l *lines, match func(string) bool, d time.Duration, what string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	from, exited := 0, false
	for {
		all, changed := l.snapshot()
		for ; from < len(all); from++ {
			if match(all[from]) {
				return all[from], nil
			}
		}
		if exited { // and the lines it wrote before exiting are read
			return "", c.failure("before it " + what)
		}
		select {
		case <-changed:
		case <-c.done:
			exited = true
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return "", c.failure(fmt.Sprintf("did not %s within %v", what, d))
			}
			return "", ctx.Err()
		}
	}
}

// logRecord finds the first JSON log line of the child (slog's JSON handler)
// whose msg is msg, waiting up to d.
func (c *child) logRecord(ctx context.Context, msg string, d time.Duration) (map[string]any, error) {
	var rec map[string]any
	_, err := c.waitLine(ctx, c.stderr, func(line string) bool {
		var r map[string]any
		if json.Unmarshal([]byte(line), &r) != nil || r["msg"] != msg {
			return false
		}
		rec = r
		return true
	}, d, "say "+fmt.Sprintf("%q", msg))
	return rec, err
}

// A helper process the bench starts (services, a forwarder) says it is
// ready with one line on stdout: listeningLine, then a JSON object naming
// the addresses it listens on.
const listeningLine = "listening "

// announce writes that line for m on w, then waits for ctx to end: the
// helper serves until the bench stops it.
func announce(ctx context.Context, w io.Writer, m map[string]string) error {
	js, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "%s%s\n", listeningLine, js); err != nil {
		return err
	}
	<-ctx.Done()
	return nil
}

// parseListening reads what a helper's line announced.
func parseListening(line string) (map[string]string, error) {
	var m map[string]string
	if err := json.Unmarshal([]byte(strings.TrimPrefix(line, listeningLine)), &m); err != nil {
		return nil, fmt.Errorf("it said %q: %w", line, err)
	}
	return m, nil
}

// lines collects a child's output as lines, keeping at most maxLines.
type lines struct {
	mu      sync.Mutex
	partial bytes.Buffer
	all     []string
	changed chan struct{} // closed and replaced whenever a line arrives
}

const maxLines = 10000

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial.Write(p)
	added := false
	for {
		i := bytes.IndexByte(l.partial.Bytes(), '\n')
		if i < 0 {
			break
		}
		line := string(l.partial.Next(i + 1))
		if len(l.all) < maxLines {
			l.all = append(l.all, strings.TrimRight(line, "\r\n"))
		}
		added = true
	}
	if l.partial.Len() > 64<<10 { // a runaway line: keep the start
		l.partial.Reset()
	}
	if added {
		close(l.changed)
		l.changed = make(chan struct{})
	}
	return len(p), nil
}

// snapshot returns the lines so far and a channel closed when more arrive.
func (l *lines) snapshot() ([]string, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all[:len(l.all):len(l.all)], l.changed
}

// tail returns the last n lines, indented, for an error message.
func (l *lines) tail(n int) string {
	all, _ := l.snapshot()
	if len(all) > n {
		all = all[len(all)-n:]
	}
	var b strings.Builder
	for _, s := range all {
		fmt.Fprintf(&b, "  %s\n", s)
	}
	if b.Len() == 0 {
		return "  (nothing)\n"
	}
	return b.String()
}

// usage is a process's CPU time so far and its resident memory now.
type usage struct {
	CPU time.Duration
	RSS int64 // bytes
}

// clockTick is the unit of utime and stime in /proc/PID/stat: USER_HZ,
// which Linux fixes at 100 for user space.
const clockTick = 10 * time.Millisecond

// readUsage reads pid's CPU time (user + system, all threads) from
// /proc/PID/stat and its resident set (VmRSS) from /proc/PID/status.
func readUsage(pid int) (usage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return usage{}, err
	}
	cpu, err := parseStatCPU(stat)
	if err != nil {
		return usage{}, err
	}
	status, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, err
	}
	defer status.Close()
	rss, err := parseVmRSS(status)
	return usage{CPU: cpu, RSS: rss}, err
}

// parseStatCPU returns utime+stime from the contents of /proc/PID/stat.
// The command name (field 2) may hold spaces and parentheses, so fields are
// counted from the last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("/proc/PID/stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("/proc/PID/stat: too few fields")
	}
	var ut, st int64
	if _, err := fmt.Sscan(f[11], &ut); err != nil {
		return 0, fmt.Errorf("/proc/PID/stat utime: %w", err)
	}
	if _, err := fmt.Sscan(f[12], &st); err != nil {
		return 0, fmt.Errorf("/proc/PID/stat stime: %w", err)
	}
	return time.Duration(ut+st) * clockTick, nil
}

// parseVmRSS returns the VmRSS line of /proc/PID/status, in bytes.
func parseVmRSS(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		var kb int64
		if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb); err != nil {
			return 0, fmt.Errorf("/proc/PID/status VmRSS: %w", err)
		}
		return kb << 10, nil
	}
	return 0, errors.New("/proc/PID/status: no VmRSS line")
}

// loadAverage is the one-minute load average, or -1 where unknown.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var l float64
	if _, err := fmt.Sscan(string(b), &l); err != nil {
		return -1
	}
	return l
}
