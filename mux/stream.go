package mux

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
)

// A visitor stream is a yamux stream the relay opens to the node for one
// visitor. It begins with a header, relay to node:
//
//	+---------+------+-------------+---------+------------------------+
//	| version | kind | public port | addrLen | visitor address        |
//	|  1 byte | 1    | 2, BE       | 1       | addrLen bytes          |
//	+---------+------+-------------+---------+------------------------+
//
// The visitor address is netip.AddrPort's binary form. The node answers with
// one Status byte; after StatusOK the stream carries the visitor's bytes.
const (
	streamVersion = 1

	sizeOfStreamVersion = 1
	sizeOfKind          = 1
	sizeOfPort          = 2
	sizeOfAddrLen       = 1

	streamHeaderFixed = sizeOfStreamVersion + sizeOfKind + sizeOfPort + sizeOfAddrLen

	// maxAddrLen caps the visitor address: 16 bytes of IPv6, 2 of port,
	// and room for a zone.
	maxAddrLen = 64
)

// StreamKind says what a visitor stream carries.
type StreamKind uint8

const (
	// KindTCP: one visitor TCP connection; raw bytes follow the status.
	KindTCP StreamKind = 1
	// KindUDP: one visitor UDP flow; length-prefixed datagrams follow.
	KindUDP StreamKind = 2
)

// Status is the node's one-byte answer to a stream header.
type Status uint8

const (
	// StatusOK: the node reached its local service; bytes flow.
	StatusOK Status = 0
	// StatusRefused: the local service did not accept the connection.
	StatusRefused Status = 1
	// StatusUnknownMapping: the node holds no mapping for that port and kind.
	StatusUnknownMapping Status = 2
)

// ErrBadStreamHeader means a visitor stream did not start with a valid header.
var ErrBadStreamHeader = errors.New("bad visitor stream header")

// StreamHeader opens every visitor stream.
type StreamHeader struct {
	Kind    StreamKind
	Port    uint16         // the mapping's public port on the relay
	Visitor netip.AddrPort // who connected to it
}

// AppendBinary appends the encoded header to b.
func (h StreamHeader) AppendBinary(b []byte) ([]byte, error) {
	addr, err := h.Visitor.MarshalBinary()
	if err != nil || len(addr) > maxAddrLen {
		return b, fmt.Errorf("%w: visitor address %v", ErrBadStreamHeader, h.Visitor)
	}
	b = append(b, streamVersion, byte(h.Kind))
	b = binary.BigEndian.AppendUint16(b, h.Port)
	b = append(b, byte(len(addr)))
	return append(b, addr...), nil
}

// ReadStreamHeader reads and checks a header from r.
func ReadStreamHeader(r io.Reader) (StreamHeader, error) {
	var buf [streamHeaderFixed + maxAddrLen]byte
	if _, err := io.ReadFull(r, buf[:streamHeaderFixed]); err != nil {
		return StreamHeader{}, err
	}
	if buf[0] != streamVersion {
		return StreamHeader{}, fmt.Errorf("%w: version %d", ErrBadStreamHeader, buf[0])
	}
	h := StreamHeader{
		Kind: StreamKind(buf[1]),
		Port: binary.BigEndian.Uint16(buf[2:4]),
	}
	if h.Kind != KindTCP && h.Kind != KindUDP {
		return StreamHeader{}, fmt.Errorf("%w: kind %d", ErrBadStreamHeader, h.Kind)
	}
	n := int(buf[4])
	if n > maxAddrLen {
		return StreamHeader{}, fmt.Errorf("%w: address of %d bytes", ErrBadStreamHeader, n)
	}
	addr := buf[streamHeaderFixed : streamHeaderFixed+n]
	if _, err := io.ReadFull(r, addr); err != nil {
		return StreamHeader{}, noEOF(err)
	}
	if err := h.Visitor.UnmarshalBinary(addr); err != nil {
		return StreamHeader{}, fmt.Errorf("%w: %v", ErrBadStreamHeader, err)
	}
	return h, nil
}
