// Package bench is `p2prc bench`: it measures the relay path beside the
// direct one, in the same run, and reports both with their ratio.
//
// The bench runs its own local services (a discarding sink, an echo server,
// a one-request server and a UDP counter) and load generators, on loopback.
// The TCP services run in a process of their own, as a real service does;
// the load generators and the UDP counter in the bench's. The relay and
// node are separate processes too — the same binary, started again with
// the relay and node subcommands and temporary state dirs — so the CPU
// time and memory read from /proc are theirs alone. Each workload runs
// first against the service directly, then through each mode's relay and
// node, one after the other, so every ratio compares figures taken moments
// apart. With Config.Forwarders it also runs through two plain forwarders
// (see forward.go), a yardstick for the relay's figures.
//
// Against a remote relay (Config.Relay) the bench starts only a node, which
// exposes the bench's services through that relay; the relay's own CPU and
// memory are then not known.
package bench

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Config says what to measure. Zero values mean the defaults on each field.
type Config struct {
	// Duration is how long each workload runs on each path. Zero: 3 s.
	Duration time.Duration
	// Workloads are the names of the workloads to run. Nil: all.
	Workloads []string
	// Modes are the ways relay and node are run, each measured. Nil: all
	// of DefaultModes.
	Modes []Mode
	// Rounds is how many times each workload is measured on each path,
	// the paths taking turns; the report gives the medians. Zero: 1.
	Rounds int
	// Concurrency is how many connections the request workloads keep
	// busy at once. Zero: 32.
	Concurrency int
	// OpenConns is how many connections the memory workload holds open.
	// Zero: 1,000.
	OpenConns int
	// Relay, if set, is a remote relay's HOST:PORT: only a node is started
	// here, and Token must be the relay's token.
	Relay string
	// Token is the remote relay's token; unused without Relay.
	Token []byte
	// GOMAXPROCS lists the GOMAXPROCS settings of the relay and node
	// processes to measure, each mode with each; 0 is Go's default. Nil:
	// Go's default only.
	GOMAXPROCS []int
	// Forwarders adds the forwarders path (see forward.go): two plain TCP
	// forwarders in a row, a yardstick for what any two-process relay can
	// reach on this machine.
	Forwarders bool
	// ProfileDir, if set, receives a CPU profile of each relay and node
	// process (relay-MODE.pprof, node-MODE.pprof), written when it stops.
	ProfileDir string
	// Progress receives a line per step (on a terminal, one line
	// rewritten). Nil: no progress.
	Progress io.Writer
}

// A Mode is one way of running relay and node: the flags each is given.
type Mode struct {
	Name      string
	RelayArgs []string
	NodeArgs  []string
}

// DefaultModes are the modes measured unless told otherwise: "tls", how a
// relay and a node run by default (the node trusts the relay's certificate
// on first use), and "plain", with --insecure-plaintext on both.
var DefaultModes = []Mode{
	{Name: "tls"},
	{Name: "plain", RelayArgs: []string{"--insecure-plaintext"}, NodeArgs: []string{"--insecure-plaintext"}},
}

// ModeNames lists the names of DefaultModes.
func ModeNames() string {
	var names []string
	for _, m := range DefaultModes {
		names = append(names, m.Name)
	}
	return strings.Join(names, ",")
}

// SelectModes returns the named modes of DefaultModes.
func SelectModes(names []string) ([]Mode, error) {
	var out []Mode
	for _, n := range names {
		i := slices.IndexFunc(DefaultModes, func(m Mode) bool { return m.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("unknown mode %q: choose from %s", n, ModeNames())
		}
		out = append(out, DefaultModes[i])
	}
	return out, nil
}

// Defaults.
const (
	defaultDuration    = 3 * time.Second
	defaultConcurrency = 32
	defaultOpenConns   = 1000

	// relayPorts is where a bench relay grants ports; busy ones are skipped.
	relayPorts = "47000-47999"

	// readyTimeout bounds how long relay and node may take to be ready.
	readyTimeout = 20 * time.Second
)

// ProfileEnv names the environment variable that makes a p2prc process
// write a CPU profile to the file it names when it exits.
const ProfileEnv = "P2PRC_CPUPROFILE"

func (c *Config) check() error {
	c.Duration = cmp.Or(c.Duration, defaultDuration)
	c.Rounds = cmp.Or(c.Rounds, 1)
	c.Concurrency = cmp.Or(c.Concurrency, defaultConcurrency)
	c.OpenConns = cmp.Or(c.OpenConns, defaultOpenConns)
	switch {
	case c.Modes != nil:
	case c.Relay != "":
		// Someone else's relay runs in one mode, TLS unless its operator
		// chose otherwise; --modes plain says so.
		c.Modes = DefaultModes[:1]
	default:
		c.Modes = DefaultModes
	}
	for _, n := range c.GOMAXPROCS {
		if n < 0 || n > 1024 {
			return fmt.Errorf("GOMAXPROCS %d: give 0 (Go's default) to 1024", n)
		}
	}
	switch {
	case c.Duration < 10*time.Millisecond || c.Duration > 10*time.Minute:
		return fmt.Errorf("duration %v: give between 10ms and 10m", c.Duration)
	case c.Rounds < 1 || c.Rounds > 100:
		return fmt.Errorf("rounds %d: give 1 to 100", c.Rounds)
	case c.Concurrency < 1 || c.Concurrency > 1024:
		return fmt.Errorf("concurrency %d: give 1 to 1024", c.Concurrency)
	case c.OpenConns < 1 || c.OpenConns > 10000:
		return fmt.Errorf("open connections %d: give 1 to 10000", c.OpenConns)
	case c.Relay != "" && len(c.Token) == 0:
		return errors.New("a remote relay needs its token: --token-file FILE or P2PRC_TOKEN")
	case len(c.Modes) == 0:
		return errors.New("no mode to measure")
	}
	return nil
}

// variant is a mode run with one GOMAXPROCS setting: one relay and node.
type variant struct {
	Mode
	name       string // the mode's name, and the setting unless it is Go's default
	gomaxprocs int
}

// variants are the relay-and-node set-ups to measure, in column order.
func (c *Config) variants() []variant {
	ns := c.GOMAXPROCS
	if len(ns) == 0 {
		ns = []int{0}
	}
	var vs []variant
	for _, m := range c.Modes {
		for _, n := range ns {
			name := m.Name
			if n > 0 {
				name = fmt.Sprintf("%s,gomaxprocs=%d", m.Name, n)
			}
			vs = append(vs, variant{Mode: m, name: name, gomaxprocs: n})
		}
	}
	return vs
}

// bench is one run.
type bench struct {
	cfg      Config
	exe      string // this program, started again as relay, node and helpers
	svc      *services
	dir      string // temporary state dirs live here
	token    []byte
	progress *progress
	paths    []*path
	children []*child
}

// Run measures the selected workloads on every path and returns the
// figures. It blocks until done or ctx ends; every process it started is
// stopped (by PID) and every temporary file removed before it returns.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	rep, err := run(ctx, cfg)
	if err != nil && ctx.Err() != nil {
		return nil, errors.New("interrupted before it finished; nothing to report")
	}
	return rep, err
}

func run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ws, err := selectWorkloads(cfg.Workloads)
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding this program to start relay and node: %w", err)
	}
	b := &bench{cfg: cfg, exe: exe, progress: newProgress(cfg.Progress), token: cfg.Token}
	defer b.cleanup()
	if b.dir, err = os.MkdirTemp("", "p2prc-bench-*"); err != nil {
		return nil, err
	}
	if b.token == nil {
		b.token = []byte(randomHex(16))
	}
	if b.svc, err = b.startServices(ctx); err != nil {
		return nil, err
	}

	rep := newReport(cfg, ws)
	b.paths = []*path{{name: "direct", addrs: b.svc.addrs()}}
	for _, v := range cfg.variants() {
		b.progress.say("starting relay and node (%s)", v.name)
		p, err := b.startPath(ctx, v)
		if err != nil {
			return nil, err
		}
		b.paths = append(b.paths, p)
	}
	if cfg.Forwarders {
		b.progress.say("starting two forwarders")
		p, err := b.startForwarders(ctx)
		if err != nil {
			return nil, err
		}
		b.paths = append(b.paths, p)
	}
	steps, step := b.countSteps(ws), 0
	for _, w := range ws {
		for round := range cfg.Rounds {
			for _, p := range b.order(round) {
				if !measures(w, p) {
					continue
				}
				step++
				b.progress.say("[%d/%d] %s: %s", step, steps, p.name, w.title)
				res, err := b.measure(ctx, w, p)
				if err != nil {
					return nil, fmt.Errorf("%s via %s: %w", w.name, p.name, err)
				}
				rep.add(w, p.name, res)
			}
		}
	}
	rep.finish()
	return rep, nil
}

// order is the order of the paths in a round: reversed every other round,
// so a load that drifts during a run favours neither path.
func (b *bench) order(round int) []*path {
	if round%2 == 0 {
		return b.paths
	}
	r := slices.Clone(b.paths)
	slices.Reverse(r)
	return r
}

// countSteps is how many measurements the run makes.
func (b *bench) countSteps(ws []workload) int {
	n := 0
	for _, w := range ws {
		for _, p := range b.paths {
			if measures(w, p) {
				n += b.cfg.Rounds
			}
		}
	}
	return n
}

// measures reports whether w runs on p: p reaches w's service (the
// forwarders carry TCP only), and w has a direct figure if p is direct.
func measures(w workload, p *path) bool {
	_, ok := p.addrs[w.service]
	return ok && !(p.direct() && w.relayed)
}

// measure runs w on p and adds the relay's and node's CPU time per unit
// of work moved.
func (b *bench) measure(ctx context.Context, w workload, p *path) (result, error) {
	procs := p.processes()
	before := make([]usage, len(procs))
	for i, np := range procs {
		before[i], _ = readUsage(np.c.pid())
	}
	res, err := w.run(ctx, b, p)
	involved := procs
	if b.svc.proc != nil {
		involved = append(slices.Clone(procs), namedProc{"services", b.svc.proc})
	}
	if c := exitedChild(involved, err != nil); c != nil {
		_, exitErr := c.exited()
		return result{}, c.failure(fmt.Sprintf("during the run (%v)", exitErr))
	}
	if err != nil {
		return result{}, err
	}
	if w.perOp == "" || res.ops <= 0 {
		return res, nil
	}
	unit := "s/" + w.perOp
	scale := 1.0
	if w.perOp != "GB" {
		unit, scale = "µs/"+w.perOp, 1e6
	}
	for i, np := range procs {
		after, err := readUsage(np.c.pid())
		if err != nil {
			continue
		}
		res.figures = append(res.figures, figure{
			metric:  np.role + " CPU " + unit,
			value:   (after.CPU - before[i].CPU).Seconds() * scale / res.ops,
			compare: noCompare,
		})
	}
	return res, nil
}

// exitGrace is how long a failed run waits to learn whether a process it
// needed died: the run sees the reset connections a moment before the
// process is reaped.
const exitGrace = 500 * time.Millisecond

// exitedChild returns the first of procs that has exited, or nil. When the
// run failed it waits up to exitGrace for one to, so a user reads that a
// process died, and its last words, rather than a connection reset.
func exitedChild(procs []namedProc, failed bool) *child {
	deadline := time.Now().Add(exitGrace)
	for {
		for _, np := range procs {
			if ok, _ := np.c.exited(); ok {
				return np.c
			}
		}
		if !failed || time.Now().After(deadline) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// startPath starts a variant's relay (unless it is remote) and node, and
// waits until the node has a public port for every service.
func (b *bench) startPath(ctx context.Context, m variant) (*path, error) {
	p := &path{name: m.name, addrs: make(map[service]string), idle: make(map[string]usage)}
	relayAddr := b.cfg.Relay
	if relayAddr == "" {
		relay, addr, err := b.startRelay(ctx, m)
		if err != nil {
			return nil, err
		}
		p.relay, relayAddr = relay, addr
	}
	node, err := b.startNode(ctx, m, relayAddr, p)
	if err != nil {
		return nil, err
	}
	p.node = node
	return p, p.readIdle()
}

// startForwarders starts the forwarders path: the second forwarder, where
// the node stands, forwards to the services; the first, where the relay
// stands, to the second.
func (b *bench) startForwarders(ctx context.Context) (*path, error) {
	var targets []string
	for _, addr := range b.svc.tcp {
		targets = append(targets, addr)
	}
	second, secondAddrs, err := b.startForwarder(ctx, "forwarder 2 (where the node stands)", targets)
	if err != nil {
		return nil, err
	}
	var hops []string
	for _, t := range targets {
		hops = append(hops, secondAddrs[t])
	}
	first, firstAddrs, err := b.startForwarder(ctx, "forwarder 1 (where the relay stands)", hops)
	if err != nil {
		return nil, err
	}
	p := &path{name: forwardersPath, addrs: make(map[service]string), relay: first, node: second, idle: make(map[string]usage)}
	for svc, addr := range b.svc.tcp {
		if p.addrs[svc] = firstAddrs[secondAddrs[addr]]; p.addrs[svc] == "" {
			return nil, fmt.Errorf("the forwarders gave no port for %s", svc)
		}
	}
	return p, p.readIdle()
}

// startForwarder starts a forwarder process to targets and returns it with
// its listening address for each target.
func (b *bench) startForwarder(ctx context.Context, name string, targets []string) (*child, map[string]string, error) {
	return b.startHelper(ctx, name, "bench", "--serve-forwarder", strings.Join(targets, ","))
}

// startServices starts the TCP services in a process of their own and
// the UDP sink here.
func (b *bench) startServices(ctx context.Context) (*services, error) {
	c, named, err := b.startHelper(ctx, "services", "bench", "--serve-services")
	if err != nil {
		return nil, err
	}
	tcp, err := servicesNamed(named)
	if err != nil {
		return nil, err
	}
	u, err := startUDPSink()
	if err != nil {
		return nil, err
	}
	return &services{tcp: tcp, udp: u, proc: c}, nil
}

// startHelper starts a helper process (services, a forwarder) and waits
// for it to announce where it listens.
func (b *bench) startHelper(ctx context.Context, name string, args ...string) (*child, map[string]string, error) {
	c, err := b.start(name, args, nil)
	if err != nil {
		return nil, nil, err
	}
	line, err := c.waitLine(ctx, c.stdout, func(l string) bool { return strings.HasPrefix(l, listeningLine) }, readyTimeout, "say where it listens")
	if err != nil {
		return nil, nil, err
	}
	m, err := parseListening(line)
	if err != nil {
		return nil, nil, fmt.Errorf("the %s process: %w", name, err)
	}
	return c, m, nil
}

// childEnv is the environment of a relay or node process.
func (b *bench) childEnv(role string, m variant) []string {
	env := []string{"P2PRC_TOKEN=" + string(b.token)}
	if m.gomaxprocs > 0 {
		env = append(env, fmt.Sprintf("GOMAXPROCS=%d", m.gomaxprocs))
	}
	if b.cfg.ProfileDir != "" {
		env = append(env, ProfileEnv+"="+ProfilePath(b.cfg.ProfileDir, role, m.name))
	}
	return env
}

// ProfilePath is where the CPU profile of a relay or node (role) of the
// column named variant goes, in dir.
func ProfilePath(dir, role, variant string) string {
	return filepath.Join(dir, role+"-"+fileName(variant)+".pprof")
}

// fileName makes a variant's name fit a file name: "plain,gomaxprocs=1"
// becomes "plain-gomaxprocs1".
func fileName(name string) string {
	return strings.NewReplacer(",", "-", "=", "").Replace(name)
}

func (b *bench) start(name string, args, env []string) (*child, error) {
	c, err := startChild(name, b.exe, args, env)
	if err != nil {
		return nil, err
	}
	b.children = append(b.children, c)
	return c, nil
}

// cleanup stops the processes (nodes before their relays, the services
// process last), then the UDP sink, and removes the state dirs.
func (b *bench) cleanup() {
	for i := len(b.children) - 1; i >= 0; i-- {
		b.children[i].stop()
	}
	if b.svc != nil {
		b.svc.close()
	}
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
	b.progress.done()
}

func (b *bench) startRelay(ctx context.Context, m variant) (*child, string, error) {
	dir := filepath.Join(b.dir, "relay-"+fileName(m.name))
	args := append([]string{"relay",
		"--listen", "127.0.0.1:0", "--public-host", "127.0.0.1", "--bind-host", "127.0.0.1",
		"--ports", relayPorts, "--name", "bench-relay-" + fileName(m.name),
		"--state", dir, "--log-format", "json",
	}, m.RelayArgs...)
	c, err := b.start("relay", args, b.childEnv("relay", m))
	if err != nil {
		return nil, "", err
	}
	rec, err := c.logRecord(ctx, "relay ready", readyTimeout)
	if err != nil {
		return nil, "", err
	}
	addr, _ := rec["listen"].(string)
	if addr == "" {
		return nil, "", errors.New("the relay said it was ready but not where it listens")
	}
	return c, addr, nil
}

// mappingLine is what a node prints for each port it was granted.
var mappingLine = regexp.MustCompile(`^(tcp|udp) (\S+) -> (\S+)$`)

func (b *bench) startNode(ctx context.Context, m variant, relay string, p *path) (*child, error) {
	args := []string{"node", "--relay", relay, "--once",
		"--name", "bench-node-" + fileName(m.name), "--state", filepath.Join(b.dir, "node-"+fileName(m.name)), "--log-format", "json"}
	want := make(map[string]service) // "tcp 127.0.0.1:N" -> service
	for svc, addr := range b.svc.addrs() {
		args = append(args, "--expose", svc.network()+":"+addr)
		want[svc.network()+" "+addr] = svc
	}
	args = append(args, m.NodeArgs...)
	c, err := b.start("node", args, b.childEnv("node", m))
	if err != nil {
		return nil, err
	}
	_, err = c.waitLine(ctx, c.stdout, func(line string) bool {
		if f := mappingLine.FindStringSubmatch(line); f != nil {
			if svc, ok := want[f[1]+" "+f[2]]; ok {
				p.addrs[svc] = f[3]
			}
		}
		return len(p.addrs) == len(want)
	}, readyTimeout, "get a public port for each of the bench's services")
	return c, err
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// progress writes one line per step to a writer; on a terminal each line
// replaces the last.
type progress struct {
	w        io.Writer
	terminal bool
	started  time.Time
}

func newProgress(w io.Writer) *progress {
	p := &progress{w: w, started: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			p.terminal = true
		}
	}
	return p
}

func (p *progress) say(format string, args ...any) {
	if p.w == nil {
		return
	}
	line := fmt.Sprintf("bench %5.1fs  ", time.Since(p.started).Seconds()) + fmt.Sprintf(format, args...)
	if p.terminal {
		fmt.Fprintf(p.w, "\r\033[K%s", line)
		return
	}
	fmt.Fprintln(p.w, line)
}

// done ends a rewritten progress line.
func (p *progress) done() {
	if p.w != nil && p.terminal {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// machine describes where the bench ran, for the report's header.
func machine() string {
	return fmt.Sprintf("%s/%s, %d CPUs, %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), strings.TrimPrefix(runtime.Version(), "go"))
}
