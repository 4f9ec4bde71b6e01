package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// service names one of the local services the bench measures against,
// directly and through the relay.
type service int

const (
	svcDiscard service = iota // reads to EOF, answers the byte count
	svcEcho                   // echoes whatever arrives
	svcOneShot                // one request, one reply, then closes
	svcUDP                    // counts datagrams
)

var serviceNames = [...]string{"discard", "echo", "one-shot", "udp"}

func (s service) String() string { return serviceNames[s] }

// network is how a node exposes the service.
func (s service) network() string {
	if s == svcUDP {
		return "udp"
	}
	return "tcp"
}

// msgSize is the size of a request and of its reply: a small HTTP exchange.
const msgSize = 128

// ioTimeout bounds any one read or write of a service, so a stuck peer
// cannot hold the bench.
const ioTimeout = 30 * time.Second

// services are the bench's local services, all on loopback. The TCP ones
// run in a process of their own (see ServeServices), as a real service
// does: a load generator sharing a Go runtime with its server wakes it
// without a context switch, which no deployment does. The UDP sink stays in
// the bench's process, which reads its counts.
type services struct {
	tcp  map[service]string // each TCP service's address
	udp  *udpSink
	proc *child // the TCP services' process; nil when they run here
	stop func() // ends the TCP services when they run here
}

// addrs returns each service's address.
func (s *services) addrs() map[service]string {
	m := maps.Clone(s.tcp)
	m[svcUDP] = s.udp.conn.LocalAddr().String()
	return m
}

func (s *services) close() {
	if s.stop != nil {
		s.stop()
	}
	if s.udp != nil {
		s.udp.close()
	}
}

// startLocalServices runs every service in this process (for tests).
func startLocalServices() (*services, error) {
	t, err := startTCPServices()
	if err != nil {
		return nil, err
	}
	u, err := startUDPSink()
	if err != nil {
		t.close()
		return nil, err
	}
	return &services{tcp: t.addrs(), udp: u, stop: t.close}, nil
}

// ServeServices runs the bench's TCP services until ctx ends: the process
// the bench starts with `p2prc bench --serve-services`. It announces their
// addresses on w when they are ready (see announce).
func ServeServices(ctx context.Context, w io.Writer) error {
	t, err := startTCPServices()
	if err != nil {
		return err
	}
	defer t.close()
	named := make(map[string]string)
	for svc, addr := range t.addrs() {
		named[svc.String()] = addr
	}
	return announce(ctx, w, named)
}

// servicesNamed reads the TCP services' addresses out of what a services
// process announced.
func servicesNamed(named map[string]string) (map[service]string, error) {
	m := make(map[service]string)
	for _, svc := range []service{svcDiscard, svcEcho, svcOneShot} {
		addr, ok := named[svc.String()]
		if !ok {
			return nil, fmt.Errorf("the services process gave no address for %s: %v", svc, named)
		}
		m[svc] = addr
	}
	return m, nil
}

// tcpServices are the running TCP services.
type tcpServices map[service]*tcpService

func startTCPServices() (tcpServices, error) {
	handlers := map[service]func(*net.TCPConn){
		svcDiscard: serveDiscard,
		svcEcho:    serveEcho,
		svcOneShot: serveOneShot,
	}
	t := make(tcpServices)
	for svc, h := range handlers {
		s, err := startTCPService(h)
		if err != nil {
			t.close()
			return nil, err
		}
		t[svc] = s
	}
	return t, nil
}

func (t tcpServices) addrs() map[service]string {
	m := make(map[service]string)
	for svc, s := range t {
		m[svc] = s.ln.Addr().String()
	}
	return m
}

func (t tcpServices) close() {
	for _, s := range t {
		s.close()
	}
}

// tcpService accepts connections and runs a handler on each; close ends
// them all and waits for their goroutines.
type tcpService struct {
	ln     *net.TCPListener
	handle func(*net.TCPConn)

	mu     sync.Mutex
	conns  map[*net.TCPConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func startTCPService(handle func(*net.TCPConn)) (*tcpService, error) {
	ln, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	t := &tcpService{ln: ln, handle: handle, conns: make(map[*net.TCPConn]struct{})}
	t.wg.Add(1)
	go t.accept()
	return t, nil
}

func (t *tcpService) accept() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		c, err := t.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of descriptors under a connection storm: wait, don't spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			time.Sleep(delay)
			continue
		}
		delay = 0
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			c.Close()
			return
		}
		t.conns[c] = struct{}{}
		t.wg.Add(1)
		t.mu.Unlock()
		go func() {
			defer t.wg.Done()
			t.handle(c)
			c.Close()
			t.mu.Lock()
			delete(t.conns, c)
			t.mu.Unlock()
		}()
	}
}

func (t *tcpService) close() {
	t.mu.Lock()
	t.closed = true
	t.ln.Close()
	for c := range t.conns {
		c.Close()
	}
	t.mu.Unlock()
	t.wg.Wait()
}

// serveDiscard reads until EOF and answers with the number of bytes read,
// 8 bytes big-endian, so a sender knows when everything has arrived.
func serveDiscard(c *net.TCPConn) {
	buf := make([]byte, 64<<10)
	var n uint64
	for {
		c.SetReadDeadline(time.Now().Add(ioTimeout))
		m, err := c.Read(buf)
		n += uint64(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return
		}
	}
	c.SetWriteDeadline(time.Now().Add(ioTimeout))
	c.Write(binary.BigEndian.AppendUint64(nil, n))
}

// serveEcho writes back whatever it reads, one read at a time, as a
// request/response server does.
func serveEcho(c *net.TCPConn) {
	buf := make([]byte, 4<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			c.SetWriteDeadline(time.Now().Add(ioTimeout))
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// serveOneShot reads one request, writes one reply and closes: a new
// connection per request, the server closing first as HTTP/1.0 does.
func serveOneShot(c *net.TCPConn) {
	var buf [msgSize]byte
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return
	}
	c.Write(buf[:])
}

// udpSink counts the datagrams of the current run. Each datagram starts
// with the run's number and a sequence number (8 bytes each, big-endian);
// stragglers of an earlier run are not counted.
type udpSink struct {
	conn *net.UDPConn
	run  atomic.Uint64

	datagrams, bytes atomic.Int64
	done             chan struct{}
}

const udpHeader = 16

func startUDPSink() (*udpSink, error) {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	c.SetReadBuffer(4 << 20) // the kernel caps it at net.core.rmem_max
	u := &udpSink{conn: c, done: make(chan struct{})}
	go u.read()
	return u, nil
}

func (u *udpSink) read() {
	defer close(u.done)
	buf := make([]byte, 64<<10)
	for {
		n, _, err := u.conn.ReadFromUDP(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if n >= udpHeader && binary.BigEndian.Uint64(buf) == u.run.Load() {
			u.datagrams.Add(1)
			u.bytes.Add(int64(n))
		}
	}
}

// begin starts counting a new run and returns its number.
func (u *udpSink) begin() uint64 {
	run := u.run.Add(1)
	u.datagrams.Store(0)
	u.bytes.Store(0)
	return run
}

// counts returns what run delivered so far.
func (u *udpSink) counts() (datagrams, bytes int64) {
	return u.datagrams.Load(), u.bytes.Load()
}

func (u *udpSink) close() {
	u.conn.Close()
	<-u.done
}
