package portalloc

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// owners is a fixed Owners for tests, keyed like "tcp/30000".
type owners map[string]string

func (o owners) Owner(network string, port int) (string, bool) {
	owner, ok := o[fmt.Sprintf("%s/%d", network, port)]
	return owner, ok
}

// freeRange finds n consecutive ports in 20000-32000 that are free for both
// tcp and udp on 127.0.0.1 right now, so tests tolerate a busy machine. The
// range lies below Linux's ephemeral ports (32768-60999), where the
// TIME-WAIT sockets of outgoing connections hold ports that cannot be bound.
func freeRange(t *testing.T, n int) Range {
	t.Helper()
	for range 100 {
		lo := 20000 + rand.IntN(12000-n)
		r := Range{lo, lo + n - 1}
		if rangeIsFree(r) {
			return r
		}
	}
	t.Fatalf("found no %d free consecutive ports in 20000-32000", n)
	return Range{}
}

func rangeIsFree(r Range) bool {
	for p := r.Lo; p <= r.Hi; p++ {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return false
		}
		ln.Close()
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return false
		}
		pc.Close()
	}
	return true
}

func allocator(r Range, o Owners) *Allocator {
	return &Allocator{Range: r, BindHost: "127.0.0.1", Owners: o}
}

func mustAllocate(t *testing.T, a *Allocator, network, owner string, wanted int) Grant {
	t.Helper()
	g, err := a.Allocate(network, owner, wanted)
	if err != nil {
		t.Fatalf("Allocate(%s, %q, %d): %v", network, owner, wanted, err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// occupy binds port like another program on the host would.
func occupy(t *testing.T, network string, port int) {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	var err error
	if network == "tcp" {
		var ln net.Listener
		ln, err = net.Listen(network, addr)
		if err == nil {
			t.Cleanup(func() { ln.Close() })
		}
	} else {
		var pc net.PacketConn
		pc, err = net.ListenPacket(network, addr)
		if err == nil {
			t.Cleanup(func() { pc.Close() })
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestChosenPortIsInRangeAndBound(t *testing.T) {
	r := freeRange(t, 10)
	a := allocator(r, nil)
	for _, network := range []string{"tcp", "udp"} {
		g := mustAllocate(t, a, network, "aa", 0)
		if !r.Contains(g.Port) || g.Network != network {
			t.Fatalf("granted %d/%s, want a %s port in %v", g.Port, g.Network, network, r)
		}
		if (g.Listener != nil) != (network == "tcp") || (g.Conn != nil) != (network == "udp") {
			t.Fatalf("%s grant holds the wrong socket: %+v", network, g)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(g.Port))
		if network == "tcp" {
			if ln, err := net.Listen("tcp", addr); err == nil {
				ln.Close()
				t.Fatal("a granted tcp port could be bound again")
			}
		} else if pc, err := net.ListenPacket("udp", addr); err == nil {
			pc.Close()
			t.Fatal("a granted udp port could be bound again")
		}
	}
}

func TestWantedPortGranted(t *testing.T) {
	r := freeRange(t, 4)
	g := mustAllocate(t, allocator(r, owners{}), "tcp", "aa", r.Lo+2)
	if g.Port != r.Lo+2 {
		t.Fatalf("granted %d, want %d", g.Port, r.Lo+2)
	}
	conn, err := net.Dial("tcp", g.Listener.Addr().String())
	if err != nil {
		t.Fatalf("the granted listener does not accept: %v", err)
	}
	conn.Close()
}

func TestRefusals(t *testing.T) {
	r := freeRange(t, 4)
	o := owners{fmt.Sprintf("tcp/%d", r.Lo): "bb", fmt.Sprintf("tcp/%d", r.Lo+1): "aa"}
	a := allocator(r, o)
	occupy(t, "tcp", r.Lo+2)
	tests := []struct {
		name    string
		port    int
		is      error
		isNot   error
		message string
	}{
		{"out of range", r.Hi + 1, ErrOutOfRange, nil, fmt.Sprintf("port %d is outside this relay's range %v; ask for a port in the range", r.Hi+1, r)},
		{"owned by another", r.Lo, ErrOwned, ErrOwnedBySelf, fmt.Sprintf("port %d/tcp is owned by another node", r.Lo)},
		{"owned by self", r.Lo + 1, ErrOwnedBySelf, nil, fmt.Sprintf("port %d/tcp is already mapped by you", r.Lo+1)},
		{"in use", r.Lo + 2, ErrInUse, nil, fmt.Sprintf("port %d/tcp is in use by another program on the relay host", r.Lo+2)},
	}
	for _, tt := range tests {
		_, err := a.Allocate("tcp", "aa", tt.port)
		if !errors.Is(err, tt.is) || (tt.isNot != nil && errors.Is(err, tt.isNot)) {
			t.Errorf("%s: Allocate = %v; want errors.Is %v and not %v", tt.name, err, tt.is, tt.isNot)
			continue
		}
		if !strings.Contains(err.Error(), tt.message) {
			t.Errorf("%s: message %q lacks %q", tt.name, err, tt.message)
		}
	}
	if _, err := a.Allocate("tcp", "aa", r.Lo+1); !errors.Is(err, ErrOwned) {
		t.Errorf("a self-owned refusal should also be ErrOwned: %v", err)
	}
	if _, err := a.Allocate("tcp", "", r.Lo+1); errors.Is(err, ErrOwnedBySelf) {
		t.Errorf("an anonymous request was told it owns a port: %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	r := freeRange(t, 2)
	if _, err := allocator(r, nil).Allocate("sctp", "aa", 0); err == nil || !strings.Contains(err.Error(), "not tcp or udp") {
		t.Errorf("Allocate(sctp) = %v", err)
	}
	if _, err := allocator(Range{}, nil).Allocate("tcp", "aa", 0); err == nil || !strings.Contains(err.Error(), "--ports") {
		t.Errorf("Allocate with no range = %v", err)
	}
}

func TestExhausted(t *testing.T) {
	r := freeRange(t, 3)
	a := allocator(r, owners{fmt.Sprintf("udp/%d", r.Lo): "bb"})
	occupy(t, "udp", r.Lo+1)
	if g := mustAllocate(t, a, "udp", "aa", 0); g.Port != r.Lo+2 {
		t.Fatalf("granted %d, want the only free port %d", g.Port, r.Lo+2)
	}
	_, err := a.Allocate("udp", "aa", 0)
	want := fmt.Sprintf("no free udp port left in %v (1 owned by nodes, 2 in use on the host); widen --ports", r)
	if !errors.Is(err, ErrExhausted) || err.Error() != want {
		t.Fatalf("Allocate on a full range = %v; want ErrExhausted saying %q", err, want)
	}
}

func TestBusyPortIsSkipped(t *testing.T) {
	r := freeRange(t, 2)
	occupy(t, "tcp", r.Lo)
	a := allocator(r, nil)
	a.randIntN = func(int) int { return 0 } // start the scan on the busy port
	if g := mustAllocate(t, a, "tcp", "aa", 0); g.Port != r.Lo+1 {
		t.Fatalf("granted %d, want %d past the busy port", g.Port, r.Lo+1)
	}
}

func TestScanWraps(t *testing.T) {
	r := freeRange(t, 3)
	a := allocator(r, owners{fmt.Sprintf("tcp/%d", r.Hi): "aa"})
	a.randIntN = func(int) int { return 2 } // start on the owned last port
	if g := mustAllocate(t, a, "tcp", "aa", 0); g.Port != r.Lo {
		t.Fatalf("granted %d, want %d after wrapping", g.Port, r.Lo)
	}
}

func TestTCPAndUDPShareAPortNumber(t *testing.T) {
	r := freeRange(t, 1)
	a := allocator(r, nil)
	tcp := mustAllocate(t, a, "tcp", "aa", r.Lo)
	udp := mustAllocate(t, a, "udp", "bb", r.Lo)
	if tcp.Port != udp.Port {
		t.Fatalf("tcp %d and udp %d", tcp.Port, udp.Port)
	}
}

func TestConcurrentAllocateNeverGrantsTwice(t *testing.T) {
	const size, callers = 16, 48
	r := freeRange(t, size)
	a := allocator(r, nil)
	var (
		mu     sync.Mutex
		grants []Grant
		wg     sync.WaitGroup
	)
	for range callers {
		wg.Go(func() {
			g, err := a.Allocate("tcp", "aa", 0)
			if err != nil {
				if !errors.Is(err, ErrExhausted) {
					t.Error(err)
				}
				return
			}
			mu.Lock()
			grants = append(grants, g)
			mu.Unlock()
		})
	}
	wg.Wait()
	seen := map[int]bool{}
	for _, g := range grants {
		if seen[g.Port] {
			t.Errorf("port %d granted twice", g.Port)
		}
		seen[g.Port] = true
		g.Close()
	}
	if len(grants) != size {
		t.Errorf("%d grants from a range of %d free ports", len(grants), size)
	}
}

func TestGrantClose(t *testing.T) {
	if err := (Grant{}).Close(); err != nil {
		t.Fatal(err)
	}
	r := freeRange(t, 1)
	a := allocator(r, nil)
	g, err := a.Allocate("udp", "aa", r.Lo)
	if err != nil {
		t.Fatal(err)
	}
	g.Close()
	g2 := mustAllocate(t, a, "udp", "aa", r.Lo) // released, so grantable again
	if g2.Port != r.Lo {
		t.Fatal("closed grant's port was not granted again")
	}
}

// Rebind takes back a port its mapping owns, and says so when another
// program holds it.
func TestRebind(t *testing.T) {
	r := freeRange(t, 2)
	a := allocator(r, owners{fmt.Sprintf("tcp/%d", r.Lo): "node-a", fmt.Sprintf("tcp/%d", r.Hi): "node-a"})
	g, err := a.Rebind("tcp", r.Lo)
	if err != nil || g.Port != r.Lo || g.Listener == nil {
		t.Fatalf("Rebind: %+v, %v", g, err)
	}
	defer g.Close()
	occupy(t, "tcp", r.Hi)
	if _, err := a.Rebind("tcp", r.Hi); !errors.Is(err, ErrInUse) {
		t.Fatalf("Rebind of a port in use: %v, want ErrInUse", err)
	}
}
