// Package portalloc decides which public port a request gets: inside the
// relay's range, owned by no other node, and free on the host — proved by
// binding it and handing the bound socket on, so there is no window between
// check and use.
package portalloc

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"syscall"
)

// Errors callers branch on; each refusal's message says what to do.
var (
	// ErrOutOfRange: the wanted port is outside the relay's range.
	ErrOutOfRange = errors.New("port outside the relay's range")
	// ErrOwned: a mapping holds the wanted port. Errors wrapping
	// ErrOwnedBySelf wrap ErrOwned too.
	ErrOwned = errors.New("port owned by a node")
	// ErrOwnedBySelf: the requesting node itself holds the wanted port, so
	// the caller should hand back the socket it already holds.
	ErrOwnedBySelf = errors.New("port already mapped by the same node")
	// ErrInUse: another program on the relay host has the wanted port.
	ErrInUse = errors.New("port in use on the relay host")
	// ErrExhausted: no port in the range is both unowned and free.
	ErrExhausted = errors.New("no free port in the relay's range")
)

// Owners says which node holds a public port; registry.Mappings is one.
type Owners interface {
	// Owner returns the identity holding port on network ("tcp" or "udp");
	// ok is false when nobody holds it.
	Owner(network string, port int) (owner string, ok bool)
}

// Allocator grants public ports. It holds no state of its own: the kernel
// decides races (one bind wins), so it is safe for concurrent use.
type Allocator struct {
	Range    Range  // ports it may grant; the zero Range grants nothing
	BindHost string // host to bind granted ports on; "" = all interfaces
	Owners   Owners // who holds which port; nil = nobody holds anything

	// ListenConfig binds granted TCP ports (socket options for visitors,
	// say); the zero value is Go's default.
	ListenConfig net.ListenConfig

	// randIntN picks where a scan starts; nil = math/rand/v2.IntN.
	randIntN func(n int) int
}

// Grant is a port bound for one network, ready to serve visitors.
type Grant struct {
	Network  string           // "tcp" or "udp"
	Port     int              // the public port
	Listener *net.TCPListener // set for tcp
	Conn     *net.UDPConn     // set for udp
}

// Close releases the bound socket. It is safe on a zero Grant.
func (g Grant) Close() error {
	switch {
	case g.Listener != nil:
		return g.Listener.Close()
	case g.Conn != nil:
		return g.Conn.Close()
	}
	return nil
}

// Allocate binds a port for owner on network ("tcp" or "udp"). With wanted
// 0 the allocator chooses, starting at a random port in the range and
// trying each once, skipping ports any node holds (owner's own included: a
// caller re-using its own mapping already holds that socket). Otherwise it
// grants wanted or refuses with ErrOutOfRange, ErrOwned, ErrOwnedBySelf or
// ErrInUse. The caller owns the Grant and must Close it when done.
func (a *Allocator) Allocate(network, owner string, wanted int) (Grant, error) {
	if network != "tcp" && network != "udp" {
		return Grant{}, fmt.Errorf("network %q is not tcp or udp", network)
	}
	if !a.Range.valid() {
		return Grant{}, fmt.Errorf("port range %v is not usable; configure --ports as LO-HI", a.Range)
	}
	if wanted == 0 {
		return a.choose(network)
	}
	return a.allocateWanted(network, owner, wanted)
}

// Rebind binds port again for the mapping that already owns it — after a
// relay restart, or when a node comes back for a port the relay could not
// keep. It skips the range and ownership checks (the mapping's owner is
// the caller's business) and refuses with ErrInUse when another program
// holds the port.
func (a *Allocator) Rebind(network string, port int) (Grant, error) {
	if network != "tcp" && network != "udp" {
		return Grant{}, fmt.Errorf("network %q is not tcp or udp", network)
	}
	g, err := a.bind(network, port)
	if isInUse(err) {
		return Grant{}, refuse(ErrInUse, "port %d/%s is in use by another program on the relay host", port, network)
	}
	return g, err
}

func (a *Allocator) allocateWanted(network, owner string, port int) (Grant, error) {
	if !a.Range.Contains(port) {
		return Grant{}, refuse(ErrOutOfRange, "port %d is outside this relay's range %v; ask for a port in the range or let the relay choose", port, a.Range)
	}
	if holder, ok := a.owner(network, port); ok {
		if owner != "" && holder == owner {
			return Grant{}, refuse(ErrOwnedBySelf, "port %d/%s is already mapped by you", port, network)
		}
		return Grant{}, refuse(ErrOwned, "port %d/%s is owned by another node; ask for another port or let the relay choose", port, network)
	}
	g, err := a.bind(network, port)
	if isInUse(err) {
		return Grant{}, refuse(ErrInUse, "port %d/%s is in use by another program on the relay host; ask for another port or let the relay choose", port, network)
	}
	return g, err
}

// choose scans the whole range once from a random start, wrapping around.
func (a *Allocator) choose(network string) (Grant, error) {
	size := a.Range.Size()
	randIntN := a.randIntN
	if randIntN == nil {
		randIntN = rand.IntN
	}
	start := randIntN(size)
	owned, inUse := 0, 0
	for i := range size {
		port := a.Range.Lo + (start+i)%size
		if _, ok := a.owner(network, port); ok {
			owned++
			continue
		}
		g, err := a.bind(network, port)
		if isInUse(err) {
			inUse++
			continue
		}
		return g, err
	}
	return Grant{}, refuse(ErrExhausted, "no free %s port left in %v (%d owned by nodes, %d in use on the host); widen --ports", network, a.Range, owned, inUse)
}

func (a *Allocator) owner(network string, port int) (string, bool) {
	if a.Owners == nil {
		return "", false
	}
	return a.Owners.Owner(network, port)
}

// bind claims port on the host; a nil error means the Grant holds it.
func (a *Allocator) bind(network string, port int) (Grant, error) {
	addr := net.JoinHostPort(a.BindHost, strconv.Itoa(port))
	g := Grant{Network: network, Port: port}
	var err error
	if network == "tcp" {
		var ln net.Listener
		if ln, err = a.ListenConfig.Listen(context.Background(), "tcp", addr); err == nil {
			g.Listener = ln.(*net.TCPListener)
		}
	} else {
		var pc net.PacketConn
		if pc, err = net.ListenPacket("udp", addr); err == nil {
			g.Conn = pc.(*net.UDPConn)
		}
	}
	if err != nil {
		return Grant{}, fmt.Errorf("cannot bind port %d/%s on the relay host: %w", port, network, err)
	}
	return g, nil
}

func isInUse(err error) bool { return errors.Is(err, syscall.EADDRINUSE) }

// refusal is an error whose message is written for the user and which
// wraps the sentinel a caller branches on.
type refusal struct {
	msg  string
	kind error
}

func refuse(kind error, format string, args ...any) error {
	return &refusal{msg: fmt.Sprintf(format, args...), kind: kind}
}

func (r *refusal) Error() string { return r.msg }

func (r *refusal) Unwrap() []error {
	if r.kind == ErrOwnedBySelf {
		return []error{ErrOwnedBySelf, ErrOwned}
	}
	return []error{r.kind}
}
