package bench

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A workload is one group of rows in the table: the load it drives, the
// local service it drives it against, and what it measures.
type workload struct {
	name    string  // as given to --workloads
	title   string  // in the table
	service service // the local service it needs
	relayed bool    // measured through the relay only (no direct figure)

	// perOp, if set, divides the relay's and node's CPU time by what the
	// run moved: "GB", "req" or "conn" (see result.ops).
	perOp string

	run func(ctx context.Context, b *bench, p *path) (result, error)
}

// result is what one run of a workload measured.
type result struct {
	figures []figure
	ops     float64 // units of perOp moved, for CPU per op
	note    string  // something the reader should know (failures), or ""
}

// figure is one measured number.
type figure struct {
	metric  string // "Gbit/s", "p50 ms", ...
	value   float64
	compare compare
}

// compare says how the relayed figure is set beside the direct one.
type compare int

const (
	byRatio  compare = iota // relay ÷ direct
	byPoints                // relay − direct, for percentages
	noCompare
)

// udpDatagram is the size of each UDP datagram the bench sends.
const udpDatagram = 1400

// workloads is every workload, in the order they run and print. Adding one
// is adding a line here and, if it needs a new kind of local service, a
// handler in services.go.
var workloads = []workload{
	{name: "tcp-1", title: "TCP bulk, 1 stream", service: svcDiscard, perOp: "GB", run: bulk(1)},
	{name: "tcp-8", title: "TCP bulk, 8 streams", service: svcDiscard, perOp: "GB", run: bulk(8)},
	{name: "rr", title: "requests on kept-alive connections", service: svcEcho, perOp: "req", run: requests},
	{name: "conn", title: "a new connection per request", service: svcOneShot, perOp: "conn", run: connections},
	{name: "udp-200m", title: "UDP, 200 Mbit/s offered", service: svcUDP, perOp: "GB", run: udpLoad(200e6)},
	{name: "udp-1g", title: "UDP, 1 Gbit/s offered", service: svcUDP, perOp: "GB", run: udpLoad(1e9)},
	{name: "mem", title: "memory", service: svcEcho, relayed: true, run: memory},
}

// WorkloadNames lists the names Config.Workloads accepts.
func WorkloadNames() string {
	var names []string
	for _, w := range workloads {
		names = append(names, w.name)
	}
	return strings.Join(names, ",")
}

// selectWorkloads returns the named workloads, in table order; none named
// means all.
func selectWorkloads(names []string) ([]workload, error) {
	if len(names) == 0 {
		return workloads, nil
	}
	var out []workload
	for _, n := range names {
		i := slices.IndexFunc(workloads, func(w workload) bool { return w.name == n })
		if i < 0 {
			return nil, fmt.Errorf("unknown workload %q: choose from %s", n, WorkloadNames())
		}
	}
	for _, w := range workloads {
		if slices.Contains(names, w.name) {
			out = append(out, w)
		}
	}
	return out, nil
}

// path is one way to a local service: direct, or through a relay and node
// running in one mode.
type path struct {
	name  string             // "direct", or the mode's name
	addrs map[service]string // where each service is reached this way
	relay *child             // nil when direct or for a remote relay; the first forwarder
	node  *child             // nil when direct; the second forwarder
	idle  map[string]usage   // each process's usage once ready, by role
}

// namedProc is a child with its role.
type namedProc struct {
	role string // "relay" or "node"
	c    *child
}

func (p *path) direct() bool { return p.node == nil }

// readIdle notes each process's usage once the path is ready.
func (p *path) readIdle() error {
	for _, np := range p.processes() {
		u, err := readUsage(np.c.pid())
		if err != nil {
			return fmt.Errorf("reading the %s's usage: %w", np.role, err)
		}
		p.idle[np.role] = u
	}
	return nil
}

// processes returns the relay and node processes of p that run here.
func (p *path) processes() []namedProc {
	var ps []namedProc
	if p.relay != nil {
		ps = append(ps, namedProc{"relay", p.relay})
	}
	if p.node != nil {
		ps = append(ps, namedProc{"node", p.node})
	}
	return ps
}

// deadlineFor bounds a whole run: its duration and time to finish.
func deadlineFor(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, d+ioTimeout)
}
