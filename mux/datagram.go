package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// After its header and the node's status byte, a visitor stream of kind
// KindUDP is a UDP link: both ways it carries datagram frames, each one whole
// UDP datagram (or a flow's opening or end) of one flow:
//
//	+------+---------+---------+----------------------+
//	| type | flow    | length  | payload              |
//	| 1 B  | 4 B, BE | 2 B, BE | length bytes         |
//	+------+---------+---------+----------------------+
//
// Flow numbers are chosen by the relay and name a flow on that one stream.
// A datagram's length is its own, so boundaries are kept and nothing is
// truncated or merged: the 2-byte length holds any UDP payload (at most
// 65,507 bytes over IPv4, 65,527 over IPv6).
const (
	sizeOfDatagramType   = 1
	sizeOfFlow           = 4
	sizeOfDatagramLength = 2

	// DatagramHeaderSize is the size of the header in front of every
	// datagram frame.
	DatagramHeaderSize = sizeOfDatagramType + sizeOfFlow + sizeOfDatagramLength

	// MaxDatagramSize is the largest payload a frame carries.
	MaxDatagramSize = 1<<(8*sizeOfDatagramLength) - 1

	// MinDatagramReaderSize is the smallest buffer a DatagramReader works
	// with: one frame of the largest size.
	MinDatagramReaderSize = DatagramHeaderSize + MaxDatagramSize
)

// DatagramType says what a datagram frame carries. The values are part of
// the wire format and never change; a test pins them.
type DatagramType uint8

const (
	// DatagramData carries one UDP datagram of the flow, whole. Either way.
	DatagramData DatagramType = 1
	// DatagramOpen starts a flow, relay to node, before its first data.
	// Payload: the visitor's address, netip.AddrPort's binary form.
	DatagramOpen DatagramType = 2
	// DatagramClose ends a flow, either way: it expired, was evicted or was
	// refused. The receiver frees it. Payload: empty.
	DatagramClose DatagramType = 3
)

func (t DatagramType) String() string {
	switch t {
	case DatagramData:
		return "data"
	case DatagramOpen:
		return "open"
	case DatagramClose:
		return "close"
	}
	return fmt.Sprintf("datagram(%d)", uint8(t))
}

// ErrDatagramTooLarge means a payload does not fit a frame's length field.
var ErrDatagramTooLarge = errors.New("datagram larger than 65,535 bytes")

// Datagram is one decoded frame. Payload points into the reader's buffer and
// is valid until a call to Next has to read from the stream (see Peek).
type Datagram struct {
	Type    DatagramType
	Flow    uint32
	Payload []byte
}

// AppendDatagram appends one frame to b. It fails only for a payload above
// MaxDatagramSize, which no UDP socket can deliver.
func AppendDatagram(b []byte, t DatagramType, flow uint32, payload []byte) ([]byte, error) {
	if len(payload) > MaxDatagramSize {
		return b, fmt.Errorf("%w: %d bytes", ErrDatagramTooLarge, len(payload))
	}
	b = append(b, byte(t))
	b = binary.BigEndian.AppendUint32(b, flow)
	b = binary.BigEndian.AppendUint16(b, uint16(len(payload)))
	return append(b, payload...), nil
}

// AppendOpen appends the frame that starts flow for visitor.
func AppendOpen(b []byte, flow uint32, visitor netip.AddrPort) ([]byte, error) {
	addr, err := visitor.MarshalBinary()
	if err != nil || len(addr) > maxAddrLen {
		return b, fmt.Errorf("flow %d: visitor address %v does not encode", flow, visitor)
	}
	return AppendDatagram(b, DatagramOpen, flow, addr)
}

// OpenVisitor decodes the payload of an open frame.
func OpenVisitor(payload []byte) (netip.AddrPort, error) {
	var ap netip.AddrPort
	if len(payload) > maxAddrLen {
		return ap, fmt.Errorf("open frame: address of %d bytes", len(payload))
	}
	if err := ap.UnmarshalBinary(payload); err != nil {
		return ap, fmt.Errorf("open frame: %w", err)
	}
	return ap, nil
}

// DatagramReader reads datagram frames from a stream. It reads as much as
// the stream holds at once into one buffer and hands frames out of it, so a
// burst of small datagrams costs one read, and a payload is never copied.
type DatagramReader struct {
	r    io.Reader
	buf  []byte
	head int // the next unread byte
	tail int // the end of what has been read
}

// NewDatagramReader reads from r with a buffer of size bytes, raised to
// MinDatagramReaderSize if smaller.
func NewDatagramReader(r io.Reader, size int) *DatagramReader {
	return &DatagramReader{r: r, buf: make([]byte, max(size, MinDatagramReaderSize))}
}

// Next returns the next frame. At a clean end of the stream between frames
// it returns io.EOF; inside a frame, io.ErrUnexpectedEOF. A frame of a type
// this build does not know is returned like any other: the caller skips it.
func (d *DatagramReader) Next() (Datagram, error) {
	if err := d.fill(DatagramHeaderSize); err != nil {
		return Datagram{}, err
	}
	h := d.buf[d.head:]
	g := Datagram{Type: DatagramType(h[0]), Flow: binary.BigEndian.Uint32(h[sizeOfDatagramType:])}
	n := int(binary.BigEndian.Uint16(h[sizeOfDatagramType+sizeOfFlow:]))
	if err := d.fill(DatagramHeaderSize + n); err != nil {
		return Datagram{}, noEOF(err)
	}
	start := d.head + DatagramHeaderSize
	g.Payload = d.buf[start : start+n : start+n]
	d.head = start + n
	return g, nil
}

// Peek reports the type and flow of the next frame if all of it has been
// read already, so that Next returns it without reading. Payloads returned
// earlier stay valid across such a Next: a caller may gather a run of frames.
func (d *DatagramReader) Peek() (t DatagramType, flow uint32, ok bool) {
	h := d.buf[d.head:d.tail]
	if len(h) < DatagramHeaderSize {
		return 0, 0, false
	}
	n := int(binary.BigEndian.Uint16(h[sizeOfDatagramType+sizeOfFlow:]))
	if len(h) < DatagramHeaderSize+n {
		return 0, 0, false
	}
	return DatagramType(h[0]), binary.BigEndian.Uint32(h[sizeOfDatagramType:]), true
}

// fill reads until at least n unread bytes are buffered. n never exceeds
// the buffer, which holds the largest frame.
func (d *DatagramReader) fill(n int) error {
	if d.tail-d.head >= n {
		return nil
	}
	if d.head+n > len(d.buf) {
		d.tail = copy(d.buf, d.buf[d.head:d.tail])
		d.head = 0
	}
	for d.tail-d.head < n {
		m, err := d.r.Read(d.buf[d.tail:])
		d.tail += m
		if err != nil {
			if d.tail-d.head >= n {
				return nil
			}
			if err == io.EOF && d.tail > d.head {
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}
