//go:build linux && (amd64 || arm64)

package tunnel

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"unsafe"
)

// Linux moves many datagrams per system call (recvmmsg, sendmmsg). At
// 1 Gbit/s of 1,400-byte datagrams a system call per datagram is most of
// the relay's and the node's work, so the relay's public ports read in
// batches and the node writes each run of datagrams for one flow at once.

// udpBatch is the most datagrams one system call moves.
const udpBatch = 16

var sysRecvmmsg, sysSendmmsg = func() (uintptr, uintptr) {
	if runtime.GOARCH == "arm64" {
		return 243, 269
	}
	return 299, 307 // amd64
}()

// mmsghdr is struct mmsghdr: a msghdr and the length the kernel moved.
type mmsghdr struct {
	hdr syscall.Msghdr
	n   uint32
}

// readSet is the memory one batched read fills: a datagram and its sender
// per slot. Sets are pooled, and a port holds one only while it has
// datagrams to handle, so a quiet port holds none.
type readSet struct {
	msgs  [udpBatch]mmsghdr
	iovs  [udpBatch]syscall.Iovec
	names [udpBatch]syscall.RawSockaddrInet6
	bufs  [udpBatch][maxUDPPayload]byte
}

var readSets = sync.Pool{New: func() any {
	s := new(readSet)
	for i := range s.msgs {
		s.iovs[i].Base = &s.bufs[i][0]
		s.iovs[i].SetLen(maxUDPPayload)
		s.msgs[i].hdr.Iov = &s.iovs[i]
		s.msgs[i].hdr.Iovlen = 1
		s.msgs[i].hdr.Name = (*byte)(unsafe.Pointer(&s.names[i]))
	}
	return s
}}

// udpReader reads a public port's datagrams, up to udpBatch per call.
type udpReader struct {
	rc  syscall.RawConn
	set *readSet // held between read and release
}

func newUDPReader(c *net.UDPConn) *udpReader {
	rc, _ := c.SyscallConn() // a *net.UDPConn always has one
	return &udpReader{rc: rc}
}

// read waits for datagrams (honouring the read deadline) and returns how
// many it read; datagram gives them, release frees them.
func (r *udpReader) read() (int, error) {
	var n int
	var errno syscall.Errno
	err := r.rc.Read(func(fd uintptr) bool {
		s := readSets.Get().(*readSet)
		for i := range s.msgs {
			s.msgs[i].hdr.Namelen = syscall.SizeofSockaddrInet6
			s.msgs[i].hdr.Flags = 0
		}
		for {
			got, _, e := syscall.Syscall6(sysRecvmmsg, fd, uintptr(unsafe.Pointer(&s.msgs[0])), udpBatch, syscall.MSG_DONTWAIT, 0, 0)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				readSets.Put(s)
				return false // wait until readable
			case 0:
				r.set, n = s, int(got)
			default:
				readSets.Put(s)
				errno = e
			}
			return true
		}
	})
	if err != nil {
		return 0, err
	}
	if errno != 0 {
		return 0, errno
	}
	return n, nil
}

// datagram returns the i-th datagram read and its sender. The bytes are
// valid until release.
func (r *udpReader) datagram(i int) ([]byte, netip.AddrPort) {
	s := r.set
	data := s.bufs[i][:s.msgs[i].n]
	sa := &s.names[i]
	port := uint16(sa.Port<<8 | sa.Port>>8) // network byte order
	switch sa.Family {
	case syscall.AF_INET:
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		return data, netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case syscall.AF_INET6:
		a := netip.AddrFrom16(sa.Addr)
		if sa.Scope_id != 0 {
			a = a.WithZone(strconv.FormatUint(uint64(sa.Scope_id), 10))
		}
		return data, netip.AddrPortFrom(a, port)
	}
	return data, netip.AddrPort{}
}

// release gives the datagrams' memory back.
func (r *udpReader) release() {
	if r.set != nil {
		readSets.Put(r.set)
		r.set = nil
	}
}

// udpWriter writes runs of datagrams to connected sockets. A run of
// datagrams of one size goes as one UDP GSO send (UDP_SEGMENT: the kernel
// cuts it into the datagrams, each whole, after a single pass through the
// stack); anything else goes up to udpBatch per sendmmsg. One goroutine
// uses a writer at a time.
type udpWriter struct {
	msgs    [udpBatch]mmsghdr
	iovs    [udpBatch]syscall.Iovec
	names   [udpBatch]syscall.RawSockaddrInet6 // writeTo's destinations
	family  int                                // writeTo's socket: AF_INET or AF_INET6; 0 until known
	scratch []byte                             // a GSO run, end to end
	oob     []byte                             // the UDP_SEGMENT control message
	noGSO   bool                               // the kernel refused GSO once: don't ask again
}

const (
	solUDP     = 17  // SOL_UDP
	udpSegment = 103 // UDP_SEGMENT

	// gsoMaxSegments and gsoMaxBytes bound one GSO send (the kernel allows
	// 64 segments and one IP packet's worth of payload).
	gsoMaxSegments = 64
	gsoMaxBytes    = 65000
)

// write sends payloads, whole and in order, on the connected socket c and
// returns how many the socket refused (its peer is down, say).
func (w *udpWriter) write(c *net.UDPConn, payloads [][]byte) (failed int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return len(payloads)
	}
	for len(payloads) > 0 {
		if k := w.gsoRun(payloads); k > 1 {
			switch err := w.sendGSO(rc, payloads[:k]); {
			case err == errNoGSO:
				w.noGSO = true
				continue
			case err != nil:
				failed += k
			}
			payloads = payloads[k:]
			continue
		}
		n := 1
		for n < len(payloads) && n < udpBatch && (w.noGSO || w.gsoRun(payloads[n:]) < 2) {
			n++
		}
		failed += w.sendMulti(rc, payloads[:n])
		payloads = payloads[n:]
	}
	return failed
}

// gsoRun returns how many datagrams at the start of ps can go as one GSO
// send: all of the first one's size, the last one possibly shorter.
func (w *udpWriter) gsoRun(ps [][]byte) int {
	if w.noGSO {
		return 0
	}
	size := len(ps[0])
	if size == 0 {
		return 1
	}
	k, total := 1, size
	for k < len(ps) && k < gsoMaxSegments && total+len(ps[k]) <= gsoMaxBytes && len(ps[k]) <= size {
		total += len(ps[k])
		k++
		if len(ps[k-1]) < size {
			break
		}
	}
	return k
}

// errNoGSO means the socket cannot send with UDP_SEGMENT.
var errNoGSO = errors.New("UDP GSO not available")

// sendGSO sends a run of datagrams (see gsoRun) with one sendmsg.
func (w *udpWriter) sendGSO(rc syscall.RawConn, run [][]byte) error {
	if w.scratch == nil {
		w.scratch = make([]byte, 0, gsoMaxBytes)
		w.oob = make([]byte, syscall.CmsgSpace(2))
		h := (*syscall.Cmsghdr)(unsafe.Pointer(&w.oob[0]))
		h.Level, h.Type = solUDP, udpSegment
		h.SetLen(syscall.CmsgLen(2))
	}
	buf := w.scratch[:0]
	for _, p := range run {
		buf = append(buf, p...)
	}
	binary.NativeEndian.PutUint16(w.oob[syscall.CmsgLen(0):], uint16(len(run[0])))
	iov := syscall.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	msg := syscall.Msghdr{Iov: &iov, Iovlen: 1, Control: &w.oob[0]}
	msg.SetControllen(len(w.oob))
	var errno syscall.Errno
	err := rc.Write(func(fd uintptr) bool {
		for {
			_, _, e := syscall.Syscall(syscall.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&msg)), 0)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait until writable
			}
			errno = e
			return true
		}
	})
	switch {
	case err != nil:
		return err
	case errno == syscall.EINVAL || errno == syscall.ENOPROTOOPT || errno == syscall.EOPNOTSUPP || errno == syscall.EIO:
		return errNoGSO
	case errno != 0:
		return errno
	}
	return nil
}

// sendMulti sends payloads (at most udpBatch) with sendmmsg.
func (w *udpWriter) sendMulti(rc syscall.RawConn, payloads [][]byte) (failed int) {
	for len(payloads) > 0 {
		n := len(payloads)
		for i, p := range payloads {
			w.iovs[i].Base = nil
			if len(p) > 0 {
				w.iovs[i].Base = &p[0]
			}
			w.iovs[i].SetLen(len(p))
			w.msgs[i].hdr = syscall.Msghdr{Iov: &w.iovs[i], Iovlen: 1}
		}
		sent, ok := w.sendmmsg(rc, n)
		if !ok {
			return failed + len(payloads)
		}
		if sent == 0 {
			sent = 1 // the first datagram failed (an ICMP error was pending); go on after it
			failed++
		}
		payloads = payloads[sent:]
	}
	return failed
}

// writeTo sends payloads[i] to to[i] on the unbound-peer socket c (a
// relay's public port), up to udpBatch per sendmmsg, and returns how many
// failed.
func (w *udpWriter) writeTo(c *net.UDPConn, payloads [][]byte, to []netip.AddrPort) (failed int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return len(payloads)
	}
	if w.family == 0 {
		w.family = syscall.AF_INET6
		rc.Control(func(fd uintptr) {
			if d, err := syscall.GetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_DOMAIN); err == nil {
				w.family = d
			}
		})
	}
	for len(payloads) > 0 {
		n := 0
		for n < len(payloads) && n < udpBatch {
			namelen, ok := w.sockaddr(&w.names[n], to[n])
			if !ok { // an IPv6 visitor on an IPv4 socket cannot be: skip it
				payloads, to = append(payloads[:n:n], payloads[n+1:]...), append(to[:n:n], to[n+1:]...)
				failed++
				continue
			}
			p := payloads[n]
			w.iovs[n].Base = nil
			if len(p) > 0 {
				w.iovs[n].Base = &p[0]
			}
			w.iovs[n].SetLen(len(p))
			w.msgs[n].hdr = syscall.Msghdr{Name: (*byte)(unsafe.Pointer(&w.names[n])), Namelen: namelen, Iov: &w.iovs[n], Iovlen: 1}
			n++
		}
		if n == 0 {
			break
		}
		sent, ok := w.sendmmsg(rc, n)
		if !ok {
			return failed + len(payloads)
		}
		if sent == 0 {
			sent = 1 // the first datagram failed (no route to its visitor, say); go on after it
			failed++
		}
		payloads, to = payloads[sent:], to[sent:]
	}
	return failed
}

// sockaddr writes ap as the socket's family wants it and returns its length.
func (w *udpWriter) sockaddr(sa *syscall.RawSockaddrInet6, ap netip.AddrPort) (uint32, bool) {
	port := ap.Port()
	if w.family == syscall.AF_INET {
		if !ap.Addr().Is4() {
			return 0, false
		}
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		*sa4 = syscall.RawSockaddrInet4{Family: syscall.AF_INET, Addr: ap.Addr().As4()}
		pp := (*[2]byte)(unsafe.Pointer(&sa4.Port))
		pp[0], pp[1] = byte(port>>8), byte(port)
		return syscall.SizeofSockaddrInet4, true
	}
	*sa = syscall.RawSockaddrInet6{Family: syscall.AF_INET6, Addr: ap.Addr().As16()}
	if z := ap.Addr().Zone(); z != "" {
		if id, err := strconv.ParseUint(z, 10, 32); err == nil {
			sa.Scope_id = uint32(id)
		} else if ifi, err := net.InterfaceByName(z); err == nil {
			sa.Scope_id = uint32(ifi.Index)
		}
	}
	pp := (*[2]byte)(unsafe.Pointer(&sa.Port))
	pp[0], pp[1] = byte(port>>8), byte(port)
	return syscall.SizeofSockaddrInet6, true
}

// sendmmsg sends the first n prepared messages; ok is false when the
// socket is closed. sent is 0 when the first message failed.
func (w *udpWriter) sendmmsg(rc syscall.RawConn, n int) (sent int, ok bool) {
	err := rc.Write(func(fd uintptr) bool {
		for {
			got, _, e := syscall.Syscall6(sysSendmmsg, fd, uintptr(unsafe.Pointer(&w.msgs[0])), uintptr(n), 0, 0, 0)
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait until writable
			case 0:
				sent = int(got)
			}
			return true
		}
	})
	return sent, err == nil
}
