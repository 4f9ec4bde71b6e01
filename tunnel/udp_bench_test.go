package tunnel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkUDP offers 1,400-byte datagrams at fixed rates to a counting sink,
// directly and through a relay and node on loopback, in the same run, with
// each UDP framing: one stream per mapping (the relay's) and one stream per
// flow (measured against it). b.N is the number of datagrams sent, paced at
// the offered rate, so a run lasts about -benchtime. Metrics:
//
//   - delivered-Mbit/s: what reached the sink, over the sending time
//   - loss-%: datagrams sent but never delivered
//   - offered-Mbit/s: what the sender managed to send (it shares the CPUs)
//   - cpu-ns/datagram: CPU time (user and system) of the whole process —
//     sender, sink, and relay and node if any — per datagram sent
//   - sink-drop-%, relay-drop-%: datagrams the kernel dropped because the
//     sink's or the relay's public socket was full (Linux; what is left of
//     the loss was dropped by the tunnel itself)
//   - rtt-p50-µs, rtt-p99-µs: round trips of a small probe datagram every
//     millisecond on a flow of its own, under that load
//
// flows=64 spreads the load over 64 visitors. Run it with
//
//	go test -run '^$' -bench BenchmarkUDP$ -benchtime 2s ./tunnel/
func BenchmarkUDP(b *testing.B) {
	sink := startUDPSink(b)
	targets := []struct{ name, addr string }{
		{"direct", sink.addr},
		{"stream-per-mapping", benchTunnelFor(b, Expose{Network: "udp", Local: sink.addr}, false)},
		{"stream-per-flow", benchTunnelFor(b, Expose{Network: "udp", Local: sink.addr}, true)},
	}
	for _, flows := range []int{1, 64} {
		for _, mbit := range []int{200, 500, 1000} {
			for _, tg := range targets {
				b.Run(fmt.Sprintf("flows=%d/%dMbit/%s", flows, mbit, tg.name), func(b *testing.B) {
					benchUDPLoad(b, sink, tg.addr, mbit, flows)
				})
			}
		}
	}
}

const (
	benchDatagram = 1400
	probeMark     = 'P' // a probe's first byte: the sink echoes it
)

// udpSink counts the datagrams it gets and echoes probes.
type udpSink struct {
	addr  string
	count atomic.Int64
}

func startUDPSink(b *testing.B) *udpSink {
	s := &udpSink{}
	s.addr = startUDPService(b, func(_ netip.AddrPort, d []byte) []byte {
		if len(d) > 0 && d[0] == probeMark {
			return d
		}
		s.count.Add(1)
		return nil
	})
	return s
}

func benchDial(b *testing.B, addr string) *net.UDPConn {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		b.Fatal(err)
	}
	setUDPBuffers(c, 4<<20)
	return c
}

func benchUDPLoad(b *testing.B, sink *udpSink, addr string, mbit, flows int) {
	conns := make([]*net.UDPConn, flows)
	for i := range conns {
		conns[i] = benchDial(b, addr)
		defer conns[i].Close()
	}
	// Open every flow before the clock starts.
	for _, c := range conns {
		c.Write(make([]byte, benchDatagram))
	}
	waitQuiet(&sink.count)

	probe := startProbe(b, addr)
	interval := time.Duration(float64(time.Second) * benchDatagram * 8 / (float64(mbit) * 1e6))
	buf := make([]byte, benchDatagram)
	before := sink.count.Load()
	sinkPort, publicPort := portNumber(sink.addr), portNumber(addr)
	sinkDrops0, publicDrops0 := socketDrops(sinkPort), socketDrops(publicPort)
	cpu0 := cpuTime()
	b.SetBytes(benchDatagram)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if ahead := time.Until(start.Add(time.Duration(i) * interval)); ahead > 500*time.Microsecond {
			time.Sleep(ahead)
		}
		conns[i%flows].Write(buf)
	}
	sent := time.Since(start)
	b.StopTimer()
	rtts := probe.stop()
	delivered := waitQuiet(&sink.count) - before
	cpu := cpuTime() - cpu0
	sinkDrops := socketDrops(sinkPort) - sinkDrops0

	seconds := sent.Seconds()
	b.ReportMetric(float64(delivered)*benchDatagram*8/seconds/1e6, "delivered-Mbit/s")
	b.ReportMetric(float64(b.N)*benchDatagram*8/seconds/1e6, "offered-Mbit/s")
	b.ReportMetric(100*float64(int64(b.N)-delivered)/float64(b.N), "loss-%")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/datagram")
	b.ReportMetric(100*float64(sinkDrops)/float64(b.N), "sink-drop-%")
	if publicPort != sinkPort {
		b.ReportMetric(100*float64(socketDrops(publicPort)-publicDrops0)/float64(b.N), "relay-drop-%")
	}
	if len(rtts) > 0 {
		slices.Sort(rtts)
		b.ReportMetric(float64(rtts[len(rtts)/2].Microseconds()), "rtt-p50-µs")
		b.ReportMetric(float64(rtts[len(rtts)*99/100].Microseconds()), "rtt-p99-µs")
	}
}

// waitQuiet waits until n has stopped growing for 250 ms (at most 5 s) and
// returns it: the datagrams in flight have arrived or are lost. (On a busy
// machine a shorter pause can be a relay or node waiting for a CPU.)
func waitQuiet(n *atomic.Int64) int64 {
	last := n.Load()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(250 * time.Millisecond)
		cur := n.Load()
		if cur == last {
			break
		}
		last = cur
	}
	return last
}

// probe measures round trips of small datagrams on a flow of its own.
type probe struct {
	stop func() []time.Duration
}

func startProbe(b *testing.B, addr string) probe {
	c := benchDial(b, addr)
	var (
		mu   sync.Mutex
		rtts []time.Duration
		wg   sync.WaitGroup
		done = make(chan struct{})
	)
	epoch := time.Now()
	wg.Go(func() { // reader
		buf := make([]byte, 64)
		for {
			n, err := c.Read(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if n == 9 {
				sentAt := time.Duration(binary.BigEndian.Uint64(buf[1:]))
				mu.Lock()
				rtts = append(rtts, time.Since(epoch)-sentAt)
				mu.Unlock()
			}
		}
	})
	wg.Go(func() { // sender, one probe a millisecond
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		msg := make([]byte, 9)
		msg[0] = probeMark
		for {
			select {
			case <-done:
				return
			case <-t.C:
				binary.BigEndian.PutUint64(msg[1:], uint64(time.Since(epoch)))
				c.Write(msg)
			}
		}
	})
	return probe{stop: func() []time.Duration {
		close(done)
		time.Sleep(20 * time.Millisecond) // the last replies
		c.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		return rtts
	}}
}

// BenchmarkUDPFlowMemory opens 500 flows through a fresh relay and node
// (both in this process) per op and reports what a flow costs them
// together, for each framing: heap and stack bytes, and goroutines.
func BenchmarkUDPFlowMemory(b *testing.B) {
	const flows = 500
	for _, tc := range []struct {
		name    string
		perFlow bool
	}{{"stream-per-mapping", false}, {"stream-per-flow", true}} {
		b.Run(tc.name, func(b *testing.B) {
			echo := startUDPSink(b)
			var bytes, goroutines float64
			for range b.N {
				addr := benchTunnelFor(b, Expose{Network: "udp", Local: echo.addr}, tc.perFlow)
				conns := make([]*net.UDPConn, flows)
				for i := range conns {
					conns[i] = benchDial(b, addr)
				}
				before, g0 := memInUse()
				msg := []byte{probeMark, 1, 2, 3}
				buf := make([]byte, 16)
				for _, c := range conns {
					for range 3 { // a datagram may be lost; one echo proves the flow is open
						c.Write(msg)
						c.SetReadDeadline(time.Now().Add(time.Second))
						if _, err := c.Read(buf); err == nil {
							break
						}
					}
				}
				after, g1 := memInUse()
				bytes += float64(after-before) / flows
				goroutines += float64(g1-g0) / flows
				for _, c := range conns {
					c.Close()
				}
			}
			b.ReportMetric(bytes/float64(b.N), "B/flow")
			b.ReportMetric(goroutines/float64(b.N), "goroutines/flow")
		})
	}
}

// memInUse returns the heap and stack bytes in use after a collection, and
// the number of goroutines.
func memInUse() (bytes int64, goroutines int) {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse), runtime.NumGoroutine()
}

func portNumber(addr string) int {
	return int(netip.MustParseAddrPort(addr).Port())
}

// socketDrops returns the drop count Linux keeps for the IPv4 UDP socket
// bound to 127.0.0.1:port (0 where /proc/net/udp is not to be had).
func socketDrops(port int) int64 {
	data, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		return 0
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) >= 13 && f[1] == local {
			n, _ := strconv.ParseInt(f[12], 10, 64)
			return n
		}
	}
	return 0
}
