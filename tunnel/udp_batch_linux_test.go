//go:build linux && (amd64 || arm64)

package tunnel

import (
	"bytes"
	"net"
	"net/netip"
	"testing"
	"time"
)

// A run of datagrams written at once arrives as the same datagrams: GSO and
// sendmmsg neither merge nor cut them, whatever the mix of sizes.
func TestUDPWriterKeepsDatagrams(t *testing.T) {
	rx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	setUDPBuffers(rx, 4<<20)
	tx, err := net.DialUDP("udp", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()

	var run [][]byte
	for i, size := range []int{1400, 1400, 1400, 1400, 700, 1400, 1, 0, 8000, 8000, 60000, 1400, 1400, 1399, 1400} {
		run = append(run, bytes.Repeat([]byte{byte(i + 1)}, size))
	}
	for range 50 { // a long run, longer than one GSO send
		run = append(run, bytes.Repeat([]byte{99}, 1400))
	}
	var w udpWriter
	if failed := w.write(tx, run); failed != 0 {
		t.Fatalf("%d datagrams refused", failed)
	}
	if w.noGSO {
		t.Errorf("the kernel refused UDP GSO; runs go by sendmmsg")
	}
	buf := make([]byte, maxUDPPayload)
	for i, want := range run {
		rx.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := rx.Read(buf)
		if err != nil {
			t.Fatalf("datagram %d: %v", i, err)
		}
		if !bytes.Equal(buf[:n], want) {
			t.Fatalf("datagram %d: got %d bytes, want %d (equal: %v)", i, n, len(want), bytes.Equal(buf[:n], want))
		}
	}
}

// writeTo sends each datagram of a run to its own destination, whole.
func TestUDPWriterWriteToKeepsDestinations(t *testing.T) {
	var rxs [3]*net.UDPConn
	var to []netip.AddrPort
	for i := range rxs {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rxs[i] = c
	}
	tx, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	var payloads [][]byte
	for i := range 40 {
		payloads = append(payloads, bytes.Repeat([]byte{byte(i)}, 100+i*300))
		to = append(to, rxs[i%3].LocalAddr().(*net.UDPAddr).AddrPort())
	}
	var w udpWriter
	if failed := w.writeTo(tx, payloads, to); failed != 0 {
		t.Fatalf("%d datagrams failed", failed)
	}
	buf := make([]byte, maxUDPPayload)
	for i, want := range payloads {
		rx := rxs[i%3]
		rx.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := rx.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], want) {
			t.Fatalf("datagram %d at receiver %d: %d bytes, %v; want %d bytes", i, i%3, n, err, len(want))
		}
	}
}
